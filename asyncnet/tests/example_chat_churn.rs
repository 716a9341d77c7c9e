//! The `chat_server` example (included from `examples/chat_server.rs`) under
//! connect/disconnect churn: every passer-by leaves the room at once and is counted, the
//! server's descriptors return to where they were, and two members still chat. Alone in its
//! test binary: it counts the whole process's open descriptors.
// Where the tests can count the process's descriptors (Linux) or handles (Windows):
// `support::open_descriptors`.
#![cfg(any(target_os = "linux", windows))]

#[path = "support/chat.rs"]
mod chat;
mod support;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod example;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use chat::{connect, eventually, join, start};
use support::{open_descriptors, run};

#[test]
fn connect_disconnect_churn_leaves_no_member_or_descriptor_behind_and_chat_goes_on() {
    const CONNECTIONS: u64 = 2000;
    run(async {
        let (room, port) = start()?;
        let before = open_descriptors();
        let churn = thread::spawn(move || -> io::Result<()> {
            for i in 0..CONNECTIONS {
                let s = TcpStream::connect(("127.0.0.1", port))?;
                match i % 3 {
                    // A line, then close.
                    0 => (&s).write_all(b"hello from a passer-by\n")?,
                    // A reset.
                    1 => support::reset(s),
                    // Half a line, then the end of the stream.
                    _ => {
                        (&s).write_all(b"half a li")?;
                        s.shutdown(Shutdown::Write)?;
                    }
                }
            }
            Ok(())
        });
        join(churn).await?;
        // Every passer-by joined and left; except that a connection reset before the server
        // accepted it may be dropped unseen (skipped by `accept`), as the BSDs and the
        // io_uring driver's accept do (`ECONNABORTED`: its peer address is gone), and
        // Winsock's (`WSAECONNRESET`; Wine's, `WSAENOTCONN`); Linux's accept(2) hands it
        // over, and its first read fails.
        let resets = (0..CONNECTIONS).filter(|i| i % 3 == 1).count() as u64;
        let may_drop = if cfg!(windows) || asyncnet::driver_kind() == asyncnet::DriverKind::IoUring
        {
            resets
        } else {
            0
        };
        eventually("every passer-by has left", || {
            let d = room.departures();
            let left = d.closed + d.failed + d.too_slow;
            left + may_drop >= CONNECTIONS && room.len() == 0
        })
        .await;
        assert!(room.departures().closed >= CONNECTIONS - resets - room.departures().failed);
        assert_eq!(room.len(), 0);
        eventually("the server's descriptors return to where they were", || {
            open_descriptors() <= before + 2
        })
        .await;

        // Two members still chat.
        let mut a = connect(port)?;
        let b = connect(port)?;
        eventually("two members", || room.len() == 2).await;
        a.write_all(b"still here?\n")?;
        let heard = thread::spawn(move || -> io::Result<()> {
            for line in BufReader::new(b).lines() {
                if line? == "still here?" {
                    return Ok(());
                }
            }
            Err(io::ErrorKind::UnexpectedEof.into())
        });
        join(heard).await?;
        Ok(())
    })
}
