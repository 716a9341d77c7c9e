//! The socket's read and write buffers.
//!
//! Both exist only while bytes are in them: an idle connection holds no buffer memory; their
//! storage comes from, and goes back to, the loop's [`BufferPool`], so a message costs no
//! allocation. A read
//! that completes in one go never touches the read buffer (the loop's scratch buffer, or the
//! caller's own, takes the bytes); only bytes that arrived but were not yet asked for are kept.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::task::Poll;

/// Bytes received from the kernel but not yet consumed.
///
/// ```text
///   data: [ consumed ...... | unread bytes ............ | room ......... ]
///         0                 pos                         end             data.len()
/// ```
///
/// `data` is released as soon as every byte in it is consumed. `scanned` counts leading
/// unread bytes known to hold no `\n`, so that a line arriving in pieces is scanned once;
/// every way of consuming or prepending keeps it true. `generation` counts the changes to the
/// front of the unread bytes (everything but appending): a read that leaves a copy of its
/// bytes here knows by it that the copy is still the front (see [`Mirror`]).
///
/// The room past `end` is initialized (zeroed once, or bytes of an earlier use of the pool's
/// buffer) and kept for the next read: a read that returns less than it asked for (as most
/// reads into a large request do, and every read that finds nothing) does not have the same
/// room zeroed again on the next try, so a read that gathers megabytes over many wake-ups
/// writes each byte of room once, and one that finds nothing writes none.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    data: Vec<u8>,
    pos: usize,
    end: usize,
    scanned: usize,
    generation: u64,
}

/// What a buffered read that could not finish left in the socket's buffer: a copy of the
/// first `len` bytes it had already written into its caller's buffer (`len` 0, the default:
/// nothing). While no byte was consumed or put in front since ([`ReadBuffer::mirrors`]), the
/// next poll goes on from there instead of copying them back; a dropped read leaves them for
/// the next one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mirror {
    pub(crate) len: usize,
    generation: u64,
}

impl ReadBuffer {
    /// The first `len` unread bytes, recorded as a copy of a read's own.
    pub(crate) fn mirror(&self, len: usize) -> Mirror {
        debug_assert!(len <= self.len());
        Mirror {
            len,
            generation: self.generation,
        }
    }

    /// Whether the unread bytes still start with the copy `m` recorded: nothing was
    /// consumed or put in front since (appending leaves the front as it was).
    pub(crate) fn mirrors(&self, m: Mirror) -> bool {
        m.len > 0 && m.generation == self.generation && m.len <= self.len()
    }

    /// Drop every byte (the socket closed); a [`Mirror`] taken before no longer matches.
    pub(crate) fn clear(&mut self) {
        *self = ReadBuffer {
            generation: self.generation + 1,
            ..ReadBuffer::default()
        };
    }

