//! Which driver a thread's loop runs on: chosen before the loop is made (it is made on first
//! use), by [`use_driver`] or the `ASYNCNET_DRIVER` environment variable, and reported by
//! [`driver_kind`].
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::OnceLock;

use super::{try_with_loop, with_loop};
use crate::driver::DriverKind;

/// The environment variable that chooses the driver of every loop a program makes (unless
/// [`use_driver`] chose for the thread): `io_uring` or `poll` (also `epoll`).
pub const DRIVER_ENV: &str = "ASYNCNET_DRIVER";

thread_local! {
    /// The driver [`use_driver`] chose for this thread's loop.
    static CHOSEN: Cell<Option<DriverKind>> = const { Cell::new(None) };
}

/// The kind the next loop of this thread is made with.
pub(super) fn wanted() -> DriverKind {
    CHOSEN
        .try_with(Cell::get)
        .ok()
        .flatten()
        .unwrap_or_else(from_env)
}

/// `ASYNCNET_DRIVER`, read once. A value it does not know is reported on standard error
/// (once) and the default is used: a typo must not pass unnoticed, nor end the program.
fn from_env() -> DriverKind {
    static FROM_ENV: OnceLock<DriverKind> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        let Some(value) = std::env::var_os(DRIVER_ENV) else {
            return DriverKind::Poll;
        };
        match parse(&value.to_string_lossy()) {
            Some(kind) => kind,
            None => {
                eprintln!(
                    "asyncnet: {DRIVER_ENV}={value:?} is not a driver (io_uring, poll); using poll"
                );
                DriverKind::Poll
            }
        }
    })
}

fn parse(value: &str) -> Option<DriverKind> {
    match value.trim().to_ascii_lowercase().as_str() {
        "io_uring" | "io-uring" | "iouring" | "uring" => Some(DriverKind::IoUring),
        "poll" | "epoll" | "kqueue" | "mio" | "" => Some(DriverKind::Poll),
        _ => None,
    }
}

/// Choose the driver of this thread's loop, before the loop is first used (it is made by the
/// first socket, task or timer of the thread). Takes precedence over the `ASYNCNET_DRIVER`
/// environment variable ([`DRIVER_ENV`]).
///
/// [`DriverKind::IoUring`] where io_uring cannot serve (not Linux; a build for an architecture
/// without io_uring bindings, such as 32-bit x86 or 32-bit ARM; a kernel older than 6.0; or
/// io_uring forbidden: `ENOSYS`, `EPERM` under Docker's default seccomp profile) gives a loop
/// on [`DriverKind::Poll`]: [`driver_kind`] says which one runs, [`io_uring_support`] why.
///
/// # Errors
///
/// `AlreadyExists` if this thread's loop exists already on another driver (a loop keeps its
/// driver for its life: its sockets are registered with it).
///
/// # Examples
///
/// ```
/// use asyncnet::{driver_kind, io_uring_support, use_driver, DriverKind};
///
/// std::thread::spawn(|| {
///     use_driver(DriverKind::IoUring).unwrap();
///     let kind = driver_kind();
///     assert_eq!(kind == DriverKind::IoUring, io_uring_support().is_ok());
/// })
/// .join()
/// .unwrap();
/// ```
pub fn use_driver(kind: DriverKind) -> io::Result<()> {
    if let Some(running) = try_with_loop(|l| l.driver.kind()) {
        let effective = effective(kind);
        if running != effective {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "this thread's event loop already runs on {running:?}: choose its driver \
                     with use_driver before the thread's first socket, task or timer"
                ),
            ));
        }
        return Ok(());
    }
    CHOSEN.with(|c| c.set(Some(kind)));
    Ok(())
}

/// What a loop asked to run on `kind` runs on.
fn effective(kind: DriverKind) -> DriverKind {
    match kind {
        DriverKind::IoUring if io_uring_support().is_err() => DriverKind::Poll,
        k => k,
    }
}

/// The driver this thread's loop runs on (making the loop if it does not exist yet).
///
/// # Panics
///
/// If the OS refuses to make the loop's poller (out of descriptors at the thread's very first
/// use of the loop).
///
/// # Examples
///
/// ```
/// // Unless ASYNCNET_DRIVER says otherwise:
/// if std::env::var_os(asyncnet::DRIVER_ENV).is_none() {
///     assert_eq!(asyncnet::driver_kind(), asyncnet::DriverKind::Poll);
/// }
/// ```
pub fn driver_kind() -> DriverKind {
    with_loop(|l| l.driver.kind())
}

/// Whether io_uring can serve an event loop here: `Ok(())`, or why not (not Linux; a Linux
/// build for an architecture the `io-uring` crate has no bindings for, such as 32-bit x86 or
/// 32-bit ARM, which leaves the driver out; a kernel older than 6.0; `ENOSYS`; `EPERM` where a
/// seccomp profile such as Docker's default or `kernel.io_uring_disabled` forbids it). Found
/// out once per process, by setting up a small ring.
///
/// # Errors
///
/// The reason, as above.
///
/// # Examples
///
/// ```
/// match asyncnet::io_uring_support() {
///     Ok(()) => println!("io_uring can run here"),
///     Err(why) => println!("the poll driver runs here: {why}"),
/// }
/// ```
pub fn io_uring_support() -> io::Result<()> {
    crate::driver::io_uring_support()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Linux build without the io_uring driver (32-bit x86 in CI) says why, naming the
    /// architecture, and a loop asked for io_uring runs on poll.
    #[test]
    #[cfg(all(target_os = "linux", not(uring)))]
    fn a_linux_build_without_the_driver_says_why_and_runs_on_poll() {
        let why = io_uring_support().expect_err("no io_uring driver in this build");
        assert_eq!(why.kind(), io::ErrorKind::Unsupported);
        assert!(why.to_string().contains(std::env::consts::ARCH), "{why}");
        let kind = std::thread::spawn(|| {
            use_driver(DriverKind::IoUring).expect("no loop yet on this thread");
            driver_kind()
        })
        .join()
        .expect("the thread");
        assert_eq!(kind, DriverKind::Poll);
    }

    #[test]
    fn driver_names_parse_and_unknown_ones_do_not() {
        assert_eq!(parse("io_uring"), Some(DriverKind::IoUring));
        assert_eq!(parse(" IO-URING\n"), Some(DriverKind::IoUring));
        assert_eq!(parse("epoll"), Some(DriverKind::Poll));
        assert_eq!(parse(""), Some(DriverKind::Poll));
        assert_eq!(parse("uring2"), None);
    }

    #[test]
    fn a_thread_chooses_its_loop_driver_before_first_use_and_not_after() {
        std::thread::spawn(|| {
            use_driver(DriverKind::IoUring).unwrap();
            let kind = driver_kind();
            assert_eq!(kind, effective(DriverKind::IoUring));
            // The same choice again is fine; the other one is refused, naming the fix.
            use_driver(DriverKind::IoUring).unwrap();
            let other = match kind {
                DriverKind::Poll => return,
                _ => DriverKind::Poll,
            };
            let e = use_driver(other).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("use_driver before"), "{e}");
        })
        .join()
        .unwrap();
    }
}
