//! Run with: cargo run --example udp_echo [PORT]
//!
//! The reference's UDP echo server: every datagram goes back to its sender. Listens on
//! 127.0.0.1 (default port 9999). Try it with `socat - UDP:127.0.0.1:9999`.

use std::io;

use asyncnet::{wait_for, AsyncSocket, DatagramTruncated, SockType};

async fn serve(port: u16) -> io::Result<()> {
    let sock = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    sock.bind_addr(port, "127.0.0.1")?;
    let (address, port) = sock.local_addr()?;
    println!("UDP echo server listening on {address}:{port}");
    loop {
        let (data, address, port) = match sock.recv_from(65_536).await {
            Ok(d) => d,
            Err(e) if e.get_ref().is_some_and(|s| s.is::<DatagramTruncated>()) => {
                eprintln!("dropped a datagram too large to echo: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        println!("From {address}:{port} -> {} bytes", data.len());
        sock.send_to(&address, port, &data).await?;
    }
}

fn main() -> io::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}")))?,
        None => 9999,
    };
    wait_for(serve(port))
}
