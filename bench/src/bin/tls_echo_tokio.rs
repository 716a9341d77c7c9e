//! Reference TLS echo server: tokio's `current_thread` runtime with tokio-rustls, written the
//! idiomatic way: one task per connection doing the handshake (`TlsAcceptor::accept`), then
//! `read` into a 4 KiB buffer and `write_all`; at end of stream, `shutdown` (close_notify).
//!
//! Usage: `tls_echo_tokio --cert FILE --key FILE [PORT]` (0 or absent: any free port). The
//! rustls configuration is the one asyncnet builds (see `asyncnet_bench::tls::certs`).
//! Prints `listening on 127.0.0.1:PORT` once ready.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use asyncnet_bench::tls::certs;
use asyncnet_bench::{say_ready, Listen};

const BUF_SIZE: usize = 4096;

async fn serve(acceptor: TlsAcceptor, stream: TcpStream) {
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return;
    };
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if tls.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = tls.shutdown().await;
}

/// A TLS echo server (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let Cli { cert, key, port } = clap::Parser::parse();
    let acceptor = TlsAcceptor::from(certs::server_config(&cert, &key)?);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    say_ready(&Listen::Tcp(port), listener.local_addr()?.port())?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(serve(acceptor.clone(), stream));
    }
}
