//! Buffered reads by size, timed in one process: how fast `recv(n)` and `recv_into` of `n`
//! bytes on a buffered socket take a stream that arrives over many wake-ups, against the
//! unbuffered read loop that is their floor; and 64-byte messages read with a buffered
//! `recv(64)` (Nim's idiom for fixed-size messages), each side of a ping-pong.
//!
//! Usage: `buffered_reads [--tls] [--reps R] recv|recv-into|loop|pingpong N`
//!
//! * `recv N`, `recv-into N`: a writer on a thread (and loop) of its own sends `N` bytes `R`
//!   times (default 1) over loopback; the reader takes each with one buffered `recv(N)` (or
//!   `recv_into` of an `N`-byte buffer). Prints the reader's time and MB/s (10^6 bytes).
//! * `loop N`: the same bytes read by an unbuffered socket, `recv_into` until the buffer is
//!   full: one system call per read, no buffer of the socket's: the floor of the two above.
//! * `pingpong N`: `N` round trips of a 64-byte message, both ends in one loop, each reading
//!   with buffered `recv(64)`. Prints microseconds per round trip.
//! * `--tls`: the connection is TLS (a fresh self-signed certificate for `localhost`).
//!
//! Compare builds and modes in the same run, not against other machines. `valgrind --tool=callgrind` counts its user-space instructions
//! exactly (`bench/README.md`, "Buffered reads").

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use asyncnet::{spawn, wait_for, wrap_connected_socket, AsyncSocket, HandshakeAs, TlsContext};
use asyncnet_bench::tls::certs::IdentityFiles;
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Recv,
    RecvInto,
    Loop,
    Pingpong,
}

#[derive(Parser, Debug)]
#[command(about = "Buffered reads by size, timed in one process")]
struct Cli {
    /// Over TLS.
    #[arg(long)]
    tls: bool,
    /// Reads of N bytes (not for pingpong).
    #[arg(long, default_value_t = 1)]
    reps: usize,
    mode: Mode,
    /// Bytes per read (recv, recv-into, loop) or round trips (pingpong).
    n: usize,
}

/// The reading end's listener, buffered unless `loop` is measured.
fn listener(cli: &Cli) -> io::Result<AsyncSocket> {
    let server = AsyncSocket::builder()
        .buffered(cli.mode != Mode::Loop)
        .build()?;
    server.bind_addr(0, "127.0.0.1")?;
    server.listen()?;
    Ok(server)
}

/// The certificate of `--tls`, as PEM: (chain, key).
type Identity = (Vec<u8>, Vec<u8>);

/// The writing end, on a thread and loop of its own (so that the time measured is the
/// reader's): connects, then `reps` sends of `n` bytes.
fn writer(cli: &Cli, port: u16, id: Option<Identity>) -> std::thread::JoinHandle<io::Result<()>> {
    let (n, reps) = (cli.n, cli.reps);
    std::thread::spawn(move || {
        wait_for(async move {
            let writer = asyncnet::dial("127.0.0.1", port).await?;
            if let Some((cert, _)) = id {
                let ctx = TlsContext::client_builder().add_root_pem(&cert).build()?;
                wrap_connected_socket(&ctx, &writer, HandshakeAs::Client, "localhost").await?;
            }
            let data = vec![7u8; n];
            for _ in 0..reps {
                writer.send(&data).await?;
            }
            writer.close()
        })
    })
}

async fn run(cli: Cli) -> io::Result<()> {
    let server = listener(&cli)?;
    let id = if cli.tls {
        let files = IdentityFiles::generate()?;
        Some((std::fs::read(&files.cert)?, std::fs::read(&files.key)?))
    } else {
        None
    };
    if cli.mode == Mode::Pingpong {
        return pingpong(&server, cli.n, id).await;
    }
    let writing = writer(&cli, server.local_addr()?.1, id.clone());
    let reader = server.accept().await?;
    if let Some((cert, key)) = &id {
        let ctx = TlsContext::server_builder(cert, key).build()?;
        wrap_connected_socket(&ctx, &reader, HandshakeAs::Server, "").await?;
    }
    let n = cli.n;
    let t = Instant::now();
    let reps = cli.reps;
    let mut buf = vec![0u8; if cli.mode == Mode::Recv { 0 } else { n }];
    for _ in 0..reps {
        let got = match cli.mode {
            Mode::Recv => reader.recv(n).await?.len(),
            Mode::RecvInto => reader.recv_into(&mut buf).await?,
            _ => {
                let mut filled = 0;
                while filled < n {
                    match reader.recv_into(&mut buf[filled..]).await? {
                        0 => break,
                        k => filled += k,
                    }
                }
                filled
            }
        };
        if got != n {
            return Err(io::Error::other(format!("read {got} bytes of {n}")));
        }
    }
    let dt = t.elapsed();
    join(writing)?;
    let total = (n * reps) as f64;
    println!(
        "{:?} {n} bytes x{reps}{}: {:.2} ms, {:.0} MB/s",
        cli.mode,
        if cli.tls { " (TLS)" } else { "" },
        dt.as_secs_f64() * 1e3,
        total / dt.as_secs_f64() / 1e6
    );
    Ok(())
}

/// `n` round trips of 64 bytes, both ends in this loop (each message's cost is CPU, not the
/// wake-up of another thread), each reading with buffered `recv(64)`.
async fn pingpong(server: &AsyncSocket, n: usize, id: Option<Identity>) -> io::Result<()> {
    let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    let echo = server.accept().await?;
    if let Some((cert, key)) = &id {
        let server_ctx = TlsContext::server_builder(cert, key).build()?;
        let client_ctx = TlsContext::client_builder().add_root_pem(cert).build()?;
        let e = echo.clone();
        let handshake = spawn(async move {
            wrap_connected_socket(&server_ctx, &e, HandshakeAs::Server, "").await
        });
        wrap_connected_socket(&client_ctx, &client, HandshakeAs::Client, "localhost").await?;
        handshake.await?;
    }
    let echoing = spawn(async move {
        loop {
            let m = echo.recv(64).await?;
            if m.is_empty() {
                return Ok::<(), io::Error>(());
            }
            echo.send(m).await?;
        }
    });
    let msg = [7u8; 64];
    let t = Instant::now();
    for _ in 0..n {
        client.send(&msg[..]).await?;
        if client.recv(64).await?.len() != 64 {
            return Err(io::Error::other("the echo ended early"));
        }
    }
    let dt = t.elapsed();
    client.close()?;
    echoing.await?;
    println!(
        "pingpong {n}: {:.2} µs per round trip",
        dt.as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}

fn join(writing: std::thread::JoinHandle<io::Result<()>>) -> io::Result<()> {
    writing
        .join()
        .map_err(|_| io::Error::other("the writer panicked"))?
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match wait_for(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("buffered_reads: {e}");
            ExitCode::FAILURE
        }
    }
}
