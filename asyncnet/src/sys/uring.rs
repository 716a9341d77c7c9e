//! io_uring (Linux 6.0 and later): the ring, the entries the driver pushes, and the one
//! `io_uring_enter` per loop turn. The driver (`driver/uring.rs`) keeps the tables; this file
//! only talks to the kernel, and is where the `unsafe` of it lives.
//!
//! Every entry pushed here refers to no memory of the caller's: a poll names a descriptor and
//! a mask, a removal or a cancellation the user data of another request, a multishot receive
//! a *group* of buffers. Those buffers belong to the ring itself ([`Ring::provide_buffers`]):
//! the kernel picks one when bytes arrive and hands it back in the completion, and the ring
//! frees them only after the group is unregistered (when it is dropped). A send's bytes are
//! copied into the ring's own table of sends ([`Ring::send`]), or the buffer holding them is
//! handed over to it ([`Ring::send_owned`]), and they stay there, untouched,
//! until the ring has taken the send's completion; the ring leaks, rather than frees, the
//! bytes of a send still in flight when it is dropped. So nothing the kernel holds can
//! dangle, whatever happens to a future, a socket or a failed submission.

use std::alloc::{self, Layout};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// One completion: user data, result, flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) user_data: u64,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// The request goes on producing completions (a multishot request not yet ended).
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer the kernel filled (a receive's bytes are in it).
    pub(crate) fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// The one group of provided buffers of a ring.
const BUFFER_GROUP: u16 = 0;

/// Buffers the kernel fills with received bytes, and the ring through which it takes them
/// (`IORING_REGISTER_PBUF_RING`).
struct Buffers {
    /// The ring of entries (page-aligned, `count` of them); its tail is in the first entry.
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// Room for `count` buffers of `size` bytes, one after another; only the first `live`
    /// were ever given to the kernel (the pages of the others are never touched, so they
    /// cost address space, not memory).
    bytes: NonNull<u8>,
    bytes_layout: Layout,
    count: u16,
    live: u16,
    size: usize,
    /// The tail as we publish it (the kernel reads it).
    tail: u16,
}

/// Submission queue entries; completions have room for many more (a turn may report an
/// event for every socket).
const SQ_ENTRIES: u32 = 256;
const CQ_ENTRIES: u32 = 16 * 1024;

/// Set in the user data of every send (and of no other request: a cancellation of a send
/// carries other bits too, so its user data is never a send's); the low 32 bits of a send's
/// user data are its slot in the table of sends.
///
/// A send holds its slot from [`Ring::send`] until [`Ring::send_completed`] reports how it
/// ended: the table has a slot per send under way, not per socket (a socket that sends
/// nothing now holds nothing here).
pub(crate) const SEND: u64 = 1 << 60;

/// The most bytes one send takes (the rest waits for its completion).
pub(crate) const SEND_MAX: usize = 256 * 1024;

/// Empty byte buffers the ring keeps for the next send (or inbox) that needs room: the
/// largest kept, and the most bytes kept in all (others are freed). A socket between
/// messages holds none, yet a message costs no `malloc`/`free` pair.
const SPARE_KEEP: usize = 16 * 1024;
const SPARE_BYTES: usize = 1024 * 1024;

/// Larger buffers that sends handed over ([`Ring::send_owned`]) kept for the next such send
/// to give back in exchange: the largest kept (a socket's output buffer at its high-water
/// mark and a message past it), and the most bytes kept in all.
const LARGE_KEEP: usize = 128 * 1024;
const LARGE_BYTES: usize = 1024 * 1024;

/// One slot's send: the bytes the kernel reads from submission until the completion.
#[derive(Debug, Default)]
struct Outgoing {
    /// Whose send this is (the tag the caller gave [`Ring::send`]); 0 while the slot is free.
    owner: u64,
    bytes: Vec<u8>,
    /// Sent by earlier completions of this send (a short send goes on from here).
    done: usize,
    /// The user data of the request in flight.
    user_data: u64,
    fd: RawFd,
    /// A request reading `bytes` is with the kernel (queued or submitted), its completion not
    /// yet taken: nothing may touch `bytes`.
    in_flight: bool,
    /// The result of the completion taken, until the driver looks at it.
    result: Option<i32>,
}

/// What came of a send, once its completion was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Every byte went.
    All,
    /// The kernel took some: the rest is in flight again, under the same user data.
    Partly,
    /// The send failed (errno), its bytes dropped.
    Failed(i32),
    /// Cancelled: these bytes were not sent.
    Cancelled(Vec<u8>),
}

