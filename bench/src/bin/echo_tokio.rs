//! Reference echo server: tokio's `current_thread` runtime, written the
//! idiomatic way (one task per connection, `read` into a buffer, then
//! `write_all`).
//!
//! Usage: `echo_tokio [PORT]` (0 or absent: any free port). Prints
//! `listening on 127.0.0.1:PORT` once it accepts connections.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Same buffer size as `echo_asyncnet`.
const BUF_SIZE: usize = 4096;

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let port = asyncnet_bench::server_port_arg().map_err(io::Error::other)?;
    // A SocketAddr, not a string: no resolver thread.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{}{addr}", asyncnet_bench::READY_PREFIX)?;
        out.flush()?;
    }
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(echo(stream));
    }
}
