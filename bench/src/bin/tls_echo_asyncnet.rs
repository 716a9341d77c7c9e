//! Our TLS echo server: asyncnet's event loop, one `spawn`ed task per connection doing the
//! handshake (`wrap_connected_socket`), then a byte echo: read what arrived into a 4 KiB
//! buffer (`AsyncRead`, since `recv_into` on a TLS socket, which is always buffered, waits for
//! the whole buffer), then `send`; at end of stream (close_notify), `close`, which sends
//! close_notify back.
//!
//! `--accept-tls` (peer `asyncnet-accept`, not run by default): the listener is wrapped with
//! `wrap_socket` instead, so `accept` does the handshakes, one after another, as a Nim user
//! would write it.
//!
//! Usage: `tls_echo_asyncnet [--accept-tls] --cert FILE --key FILE [PORT]` (0 or absent: any
//! free port). Prints `listening on 127.0.0.1:PORT` once ready.

use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use asyncnet::{
    spawn, wait_for, wrap_connected_socket, wrap_socket, AsyncSocket, HandshakeAs, SoBool,
    TlsContext,
};
use futures_io::AsyncRead;

use asyncnet_bench::{say_ready, Listen};

const BUF_SIZE: usize = 4096;

async fn echo(client: AsyncSocket) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut reader = client.clone();
    loop {
        let n = poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut buf)).await?;
        if n == 0 {
            break;
        }
        client.send(&buf[..n]).await?;
    }
    client.close()?;
    Ok(())
}

async fn serve(ctx: TlsContext, accept_tls: bool, port: u16) -> io::Result<()> {
    let server = AsyncSocket::new()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    if accept_tls {
        wrap_socket(&ctx, &server)?;
    }
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    say_ready(&Listen::Tcp(port), server.local_addr()?.1)?;
    loop {
        let client = server.accept().await?;
        client.set_sock_opt(SoBool::NoDelay, true)?;
        let ctx = ctx.clone();
        // A detached task that fails makes the loop fail: one client's trouble (a failed
        // handshake, a reset) is kept to the task.
        spawn(async move {
            if !accept_tls
                && wrap_connected_socket(&ctx, &client, HandshakeAs::Server, "")
                    .await
                    .is_err()
            {
                let _ = client.close();
                return;
            }
            let _ = echo(client.clone()).await;
            // Errors of this client stay with it (see above).
            let _ = client.close();
        });
    }
}

/// A TLS echo server (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// Wrap the listener: accept does the handshakes (peer asyncnet-accept)
    #[arg(long)]
    accept_tls: bool,
    /// The certificate chain, PEM
    #[arg(long)]
    cert: PathBuf,
    /// Its private key, PEM
    #[arg(long)]
    key: PathBuf,
    /// TCP port on 127.0.0.1; 0: any free one
    #[arg(default_value_t = 0)]
    port: u16,
}

fn main() -> io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let ctx = TlsContext::server_from_files(cli.cert, cli.key)?;
    wait_for(serve(ctx, cli.accept_tls, cli.port))
}