    /// The unread bytes.
    #[inline]
    pub(crate) fn unread(&self) -> &[u8] {
        &self.data[self.pos..self.end]
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Leading unread bytes known to hold no `\n`.
    pub(crate) fn scanned(&self) -> usize {
        self.scanned
    }

    /// Record that the first `n` unread bytes hold no `\n`.
    pub(crate) fn set_scanned(&mut self, n: usize) {
        self.scanned = n.min(self.len());
    }

    /// Mark `n` unread bytes as consumed. Storage left empty goes back to `pool`.
    pub(crate) fn consume(&mut self, n: usize, pool: &BufferPool) {
        debug_assert!(n <= self.len());
        let n = n.min(self.len());
        self.pos += n;
        self.generation += 1;
        self.scanned = self.scanned.saturating_sub(n);
        if self.is_empty() {
            self.release(pool);
        }
    }

    /// Mark a line of `n` unread bytes, terminator included, as consumed: as
    /// [`consume`](Self::consume), knowing that the terminator lay past the scanned bytes.
    #[inline]
    pub(crate) fn consume_line(&mut self, n: usize, pool: &BufferPool) {
        debug_assert!(self.scanned < n && n <= self.len());
        self.pos += n.min(self.len());
        self.generation += 1;
        self.scanned = 0;
        if self.is_empty() {
            self.release(pool);
        }
    }

    /// Give the emptied storage back to `pool`. (The front changed already, or there was
    /// none: an empty buffer matches no [`Mirror`].)
    fn release(&mut self, pool: &BufferPool) {
        pool.put_with_room(std::mem::take(&mut self.data));
        self.pos = 0;
        self.end = 0;
    }

    /// Append bytes that arrived but were not consumed (storage from `pool` if there is
    /// none).
    #[inline]
    pub(crate) fn extend(&mut self, bytes: &[u8], pool: &BufferPool) {
        // Mostly nothing: a line read that took the whole read leaves no surplus.
        if !bytes.is_empty() {
            self.append(bytes, pool);
        }
    }

    fn append(&mut self, bytes: &[u8], pool: &BufferPool) {
        if self.data.capacity() == 0 {
            self.data = pool.take_with_room();
        }
        self.compact();
        let end = self.end + bytes.len();
        if end <= self.data.len() {
            self.data[self.end..end].copy_from_slice(bytes);
        } else {
            // Past the room: it is all written over anyway.
            self.data.truncate(self.end);
            self.data.extend_from_slice(bytes);
        }
        self.end = end;
    }

    /// Put back bytes taken by a read that could not finish yet. They go *before* whatever is
    /// unread (the buffer is normally empty then).
    pub(crate) fn unread_front(&mut self, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.scanned = 0;
        self.generation += 1;
        if !self.is_empty() {
            bytes.extend_from_slice(self.unread());
        }
        self.end = bytes.len();
        self.data = bytes;
        self.pos = 0;
    }

    /// Take every unread byte out, as a buffer of its own (no copy when nothing was consumed
    /// yet).
    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.data);
        data.truncate(self.end);
        data.drain(..self.pos);
        self.pos = 0;
        self.end = 0;
        self.scanned = 0;
        self.generation += 1;
        data
    }

    /// Take the first `n` unread bytes (fewer if fewer are unread) as a buffer of their own:
    /// the storage itself when they are all there is and too many to copy cheaply, otherwise
    /// an exact-size copy (a small read does not hand its caller a buffer of the pool's size).
    pub(crate) fn take_front(&mut self, n: usize, pool: &BufferPool) -> Vec<u8> {
        let n = n.min(self.len());
        if n == self.len() && n >= TAKE_WHOLE {
            let mut all = self.take_all();
            // Room grown ahead of the bytes is given back, not handed to the caller.
            if all.capacity() > 2 * all.len() {
                all.shrink_to_fit();
            }
            return all;
        }
        let front = self.unread()[..n].to_vec();
        self.consume(n, pool);
        front
    }

    /// Take up to `n` unread bytes into `out`.
    pub(crate) fn take_into(&mut self, out: &mut [u8], pool: &BufferPool) -> usize {
        let n = out.len().min(self.len());
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.consume(n, pool);
        n
    }

    /// Read more bytes from `read`, appending after the unread ones. At most `max` bytes are
    /// asked for. Returns what `read` returned.
    pub(crate) fn fill_from(
        &mut self,
        max: usize,
        read: impl FnOnce(&mut [u8]) -> Poll<io::Result<usize>>,
        pool: &BufferPool,
    ) -> Poll<io::Result<usize>> {
        if self.data.capacity() == 0 {
            self.data = pool.take_with_room();
        }
        self.compact();
        let start = self.end;
        if self.data.len() < start + max {
            // Only room never zeroed before is zeroed now.
            self.data.resize(start + max, 0);
        }
        let r = read(&mut self.data[start..start + max]);
        let n = match r {
            Poll::Ready(Ok(n)) => n.min(max),
            _ => 0,
        };
        self.end += n;
        if self.is_empty() {
            self.release(pool);
        }
        r
    }

    /// Move unread bytes to the front when the consumed part is the larger, so that the
    /// buffer does not creep forward forever.
    fn compact(&mut self) {
        if self.pos > 0 && self.pos >= self.end - self.pos {
            self.data.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }
}

/// Unread bytes from which [`ReadBuffer::take_front`] hands over the storage itself rather
/// than a copy (a read that gathered many chunks); below it a copy is cheap.
const TAKE_WHOLE: usize = 16 * 1024;

