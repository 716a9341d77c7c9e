//! Helpers shared by the integration tests: loopback listeners and connected pairs on both
//! address families, a hang guard around every test body, peers that reset, and a few small
//! futures (yield, a cross-thread oneshot, drop guards).
//!
//! Each test file compiles this module on its own, so not every helper is used everywhere.
#![allow(dead_code, unused_macros)]

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use asyncnet::{wait_for, with_timeout, AsyncSocket, Domain, SoBool};

/// Only a guard against hangs: a passing test takes a small fraction of it.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// Whether we run under CI (`CI=true`), where a missing capability fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// How many times a program that Wine failed to start is started, in all (Wine 8 now and then
/// cannot start a program: `RELIABILITY.md`, "Wine's own failures"; `.ci/wine/runner` starts a
/// test binary as many times).
pub const WINE_STARTS: u32 = 3;

/// Whether this is a Windows program running under Wine (ntdll exports `wine_get_version`).
#[cfg(windows)]
pub fn under_wine() -> bool {
    use std::ffi::c_void;
    extern "system" {
        fn GetModuleHandleA(name: *const u8) -> *mut c_void;
        fn GetProcAddress(module: *mut c_void, name: *const u8) -> *mut c_void;
    }
    // SAFETY: both names are NUL-terminated; ntdll is loaded in every process and a module
    // handle of it needs no release; GetProcAddress only looks the export up.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && !GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_null()
    }
}

/// Whether this is a Windows program running under Wine.
#[cfg(not(windows))]
pub fn under_wine() -> bool {
    false
}

/// Skip a test that needs a peer's reset (`SO_LINGER` 0) to arrive as one: Wine 8 delivers it
/// as an orderly end of stream (`recv` returns 0). Returns whether to skip (and says why).
pub fn skip_resets_under_wine() -> bool {
    if under_wine() {
        eprintln!("skipped: Wine 8 delivers a peer's reset as an orderly end of stream");
        return true;
    }
    false
}

/// How many descriptors (Linux) or handles (Windows) this process has open now: the leak
/// checks compare it before and after. Linux lists `/proc/self/fd` (the listing's own
/// descriptor included, the same in every count); Windows counts this process's entries in
/// the system's handle table (`NtQuerySystemInformation(SystemExtendedHandleInformation)`):
/// every kernel handle, sockets among them. `GetProcessHandleCount` would be simpler, but
/// Wine 8 answers 0 to it; the handle table is right under Wine too (the test
/// `open_descriptors_counts_every_socket_and_falls_back_when_they_close` checks it).
#[cfg(target_os = "linux")]
pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// How many descriptors (Linux) or handles (Windows) this process has open now: see the
/// Linux version.
#[cfg(windows)]
pub fn open_descriptors() -> usize {
    #[link(name = "ntdll")]
    extern "system" {
        fn NtQuerySystemInformation(class: u32, info: *mut u8, len: u32, ret: *mut u32) -> i32;
    }
    const SYSTEM_EXTENDED_HANDLE_INFORMATION: u32 = 64;
    const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32 as i32;
    // SYSTEM_HANDLE_INFORMATION_EX: a count and a reserved word, then entries of
    // (object, process id, handle value: pointer-sized; access, 2 x u16, attributes, reserved: u32).
    const HEADER: usize = 16;
    const ENTRY: usize = 40;
    let pid = std::process::id() as u64;
    let mut len = 1 << 20;
    loop {
        // u64 words: the table is 8-byte aligned.
        let mut buf = vec![0u64; len / 8];
        let mut ret = 0u32;
        // SAFETY: the buffer is `len` writable bytes, 8-byte aligned, and outlives the call;
        // the call writes at most `len` bytes into it and the returned length into `ret`.
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_EXTENDED_HANDLE_INFORMATION,
                buf.as_mut_ptr().cast(),
                len as u32,
                &mut ret,
            )
        };
        if status == STATUS_INFO_LENGTH_MISMATCH {
            len = (len * 2).max(ret as usize + 4096);
            continue;
        }
        assert_eq!(status, 0, "NtQuerySystemInformation: status {status:#x}");
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let entries = word(0) as usize;
        assert!(
            HEADER + entries * ENTRY <= len,
            "handle table larger than its buffer"
        );
        return (0..entries)
            .filter(|i| word(HEADER + i * ENTRY + 8) == pid)
            .count();
    }
}

/// `open_descriptors` once the loop has let go of what closed sockets still hold: at once on
/// Linux; on Windows after turns of the loop (10 ms each, up to a second) while the count is
/// above `expected`. mio's Windows poller keeps a closed socket's poll state, and the AFD
/// handle it shares with up to 31 other sockets, until the cancelled poll's completion has
/// come back through a poll. A leak still shows: the count stays above `expected`.
#[cfg(any(target_os = "linux", windows))]
pub async fn open_descriptors_settled(expected: usize) -> usize {
    if cfg!(windows) {
        for _ in 0..100 {
            if open_descriptors() <= expected {
                break;
            }
            asyncnet::sleep_async(Duration::from_millis(10)).await;
        }
    }
    open_descriptors()
}

