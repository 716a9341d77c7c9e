//! Run with: cargo run --example chat_server [PORT]
//!
//! The reference's chat server: every line a client sends goes to every other client.
//! Listens on 127.0.0.1 (default port 12345). Try it with two `nc 127.0.0.1 12345`.
//!
//! Unlike the reference, it does what a real server must:
//!
//! - **A member that does not read stalls no one.** Each member has its own outgoing queue,
//!   written by its own task; a line for everyone is queued for each member at once. A member
//!   whose queue passes [`MAX_QUEUED_LINES`] lines or [`MAX_QUEUED_BYTES`] bytes (its socket
//!   and the kernel's buffers are full, and it still does not read) is disconnected.
//! - **A member that leaves is gone at once.** When its reader ends (the client closed, reset
//!   or sent garbage) or its writer fails, it leaves the broadcast list and its connection is
//!   closed; nothing more is queued for it.
//! - **Failures are counted, not logged per line.** A summary of departures goes to stderr at
//!   most once a second.
//! - **One talker cannot starve the others**: after each line it relays, a member's reader
//!   lets the other tasks (the writers) run.
//!
//! `tests/example_chat_server.rs` and `tests/example_chat_churn.rs` run [`listen`] and
//! [`serve`] against a client that never reads and against connect/disconnect churn.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use asyncnet::{spawn, wait_for, AsyncSocket, SoBool};

/// The most lines that may wait for one member before it is disconnected.
pub(crate) const MAX_QUEUED_LINES: usize = 1000;

/// The most bytes that may wait for one member before it is disconnected.
pub(crate) const MAX_QUEUED_BYTES: usize = 1 << 20;

/// How often, at most, the summary of departures is printed.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One connected client: its socket and the lines waiting to be written to it.
struct Member {
    socket: AsyncSocket,
    queue: RefCell<VecDeque<Rc<[u8]>>>,
    /// Bytes in `queue`.
    queued: Cell<usize>,
    /// The writer task, when it waits for a line.
    writer: RefCell<Option<Waker>>,
    /// Left the room: nothing more is queued, the writer stops.
    gone: Cell<bool>,
}

/// Why a member left.
#[derive(Clone, Copy)]
enum Leave {
    /// It closed its side (its reader met the end of the stream).
    Closed,
    /// Reading from it or writing to it failed (a reset, a line too long, ...).
    Failed,
    /// It did not read: its queue passed the bound.
    TooSlow,
}

/// How many members left, and why (counted since the server started).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Departures {
    pub(crate) closed: u64,
    pub(crate) failed: u64,
    pub(crate) too_slow: u64,
}

/// The members and the counts of those who left.
pub(crate) struct Room {
    members: RefCell<Vec<Rc<Member>>>,
    departures: Cell<Departures>,
    /// When the summary was last printed, and the counts it printed.
    reported: Cell<(Instant, Departures)>,
}

impl Room {
    pub(crate) fn new() -> Rc<Room> {
        Rc::new(Room {
            members: RefCell::default(),
            departures: Cell::default(),
            reported: Cell::new((Instant::now(), Departures::default())),
        })
    }

    /// How many members are in the room.
    pub(crate) fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// How many members left, and why.
    pub(crate) fn departures(&self) -> Departures {
        self.departures.get()
    }

    fn join(&self, socket: AsyncSocket) -> Rc<Member> {
        let member = Rc::new(Member {
            socket,
            queue: RefCell::default(),
            queued: Cell::new(0),
            writer: RefCell::default(),
            gone: Cell::new(false),
        });
        self.members.borrow_mut().push(member.clone());
        member
    }

