//! Run with: cargo run --example tls_echo_server [PORT] [--cert FILE --key FILE]
//!
//! The echo server over TLS: every line a client sends comes back to it. Listens on
//! 127.0.0.1 (default port 7443) with the certificate chain and key given (PEM), or, without
//! them, with a self-signed certificate for `localhost` and `127.0.0.1` made at start. Its PEM
//! is written to a temporary file whose path is printed, for clients to trust:
//! `openssl s_client -connect 127.0.0.1:7443 -CAfile PATH` or
//! `cargo run --example tls_client 127.0.0.1 7443 / --ca PATH`.

use std::io;
use std::path::PathBuf;

use asyncnet::{
    spawn, wait_for, wrap_connected_socket, AsyncSocket, HandshakeAs, SoBool, TlsContext,
};

fn usage() -> ! {
    eprintln!("usage: tls_echo_server [PORT] [--cert FILE --key FILE]");
    std::process::exit(2);
}

/// A self-signed certificate for this machine's loopback names, its PEM written to a fresh
/// file under the temporary directory (returned with the context).
fn self_signed() -> io::Result<(TlsContext, PathBuf)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let path = std::env::temp_dir().join(format!("asyncnet-tls-echo-{}.pem", std::process::id()));
    std::fs::write(&path, &cert_pem)?;
    let ctx = TlsContext::server_builder(cert_pem.as_bytes(), key_pem.as_bytes()).build()?;
    Ok((ctx, path))
}

async fn process_client(ctx: TlsContext, client: AsyncSocket) -> io::Result<()> {
    // The handshake runs in this client's task, so a slow or silent client holds up no one
    // else (a listener wrapped with `wrap_socket` would run handshakes one after another),
    // and it is bounded by the context's handshake timeout (10 s by default): a client that
    // stalls it gets `TimedOut`, and its connection closes as this task ends.
    wrap_connected_socket(&ctx, &client, HandshakeAs::Server, "").await?;
    while let Some(line) = client.recv_line().await? {
        client.send(format!("{line}\r\n")).await?;
    }
    client.close()?;
    Ok(())
}

/// A listener on 127.0.0.1:`port` (0: any free port).
pub(crate) fn listen(port: u16) -> io::Result<AsyncSocket> {
    let server = AsyncSocket::new()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    Ok(server)
}

/// Serve the clients of `server`, each in its own task (`tests/example_tls_echo_server.rs`
/// runs this with stalled clients).
pub(crate) async fn serve(server: AsyncSocket, ctx: TlsContext) -> io::Result<()> {
    loop {
        let client = server.accept().await?;
        let ctx = ctx.clone();
        spawn(async move {
            if let Err(e) = process_client(ctx, client).await {
                eprintln!("client error: {e}");
            }
        });
    }
}

fn main() -> io::Result<()> {
    let mut port = 7443;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cert" => cert = Some(args.next().unwrap_or_else(|| usage())),
            "--key" => key = Some(args.next().unwrap_or_else(|| usage())),
            s if s.starts_with('-') => usage(),
            p => {
                port = p.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}"))
                })?
            }
        }
    }
    let ctx = match (cert, key) {
        (Some(cert), Some(key)) => TlsContext::server_from_files(cert, key)?,
        (None, None) => {
            let (ctx, path) = self_signed()?;
            println!(
                "self-signed certificate for localhost and 127.0.0.1 written to {}",
                path.display()
            );
            println!(
                "trust it with: openssl s_client -connect 127.0.0.1:{port} -CAfile {}",
                path.display()
            );
            ctx
        }
        _ => usage(),
    };
    wait_for(async {
        let server = listen(port)?;
        let (address, port) = server.local_addr()?;
        println!("TLS echo server listening on {address}:{port}");
        serve(server, ctx).await
    })
}
