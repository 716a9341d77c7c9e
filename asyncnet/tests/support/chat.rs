//! Helpers of the `chat_server` example's tests. Include with
//! `#[path = "support/chat.rs"] mod chat;` next to `mod support;` and the example as
//! `mod example;`.

use std::io;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn};

use crate::example::{self, Room};

/// Only a guard: what it bounds must happen, and takes a small fraction of it.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// The example serving a fresh room on a free port.
pub fn start() -> io::Result<(std::rc::Rc<Room>, u16)> {
    let room = Room::new();
    let listener = example::listen(0)?;
    let port = listener.local_addr()?.1;
    drop(spawn(example::serve(listener, room.clone())));
    Ok((room, port))
}

/// Wait (letting the loop run) until `cond` holds; fails the test after [`GENEROUS`].
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + GENEROUS;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        sleep_async(Duration::from_millis(5)).await;
    }
}

/// Wait for a thread without blocking the loop.
pub async fn join<T>(h: thread::JoinHandle<T>) -> T {
    while !h.is_finished() {
        sleep_async(Duration::from_millis(2)).await;
    }
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

pub fn connect(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(GENEROUS))?;
    s.set_write_timeout(Some(GENEROUS))?;
    Ok(s)
}
