//! `get_sock_opt` / `set_sock_opt` for all nine boolean options, on IPv4 and IPv6 sockets.

#[macro_use]
mod support;

use std::io;

use asyncnet::{AsyncSocket, RawSocket, SoBool};
use support::{run, socket, Family};

/// The OS's names for the options, from the platform's headers.
#[cfg(unix)]
mod os {
    pub use libc::{
        IPPROTO_TCP, SOL_SOCKET, SO_BROADCAST, SO_DEBUG, SO_DONTROUTE, SO_KEEPALIVE, SO_OOBINLINE,
        SO_REUSEADDR, SO_REUSEPORT, TCP_NODELAY,
    };
}
/// The OS's names for the options, from the platform's headers.
#[cfg(windows)]
mod os {
    pub use windows_sys::Win32::Networking::WinSock::{
        IPPROTO_TCP, SOL_SOCKET, SO_BROADCAST, SO_DEBUG, SO_KEEPALIVE, SO_OOBINLINE, SO_REUSEADDR,
        TCP_NODELAY,
    };
}

/// Read an `int` option straight from the OS, bypassing the library.
#[cfg(unix)]
fn raw_opt(fd: RawSocket, level: libc::c_int, name: libc::c_int) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid and writable; `len` holds the size of `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
    v != 0
}

/// Read a `BOOL` option straight from Winsock, bypassing the library.
#[cfg(windows)]
fn raw_opt(socket: RawSocket, level: i32, name: i32) -> bool {
    use windows_sys::Win32::Networking::WinSock::{getsockopt, WSAGetLastError};
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: `v` and `len` are valid and writable; `len` holds the size of `v` (Winsock
    // writes at most that many bytes; a one-byte BOOLEAN leaves the rest zero).
    let r = unsafe {
        getsockopt(
            socket as usize,
            level,
            name,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    // SAFETY: WSAGetLastError only reads this thread's last Winsock error.
    assert_eq!(r, 0, "getsockopt: error {}", unsafe { WSAGetLastError() });
    v != 0
}

/// The options that any TCP socket lets an unprivileged process turn on and off.
#[cfg(unix)]
const SETTABLE: [SoBool; 7] = [
    SoBool::Broadcast,
    SoBool::DontRoute,
    SoBool::KeepAlive,
    SoBool::OobInline,
    SoBool::ReuseAddr,
    SoBool::ReusePort,
    SoBool::NoDelay,
];
/// The options that any TCP socket lets an unprivileged process turn on and off (Windows
/// has no `SO_REUSEPORT`; it takes `SO_DONTROUTE` but ignores it: see below).
#[cfg(windows)]
const SETTABLE: [SoBool; 5] = [
    SoBool::Broadcast,
    SoBool::KeepAlive,
    SoBool::OobInline,
    SoBool::ReuseAddr,
    SoBool::NoDelay,
];

/// Windows takes `SO_DEBUG` and `SO_DONTROUTE` and its providers ignore them: setting and
/// getting them succeed (what is read back is the provider's business).
#[cfg(windows)]
#[test]
fn debug_and_dont_route_are_taken_on_windows() {
    let s = AsyncSocket::new().unwrap();
    for opt in [SoBool::Debug, SoBool::DontRoute] {
        for on in [true, false] {
            s.set_sock_opt(opt, on)
                .unwrap_or_else(|e| panic!("set {opt:?} {on}: {e}"));
            s.get_sock_opt(opt)
                .unwrap_or_else(|e| panic!("get {opt:?}: {e}"));
        }
    }
}

/// Windows has no `SO_REUSEPORT`: both directions say so with `Unsupported`.
#[cfg(windows)]
#[test]
fn reuse_port_is_unsupported_on_windows() {
    let s = AsyncSocket::new().unwrap();
    let e = s
        .get_sock_opt(SoBool::ReusePort)
        .expect_err("no SO_REUSEPORT");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    let e = s
        .set_sock_opt(SoBool::ReusePort, true)
        .expect_err("no SO_REUSEPORT");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("SO_REUSEPORT"), "{e}");
}

fn settable_options_round_trip(fam: Family) {
    run(async move {
        for buffered in [true, false] {
            let s = socket(fam, buffered)?;
            for opt in SETTABLE {
                s.set_sock_opt(opt, true)
                    .unwrap_or_else(|e| panic!("set {opt:?} on: {e}"));
                assert!(s.get_sock_opt(opt)?, "{opt:?} reads back on");
                s.set_sock_opt(opt, false)
                    .unwrap_or_else(|e| panic!("set {opt:?} off: {e}"));
                assert!(!s.get_sock_opt(opt)?, "{opt:?} reads back off");
            }
        }
        Ok(())
    })
}

fn options_on_a_connected_socket_round_trip(fam: Family) {
    run(async move {
        let (client, accepted) = support::pair(fam, true).await?;
        for s in [&client, &accepted] {
            for opt in [SoBool::KeepAlive, SoBool::NoDelay, SoBool::OobInline] {
                s.set_sock_opt(opt, true)?;
                assert!(s.get_sock_opt(opt)?, "{opt:?}");
                s.set_sock_opt(opt, false)?;
                assert!(!s.get_sock_opt(opt)?, "{opt:?}");
            }
            assert!(!s.get_sock_opt(SoBool::AcceptConn)?);
        }
        // Still works as a connection afterwards.
        client.send("after options\n").await?;
        assert_eq!(
            accepted.recv_line().await?.as_deref(),
            Some("after options")
        );
        Ok(())
    })
}

fn accept_conn_is_read_only_and_true_on_a_listener(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        assert!(!s.get_sock_opt(SoBool::AcceptConn)?, "not listening yet");
        let e = s
            .set_sock_opt(SoBool::AcceptConn, true)
            .expect_err("AcceptConn is read-only");
        assert!(e.raw_os_error().is_some(), "the OS's error: {e}");

        let l = support::listener(fam)?;
        assert!(l.get_sock_opt(SoBool::AcceptConn)?, "a listener accepts");
        assert!(l.set_sock_opt(SoBool::AcceptConn, false).is_err());
        assert!(
            l.get_sock_opt(SoBool::AcceptConn)?,
            "unchanged by the failed set"
        );
        Ok(())
    })
}

#[cfg(unix)]
fn debug_either_works_or_fails_cleanly(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        assert!(!s.get_sock_opt(SoBool::Debug)?, "off by default");
        match s.set_sock_opt(SoBool::Debug, true) {
            Ok(()) => {
                assert!(s.get_sock_opt(SoBool::Debug)?);
                s.set_sock_opt(SoBool::Debug, false)?;
                assert!(!s.get_sock_opt(SoBool::Debug)?);
            }
            Err(e) => {
                // Needs CAP_NET_ADMIN on Linux.
                assert!(
                    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)),
                    "unexpected error: {e}"
                );
                assert!(!s.get_sock_opt(SoBool::Debug)?);
            }
        }
        Ok(())
    })
}

fn no_delay_sets_tcp_nodelay_and_nothing_else(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        let debug_before = raw_opt(s.fd(), os::SOL_SOCKET, os::SO_DEBUG);
        assert!(!raw_opt(s.fd(), os::IPPROTO_TCP, os::TCP_NODELAY));
        s.set_sock_opt(SoBool::NoDelay, true)?;
        assert!(
            raw_opt(s.fd(), os::IPPROTO_TCP, os::TCP_NODELAY),
            "TCP_NODELAY at IPPROTO_TCP is on"
        );
        assert_eq!(
            raw_opt(s.fd(), os::SOL_SOCKET, os::SO_DEBUG),
            debug_before,
            "SO_DEBUG untouched (Nim's bug sets it instead)"
        );
        s.set_sock_opt(SoBool::NoDelay, false)?;
        assert!(!raw_opt(s.fd(), os::IPPROTO_TCP, os::TCP_NODELAY));
        Ok(())
    })
}

// Windows: not `DontRoute` (taken and ignored: `debug_and_dont_route_are_taken_on_windows`)
// nor `ReusePort` (none: `reuse_port_is_unsupported_on_windows`).
fn each_option_maps_to_its_os_option(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        let options = [
            (SoBool::Broadcast, os::SOL_SOCKET, os::SO_BROADCAST),
            #[cfg(unix)]
            (SoBool::DontRoute, os::SOL_SOCKET, os::SO_DONTROUTE),
            (SoBool::KeepAlive, os::SOL_SOCKET, os::SO_KEEPALIVE),
            (SoBool::OobInline, os::SOL_SOCKET, os::SO_OOBINLINE),
            (SoBool::ReuseAddr, os::SOL_SOCKET, os::SO_REUSEADDR),
            #[cfg(unix)]
            (SoBool::ReusePort, os::SOL_SOCKET, os::SO_REUSEPORT),
            (SoBool::NoDelay, os::IPPROTO_TCP, os::TCP_NODELAY),
        ];
        for (opt, level, name) in options {
            s.set_sock_opt(opt, true)?;
            assert!(raw_opt(s.fd(), level, name), "{opt:?} on in the OS");
            s.set_sock_opt(opt, false)?;
            assert!(!raw_opt(s.fd(), level, name), "{opt:?} off in the OS");
        }
        Ok(())
    })
}

#[test]
fn all_lists_the_nine_options_in_nims_order() {
    assert_eq!(
        SoBool::ALL,
        [
            SoBool::AcceptConn,
            SoBool::Broadcast,
            SoBool::Debug,
            SoBool::DontRoute,
            SoBool::KeepAlive,
            SoBool::OobInline,
            SoBool::ReuseAddr,
            SoBool::ReusePort,
            SoBool::NoDelay,
        ]
    );
}

#[test]
fn every_option_can_be_read_on_a_fresh_socket_without_panicking() {
    for fam in Family::ALL {
        if !fam.available() {
            continue;
        }
        let s = AsyncSocket::builder().domain(fam.domain()).build().unwrap();
        for opt in SoBool::ALL {
            if cfg!(windows) && opt == SoBool::ReusePort {
                continue; // Unsupported: `reuse_port_is_unsupported_on_windows`
            }
            s.get_sock_opt(opt)
                .unwrap_or_else(|e| panic!("get {opt:?} on {fam:?}: {e}"));
        }
    }
}

family_tests!(
    settable_options_round_trip,
    options_on_a_connected_socket_round_trip,
    accept_conn_is_read_only_and_true_on_a_listener,
    #[cfg(unix)] // Windows: `debug_and_dont_route_are_taken_on_windows`
    debug_either_works_or_fails_cleanly,
    no_delay_sets_tcp_nodelay_and_nothing_else,
    each_option_maps_to_its_os_option,
);