/// `open_descriptors` to count from, once the count has stayed the same for three turns of
/// the loop (10 ms each; up to a second): on Windows for the reason in
/// `open_descriptors_settled`; on Linux because the previous test's thread may still be
/// closing its loop (a thread's loop closes after the test body, and its lock, are gone).
#[cfg(any(target_os = "linux", windows))]
pub async fn open_descriptors_at_rest() -> usize {
    let mut count = open_descriptors();
    {
        let mut same = 0;
        for _ in 0..100 {
            asyncnet::sleep_async(Duration::from_millis(10)).await;
            let now = open_descriptors();
            same = if now == count { same + 1 } else { 0 };
            count = now;
            if same == 3 {
                break;
            }
        }
    }
    count
}

/// An address family, with its loopback address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// `127.0.0.1` or `::1`.
    pub fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1",
            Family::V6 => "::1",
        }
    }

    pub fn ip(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// The unspecified address as `local_addr` shows it.
    pub fn any_text(self) -> &'static str {
        match self {
            Family::V4 => "0.0.0.0",
            Family::V6 => "::",
        }
    }

    pub fn domain(self) -> Domain {
        match self {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        }
    }

    /// Whether the machine has this loopback. IPv4 always counts as available; a missing
    /// IPv6 loopback skips the test with a notice, or fails it under CI.
    pub fn available(self) -> bool {
        if self == Family::V4 {
            return true;
        }
        match TcpListener::bind((self.ip(), 0)) {
            Ok(_) => true,
            Err(e) if in_ci() => panic!("no IPv6 loopback under CI: {e}"),
            Err(e) => {
                eprintln!("skipped: no IPv6 loopback ({e})");
                false
            }
        }
    }
}

/// Generate `mod NAME { fn ipv4(); fn ipv6(); }` tests calling `fn NAME(Family)`.
macro_rules! family_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            mod $name {
                use $crate::support::Family;

                #[test]
                fn ipv4() {
                    super::$name(Family::V4)
                }

                #[test]
                fn ipv6() {
                    if Family::V6.available() {
                        super::$name(Family::V6)
                    }
                }
            }
        )*
    };
}

/// Run `body` on this thread's loop. Fails the test if the body returns an error or takes
/// longer than [`HANG_GUARD`].
pub fn run<T>(body: impl Future<Output = io::Result<T>>) -> T {
    raise_task_failures();
    match wait_for(with_timeout(body, HANG_GUARD)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("test body failed: {e} (kind {:?})", e.kind()),
        Err(_) => panic!("test body hung for {HANG_GUARD:?}"),
    }
}

/// Run `f` on a fresh thread (so with a fresh event loop) and return its result; a panic in
/// it is returned as `Err` with its message. Fails the test if `f` hangs.
pub fn in_fresh_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r.map_err(|p| panic_message(&*p)));
    });
    match rx.recv_timeout(HANG_GUARD) {
        Ok(r) => r,
        Err(_) => panic!("fresh thread hung for {HANG_GUARD:?}"),
    }
}

/// Make a detached task's failure fail the test: `wait_for` panics with it, `poll`/`drain`
/// return it (Nim's semantics; a program's default is to report it on stderr and go on).
pub fn raise_task_failures() {
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
}

/// The message of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_owned()
    }
}

/// A socket of `family`.
pub fn socket(family: Family, buffered: bool) -> io::Result<AsyncSocket> {
    AsyncSocket::builder()
        .domain(family.domain())
        .buffered(buffered)
        .build()
}

/// A buffered listener on the loopback of `family`, port chosen by the OS.
pub fn listener(family: Family) -> io::Result<AsyncSocket> {
    listener_with(family, true)
}

/// A listener whose accepted sockets are buffered or not.
pub fn listener_with(family: Family, buffered: bool) -> io::Result<AsyncSocket> {
    let s = socket(family, buffered)?;
    s.set_sock_opt(SoBool::ReuseAddr, true)?;
    s.bind_addr(0, family.loopback())?;
    s.listen()?;
    Ok(s)
}

/// A port free now (for TCP, or for UDP with `udp`) for a program or thread to listen on,
/// never one handed out before in this process: tests run at the same time, and a port just
/// released by one probe can come out of the next (two servers were then seen to share one,
/// under Wine, where `SO_REUSEADDR` lets a second listener take a port: one exited at start,
/// the other's client was reset). A UDP port is probed with UDP: one a TCP probe found free
/// may be a UDP socket's.
pub fn free_port_for(udp: bool) -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = if udp {
            std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
        } else {
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())
        };
        let port = port.expect("a free port").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The port a socket is bound to.
pub fn port(s: &AsyncSocket) -> u16 {
    s.local_addr().expect("local_addr").1
}

