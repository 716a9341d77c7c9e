//! Scale: 1,000 concurrent clients send 50 lines each to one server on the same loop; the
//! server receives every line, in order per client.

#[macro_use]
mod support;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Mutex;

use asyncnet::{spawn, AsyncSocket};
use support::{in_ci, listener, port, raise_nofile_limit, run, socket, Family};

const CLIENTS: usize = 1000;
const LINES: usize = 50;
/// Two descriptors per connection, plus headroom for the loop and the test harness.
const FDS_NEEDED: support::Rlim = 2 * CLIENTS as support::Rlim + 500;

/// Serve one connection: read its lines, check them, report how many with a last line.
async fn serve(conn: AsyncSocket, seen: Rc<RefCell<Vec<usize>>>) -> io::Result<()> {
    let hello = conn.recv_line().await?.expect("a hello line");
    let id: usize = hello
        .strip_prefix("client ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad hello {hello:?}"));
    let mut n = 0;
    while let Some(line) = conn.recv_line().await? {
        assert_eq!(
            line,
            format!("{id}:{n}:{}", "x".repeat(n % 17)),
            "client {id}"
        );
        n += 1;
    }
    seen.borrow_mut()[id] = n;
    conn.send(format!("got {n}\n")).await?;
    conn.close()?;
    Ok(())
}

async fn client(fam: Family, port: u16, id: usize) -> io::Result<()> {
    let c = socket(fam, true)?;
    c.connect(fam.loopback(), port).await?;
    c.send(format!("client {id}\n")).await?;
    for n in 0..LINES {
        c.send(format!("{id}:{n}:{}\r\n", "x".repeat(n % 17)))
            .await?;
        if n % 10 == 0 {
            // Interleave with the other clients.
            support::yield_now().await;
        }
    }
    c.shutdown_write()?;
    assert_eq!(c.recv_line().await?, Some(format!("got {LINES}")));
    assert_eq!(c.recv_line().await?, None);
    Ok(())
}

/// The IPv4 and IPv6 runs take turns: each needs its descriptors.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn a_thousand_clients_fifty_lines_each(fam: Family) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let limit = raise_nofile_limit(FDS_NEEDED);
    if limit < FDS_NEEDED {
        let msg = format!("RLIMIT_NOFILE hard limit {limit} is below the {FDS_NEEDED} needed");
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return;
    }
    run(async move {
        let server = listener(fam)?;
        let seen = Rc::new(RefCell::new(vec![usize::MAX; CLIENTS]));
        let accept_seen = seen.clone();
        let acceptor = server.clone();
        let accept_loop = spawn(async move {
            let mut handlers = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let conn = acceptor.accept().await?;
                handlers.push(spawn(serve(conn, accept_seen.clone())));
            }
            for h in handlers {
                h.await?;
            }
            Ok::<_, io::Error>(())
        });
        let p = port(&server);
        let clients: Vec<_> = (0..CLIENTS).map(|id| spawn(client(fam, p, id))).collect();
        for (id, h) in clients.into_iter().enumerate() {
            h.await
                .map_err(|e| io::Error::new(e.kind(), format!("client {id}: {e}")))?;
        }
        accept_loop.await?;
        let seen = seen.borrow();
        let short: Vec<_> = (0..CLIENTS).filter(|&i| seen[i] != LINES).collect();
        assert!(
            short.is_empty(),
            "clients whose lines did not all arrive: {short:?}"
        );
        Ok(())
    })
}

family_tests!(a_thousand_clients_fifty_lines_each);
