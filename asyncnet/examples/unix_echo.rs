//! Run with: cargo run --example unix_echo [PATH]
//!
//! The reference's Unix socket server, serving every client: each line a client sends comes
//! back to it. Default path: /tmp/asyncnet-echo.sock (a stale socket file there is removed
//! first). Try it with `socat - UNIX-CONNECT:/tmp/asyncnet-echo.sock`.

use std::io;

#[cfg(unix)]
use asyncnet::{spawn, wait_for, AsyncSocket, Domain};

#[cfg(unix)]
async fn serve(path: String) -> io::Result<()> {
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let server = AsyncSocket::builder().domain(Domain::UNIX).build()?;
    server.bind_unix(&path)?;
    server.listen()?;
    println!("Unix echo server listening at {path}");
    loop {
        let client = server.accept().await?;
        spawn(async move {
            let served = async {
                while let Some(line) = client.recv_line().await? {
                    client.send(format!("{line}\n")).await?;
                }
                client.close()
            };
            if let Err(e) = served.await {
                eprintln!("client error: {e}");
            }
        });
    }
}

#[cfg(unix)]
fn main() -> io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/asyncnet-echo.sock".to_owned());
    wait_for(serve(path))
}

/// Windows has no Unix-domain sockets in asyncnet (`bind_unix` is Unix only).
#[cfg(not(unix))]
fn main() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "unix_echo: Unix-domain sockets are not available on this platform",
    ))
}
