//! Our echo server: asyncnet's event loop, one spawned task per connection.
//!
//! Usage: `echo_asyncnet [--lines | --pong | --recv | --idle-secs N] [--threads N] [PORT]` (0
//! or absent: any free port),
//! `echo_asyncnet --udp [PORT]`, `echo_asyncnet [--lines] --unix PATH`.
//! Prints `listening on 127.0.0.1:PORT` (Unix: `listening on PATH`) once it
//! is ready.
//!
//! * Default: a byte echo, like `echo_tokio`. The sockets are unbuffered,
//!   because on a buffered socket `recv_into` (like Nim's `recvInto`) waits
//!   until the whole buffer is filled; unbuffered, it is one `read` that
//!   returns what has arrived, then `send` writes it back.
//! * `--recv` (peer `asyncnet-recv`): the byte echo with Nim's `recv(size)`, each read a
//!   fresh `Vec` (read into the loop's scratch buffer, then copied to its size) sent back:
//!   no buffer held per connection between messages, as the C floor holds none.
//! * `--lines`: the way a Nim user writes it: buffered sockets, `recv_line`,
//!   then `send` of the line and `"\n"`. Only for newline-terminated input
//!   (the load generator's messages are).
//! * `--pong` (the `ping` workload): a Redis inline PING server: buffered
//!   sockets, `recv_line`, then `send` of `+PONG\r\n` per line.
//! * `--unix PATH`: the same over a Unix stream socket bound at `PATH`
//!   (which must not exist yet).
//! * `--idle-secs N` (byte echo): before each read, the read deadline is set N seconds
//!   ahead (Go's idle-timeout idiom), to measure what a deadline that never fires costs.
//! * `--threads N` (TCP; peer `asyncnet-tpc` with 2): thread per core: `asyncnet::Server` with
//!   N threads, each its own loop and `SO_REUSEPORT` listener, running the same per-connection
//!   code as without it (the runner starts it unpinned, as `tokio-mt`).
//! * `--udp`: one socket, one task: `recv_from_addr` into a reused buffer, then
//!   `send_to_addr` the datagram back to its sender (no allocation per datagram).

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use asyncnet::{spawn, wait_for, AsyncSocket, Domain, Server, SoBool, SockType};
use asyncnet_bench::{say_ready, transient, Listen, ListenArgs};

/// Same buffer size as `echo_tokio`.
const BUF_SIZE: usize = 4096;

async fn echo_bytes(client: AsyncSocket, idle: Option<Duration>) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        if let Some(idle) = idle {
            client.set_read_deadline(Some(Instant::now() + idle));
        }
        let n = match client.recv_into(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.send(&buf[..n]).await.is_err() {
            break;
        }
    }
    // The peer has gone: a write error left now would have no one to tell.
    let _ = client.close();
}

/// `--recv`: Nim's `let data = await client.recv(4096)`, then `send` it back. A connection
/// keeps no buffer of its own: at thousands of connections the reads land in the loop's one
/// scratch buffer, which stays in cache, instead of in thousands of cold ones.
async fn echo_recv(client: AsyncSocket) {
    loop {
        let data = match client.recv(BUF_SIZE).await {
            Ok(data) if !data.is_empty() => data,
            Ok(_) | Err(_) => break,
        };
        if client.send(data).await.is_err() {
            break;
        }
    }
    // The peer has gone: a write error left now would have no one to tell.
    let _ = client.close();
}

/// `--lines`: the README's example server, as a Nim user writes it: `recv_line` (a fresh
/// `String` per line, so an idle connection keeps no line buffer), then `send` of the line
/// and `\n`.
async fn echo_lines(client: AsyncSocket) {
    while let Ok(Some(mut line)) = client.recv_line().await {
        line.push('\n');
        if client.send(line).await.is_err() {
            break;
        }
    }
    // The peer has gone: a write error left now would have no one to tell.
    let _ = client.close();
}

