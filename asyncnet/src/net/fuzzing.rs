//! Entry points of `net` for the fuzz targets (`fuzz/`), built only under `--cfg fuzzing`
//! (cargo-fuzz sets it): thin wrappers over the socket's read and write buffers and its line
//! reader, with the kernel replaced by a queue of arrivals in memory.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use socket2::SockAddr;

use super::buffer::{BufferPool, Mirror, ReadBuffer, WriteBuffer};
use super::local::SCRATCH_SIZE;
use super::read::ReadState;
use super::socket::BUFFER_SIZE;

/// The line reader of a socket (`recv_line`'s logic: the socket's read buffer, the scan for
/// a terminator, the shortcut for a text line already buffered, the scratch-buffer path of a
/// buffered socket, one byte at a time on an unbuffered one), reading from arrivals queued in
/// memory instead of a kernel.
#[derive(Debug)]
pub struct LineReader {
    state: ReadState,
    pool: BufferPool,
    /// What the "kernel" holds: one entry per arrival (its bytes, how many were read); a
    /// read takes from the first only.
    arrivals: VecDeque<(Vec<u8>, usize)>,
    /// The peer closed: once `arrivals` is empty, reads return 0.
    ended: bool,
}

impl LineReader {
    /// A reader of a buffered (`true`, the default of sockets) or unbuffered socket.
    pub fn new(buffered: bool) -> LineReader {
        LineReader {
            state: ReadState::new(buffered),
            pool: BufferPool::default(),
            arrivals: VecDeque::new(),
            ended: false,
        }
    }

