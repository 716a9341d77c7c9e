//! The leak checks' counter, `support::open_descriptors`, is itself checked: a socket opened
//! raises it by one, and closing sockets brings it back. On Windows it reads the system's
//! handle table, which is right under Wine too (Wine's `GetProcessHandleCount` answers 0).
//! (On Windows the count falls back once the loop has polled: see
//! `support::open_descriptors_settled`.) Alone in its test binary: it counts the whole process's descriptors.
#![cfg(any(target_os = "linux", windows))]

mod support;

use asyncnet::AsyncSocket;
use support::{open_descriptors, open_descriptors_at_rest, open_descriptors_settled, run};

#[test]
fn open_descriptors_counts_every_socket_and_falls_back_when_they_close() {
    const SOCKETS: usize = 100;
    run(async {
        // What a first socket makes lazily (the loop's poller, Winsock's state) exists
        // before the count.
        drop(AsyncSocket::new()?);
        let before = open_descriptors_at_rest().await;
        let sockets = (0..SOCKETS)
            .map(|_| AsyncSocket::new())
            .collect::<std::io::Result<Vec<_>>>()?;
        let open = open_descriptors();
        assert!(
            open >= before + SOCKETS,
            "{SOCKETS} sockets open: {before} descriptors before, {open} now"
        );
        drop(sockets);
        assert_eq!(
            open_descriptors_settled(before).await,
            before,
            "every socket closed"
        );
        Ok(())
    });
}
