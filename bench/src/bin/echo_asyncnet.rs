//! Our echo server: asyncnet's event loop, one spawned task per connection.
//!
//! Usage: `echo_asyncnet [--lines] [PORT]` (0 or absent: any free port).
//! Prints `listening on 127.0.0.1:PORT` once it accepts connections.
//!
//! * Default: a byte echo, like `echo_tokio`. The sockets are unbuffered,
//!   because on a buffered socket `recv_into` (like Nim's `recvInto`) waits
//!   until the whole buffer is filled; unbuffered, it is one `read` that
//!   returns what has arrived, then `send` writes it back.
//! * `--lines`: the way a Nim user writes it: buffered sockets, `recv_line`,
//!   then `send` of the line and `"\n"`. Only for newline-terminated input
//!   (the load generator's messages are).

use std::io::{self, Write};
use std::process::ExitCode;

use asyncnet::{spawn, wait_for, AsyncSocket, SoBool};

/// Same buffer size as `echo_tokio`.
const BUF_SIZE: usize = 4096;

async fn echo_bytes(client: AsyncSocket) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match client.recv_into(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.send(&buf[..n]).await.is_err() {
            break;
        }
    }
    client.close();
}

async fn echo_lines(client: AsyncSocket) {
    let mut line = String::new();
    loop {
        line.clear();
        match client.recv_line_into(&mut line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        line.push('\n');
        if client.send(line.as_bytes()).await.is_err() {
            break;
        }
    }
    client.close();
}

async fn serve(port: u16, lines: bool) -> io::Result<()> {
    let server = AsyncSocket::builder().buffered(lines).build()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    let (_, port) = server.local_addr()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{}127.0.0.1:{port}", asyncnet_bench::READY_PREFIX)?;
        out.flush()?;
    }
    loop {
        // Accepted sockets are buffered if the listener is.
        let client = server.accept().await?;
        client.set_sock_opt(SoBool::NoDelay, true)?;
        // Detached: each task ends with its connection and never fails.
        if lines {
            drop(spawn(echo_lines(client)));
        } else {
            drop(spawn(echo_bytes(client)));
        }
    }
}

fn main() -> ExitCode {
    let ([lines], port) = match asyncnet_bench::server_args(["lines"]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_asyncnet: {e}");
            return ExitCode::from(2);
        }
    };
    match wait_for(serve(port, lines)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_asyncnet: {e}");
            ExitCode::FAILURE
        }
    }
}
