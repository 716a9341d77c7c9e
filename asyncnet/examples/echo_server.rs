//! Run with: cargo run --example echo_server [PORT]
//!
//! The reference's echo server: every line a client sends comes back to it. Listens on
//! 127.0.0.1 (default port 7777). Try it with `nc 127.0.0.1 7777`.

use std::io;

use asyncnet::{spawn, wait_for, AsyncSocket, SoBool};

async fn process_client(client: AsyncSocket) -> io::Result<()> {
    while let Some(line) = client.recv_line().await? {
        client.send(format!("{line}\r\n")).await?;
    }
    client.close()?;
    Ok(())
}

async fn serve(port: u16) -> io::Result<()> {
    let server = AsyncSocket::new()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    let (address, port) = server.local_addr()?;
    println!("echo server listening on {address}:{port}");
    loop {
        let client = server.accept().await?;
        // Keep the handle-less task's errors to itself: one client's trouble (a line too
        // long, say) must not stop the server.
        spawn(async move {
            if let Err(e) = process_client(client).await {
                eprintln!("client error: {e}");
            }
        });
    }
}

fn main() -> io::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}")))?,
        None => 7777,
    };
    wait_for(serve(port))
}
