//! Cancel safety of `accept` under random schedules: clients connect at random moments while
//! the listener's `accept` is dropped after a random number of polls, cut by the listener's
//! deadline (set for that one call, sometimes passed already), or run to its end. Every
//! connection must be accepted exactly once (each client says its number and waits for the
//! server's answer), and none may leak a descriptor: a connection taken ahead for an accept
//! that was then dropped (the io_uring driver's multishot accept takes them before anyone
//! asks; tokio-uring lost them, its issue #207) stays queued for the next `accept`, and is
//! closed with the listener if nobody takes it. Then the same over TLS, where `accept` runs
//! the server's side of each handshake and `connect` the client's, both dropped or cut:
//! every client ends, answered or not, and exactly those the server answered got an answer.
//!
//! Alone in its test binary, so that the process's descriptor count is this test's. Runs on
//! both drivers in CI, and under Wine. `ASYNCNET_SCHEDULES=N` adds `N` schedules (see
//! `support/schedule.rs`).
#![cfg(any(target_os = "linux", windows))]

#[macro_use]
mod support;
#[path = "support/schedule.rs"]
mod schedule;
// rcgen, which makes the TLS certificates, is not a dev-dependency on macOS (see Cargo.toml).
#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[path = "support/tls.rs"]
mod tls_support;

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

/// One TLS schedule: `CLIENTS` clients whose `connect` (with its handshake) is dropped or
/// cut as the schedule says, against a wrapped listener whose `accept` (with the server's
/// side of the handshake) is too. A dropped accept drops the client it was shaking hands
/// with, a dropped connect its own connection: every client ends, served or not, and every
/// client that got its answer is one the server answered.
#[cfg(all(feature = "tls", not(target_os = "macos")))]
async fn tls_schedule(seed: u64, pki: &tls_support::Pki) -> io::Result<()> {
    let listener = tls_support::tls_listener(&pki.server_ctx())?;
    let port = port(&listener);
    let mut rng = Rng::new(seed);
    let mut clients_rng = Rng::new(seed ^ 1);
    let ctx = pki.client_ctx();
    let clients = spawn(async move {
        let mut all = Vec::new();
        for number in 0..CLIENTS {
            if clients_rng.below(2) == 0 {
                sleep_async(pause(&mut clients_rng)).await;
            }
            let (ctx, polls, deadline) = (ctx.clone(), clients_rng.polls(), clients_rng.deadline());
            all.push(spawn(async move {
                let s = AsyncSocket::new()?;
                asyncnet::wrap_socket(&ctx, &s)?;
                s.set_deadline(deadline);
                let connected = at_most(s.connect("127.0.0.1", port), polls).await;
                s.set_deadline(None);
                let served = match connected {
                    Some(Ok(())) => match client_exchange(&s, number).await {
                        Ok(served) => served,
                        Err(e) if is_gone(&e) => false,
                        Err(e) => return Err(e),
                    },
                    // Dropped, timed out, or refused by a server that dropped its side.
                    None => false,
                    Some(Err(e)) if is_gone(&e) || e.kind() == io::ErrorKind::TimedOut => false,
                    Some(Err(e)) => return Err(e),
                };
                s.close()?;
                Ok::<bool, io::Error>(served)
            }));
        }
        let mut served = 0;
        for c in all {
            served += usize::from(c.await?);
        }
        Ok::<usize, io::Error>(served)
    });
    // The accept loop runs until the clients are done, then is dropped.
    let servers = Rc::new(RefCell::new(Vec::new()));
    let accepting = spawn({
        let servers = servers.clone();
        async move {
            loop {
                let polls = rng.polls();
                listener.set_read_deadline(rng.deadline());
                let accepted = at_most(listener.accept(), polls).await;
                listener.set_read_deadline(None);
                match accepted {
                    Some(Ok(conn)) => servers.borrow_mut().push(spawn(serve_tls(conn))),
                    // A client's handshake that failed (it dropped its connect): that client's.
                    Some(Err(e)) if is_gone(&e) || e.kind() == io::ErrorKind::TimedOut => {}
                    Some(Err(e)) => return Err::<(), io::Error>(e),
                    None => {}
                }
            }
        }
    });
    let served = clients.await?;
    if accepting.is_finished() {
        accepting.await?;
    } else {
        accepting.abort();
    }
    let mut answered = 0;
    for s in servers.take() {
        answered += usize::from(s.await?);
    }
    assert_eq!(
        served, answered,
        "seed {seed:#x}: clients answered against connections the server answered"
    );
    Ok(())
}

/// A client's exchange once connected: its number, then the server's answer. Whether it was
/// answered (a server that dropped its side of the handshake ends the connection instead).
#[cfg(all(feature = "tls", not(target_os = "macos")))]
async fn client_exchange(s: &AsyncSocket, number: usize) -> io::Result<bool> {
    s.send(format!("{number}\n")).await?;
    Ok(s.recv_line().await?.as_deref() == Some("ok"))
}

/// The server's side of one TLS connection: read the client's number, answer. Whether it
/// answered.
#[cfg(all(feature = "tls", not(target_os = "macos")))]
async fn serve_tls(conn: AsyncSocket) -> io::Result<bool> {
    let answered = match conn.recv_line().await {
        Ok(Some(_)) => {
            conn.send(b"ok\n").await?;
            conn.flush().await.is_ok()
        }
        Ok(None) => false,
        Err(e) if is_gone(&e) => false,
        Err(e) => return Err(e),
    };
    conn.close()?;
    Ok(answered)
}

/// Whether `e` says the other end went away (a reset, an end without close_notify, a socket
/// left unusable by a handshake that did not finish).
#[cfg(all(feature = "tls", not(target_os = "macos")))]
fn is_gone(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
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
    #[cfg(all(feature = "tls", not(target_os = "macos")))]
    {
        let pki = tls_support::Pki::new();
        for seed in seeds() {
            run(tls_schedule(seed, &pki));
        }
    }
    let after = run(async { Ok(open_descriptors_settled(before).await) });
    assert_eq!(after, before, "descriptors left open");
}