/// `--pong`: a Redis inline PING server, as a Nim user writes it: buffered
/// sockets, `recv_line`, then `send` of `+PONG\r\n` per line.
async fn pong(client: AsyncSocket) {
    let mut line = String::new();
    loop {
        line.clear();
        match client.recv_line_into(&mut line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        if client.send(b"+PONG\r\n").await.is_err() {
            break;
        }
    }
    // The peer has gone: a write error left now would have no one to tell.
    let _ = client.close();
}

/// What each connection's task runs.
#[derive(Clone, Copy)]
enum Handler {
    /// `recv_into` a buffer of the connection's own; `Some`: the `--idle-secs` deadline.
    Bytes(Option<Duration>),
    Recv,
    Lines,
    Pong,
}

impl Handler {
    /// Whether its sockets are buffered.
    fn buffered(self) -> bool {
        matches!(self, Handler::Lines | Handler::Pong)
    }
}

async fn serve_stream(listen: &Listen, handler: Handler) -> io::Result<()> {
    let builder = AsyncSocket::builder().buffered(handler.buffered());
    let server = match listen {
        Listen::Unix(path) => {
            let server = builder.domain(Domain::UNIX).build()?;
            server.bind_unix(path)?;
            server
        }
        Listen::Tcp(port) => {
            let server = builder.build()?;
            server.set_sock_opt(SoBool::ReuseAddr, true)?;
            server.bind_addr(*port, "127.0.0.1")?;
            server
        }
        Listen::Udp(_) => unreachable!("UDP is served by serve_udp"),
    };
    server.listen()?;
    let tcp = matches!(listen, Listen::Tcp(_));
    let port = if tcp { server.local_addr()?.1 } else { 0 };
    say_ready(listen, port)?;
    loop {
        // Accepted sockets are buffered if the listener is.
        let client = server.accept().await?;
        if tcp {
            client.set_sock_opt(SoBool::NoDelay, true)?;
        }
        // Detached: each task ends with its connection and never fails.
        match handler {
            Handler::Bytes(idle) => drop(spawn(echo_bytes(client, idle))),
            Handler::Recv => drop(spawn(echo_recv(client))),
            Handler::Lines => drop(spawn(echo_lines(client))),
            Handler::Pong => drop(spawn(pong(client))),
        }
    }
}

/// `--threads N`: the same connection tasks on `Server`'s N threads (TCP only). Runs until
/// killed.
fn serve_threads(port: u16, threads: usize, handler: Handler) -> io::Result<()> {
    let server = Server::new(port, "127.0.0.1")
        .threads(threads)
        .buffered(handler.buffered())
        .start(move || {
            move |client: AsyncSocket| {
                let nodelay = client.set_sock_opt(SoBool::NoDelay, true);
                async move {
                    nodelay?;
                    // Inline, as before the handlers had names: no `async fn` layer per poll.
                    match handler {
                        Handler::Bytes(idle) => echo_bytes(client, idle).await,
                        Handler::Recv => echo_recv(client).await,
                        Handler::Lines => echo_lines(client).await,
                        Handler::Pong => pong(client).await,
                    }
                    Ok::<(), io::Error>(())
                }
            }
        })?;
    say_ready(&Listen::Tcp(port), server.local_addr().port())?;
    server.join().map(drop)
}

async fn serve_udp(port: u16) -> io::Result<()> {
    let socket = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    socket.bind_addr(port, "127.0.0.1")?;
    say_ready(&Listen::Udp(port), socket.local_addr()?.1)?;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let (n, from) = match socket.recv_from_addr(&mut buf).await {
            Ok(got) => got,
            // Too large for the buffer: a client bug, not worth dying for.
            Err(e) if transient(&e) || e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e),
        };
        match socket.send_to_addr(from, &buf[..n]).await {
            Ok(()) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Our echo server (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// Buffered sockets, recv_line then send (stream sockets only)
    #[arg(long, conflicts_with = "udp")]
    lines: bool,
    /// Redis inline PING mode: +PONG per line (stream sockets only)
    #[arg(long, conflicts_with = "udp")]
    pong: bool,
    /// Byte echo: set the read deadline this many seconds ahead before each read
    #[arg(long, conflicts_with_all = ["udp", "lines", "pong"])]
    idle_secs: Option<u64>,
    /// Byte echo with recv(4096), a fresh Vec per read, and no buffer per connection
    /// (--lines and --pong win: the suite puts --pong before every peer's own arguments)
    #[arg(long, conflicts_with_all = ["udp", "idle_secs"])]
    recv: bool,
    /// Thread per core: serve TCP on N threads (asyncnet::Server), each its own loop and
    /// SO_REUSEPORT listener
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(flatten)]
    listen: ListenArgs,
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let handler = if cli.pong {
        Handler::Pong
    } else if cli.lines {
        Handler::Lines
    } else if cli.recv {
        Handler::Recv
    } else {
        Handler::Bytes(cli.idle_secs.map(Duration::from_secs))
    };
    let served = match (cli.listen.listen(), cli.threads) {
        (Listen::Tcp(port), Some(n)) => serve_threads(port, usize::from(n), handler),
        (_, Some(_)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--threads serves TCP only",
        )),
        (Listen::Udp(port), None) => wait_for(serve_udp(port)),
        (listen, None) => wait_for(serve_stream(&listen, handler)),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_asyncnet: {e}");
            ExitCode::FAILURE
        }
    }
}
