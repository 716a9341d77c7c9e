//! Run with: cargo run --example http_client HOST PORT [PATH]
//!
//! The reference's minimal HTTP client: sends `GET PATH HTTP/1.0` and prints the status line
//! and the size of the response. Works against any HTTP server, e.g. one started with
//! `python3 -m http.server 8000 --bind 127.0.0.1` and `cargo run --example http_client 127.0.0.1 8000 /`.

use std::io;

use asyncnet::{dial, wait_for};

async fn http_get(host: &str, port: u16, path: &str) -> io::Result<Vec<u8>> {
    let sock = dial(host, port).await?;
    sock.send(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"))
        .await?;
    let mut response = Vec::new();
    loop {
        let chunk = sock.recv(4096).await?;
        if chunk.is_empty() {
            break;
        }
        response.extend_from_slice(&chunk);
    }
    sock.close()?;
    Ok(response)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: http_client HOST PORT [PATH]");
        std::process::exit(2);
    }
    let port: u16 = args[2].parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad port {:?}", args[2]),
        )
    })?;
    let path = args.get(3).map_or("/", String::as_str);
    let response = wait_for(http_get(&args[1], port, path))?;
    let text = String::from_utf8_lossy(&response);
    println!("{}", text.lines().next().unwrap_or("(empty response)"));
    println!("{} bytes", response.len());
    Ok(())
}