/// Bytes accepted by `send` but not yet taken by the kernel, with running totals so that each
/// send knows when its own bytes are out.
///
/// ```text
///   data: [ written ...... | pending bytes ................................ ]
///         0                pos                                             data.len()
///   sequence numbers:  written ≤ committed ≤ accepted
///   accepted  = total bytes ever handed to send (written + the pending bytes: not stored)
///   written   = total taken by the kernel
///   committed = end of the bytes whose sends completed or were dropped: they must reach the
///               peer even if the socket closes; bytes past it belong to sends still waiting
/// ```
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    data: Vec<u8>,
    pos: usize,
    written: u64,
    committed: u64,
}

impl WriteBuffer {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Number of pending bytes.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }

    /// Total bytes taken by the kernel so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// End of the bytes that must be delivered whatever happens to their sends.
    #[cfg(fuzzing)]
    pub(crate) fn committed(&self) -> u64 {
        self.committed
    }

    /// Total bytes ever handed to sends: the sequence number of the end of the queue.
    #[inline]
    pub(crate) fn accepted(&self) -> u64 {
        self.written + self.len() as u64
    }

    /// Count bytes that went straight to the kernel (the buffer was empty). Returns the new
    /// total, the sequence number of their end.
    pub(crate) fn note_direct(&mut self, n: usize) -> u64 {
        debug_assert!(self.is_empty());
        self.written += n as u64;
        self.committed = self.written;
        self.written
    }

    /// Queue bytes behind the pending ones; returns the sequence number of their end. The
    /// first bytes after an empty spell get storage from `pool`.
    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8], pool: &BufferPool) -> u64 {
        // Behind one test, out of line: the first bytes after an empty spell, or a queue
        // partly written (a copy after `pending` would pay for it).
        if self.pos > 0 || self.data.capacity() == 0 {
            self.make_room(pool);
        }
        self.data.extend_from_slice(bytes);
        self.accepted()
    }

    /// [`push`](Self::push) and [`commit`](Self::commit) to the end in one: bytes as good
    /// as sent.
    #[inline]
    pub(crate) fn push_committed(&mut self, bytes: &[u8], pool: &BufferPool) {
        // As `commit(end)`: `committed` is never past `accepted`, which `end` is.
        debug_assert!(self.committed <= self.accepted());
        self.committed = self.push(bytes, pool);
    }

    /// Before a push: storage from `pool` if there is none, and the written bytes dropped
    /// once they are at least as many as those still pending.
    #[inline(never)]
    fn make_room(&mut self, pool: &BufferPool) {
        if self.pos > 0 && self.pos >= self.data.len() - self.pos {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        if self.data.capacity() == 0 {
            self.data = pool.take();
        }
    }

    /// The bytes up to sequence number `end` must be delivered whatever happens to the
    /// sends that queued them.
    pub(crate) fn commit(&mut self, end: u64) {
        self.committed = self.committed.max(end.min(self.accepted()));
    }

    /// Whether pending bytes belong to sends that are still waiting.
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.accepted() > self.committed.max(self.written)
    }

    /// Drop the pending bytes past `committed` (their sends are still waiting and will be
    /// told). Returns the sequence number from which bytes were dropped.
    pub(crate) fn discard_uncommitted(&mut self, pool: &BufferPool) -> u64 {
        let keep_to = self.committed.max(self.written);
        let keep = (keep_to - self.written) as usize;
        self.data.truncate(self.pos + keep);
        // No send after this one can queue (the socket is closing or shut down), so the
        // dropped sequence numbers are simply forgotten: `accepted` is `keep_to` again.
        self.committed = keep_to;
        if self.is_empty() {
            self.release(pool);
        }
        keep_to
    }

    /// `n` pending bytes were taken by the kernel. Storage left empty goes back to `pool`.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize, pool: &BufferPool) {
        self.pos += n;
        self.written += n as u64;
        self.committed = self.committed.max(self.written);
        if self.is_empty() {
            self.release(pool);
        }
    }

    /// Write pending bytes with `write`, given the storage and where they start in it; they
    /// leave the buffer as [`advance`](Self::advance) says. `write` may take the storage
    /// itself (the io_uring driver hands it to the kernel's send instead of a copy), leaving
    /// an empty buffer in its place: it then took every pending byte.
    #[inline]
    pub(crate) fn write_out(
        &mut self,
        pool: &BufferPool,
        write: impl FnOnce(&mut Vec<u8>, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let len = self.data.len();
        let n = write(&mut self.data, self.pos)?;
        if self.data.len() == len {
            self.advance(n, pool);
        } else {
            // Taken: what is left is an empty buffer (as the driver's spare ones are).
            debug_assert!(self.data.is_empty() && n == len - self.pos);
            self.pos = 0;
            self.written += n as u64;
            self.committed = self.committed.max(self.written);
            self.release(pool);
        }
        Ok(n)
    }

    /// Take every pending byte out (for a closing socket to finish writing on its own);
    /// they count as written.
    pub(crate) fn take_pending(&mut self) -> Vec<u8> {
        let accepted = self.accepted();
        let mut data = std::mem::take(&mut self.data);
        data.drain(..self.pos);
        self.pos = 0;
        self.written = accepted;
        self.committed = accepted;
        data
    }

    /// Drop every pending byte (the peer is gone); they count as written so that no send
    /// waits for them forever. Returns how many were dropped.
    pub(crate) fn discard(&mut self, pool: &BufferPool) -> usize {
        let n = self.data.len() - self.pos;
        self.advance(n, pool);
        n
    }

    fn release(&mut self, pool: &BufferPool) {
        pool.put(std::mem::take(&mut self.data));
        self.pos = 0;
    }
}

