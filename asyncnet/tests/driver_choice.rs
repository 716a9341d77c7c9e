//! The driver a loop runs on is the one asked for (by `use_driver` or `ASYNCNET_DRIVER`), or,
//! where io_uring cannot serve, the poll driver with the reason reported; and the io_uring
//! driver's own promises: a closed socket lets go of its connection at once (no later loop
//! turn needed), and sockets opened and closed by the thousand leave nothing behind.
//!
//! CI runs the whole suite twice, the second time with `ASYNCNET_DRIVER=io_uring`; there the
//! first test fails if io_uring does not really run.

#[macro_use]
mod support;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use asyncnet::{
    driver_kind, io_uring_support, use_driver, wait_for, AsyncSocket, DriverKind, DRIVER_ENV,
};
use support::in_ci;

#[test]
fn the_driver_asked_for_runs_or_the_reason_is_reported() {
    let asked = std::env::var(DRIVER_ENV).unwrap_or_default();
    if asked == "io_uring" {
        match io_uring_support() {
            Ok(()) => assert_eq!(driver_kind(), DriverKind::IoUring),
            Err(why) if in_ci() => {
                panic!("CI asked for the io_uring driver, and it cannot run here: {why}")
            }
            Err(why) => eprintln!("skipped: io_uring cannot run here ({why}); poll runs"),
        }
    }
    let on_fresh_thread = |kind| {
        std::thread::spawn(move || {
            use_driver(kind).unwrap();
            driver_kind()
        })
        .join()
        .unwrap()
    };
    assert_eq!(on_fresh_thread(DriverKind::Poll), DriverKind::Poll);
    let uring = on_fresh_thread(DriverKind::IoUring);
    match io_uring_support() {
        Ok(()) => assert_eq!(uring, DriverKind::IoUring),
        Err(why) => {
            assert_eq!(uring, DriverKind::Poll, "the fallback");
            assert!(!why.to_string().is_empty());
        }
    }
}

/// Run `f` on a fresh thread whose loop runs on io_uring; `None` (after saying why) where
/// io_uring cannot run and this is not CI.
fn on_io_uring<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if let Err(why) = io_uring_support() {
        assert!(!in_ci(), "io_uring cannot run on this CI machine: {why}");
        eprintln!("skipped: io_uring cannot run here ({why})");
        return None;
    }
    Some(
        std::thread::spawn(move || {
            use_driver(DriverKind::IoUring).unwrap();
            assert_eq!(driver_kind(), DriverKind::IoUring);
            f()
        })
        .join()
        .expect("the io_uring thread panicked"),
    )
}

/// A removed poll holds its socket open until the kernel has finished the removal: the
/// driver makes it finish at once, so the peer sees the end of the stream while the loop is
/// not running.
#[test]
fn a_socket_closed_on_io_uring_reaches_its_peer_without_another_loop_turn() {
    on_io_uring(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sock = wait_for(async move {
            let s = AsyncSocket::new()?;
            s.connect("127.0.0.1", port).await?;
            s.send(b"bye").await?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        drop(sock);
        // Only a guard against a hang: the end arrives at once.
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got)
            .expect("the end of the stream, not a timeout");
        assert_eq!(got, b"bye");
    });
}

/// Sockets opened and closed by the thousand on io_uring: each one's connection ends (the
/// ring let go of each socket), and later ones are served normally (slots reused with new
/// generations).
#[test]
fn a_thousand_sockets_opened_and_closed_on_io_uring_all_end_and_slots_are_reused() {
    on_io_uring(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        for round in 0..1000 {
            let sock = wait_for(async move {
                let s = AsyncSocket::new()?;
                s.connect("127.0.0.1", port).await?;
                Ok::<_, std::io::Error>(s)
            })
            .unwrap();
            let (mut peer, _) = listener.accept().unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            std::io::Write::write_all(&mut peer, b"ping\r\n").unwrap();
            let line = wait_for(sock.recv_line()).unwrap();
            assert_eq!(line.as_deref(), Some("ping"), "round {round}");
            sock.close().unwrap();
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest)
                .unwrap_or_else(|e| panic!("round {round}: no end of stream: {e}"));
        }
    });
}