    /// Bytes arrive (one read returns at most the rest of one arrival).
    pub fn arrive(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.arrivals.push_back((bytes.to_vec(), 0));
        }
    }

    /// The peer closes its side.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// One read of at most `max` bytes, as the kernel would answer it.
    fn read(&mut self, max: usize) -> Poll<Vec<u8>> {
        let Some(front) = self.arrivals.front_mut() else {
            return if self.ended {
                self.state.eof.set(true);
                Poll::Ready(Vec::new())
            } else {
                Poll::Pending
            };
        };
        let (bytes, taken) = front;
        let n = max.min(bytes.len() - *taken);
        let out = bytes[*taken..*taken + n].to_vec();
        *taken += n;
        if *taken == bytes.len() {
            self.arrivals.pop_front();
        }
        Poll::Ready(out)
    }

    /// `recv_line_with(flags, max_length)` polled once: `Pending` where the socket would
    /// wait (dropping the "future" there is what the caller does by calling again later).
    /// `peek` is honoured on buffered readers only (an unbuffered one peeks the kernel).
    pub fn poll_line(
        &mut self,
        peek: bool,
        max_length: usize,
    ) -> Poll<io::Result<Option<Vec<u8>>>> {
        let buffered = self.state.buffered.get();
        let keep = peek && buffered;
        let deliver = &mut |b: &[u8]| b.to_vec();
        loop {
            if buffered && !keep {
                // `recv_line`'s shortcut for a text line already buffered, first as there.
                let mut line = String::new();
                if self.state.text_line_into(&self.pool, max_length, &mut line) {
                    return Poll::Ready(Ok(Some(line.into_bytes())));
                }
            }
            match self
                .state
                .buffered_line(&self.pool, keep, max_length, deliver)
            {
                Ok(Some(r)) => return Poll::Ready(Ok(r)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if buffered && !keep && self.state.buf.borrow().is_empty() {
                let data = match self.read(SCRATCH_SIZE) {
                    Poll::Ready(d) => d,
                    Poll::Pending => return Poll::Pending,
                };
                match self
                    .state
                    .line_from_fresh(&data, &self.pool, max_length, deliver)
                {
                    Ok(Some(r)) => return Poll::Ready(Ok(Some(r))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if buffered {
                let chunk = match self.read(BUFFER_SIZE) {
                    Poll::Ready(d) => d,
                    Poll::Pending => return Poll::Pending,
                };
                let r = self.state.buf.borrow_mut().fill_from(
                    BUFFER_SIZE,
                    |b| {
                        b[..chunk.len()].copy_from_slice(&chunk);
                        Poll::Ready(Ok(chunk.len()))
                    },
                    &self.pool,
                );
                debug_assert!(matches!(r, Poll::Ready(Ok(_))));
                continue;
            }
            match self.read(1) {
                Poll::Ready(byte) => self.state.buf.borrow_mut().extend(&byte, &self.pool),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Every byte not yet taken as a line: the buffered ones, then those still "in the
    /// kernel".
    pub fn take_rest(&mut self) -> Vec<u8> {
        let mut rest = self.state.buf.borrow_mut().take_all();
        for (bytes, taken) in self.arrivals.drain(..) {
            rest.extend_from_slice(&bytes[taken..]);
        }
        rest
    }
}

/// [`Buffers::mirror`]'s record of the front of the read buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrontRecord(Mirror);

/// A socket's read buffer, write buffer and the pool they share, each method the buffer's
/// own (see `net/buffer.rs` for what each does).
#[derive(Debug, Default)]
pub struct Buffers {
    read: ReadBuffer,
    write: WriteBuffer,
    pool: BufferPool,
}

#[allow(missing_docs)]
impl Buffers {
    pub fn unread(&self) -> &[u8] {
        self.read.unread()
    }
    pub fn read_len(&self) -> usize {
        self.read.len()
    }
    pub fn read_is_empty(&self) -> bool {
        self.read.is_empty()
    }
    pub fn scanned(&self) -> usize {
        self.read.scanned()
    }
    pub fn set_scanned(&mut self, n: usize) {
        self.read.set_scanned(n);
    }
    pub fn consume(&mut self, n: usize) {
        self.read.consume(n, &self.pool);
    }
    pub fn extend(&mut self, bytes: &[u8]) {
        self.read.extend(bytes, &self.pool);
    }
    pub fn unread_front(&mut self, bytes: Vec<u8>) {
        self.read.unread_front(bytes);
    }
    pub fn take_all(&mut self) -> Vec<u8> {
        self.read.take_all()
    }
    pub fn take_into(&mut self, out: &mut [u8]) -> usize {
        self.read.take_into(out, &self.pool)
    }
    pub fn take_front(&mut self, n: usize) -> Vec<u8> {
        self.read.take_front(n, &self.pool)
    }
    /// A read's record of the first `n` unread bytes (see `Mirror` in `net/buffer.rs`).
    pub fn mirror(&self, n: usize) -> FrontRecord {
        FrontRecord(self.read.mirror(n))
    }
    pub fn mirrors(&self, m: FrontRecord) -> bool {
        self.read.mirrors(m.0)
    }
    pub fn fill_from(
        &mut self,
        max: usize,
        read: impl FnOnce(&mut [u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.read.fill_from(max, read, &self.pool)
    }

    pub fn pending(&self) -> &[u8] {
        self.write.pending()
    }
    pub fn write_len(&self) -> usize {
        self.write.len()
    }
    pub fn write_is_empty(&self) -> bool {
        self.write.is_empty()
    }
    pub fn written(&self) -> u64 {
        self.write.written()
    }
    pub fn accepted(&self) -> u64 {
        self.write.accepted()
    }
    pub fn committed(&self) -> u64 {
        self.write.committed()
    }
    pub fn note_direct(&mut self, n: usize) -> u64 {
        self.write.note_direct(n)
    }
    pub fn push(&mut self, bytes: &[u8]) -> u64 {
        self.write.push(bytes, &self.pool)
    }
    pub fn commit(&mut self, end: u64) {
        self.write.commit(end);
    }
    pub fn has_uncommitted(&self) -> bool {
        self.write.has_uncommitted()
    }
    pub fn discard_uncommitted(&mut self) -> u64 {
        self.write.discard_uncommitted(&self.pool)
    }
    pub fn advance(&mut self, n: usize) {
        self.write.advance(n, &self.pool);
    }
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.write.take_pending()
    }
    pub fn discard(&mut self) -> usize {
        self.write.discard(&self.pool)
    }
}

/// `recv_from`'s text form of a sender's address (`addr_text`) for an IP address.
pub fn addr_text_ip(addr: SocketAddr) -> io::Result<(String, u16)> {
    both_forms(&SockAddr::from(addr))
}

/// `recv_from`'s text form of a sender's address for a Unix path (a leading NUL: abstract).
///
/// # Errors
///
/// The path does not fit a `sockaddr_un` (then `addr_text` is not reached).
pub fn addr_text_unix(path: &std::path::Path) -> io::Result<(String, u16)> {
    both_forms(&SockAddr::unix(path)?)
}

/// `addr_text` and `addr_text_into` must agree; the string is reused as `recv_from_into`
/// does.
fn both_forms(a: &SockAddr) -> io::Result<(String, u16)> {
    let (text, port) = super::socket::addr_text(a)?;
    let mut reused = String::from("something left from an earlier datagram");
    let port2 = super::socket::addr_text_into(a, &mut reused)?;
    assert_eq!((&text, port), (&reused, port2), "addr_text_into disagrees");
    Ok((text, port))
}