    /// Queue `line` for every member but `from`; disconnect those that do not keep up.
    fn broadcast(&self, from: &Rc<Member>, line: &str) {
        let line: Rc<[u8]> = Rc::from(format!("{line}\r\n").into_bytes());
        let mut too_slow = Vec::new();
        for m in self.members.borrow().iter() {
            if Rc::ptr_eq(m, from) {
                continue;
            }
            let mut queue = m.queue.borrow_mut();
            queue.push_back(line.clone());
            m.queued.set(m.queued.get() + line.len());
            if queue.len() > MAX_QUEUED_LINES || m.queued.get() > MAX_QUEUED_BYTES {
                too_slow.push(m.clone());
            } else if let Some(w) = m.writer.take() {
                w.wake();
            }
        }
        for m in too_slow {
            self.leave(&m, Leave::TooSlow);
        }
    }

    /// `member` leaves (once): out of the list, its queue dropped, its connection closed
    /// (which also ends its reader or writer if one still waits), the departure counted.
    fn leave(&self, member: &Rc<Member>, why: Leave) {
        if member.gone.replace(true) {
            return;
        }
        self.members.borrow_mut().retain(|m| !Rc::ptr_eq(m, member));
        member.queue.take();
        member.queued.set(0);
        if let Some(w) = member.writer.take() {
            w.wake();
        }
        // An error here is a write that failed earlier: the member is gone either way.
        let _ = member.socket.close();
        let mut d = self.departures.get();
        match why {
            Leave::Closed => d.closed += 1,
            Leave::Failed => d.failed += 1,
            Leave::TooSlow => d.too_slow += 1,
        }
        self.departures.set(d);
        self.report();
    }

    /// Print the counts of departures if they changed and the last print is a second old.
    fn report(&self) {
        let (at, last) = self.reported.get();
        let now = self.departures();
        if now != last && at.elapsed() >= REPORT_EVERY {
            eprintln!(
                "chat: {} in the room; left since start: {} closed, {} failed, {} too slow to read",
                self.len(),
                now.closed,
                now.failed,
                now.too_slow
            );
            self.reported.set((Instant::now(), now));
        }
    }
}

/// Let the other tasks run before going on.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Relay the member's lines to the others until it closes or fails.
async fn read_lines(room: &Room, member: &Rc<Member>) -> Leave {
    loop {
        match member.socket.recv_line().await {
            Ok(Some(line)) => {
                room.broadcast(member, &line);
                yield_now().await;
            }
            Ok(None) => return Leave::Closed,
            Err(_) => return Leave::Failed,
        }
    }
}

/// The next line queued for `member`; `None` once it has left.
async fn next_line(member: &Member) -> Option<Rc<[u8]>> {
    poll_fn(|cx| {
        if member.gone.get() {
            return Poll::Ready(None);
        }
        if let Some(line) = member.queue.borrow_mut().pop_front() {
            member.queued.set(member.queued.get() - line.len());
            return Poll::Ready(Some(line));
        }
        *member.writer.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Write the member's queue until it leaves or a write fails.
async fn write_lines(room: Rc<Room>, member: Rc<Member>) {
    while let Some(line) = next_line(&member).await {
        if member.socket.send(line).await.is_err() {
            room.leave(&member, Leave::Failed);
        }
    }
}

/// A listener on 127.0.0.1:`port` (0: any free port).
pub(crate) fn listen(port: u16) -> io::Result<AsyncSocket> {
    let server = AsyncSocket::new()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    Ok(server)
}

/// Accept members into `room` for ever: a reader and a writer task each.
pub(crate) async fn serve(server: AsyncSocket, room: Rc<Room>) -> io::Result<()> {
    loop {
        let client = server.accept().await?;
        let member = room.join(client);
        spawn(write_lines(room.clone(), member.clone()));
        let room = room.clone();
        spawn(async move {
            let why = read_lines(&room, &member).await;
            room.leave(&member, why);
        });
    }
}

fn main() -> io::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}")))?,
        None => 12345,
    };
    wait_for(async {
        let server = listen(port)?;
        let (address, port) = server.local_addr()?;
        println!("chat server listening on {address}:{port}");
        serve(server, Room::new()).await
    })
}