/// The ring of one loop (one thread: it is set up `SINGLE_ISSUER`).
pub(crate) struct Ring {
    ring: IoUring,
    /// Whether the ring was set up with `DEFER_TASKRUN` (completions are then posted only by
    /// an enter that asks for events).
    defer_taskrun: bool,
    /// The provided buffers of multishot receives, made on first use.
    buffers: Option<Buffers>,
    /// Sends, by slot (one in flight per slot at most), and the slots free.
    sends: Vec<Outgoing>,
    free_sends: Vec<u32>,
    /// Empty buffers for the next send or inbox that needs room ([`Ring::take_room`]), and
    /// their capacity in all.
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Empty buffers over [`SPARE_KEEP`] from sends' handed-over buffers, for the next
    /// handover to give back ([`Ring::send_owned`]), and their capacity in all.
    large: Vec<Vec<u8>>,
    large_bytes: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        for o in &mut self.sends {
            if o.in_flight {
                // The kernel may still read them: leaked, never freed under its feet.
                std::mem::forget(std::mem::take(&mut o.bytes));
            }
        }
        let Some(b) = self.buffers.take() else { return };
        // The kernel may pick a buffer of the group until the group is unregistered; after
        // that no request can. If it cannot be unregistered, the memory is left allocated
        // rather than freed under the kernel's feet.
        if self
            .ring
            .submitter()
            .unregister_buf_ring(BUFFER_GROUP)
            .is_ok()
        {
            // SAFETY: both blocks were allocated in `provide_buffers` with these layouts,
            // and no request can use them any more (the group is unregistered).
            unsafe {
                alloc::dealloc(b.entries.as_ptr().cast(), b.entries_layout);
                alloc::dealloc(b.bytes.as_ptr(), b.bytes_layout);
            }
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.ring.as_raw_fd())
            .field("defer_taskrun", &self.defer_taskrun)
            .finish()
    }
}

