//! Reference echo server on tokio, written the idiomatic way (one task per
//! connection, `read` into a buffer, then `write_all`; for UDP one task doing
//! `recv_from` then `send_to`).
//!
//! Usage: `echo_tokio [--tuned] [--multi-thread] [--pong] [PORT]` (0 or
//! absent: any free port), `echo_tokio [--multi-thread] --udp [PORT]`,
//! `echo_tokio [--tuned] [--multi-thread] [--pong] --unix PATH` (PATH must
//! not exist yet). Prints `listening on 127.0.0.1:PORT` (Unix:
//! `listening on PATH`) once it is ready.
//!
//! * Default (peer `tokio`): `current_thread` runtime.
//! * `--multi-thread` (peer `tokio-mt`): the `multi_thread` runtime with two
//!   worker threads, the same code otherwise (the runner starts it unpinned).
//! * `--tuned` (peer `tokio-tuned`): what a tokio expert writes: the stream
//!   split in halves, a `BufReader` on the read half and a `BufWriter` on the
//!   write half, flushed only when no buffered input is left (so a batch of
//!   pipelined requests gets one `write`). For UDP the same as the default.
//! * `--pong` (the `ping` workload): a Redis inline PING server instead of an
//!   echo: per line (`read_line`) a `+PONG\r\n`. Idiomatic: `BufReader` around
//!   the stream, `write_all` per reply; with `--tuned`: the `BufWriter`,
//!   flushed when the `BufReader` has no buffered input.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};

use asyncnet_bench::{say_ready, transient, Listen, ListenArgs};

/// Same buffer size as `echo_asyncnet`.
const BUF_SIZE: usize = 4096;
/// The reply to every command line in `--pong` mode.
const PONG: &[u8] = b"+PONG\r\n";

#[derive(Clone, Copy)]
struct Mode {
    tuned: bool,
    pong: bool,
}

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

/// Idiomatic PING server: `read_line`, then `write_all` of the reply.
async fn pong<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let mut reader = BufReader::with_capacity(BUF_SIZE, stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if reader.get_mut().write_all(PONG).await.is_err() {
            return;
        }
    }
}

/// Tuned byte echo (or PING server): copy what the `BufReader` holds (or a
/// reply per line) into the `BufWriter`, flush once nothing buffered is
/// left to read.
async fn tuned<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(r: R, w: W, pong: bool) {
    let mut reader = BufReader::with_capacity(BUF_SIZE, r);
    let mut writer = BufWriter::with_capacity(BUF_SIZE, w);
    let mut line = String::new();
    loop {
        let wrote = if pong {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => writer.write_all(PONG).await,
            }
        } else {
            let n = match reader.fill_buf().await {
                Ok([]) | Err(_) => return,
                Ok(data) => data.len(),
            };
            let wrote = writer.write_all(&reader.buffer()[..n]).await;
            reader.consume(n);
            wrote
        };
        if wrote.is_err() || (reader.buffer().is_empty() && writer.flush().await.is_err()) {
            return;
        }
    }
}

/// Serves every connection of `$listener` as `$mode` says, each first set
/// up by `$setup`.
macro_rules! accept_loop {
    ($listener:expr, $mode:expr, $setup:expr) => {
        loop {
            let (mut stream, _) = $listener.accept().await?;
            $setup(&stream)?;
            match ($mode.tuned, $mode.pong) {
                (false, false) => drop(tokio::spawn(echo(stream))),
                (false, true) => drop(tokio::spawn(pong(stream))),
                (true, pong) => drop(tokio::spawn(async move {
                    let (r, w) = stream.split();
                    tuned(r, w, pong).await
                })),
            }
        }
    };
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

async fn serve(listen: Listen, mode: Mode) -> io::Result<()> {
    match &listen {
        Listen::Tcp(port) => {
            // A SocketAddr, not a string: no resolver thread.
            let listener =
                TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))).await?;
            say_ready(&listen, listener.local_addr()?.port())?;
            accept_loop!(listener, mode, |s: &TcpStream| s.set_nodelay(true))
        }
        Listen::Unix(path) => {
            let listener = UnixListener::bind(path)?;
            say_ready(&listen, 0)?;
            accept_loop!(listener, mode, |_: &UnixStream| io::Result::Ok(()))
        }
        Listen::Udp(port) => serve_udp(&listen, *port).await,
    }
}

/// The reference echo server (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// BufReader and BufWriter, flushed when no input is buffered
    #[arg(long)]
    tuned: bool,
    /// The multi_thread runtime, 2 workers
    #[arg(long)]
    multi_thread: bool,
    /// Redis inline PING mode: +PONG per line (stream sockets only)
    #[arg(long, conflicts_with = "udp")]
    pong: bool,
    #[command(flatten)]
    listen: ListenArgs,
}

fn main() -> io::Result<()> {
    let Cli {
        tuned,
        multi_thread,
        pong,
        listen,
    } = clap::Parser::parse();
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
    };
    runtime.block_on(serve(listen.listen(), Mode { tuned, pong }))
}
