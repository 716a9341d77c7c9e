//! Reference echo server: tokio's `current_thread` runtime, written the
//! idiomatic way (one task per connection, `read` into a buffer, then
//! `write_all`; for UDP one task doing `recv_from` then `send_to`).
//!
//! Usage: `echo_tokio [PORT]` (0 or absent: any free port),
//! `echo_tokio --udp [PORT]`, `echo_tokio --unix PATH` (PATH must not exist
//! yet). Prints `listening on 127.0.0.1:PORT` (Unix: `listening on PATH`)
//! once it is ready.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket, UnixListener};

use asyncnet_bench::{say_ready, Listen};

/// Same buffer size as `echo_asyncnet`.
const BUF_SIZE: usize = 4096;

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
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

/// Errors a UDP socket may report for an earlier datagram (an ICMP error
/// from a client that went away): not the server's problem.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

async fn serve_udp(listen: &Listen, port: u16) -> io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    say_ready(listen, socket.local_addr()?.port())?;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        match socket.send_to(&buf[..n], from).await {
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let ([], listen) = asyncnet_bench::server_args([]).map_err(io::Error::other)?;
    match &listen {
        Listen::Tcp(port) => {
            // A SocketAddr, not a string: no resolver thread.
            let listener =
                TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))).await?;
            say_ready(&listen, listener.local_addr()?.port())?;
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(echo(stream));
            }
        }
        Listen::Unix(path) => {
            let listener = UnixListener::bind(path)?;
            say_ready(&listen, 0)?;
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(echo(stream));
            }
        }
        Listen::Udp(port) => serve_udp(&listen, *port).await,
    }
}