/// Empty byte buffers of one loop (read and write), kept for the next socket that has bytes to
/// hold: a connection between messages holds no buffer, yet a message costs no
/// `malloc`/`free` pair.
///
/// Read buffers come back with their room (their length: bytes zeroed once, see
/// [`ReadBuffer`]) and are kept apart from write buffers, so that a read that finds nothing,
/// or a small message, does not zero a buffer's worth of room again: the write side clears
/// what it takes, and would otherwise hand the read side a cleared buffer at every message.
///
/// Bounded: at most [`POOL_BUFFERS`] buffers of at most [`POOL_CAPACITY`] bytes each are kept;
/// others are freed.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    lists: RefCell<PoolLists>,
}

#[derive(Debug, Default)]
struct PoolLists {
    /// Emptied write buffers (length 0).
    free: Vec<Vec<u8>>,
    /// Emptied read buffers, their length room.
    with_room: Vec<Vec<u8>>,
}

/// How many empty buffers a loop keeps.
const POOL_BUFFERS: usize = 16;
/// The largest buffer kept (a high-water mark's worth and a message past it).
const POOL_CAPACITY: usize = 128 * 1024;
/// The capacity of a new buffer: room for a batch of small replies, so that coalescing them
/// does not reallocate reply after reply.
const FIRST_CAPACITY: usize = 4 * 1024;

impl BufferPool {
    /// An empty buffer (for writing).
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut lists = self.lists.borrow_mut();
        if let Some(buf) = lists.free.pop() {
            return buf;
        }
        let mut buf = lists.with_room.pop().unwrap_or_else(new_buffer);
        buf.clear();
        buf
    }

    /// A buffer whose length is room: bytes a read buffer zeroed, or that held an earlier
    /// connection's bytes, that a read may overwrite without zeroing them first (see
    /// [`ReadBuffer`]: its bytes end at its own `end`, not at the length).
    pub(crate) fn take_with_room(&self) -> Vec<u8> {
        let mut lists = self.lists.borrow_mut();
        match lists.with_room.pop() {
            Some(buf) => buf,
            None => lists.free.pop().unwrap_or_else(new_buffer),
        }
    }

    /// Keep an emptied write buffer for later, or free it.
    pub(crate) fn put(&self, mut buf: Vec<u8>) {
        if keeps(&buf) {
            let mut lists = self.lists.borrow_mut();
            if lists.free.len() + lists.with_room.len() < POOL_BUFFERS {
                buf.clear();
                lists.free.push(buf);
            }
        }
    }

    /// Keep an emptied read buffer for later, its length kept as room, or free it.
    pub(crate) fn put_with_room(&self, buf: Vec<u8>) {
        if keeps(&buf) {
            let mut lists = self.lists.borrow_mut();
            if lists.free.len() + lists.with_room.len() < POOL_BUFFERS {
                lists.with_room.push(buf);
            }
        }
    }
}

