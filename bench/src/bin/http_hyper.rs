//! The `http` workload's reference server: hyper 1.x on tokio's
//! `current_thread` runtime, written as hyper's own guide writes a server.
//!
//! Usage: `http_hyper [PORT]` (0 or absent: any free port), TCP on
//! 127.0.0.1 only. Prints `listening on 127.0.0.1:PORT` once it is ready.
//!
//! One task per connection serving it with `server::conn::http1` at its
//! defaults (keep-alive on; hyper adds `date`, honours `Connection: close`
//! and HTTP/1.0, answers a malformed request with 400 and closes). The
//! service reads and drops the request body (`BodyExt::frame` until the
//! end), then answers `200 OK`, `Content-Type: text/plain` and the body
//! `Hello, World!` (hyper adds `content-length` from the body).
//! Accepted connections get `TCP_NODELAY`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use asyncnet_bench::{say_ready, Listen};

/// The body of every response.
const BODY: &[u8] = b"Hello, World!";

async fn hello(req: Request<Incoming>) -> Result<Response<Full<&'static [u8]>>, hyper::Error> {
    // Read and drop the body, as `http_asyncnet` does: hyper closes a
    // connection whose request body was left unread.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    let mut response = Response::new(Full::new(BODY));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

async fn serve(port: u16) -> io::Result<()> {
    // A SocketAddr, not a string: no resolver thread.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    say_ready(&Listen::Tcp(port), listener.local_addr()?.port())?;
    let http = http1::Builder::new();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let conn = http.serve_connection(TokioIo::new(stream), service_fn(hello));
        // Detached: a connection's error (a reset, a malformed request) ends
        // only that connection.
        drop(tokio::spawn(async move {
            let _ = conn.await;
        }));
    }
}

/// The `http` workload's server on hyper (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// TCP port on 127.0.0.1; 0: any free one
    #[arg(default_value_t = 0)]
    port: u16,
}

fn main() -> io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(serve(cli.port))
}
