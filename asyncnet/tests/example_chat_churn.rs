//! The `chat_server` example (included from `examples/chat_server.rs`) under
//! connect/disconnect churn: every passer-by leaves the room at once and is counted, the
//! server's descriptors return to where they were, and two members still chat. Alone in its
//! test binary: it counts the whole process's open descriptors.

mod support;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod example;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn};
use example::Room;
use support::run;

/// Only a guard: what it bounds must happen, and takes a small fraction of it.
const GENEROUS: Duration = Duration::from_secs(20);

/// The example serving a fresh room on a free port.
fn start() -> io::Result<(std::rc::Rc<Room>, u16)> {
    let room = Room::new();
    let listener = example::listen(0)?;
    let port = listener.local_addr()?.1;
    drop(spawn(example::serve(listener, room.clone())));
    Ok((room, port))
}

/// Wait (letting the loop run) until `cond` holds; fails the test after [`GENEROUS`].
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + GENEROUS;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        sleep_async(Duration::from_millis(5)).await;
    }
}

/// Wait for a thread without blocking the loop.
async fn join<T>(h: thread::JoinHandle<T>) -> T {
    while !h.is_finished() {
        sleep_async(Duration::from_millis(2)).await;
    }
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(GENEROUS))?;
    s.set_write_timeout(Some(GENEROUS))?;
    Ok(s)
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

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
        eventually("every passer-by has left", || {
            let d = room.departures();
            d.closed + d.failed + d.too_slow == CONNECTIONS
        })
        .await;
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