/// Whether a pool keeps `buf` (it has storage, and not too much).
fn keeps(buf: &Vec<u8>) -> bool {
    buf.capacity() != 0 && buf.capacity() <= POOL_CAPACITY
}

fn new_buffer() -> Vec<u8> {
    Vec::with_capacity(FIRST_CAPACITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_releases_memory_when_drained() {
        let pool = BufferPool::default();
        let mut b = ReadBuffer::default();
        b.extend(b"hello", &pool);
        b.consume(2, &pool);
        assert_eq!(b.unread(), b"llo");
        b.consume(3, &pool);
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), 0);
        assert_eq!(
            pool.lists.borrow().with_room.len(),
            1,
            "the storage went back to the pool"
        );
    }

    #[test]
    fn scanned_stays_within_the_bytes_it_describes() {
        let pool = BufferPool::default();
        let mut b = ReadBuffer::default();
        b.extend(b"abcdef", &pool);
        b.set_scanned(6);
        b.consume(4, &pool);
        assert_eq!(b.scanned(), 2);
        b.unread_front(b"x\n".to_vec());
        assert_eq!(b.scanned(), 0);
    }

    #[test]
    fn unread_front_keeps_order() {
        let mut b = ReadBuffer::default();
        b.extend(b"world", &BufferPool::default());
        b.unread_front(b"hello ".to_vec());
        assert_eq!(b.unread(), b"hello world");
    }

    /// A read that returns less than it was offered leaves the rest of the room as it found
    /// it for the next read: room is zeroed once, not at every read (a read gathering
    /// megabytes through short reads zeroed megabytes each time).
    #[test]
    fn room_a_short_read_left_is_offered_again_without_being_zeroed() {
        let pool = BufferPool::default();
        let mut b = ReadBuffer::default();
        let r = b.fill_from(
            1000,
            |buf| {
                assert!(buf.iter().all(|&x| x == 0), "fresh room is zeroed");
                buf.fill(b'x');
                Poll::Ready(Ok(10))
            },
            &pool,
        );
        assert!(matches!(r, Poll::Ready(Ok(10))));
        let r = b.fill_from(
            990,
            |buf| {
                assert!(buf.iter().all(|&x| x == b'x'), "the room was zeroed again");
                buf[..5].copy_from_slice(b"hello");
                Poll::Pending
            },
            &pool,
        );
        assert!(r.is_pending());
        assert_eq!(
            b.unread(),
            &[b'x'; 10][..],
            "a read that did not complete added nothing"
        );
        b.extend(b"abc", &pool);
        assert_eq!(&b.unread()[10..], b"abc", "appending writes over the room");
        assert_eq!(b.take_front(13, &pool).len(), 13);
        assert!(b.is_empty());
    }

    #[test]
    fn fill_from_appends_and_keeps_partial_on_error() {
        let pool = BufferPool::default();
        let mut b = ReadBuffer::default();
        b.extend(b"ab", &pool);
        let n = b.fill_from(
            8,
            |buf| {
                buf[..3].copy_from_slice(b"cde");
                Poll::Ready(Ok(3))
            },
            &pool,
        );
        assert!(matches!(n, Poll::Ready(Ok(3))));
        assert_eq!(b.unread(), b"abcde");
        let e = b.fill_from(8, |_| Poll::Ready(Err(io::ErrorKind::Other.into())), &pool);
        assert!(matches!(e, Poll::Ready(Err(_))));
        assert_eq!(b.unread(), b"abcde");
        assert!(b.fill_from(8, |_| Poll::Pending, &pool).is_pending());
        assert_eq!(b.unread(), b"abcde");
    }

    #[test]
    fn write_buffer_sequence_numbers() {
        let pool = BufferPool::default();
        let mut w = WriteBuffer::default();
        assert_eq!(w.note_direct(10), 10);
        assert_eq!(w.push(b"abc", &pool), 13);
        assert_eq!(w.push(b"de", &pool), 15);
        w.advance(4, &pool);
        assert_eq!(w.written(), 14);
        assert_eq!(w.pending(), b"e");
        assert_eq!(w.discard(&pool), 1);
        assert_eq!(w.written(), 15);
        assert!(w.is_empty());
    }
}
