//! Bytes a multishot receive (io_uring) brought in ahead of the socket's reads, and how the
//! stream ends. The kernel hands received bytes over in the ring's provided buffers; the
//! driver copies them here and gives the buffer straight back, so a socket's reads take its
//! bytes from here, in order, as they would from the kernel's queue: the bytes first, then the
//! end (or the error). No byte is ever dropped while the socket is open.
//!
//! Receiving ahead stops when [`FULL`] bytes wait unread (the driver cancels the receive, and
//! the peer meets TCP's flow control as it would against a socket nobody reads) and starts
//! again once reads bring it below [`RESUME`].
#![forbid(unsafe_code)]

use std::io;

/// Unread bytes at which receiving ahead stops.
pub(super) const FULL: usize = 256 * 1024;
/// Unread bytes below which receiving ahead starts again.
pub(super) const RESUME: usize = 64 * 1024;

/// How the stream ended, once the kernel said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Open,
    /// The peer's end of the stream (a receive returned 0).
    Eof,
    /// A receive failed with this `errno` (a reset, for one); reported once, then the end.
    Failed(i32),
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Inbox {
    bytes: Vec<u8>,
    /// Bytes before this were read. (32 bits, as every socket that receives ahead has an
    /// inbox, kept small: 40 bytes, a 48-byte block. Never more than a few MiB wait here:
    /// receiving ahead stops at [`FULL`], and only the buffers already filled come after.)
    start: u32,
    pub(super) end: End,
    /// A multishot receive is in flight (its last completion has not come).
    pub(super) armed: bool,
    /// Its cancellation was asked for.
    pub(super) cancelling: bool,
    /// Receiving ahead is over for good (the socket is being taken out of the loop): once
    /// the bytes here are read, reads go to the kernel.
    pub(super) stopped: bool,
}

impl Inbox {
    pub(super) fn new() -> Inbox {
        Inbox {
            bytes: Vec::new(),
            start: 0,
            end: End::Open,
            armed: false,
            cancelling: false,
            stopped: false,
        }
    }

    /// An inbox whose receive is in flight and that holds nothing: the state of an idle
    /// connection's inbox, which the driver keeps as a flag instead (see
    /// [`is_idle`](Inbox::is_idle)).
    pub(super) fn armed() -> Inbox {
        Inbox {
            armed: true,
            ..Inbox::new()
        }
    }

    /// Whether it is in the state [`armed`](Inbox::armed) makes: its receive in flight,
    /// nothing held (no byte, no room, no end), nothing else to remember. The driver then
    /// folds it away: a connection between messages holds no inbox of its own.
    pub(super) fn is_idle(&self) -> bool {
        self.armed
            && !self.cancelling
            && !self.stopped
            && self.end == End::Open
            && self.bytes.capacity() == 0
            && self.start == 0
    }

    /// Unread bytes.
    pub(super) fn len(&self) -> usize {
        self.bytes.len() - self.start as usize
    }