/// A connected pair of our sockets: `(client, accepted)`, both buffered or both not.
pub async fn pair(family: Family, buffered: bool) -> io::Result<(AsyncSocket, AsyncSocket)> {
    let server = listener_with(family, buffered)?;
    let client = socket(family, buffered)?;
    client.connect(family.loopback(), port(&server)).await?;
    let accepted = server.accept().await?;
    Ok((client, accepted))
}

/// A plain blocking std peer (`TCP_NODELAY` on) connected to one of our sockets.
pub async fn std_peer(family: Family, buffered: bool) -> io::Result<(TcpStream, AsyncSocket)> {
    let server = listener_with(family, buffered)?;
    // Loopback: the kernel completes the handshake without our accept.
    let peer = TcpStream::connect((family.ip(), port(&server)))?;
    peer.set_nodelay(true)?;
    let ours = server.accept().await?;
    Ok((peer, ours))
}

/// Write `bytes` from a std peer at once.
pub fn put(peer: &mut TcpStream, bytes: &[u8]) {
    peer.write_all(bytes).expect("peer write");
    peer.flush().expect("peer flush");
}

/// End the std peer's sending side: our socket then reads end-of-stream.
pub fn finish(peer: &TcpStream) {
    peer.shutdown(Shutdown::Write).expect("peer shutdown");
}

/// Drop a std peer with `SO_LINGER` 0, so that it sends a reset instead of a FIN.
pub fn reset(peer: TcpStream) {
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(peer);
}

/// A port on the loopback of `family` where nothing listens (bound, then released).
pub fn closed_port(family: Family) -> u16 {
    let l = TcpListener::bind(SocketAddr::new(family.ip(), 0)).expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// Let every other ready task run once before continuing.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Yield a few times: a spawned task gets to run up to its first await.
pub async fn settle() {
    for _ in 0..3 {
        yield_now().await;
    }
}

/// Sets its flag when dropped: shows that a future holding it was dropped.
pub struct DropFlag(pub Rc<Cell<bool>>);

impl DropFlag {
    pub fn new() -> (DropFlag, Rc<Cell<bool>>) {
        let flag = Rc::new(Cell::new(false));
        (DropFlag(flag.clone()), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A oneshot channel whose sender may live on another thread; the receiver is a future.
pub fn oneshot<T: Send>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

pub struct Sender<T>(Arc<Mutex<Slot<T>>>);
pub struct Receiver<T>(Arc<Mutex<Slot<T>>>);

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        let waker = {
            let mut slot = self.0.lock().unwrap();
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    pub async fn recv(self) -> T {
        poll_fn(|cx| {
            let mut slot = self.0.lock().unwrap();
            match slot.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The typed source of an `io::Error`, if it is a `T`.
pub fn source_of<T: std::error::Error + 'static>(e: &io::Error) -> Option<&T> {
    e.get_ref().and_then(|s| s.downcast_ref::<T>())
}

/// If this process's `RLIMIT_NOFILE` soft limit is below `want`, raise it to the hard limit.
/// Returns the resulting soft limit.
#[cfg(unix)]
pub fn raise_nofile_limit(want: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(r, 0, "getrlimit: {}", io::Error::last_os_error());
    if lim.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit that setrlimit only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = new.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// A count of descriptors, as `raise_nofile_limit` takes it.
#[cfg(unix)]
pub type Rlim = libc::rlim_t;
/// A count of descriptors, as `raise_nofile_limit` takes it.
#[cfg(windows)]
pub type Rlim = u64;

/// Windows has no limit on open sockets to raise: `want` is available.
#[cfg(windows)]
pub fn raise_nofile_limit(want: u64) -> u64 {
    want
}

/// A datagram (UDP) socket of `family`, not bound.
pub fn udp_socket(family: Family) -> io::Result<AsyncSocket> {
    AsyncSocket::builder()
        .domain(family.domain())
        .sock_type(asyncnet::SockType::DGRAM)
        .build()
}

/// A UDP socket bound to the loopback of `family`, port chosen by the OS.
pub fn udp_bound(family: Family) -> io::Result<AsyncSocket> {
    let s = udp_socket(family)?;
    s.bind_addr(0, family.loopback())?;
    Ok(s)
}

/// A Unix socket (`SOCK_STREAM` or `SOCK_DGRAM`), buffered.
pub fn unix_socket(sock_type: asyncnet::SockType) -> io::Result<AsyncSocket> {
    AsyncSocket::builder()
        .domain(Domain::UNIX)
        .sock_type(sock_type)
        .build()
}

/// A unique path for a Unix socket under the temporary directory (process id and a counter
/// in its name), not created; whatever is there is removed when this is dropped.
pub struct TempSocketPath(std::path::PathBuf);

impl TempSocketPath {
    pub fn new(tag: &str) -> TempSocketPath {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("asyncnet-{}-{n}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempSocketPath(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as `local_addr` shows it.
    pub fn text(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempSocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Read `peer` (in a thread) until the server ends the connection: true at end of stream or
/// a reset, false if the guard ran out first.
pub fn sees_the_end(peer: std::net::TcpStream) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match io::Read::read(&mut &peer, &mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    })
}
