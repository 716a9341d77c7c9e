//! io_uring (Linux 6.0 and later): the ring, the entries the driver pushes, and the one
//! `io_uring_enter` per loop turn. The driver (`driver/uring.rs`) keeps the tables; this file
//! only talks to the kernel, and is where the `unsafe` of it lives.
//!
//! Every entry pushed here refers to no memory of ours (a poll names a descriptor and a mask,
//! a removal names the user data of a poll): nothing the kernel holds can dangle, whatever
//! happens to a future or to a failed submission.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

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
}

/// Submission queue entries; completions have room for many more (a turn may report an
/// event for every socket).
const SQ_ENTRIES: u32 = 256;
const CQ_ENTRIES: u32 = 16 * 1024;

/// The ring of one loop (one thread: it is set up `SINGLE_ISSUER`).
pub(crate) struct Ring {
    ring: IoUring,
    /// Whether the ring was set up with `DEFER_TASKRUN` (completions are then posted only by
    /// an enter that asks for events).
    defer_taskrun: bool,
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
        })
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

    /// Move every completion the kernel posted into `out`.
    pub(crate) fn take_completions(&mut self, out: &mut Vec<Completion>) {
        let cq = self.ring.completion();
        out.extend(cq.map(|c| Completion {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
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