impl Ring {
    /// Set up a ring, with `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` where the kernel
    /// accepts them (6.1), without them where it does not.
    pub(crate) fn new() -> io::Result<Ring> {
        let tuned = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .build(SQ_ENTRIES);
        let (ring, defer_taskrun) = match tuned {
            Ok(ring) => (ring, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)?,
                false,
            ),
            Err(e) => return Err(e),
        };
        Ok(Ring {
            ring,
            defer_taskrun,
            buffers: None,
            sends: Vec::new(),
            free_sends: Vec::new(),
            spare: Vec::new(),
            spare_bytes: 0,
            large: Vec::new(),
            large_bytes: 0,
        })
    }

    /// Set up a group of up to `count` buffers of `size` bytes to receive into (the group
    /// that [`recv_multi`](Ring::recv_multi) names), and give the kernel the first `first` of
    /// them; [`more_buffers`](Ring::more_buffers) gives it more when they run short. Once per
    /// ring; later calls do nothing.
    pub(crate) fn provide_buffers(
        &mut self,
        count: u16,
        first: u16,
        size: usize,
    ) -> io::Result<()> {
        if self.buffers.is_some() {
            return Ok(());
        }
        assert!(count.is_power_of_two() && size > 0 && size <= u32::MAX as usize);
        assert!(first > 0 && first <= count);
        let too_big = |_| io::Error::new(io::ErrorKind::OutOfMemory, "receive buffers too big");
        let entries_layout = Layout::array::<BufRingEntry>(usize::from(count))
            .and_then(|l| l.align_to(4096))
            .map_err(too_big)?;
        let bytes_layout = Layout::array::<u8>(usize::from(count) * size).map_err(too_big)?;
        // SAFETY: both layouts have a non-zero size (count and size are non-zero).
        let (entries, bytes) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc::alloc(bytes_layout),
            )
        };
        let (Some(entries), Some(bytes)) = (NonNull::new(entries), NonNull::new(bytes)) else {
            alloc::handle_alloc_error(entries_layout)
        };
        let mut b = Buffers {
            entries,
            entries_layout,
            bytes,
            bytes_layout,
            count,
            live: first,
            size,
            tail: 0,
        };
        // SAFETY: the ring memory is page-aligned, zeroed, `count` entries long, and lives
        // until the group is unregistered (`Drop`).
        let registered = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                BUFFER_GROUP,
                0,
            )
        };
        if let Err(e) = registered {
            // SAFETY: allocated above with these layouts; the kernel never saw them.
            unsafe {
                alloc::dealloc(entries.as_ptr().cast(), entries_layout);
                alloc::dealloc(bytes.as_ptr(), bytes_layout);
            }
            return Err(e);
        }
        for bid in 0..first {
            b.put(bid);
        }
        b.publish();
        self.buffers = Some(b);
        Ok(())
    }

    /// The kernel ran out of buffers (a receive ended with `ENOBUFS`): give it twice as many
    /// as it had, up to the group's `count`. Returns whether it got more.
    pub(crate) fn more_buffers(&mut self) -> bool {
        let Some(b) = self.buffers.as_mut() else {
            return false;
        };
        let more = b.live.saturating_mul(2).min(b.count);
        if more == b.live {
            return false;
        }
        for bid in b.live..more {
            b.put(bid);
        }
        b.live = more;
        b.publish();
        true
    }

    /// The room slot `slot`'s send holds, in bytes (for tests).
    #[cfg(test)]
    pub(crate) fn send_room(&self, slot: u32) -> usize {
        self.sends
            .get(slot as usize)
            .map_or(0, |o| o.bytes.capacity())
    }

    /// How many slots the table of sends has (for tests).
    #[cfg(test)]
    pub(crate) fn send_slots(&self) -> usize {
        self.sends.len()
    }

    /// How many buffers the kernel was given so far (for tests).
    #[cfg(test)]
    pub(crate) fn buffers_given(&self) -> u16 {
        self.buffers.as_ref().map_or(0, |b| b.live)
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed back.
    pub(crate) fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let b = self.buffers.as_ref().expect("a buffer without buffers");
        assert!(bid < b.live && len <= b.size);
        // SAFETY: in bounds (checked); the kernel handed `bid` back with this completion and
        // takes it again only after `recycle`, so nothing writes it while the slice lives
        // (`recycle` needs `&mut self`).
        unsafe { std::slice::from_raw_parts(b.bytes.as_ptr().add(usize::from(bid) * b.size), len) }
    }

    /// Give buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        if let Some(b) = self.buffers.as_mut() {
            b.put(bid);
            b.publish();
        }
    }

    /// Receive on stream socket `fd` into the provided buffers, one completion per arrival,
    /// until the peer's end, an error, no buffer left (`ENOBUFS`) or a cancellation.
    pub(crate) fn recv_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(user_data);
        // SAFETY: the receive names a buffer group, whose memory the ring owns until the
        // group is unregistered (see the module docs).
        unsafe { self.push(&entry) }
    }

    /// Accept connections on listener `fd`, one completion (a new non-blocking,
    /// close-on-exec descriptor) per connection, until an error or a cancellation.
    pub(crate) fn accept_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        // SAFETY: a multishot accept passes no address buffer: it refers to no memory.
        unsafe { self.push(&entry) }
    }

    /// Cancel the request made with `target` as its user data; the cancellation's own
    /// completion carries `user_data`.
    pub(crate) fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancellation refers to another request's user data, no memory of ours.
        unsafe { self.push(&entry) }
    }

    /// Send up to [`SEND_MAX`] bytes of `data` on stream socket `fd`, for `owner` (a nonzero
    /// tag that [`send_owner`](Ring::send_owner) gives back). The bytes are copied: the caller
    /// may reuse `data` at once. Returns the send's slot (its user data is [`SEND`] | slot)
    /// and how many bytes were taken; the slot is the send's until
    /// [`send_completed`](Ring::send_completed) reports how it ended.
    pub(crate) fn send(&mut self, fd: RawFd, owner: u64, data: &[u8]) -> io::Result<(u32, usize)> {
        let n = data.len().min(SEND_MAX);
        let mut room = self.take_room();
        room.extend_from_slice(&data[..n]);
        let slot = self.new_send(fd, owner, room, 0)?;
        if let Err(e) = self.push_send(slot) {
            self.free_send(slot);
            return Err(e);
        }
        Ok((slot, n))
    }

    /// Send `bytes[from..]` (at most [`SEND_MAX`] bytes, at least one) on stream socket `fd`,
    /// for `owner`, as [`send`](Ring::send) does, without copying them: the send takes the
    /// buffer itself and leaves an empty one in its place (one a finished send left, so
    /// that buffers go round instead of being made and freed). On an error `bytes` is as it
    /// was. Returns the send's slot.
    pub(crate) fn send_owned(
        &mut self,
        fd: RawFd,
        owner: u64,
        bytes: &mut Vec<u8>,
        from: usize,
    ) -> io::Result<u32> {
        if from >= bytes.len() || bytes.len() - from > SEND_MAX {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let slot = self.new_send(fd, owner, Vec::new(), from)?;
        let room = match self.large.pop() {
            Some(room) => {
                self.large_bytes -= room.capacity();
                room
            }
            None => self.take_room(),
        };
        self.sends[slot as usize].bytes = std::mem::replace(bytes, room);
        if let Err(e) = self.push_send(slot) {
            // Not queued (the kernel never saw it): the bytes go back, the room to the spares.
            let given = std::mem::take(&mut self.sends[slot as usize].bytes);
            let room = std::mem::replace(bytes, given);
            self.free_send(slot);
            self.put_room(room);
            return Err(e);
        }
        Ok(slot)
    }

    /// A slot for a send of `bytes` from `from` on, for `owner`, not yet queued.
    #[inline(always)]
    fn new_send(&mut self, fd: RawFd, owner: u64, bytes: Vec<u8>, from: usize) -> io::Result<u32> {
        assert!(owner != 0, "a send's owner is nonzero");
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.sends.len())
                    .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                self.sends.push(Outgoing::default());
                slot
            }
        };
        let o = &mut self.sends[slot as usize];
        debug_assert!(o.owner == 0 && !o.in_flight && o.result.is_none());
        o.bytes = bytes;
        o.owner = owner;
        o.done = from;
        o.user_data = SEND | u64::from(slot);
        o.fd = fd;
        Ok(slot)
    }

    /// Whose send has user data `user_data` (the tag given to [`send`](Ring::send)), while
    /// its slot is held.
    pub(crate) fn send_owner(&self, user_data: u64) -> Option<u64> {
        let o = self.sends.get((user_data & 0xffff_ffff) as usize)?;
        (o.owner != 0 && o.user_data == user_data).then_some(o.owner)
    }

    /// Push slot `slot`'s send of its bytes from `done` on. If it cannot be queued, the
    /// caller frees the slot (or takes its bytes back first).
    fn push_send(&mut self, slot: u32) -> io::Result<()> {
        let o = &mut self.sends[slot as usize];
        let rest = &o.bytes[o.done..];
        let len = u32::try_from(rest.len()).expect("SEND_MAX fits in u32");
        let entry = opcode::Send::new(types::Fd(o.fd), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(o.user_data);
        o.in_flight = true;
        // SAFETY: the entry reads `rest`, inside `o.bytes`' heap block, which nothing
        // changes, moves or frees while `in_flight` holds: the slot is off the free list
        // (no other send gets it) until `send_completed` frees it, which it does only once
        // the flag is cleared, and the flag is cleared only when the completion is taken
        // (`take_completions`); `Drop` leaks the block of a send still in flight. (`sends` may grow and move the
        // `Outgoing` itself, never the block its `bytes` point to.)
        let pushed = unsafe { self.push(&entry) };
        if pushed.is_err() {
            // Not queued (the queue was full and submitting failed): the kernel never saw it.
            self.sends[slot as usize].in_flight = false;
        }
        pushed
    }

    /// Free slot `slot` (no request reads its bytes), keeping its room for the next send.
    fn free_send(&mut self, slot: u32) {
        let o = &mut self.sends[slot as usize];
        debug_assert!(!o.in_flight);
        let room = std::mem::take(&mut o.bytes);
        o.owner = 0;
        o.result = None;
        self.free_sends.push(slot);
        let cap = room.capacity();
        if cap > SPARE_KEEP && cap <= LARGE_KEEP && self.large_bytes + cap <= LARGE_BYTES {
            // A handed-over output buffer: kept to go back to the next socket that hands one.
            let mut room = room;
            room.clear();
            self.large_bytes += cap;
            self.large.push(room);
        } else {
            self.put_room(room);
        }
    }

    /// How many entries wait in the submission queue.
    pub(crate) fn queued(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Whether slot `slot` has a send whose completion has not been taken.
    pub(crate) fn send_in_flight(&self, slot: u32) -> bool {
        self.sends.get(slot as usize).is_some_and(|o| o.in_flight)
    }

    /// What came of the send in slot `slot`, once its completion was taken; `None` if that
    /// send has nothing to report (its completion not taken yet, or reported already). With
    /// `resume`, a short send's rest is sent again ([`Sent::Partly`]: the slot stays the
    /// send's); without, the rest is handed back as not sent ([`Sent::Cancelled`]). Any
    /// other answer frees the slot.
    pub(crate) fn send_completed(&mut self, slot: u32, resume: bool) -> Option<Sent> {
        let o = self.sends.get_mut(slot as usize)?;
        if o.owner == 0 || o.in_flight {
            return None;
        }
        let result = o.result.take()?;
        let unsent = o.bytes.len() - o.done;
        let outcome = match result {
            r if r > 0 && (r as usize) < unsent => {
                o.done += r as usize;
                if resume {
                    return Some(match self.push_send(slot) {
                        Ok(()) => Sent::Partly,
                        Err(e) => {
                            self.free_send(slot);
                            Sent::Failed(e.raw_os_error().unwrap_or(libc::EIO))
                        }
                    });
                }
                Sent::Cancelled(o.bytes[o.done..].to_vec())
            }
            r if r > 0 => Sent::All,
            // No stream send takes nothing: never spin on it.
            0 => Sent::Failed(libc::EIO),
            r if r == -libc::ECANCELED => Sent::Cancelled(o.bytes[o.done..].to_vec()),
            r => Sent::Failed(-r),
        };
        self.free_send(slot);
        Some(outcome)
    }

    /// An empty buffer, kept from an earlier send or inbox if there is one.
    #[inline]
    pub(crate) fn take_room(&mut self) -> Vec<u8> {
        match self.spare.pop() {
            Some(room) => {
                self.spare_bytes -= room.capacity();
                room
            }
            None => Vec::new(),
        }
    }

    /// Keep `room` (emptied) for the next send or inbox that needs room, or free it.
    #[inline]
    pub(crate) fn put_room(&mut self, mut room: Vec<u8>) {
        let cap = room.capacity();
        if cap == 0 || cap > SPARE_KEEP || self.spare_bytes + cap > SPARE_BYTES {
            return;
        }
        room.clear();
        self.spare_bytes += cap;
        self.spare.push(room);
    }

    /// Whether the ring runs with `DEFER_TASKRUN`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn defer_taskrun(&self) -> bool {
        self.defer_taskrun
    }

    /// Push `entry`, submitting what is queued first if the submission queue is full.
    ///
    /// # Safety
    ///
    /// `entry` must refer to no memory that may be freed before the kernel is done with it.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller vouches for the memory `entry` refers to.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Watch `fd` for `events` (poll(2) bits) for as long as it is not removed: one completion
    /// per wake-up of the socket, with the events true then (a multishot poll).
    pub(crate) fn poll_multi(&mut self, fd: RawFd, events: u32, user_data: u64) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(true)
            .build()
            .user_data(user_data);
        // SAFETY: a poll refers to a descriptor and a mask, no memory of ours.
        unsafe { self.push(&entry) }
    }

    /// Stop the multishot poll made with `target` as its user data; the removal's own
    /// completion carries `user_data`.
    pub(crate) fn poll_remove(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let entry = opcode::PollRemove::new(target).build().user_data(user_data);
        // SAFETY: a removal refers to another request's user data, no memory of ours.
        unsafe { self.push(&entry) }
    }

    /// Submit what is queued and have the kernel finish what it can now (cancellations
    /// included, so that a removed poll lets go of its socket), without waiting.
    pub(crate) fn submit_now(&mut self) -> io::Result<()> {
        let to_submit = u32::try_from(self.ring.submission().len()).unwrap_or(u32::MAX);
        // SAFETY: no argument pointer is passed; the entries queued refer to no memory of ours.
        let r = unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                io_uring::EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The loop's one system call per turn: submit what is queued and wait until a
    /// completion comes or `timeout` passes (`None`: no limit; zero: do not wait, but still
    /// collect what completed).
    pub(crate) fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted by a signal, or completions overflowed (collected
                // now, and the next enter flushes the rest).
                Some(libc::ETIME | libc::EINTR | libc::EBUSY) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Move every completion the kernel posted into `out` (a send's is also noted in the
    /// table of sends: the kernel is done with its bytes).
    pub(crate) fn take_completions(&mut self, out: &mut Vec<Completion>) {
        // One pass, each entry noted as it is copied (most turns take one or two).
        let cq = self.ring.completion();
        out.reserve(cq.len());
        for c in cq {
            let c = Completion {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            };
            if c.user_data & SEND != 0 {
                let slot = (c.user_data & 0xffff_ffff) as usize;
                if let Some(o) = self.sends.get_mut(slot) {
                    if o.in_flight && o.user_data == c.user_data {
                        o.in_flight = false;
                        o.result = Some(c.result);
                    }
                }
            }
            out.push(c);
        }
    }
}

impl Buffers {
    /// Write buffer `bid` into the next free entry (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let mask = self.count - 1;
        let slot = usize::from(self.tail & mask);
        // SAFETY: `slot` < `count`, so the entry is inside the ring; the kernel reads entries
        // only below the published tail, and this one is past it until `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        // SAFETY: in bounds: bid < count buffers of `size` bytes.
        let addr = unsafe { self.bytes.as_ptr().add(usize::from(bid) * self.size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see every entry put so far.
    fn publish(&self) {
        // SAFETY: the ring's base is its first entry, initialised; the tail field overlays
        // that entry's reserved field, which the kernel reads atomically.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// Whether io_uring can serve the driver here: the kernel has it (Linux 6.0 or later: multishot
/// polls, accepts and receives), and it is not forbidden (`io_uring_disabled`, a seccomp
/// profile such as Docker's default). Found out once per process.
pub(crate) fn support() -> Result<(), (io::ErrorKind, String)> {
    static SUPPORT: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();
    SUPPORT.get_or_init(probe).clone()
}

fn probe() -> Result<(), (io::ErrorKind, String)> {
    let ring = IoUring::new(4).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)",
            Some(libc::EPERM) => {
                "io_uring is forbidden here (EPERM: kernel.io_uring_disabled, or a seccomp profile such as Docker's default)"
            }
            _ => "io_uring_setup failed",
        };
        (e.kind(), format!("{why}: {e}"))
    })?;
    // IORING_FEAT_LINKED_FILE came with Linux 6.0, as multishot receive did.
    if !ring.params().is_feature_linked_file() {
        return Err((
            io::ErrorKind::Unsupported,
            "the kernel's io_uring is older than Linux 6.0 (no multishot receive)".to_string(),
        ));
    }
    Ok(())
}

/// The descriptor a multishot accept's completion carries (`result` ≥ 0), owned from now on.
pub(crate) fn accepted(result: i32) -> OwnedFd {
    assert!(result >= 0, "not a descriptor: {result}");
    // SAFETY: the kernel made this descriptor for this completion and nobody else holds it;
    // each completion is handled once.
    unsafe { OwnedFd::from_raw_fd(result) }
}

/// An eventfd: what another thread writes to wake a loop that sleeps in `io_uring_enter`.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
