//! Run with: cargo run --example echo_server_threads [PORT] [THREADS]
//!
//! The echo server of `echo_server`, on every core: `Server` runs THREADS threads (default:
//! one per CPU), each with its own event loop and its own listener on 127.0.0.1:PORT
//! (default 7777). Try it with `nc 127.0.0.1 7777`: the first line says which thread serves
//! you. Press Enter (or close standard input) for a graceful shutdown: no new connections,
//! 5 s for those open to finish, then the rest are closed, and the count is printed.

use std::io::{self, BufRead};
use std::rc::Rc;
use std::time::Duration;

use asyncnet::{AsyncSocket, Server};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let number = |arg: Option<String>, default: usize| match arg {
        Some(a) => a
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad number {a:?}"))),
        None => Ok(default),
    };
    let port = u16::try_from(number(args.next(), 7777)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
    let threads = number(args.next(), 0)?; // 0: one per CPU

    let server = Server::new(port, "127.0.0.1").threads(threads).start(|| {
        // Called once on each thread: the greeting is this thread's own (`Rc`: not `Send`).
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let greeting: Rc<str> = format!("served by {name}\r\n").into();
        move |client: AsyncSocket| {
            let greeting = greeting.clone();
            async move {
                client.send(greeting.as_bytes()).await?;
                while let Some(line) = client.recv_line().await? {
                    client.send(format!("{line}\r\n")).await?;
                }
                client.close()
            }
        }
    })?;
    println!(
        "echo server listening on {} with {} threads; press Enter to stop",
        server.local_addr(),
        server.threads()
    );
    // Any line, or the end of standard input.
    let _ = io::stdin().lock().read_line(&mut String::new());
    let report = server.shutdown(Duration::from_secs(5))?;
    println!(
        "stopped: {} connections served, {} closed at the deadline",
        report.accepted, report.closed_forcibly
    );
    Ok(())
}