    /// Bytes the kernel received.
    pub(super) fn push(&mut self, data: &[u8]) {
        let start = self.start as usize;
        if start >= 64 * 1024 && start * 2 >= self.bytes.len() {
            self.bytes.drain(..start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
        debug_assert!(u32::try_from(self.bytes.len()).is_ok(), "bounded by FULL");
    }

    /// Its room, once every byte in it was read (`None` while bytes wait, or if it has none):
    /// the ring keeps it for the next inbox or send that needs room, so an inbox between
    /// messages holds no memory.
    #[inline]
    pub(super) fn take_room(&mut self) -> Option<Vec<u8>> {
        if self.len() > 0 || self.bytes.capacity() == 0 {
            return None;
        }
        self.start = 0;
        Some(std::mem::take(&mut self.bytes))
    }

    /// Its room in bytes (for tests).
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.bytes.capacity()
    }

    /// Whether it has no room for bytes (a push would allocate): give it some first.
    #[inline]
    pub(super) fn has_no_room(&self) -> bool {
        self.bytes.capacity() == 0
    }

    /// Room for its bytes, when it has none (see [`has_no_room`](Inbox::has_no_room)).
    pub(super) fn give_room(&mut self, mut room: Vec<u8>) {
        debug_assert!(self.has_no_room() && self.start == 0);
        room.clear();
        self.bytes = room;
    }

    /// Whether a receive should be put in flight now.
    pub(super) fn wants_receive(&self) -> bool {
        !self.armed
            && !self.cancelling
            && !self.stopped
            && self.end == End::Open
            && self.len() < RESUME
    }

    /// Whether the receive in flight should be cancelled (too much waits unread).
    pub(super) fn too_full(&self) -> bool {
        self.armed && !self.cancelling && self.len() >= FULL
    }

    /// A read (or, with `peek`, a look) into `buf`: `Some` with its result when the inbox
    /// answers it (bytes, the end, the error, or `WouldBlock` while a receive is awaited);
    /// `None` when the kernel must (receiving ahead stopped and nothing is left here).
    #[inline]
    pub(super) fn read(&mut self, buf: &mut [u8], peek: bool) -> Option<io::Result<usize>> {
        let n = self.len().min(buf.len());
        if n > 0 || (self.len() > 0 && buf.is_empty()) {
            let start = self.start as usize;
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
            if !peek {
                // (`start + n` is at most the length, which fits: see `start`.)
                self.start = (start + n) as u32;
                if start + n == self.bytes.len() {
                    self.start = 0;
                    self.bytes.clear();
                }
            }
            return Some(Ok(n));
        }
        match self.end {
            End::Eof => return Some(Ok(0)),
            End::Failed(errno) => {
                if !peek {
                    self.end = End::Eof;
                }
                return Some(Err(io::Error::from_raw_os_error(errno)));
            }
            End::Open => {}
        }
        if self.stopped && !self.armed {
            return None;
        }
        Some(Err(io::ErrorKind::WouldBlock.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS's error number for a reset connection.
    #[cfg(unix)]
    const RESET: i32 = libc::ECONNRESET;
    #[cfg(windows)]
    const RESET: i32 = 10054; // WSAECONNRESET

    fn read(inbox: &mut Inbox, len: usize) -> Option<io::Result<Vec<u8>>> {
        let mut buf = vec![0; len];
        inbox
            .read(&mut buf, false)
            .map(|r| r.map(|n| buf[..n].to_vec()))
    }

    #[test]
    fn an_inbox_is_idle_only_with_its_receive_in_flight_and_nothing_held() {
        assert!(Inbox::armed().is_idle());
        assert!(!Inbox::new().is_idle(), "no receive in flight");
        let mut inbox = Inbox::armed();
        inbox.push(b"abc");
        assert!(!inbox.is_idle(), "bytes wait");
        let mut buf = [0u8; 3];
        assert_eq!(inbox.read(&mut buf, false).unwrap().unwrap(), 3);
        assert!(!inbox.is_idle(), "read empty, it still has its room");
        assert!(inbox.take_room().is_some());
        assert!(inbox.is_idle());
        for change in [
            |i: &mut Inbox| i.cancelling = true,
            |i: &mut Inbox| i.stopped = true,
            |i: &mut Inbox| i.end = End::Eof,
            |i: &mut Inbox| i.end = End::Failed(RESET),
        ] {
            let mut inbox = Inbox::armed();
            change(&mut inbox);
            assert!(!inbox.is_idle(), "{inbox:?}");
        }
    }

    /// Every connection that receives ahead has an inbox, idle ones too: it stays within 40
    /// bytes, a 48-byte block of the allocator (48 bytes would take a 64-byte one).
    #[test]
    fn an_inbox_fits_in_forty_bytes() {
        assert!(std::mem::size_of::<Inbox>() <= 40);
    }

    #[test]
    fn bytes_come_out_in_order_then_the_end() {
        let mut inbox = Inbox::new();
        inbox.armed = true;
        inbox.push(b"hello ");
        inbox.push(b"world");
        inbox.end = End::Eof;
        assert_eq!(read(&mut inbox, 4).unwrap().unwrap(), b"hell");
        let mut peeked = [0; 3];
        assert_eq!(inbox.read(&mut peeked, true).unwrap().unwrap(), 3);
        assert_eq!(&peeked, b"o w");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"o world");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"", "the end");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"", "and again");
    }

    #[test]
    fn an_error_comes_after_the_bytes_once_then_the_end() {
        let mut inbox = Inbox::new();
        inbox.push(b"last");
        inbox.end = End::Failed(RESET);
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"last");
        let mut buf = [0; 8];
        let peeked = inbox.read(&mut buf, true).unwrap().unwrap_err();
        assert_eq!(
            peeked.kind(),
            io::ErrorKind::ConnectionReset,
            "a peek leaves it"
        );
        let e = read(&mut inbox, 100).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"");
    }

    #[test]
    fn an_empty_inbox_waits_for_its_receive_or_hands_over_to_the_kernel_once_stopped() {
        let mut inbox = Inbox::new();
        inbox.armed = true;
        let e = read(&mut inbox, 8).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        inbox.stopped = true;
        assert!(
            read(&mut inbox, 8).is_some(),
            "its receive may still bring bytes"
        );
        inbox.armed = false;
        inbox.push(b"x");
        assert_eq!(
            read(&mut inbox, 8).unwrap().unwrap(),
            b"x",
            "bytes here first"
        );
        assert!(read(&mut inbox, 8).is_none(), "then the kernel");
    }

    #[test]
    fn an_inbox_gives_up_its_room_only_once_every_byte_was_read() {
        let mut inbox = Inbox::new();
        assert!(inbox.has_no_room());
        assert!(inbox.take_room().is_none(), "none to give");
        inbox.give_room(Vec::with_capacity(100));
        inbox.push(&[1; 64]);
        assert!(inbox.take_room().is_none(), "bytes wait in it");
        let mut peeked = [0; 64];
        assert_eq!(inbox.read(&mut peeked, true).unwrap().unwrap(), 64);
        assert!(inbox.take_room().is_none(), "a look leaves them");
        assert_eq!(read(&mut inbox, 10).unwrap().unwrap(), [1; 10]);
        assert!(inbox.take_room().is_none(), "some still wait");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), [1; 54]);
        let room = inbox.take_room().expect("read empty: its room goes");
        assert!(room.capacity() >= 100 && room.is_empty());
        assert!(inbox.has_no_room());
        // Without room it still takes bytes (allocating), and the next ones after them.
        inbox.push(b"after");
        inbox.push(b" all");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"after all");
        assert!(inbox.take_room().is_some());
        let mut stale = Vec::with_capacity(8);
        stale.extend_from_slice(b"stale");
        inbox.give_room(stale);
        assert_eq!(inbox.len(), 0, "given room comes empty");
        inbox.push(b"new");
        assert_eq!(read(&mut inbox, 100).unwrap().unwrap(), b"new");
    }

    #[test]
    fn receiving_ahead_stops_when_full_and_resumes_when_read_down() {
        let mut inbox = Inbox::new();
        assert!(inbox.wants_receive());
        inbox.armed = true;
        assert!(!inbox.wants_receive());
        let chunk = vec![7u8; 4096];
        while inbox.len() < FULL {
            assert!(!inbox.too_full());
            inbox.push(&chunk);
        }
        assert!(inbox.too_full());
        inbox.cancelling = true;
        assert!(!inbox.too_full(), "asked once");
        // The cancellation's last completion.
        inbox.armed = false;
        inbox.cancelling = false;
        assert!(!inbox.wants_receive(), "still full");
        let mut sink = vec![0; 4096];
        let mut read_bytes = 0;
        while inbox.len() >= RESUME {
            read_bytes += inbox.read(&mut sink, false).unwrap().unwrap();
        }
        assert!(inbox.wants_receive());
        // Every byte pushed came out or is still there: none lost to compaction.
        assert_eq!(read_bytes + inbox.len(), FULL.div_ceil(4096) * 4096);
    }
}
