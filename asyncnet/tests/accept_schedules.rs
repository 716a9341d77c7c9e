//! Cancel safety of `accept` under random schedules: clients connect at random moments while
//! the listener's `accept` is dropped after a random number of polls, cut by the listener's
//! deadline (set for that one call, sometimes passed already), or run to its end. Every
//! connection must be accepted exactly once (each client says its number and waits for the
//! server's answer), and none may leak a descriptor: a connection taken ahead for an accept
//! that was then dropped (the io_uring driver's multishot accept takes them before anyone
//! asks; tokio-uring lost them, its issue #207) stays queued for the next `accept`, and is
//! closed with the listener if nobody takes it.
//!
//! Alone in its test binary, so that the process's descriptor count is this test's. Runs on
//! both drivers in CI, and under Wine. `ASYNCNET_SCHEDULES=N` adds `N` schedules (see
//! `support/schedule.rs`).
#![cfg(any(target_os = "linux", windows))]

#[macro_use]
mod support;
#[path = "support/schedule.rs"]
mod schedule;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, with_timeout, AsyncSocket};
use schedule::{at_most, pause, seeds, timed_out, Rng};
use support::{listener, open_descriptors_at_rest, open_descriptors_settled, port, run, Family};

/// Connections per schedule.
const CLIENTS: usize = 120;

/// One client: connect, say its number, wait for the server's answer, close.
async fn client(port: u16, number: usize) -> io::Result<()> {
    let s = AsyncSocket::new()?;
    s.connect("127.0.0.1", port).await?;
    s.send(format!("{number}\n")).await?;
    let answer = s.recv_line().await?;
    assert_eq!(answer.as_deref(), Some("ok"), "client {number}");
    s.close()
}

/// The server's side of one connection: read the client's number, note it, answer.
async fn serve(conn: AsyncSocket, seen: Rc<RefCell<Vec<usize>>>) -> io::Result<()> {
    let line = conn.recv_line().await?.expect("a client's number");
    seen.borrow_mut()
        .push(line.parse().expect("a client's number"));
    conn.send(b"ok\n").await?;
    conn.flush().await?;
    conn.close()
}

/// One schedule: `CLIENTS` connections, each accepted once.
async fn schedule(seed: u64) -> io::Result<()> {
    let listener = listener(Family::V4)?;
    let port = port(&listener);
    let mut rng = Rng::new(seed);
    let mut clients_rng = Rng::new(seed ^ 1);
    let clients = spawn(async move {
        let mut all = Vec::new();
        for number in 0..CLIENTS {
            if clients_rng.below(2) == 0 {
                sleep_async(pause(&mut clients_rng)).await;
            }
            all.push(spawn(client(port, number)));
        }
        for c in all {
            c.await?;
        }
        Ok::<(), io::Error>(())
    });
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut servers = Vec::new();
    let accepting = async {
        while servers.len() < CLIENTS {
            if rng.below(8) == 0 {
                sleep_async(pause(&mut rng)).await;
            }
            let polls = rng.polls();
            listener.set_read_deadline(rng.deadline());
            let accepted = timed_out(at_most(listener.accept(), polls).await)?;
            listener.set_read_deadline(None);
            if let Some(conn) = accepted {
                servers.push(spawn(serve(conn, seen.clone())));
            }
        }
        Ok::<(), io::Error>(())
    };
    if with_timeout(accepting, Duration::from_secs(10))
        .await
        .is_err()
    {
        panic!(
            "seed {seed:#x}: {} of {CLIENTS} connections accepted in 10 s",
            servers.len()
        );
    }
    for s in servers {
        s.await?;
    }
    clients.await?;
    let mut seen = seen.take();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..CLIENTS).collect::<Vec<_>>(),
        "seed {seed:#x}: each connection accepted once"
    );
    listener.close()
}

#[test]
fn a_random_schedule_of_dropped_accepts_loses_no_connection_and_leaks_no_descriptor() {
    // What the process makes once, with its first connection (the null device that closed
    // sockets lend, the driver's buffers), before counting.
    run(async {
        let warm = listener(Family::V4)?;
        let c = spawn(client(port(&warm), 0));
        serve(warm.accept().await?, Rc::default()).await?;
        c.await?;
        warm.close()
    });
    let before = run(async { Ok(open_descriptors_at_rest().await) });
    for seed in seeds() {
        run(schedule(seed));
    }
    let after = run(async { Ok(open_descriptors_settled(before).await) });
    assert_eq!(after, before, "descriptors left open");
}
