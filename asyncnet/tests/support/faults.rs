//! The fault matrix's harness (`tests/fault_matrix.rs`): the operations and faults, the far
//! end of a connection (a blocking std stream, plain or TLS through rustls by hand), reads
//! that collect everything up to the end, the control connection that must keep working
//! while a cell runs, and the process's descriptor count.
//!
//! Include with `#[path = "support/faults.rs"] mod faults;` next to `mod support;` and
//! `#[path = "support/tls.rs"] mod tls_support;`.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncnet::TlsContext;
use asyncnet::{rustls, sleep_async, spawn, wrap_connected_socket, AsyncSocket, HandshakeAs};

use crate::support::{finish, pair, put, reset, std_peer, Family};
use crate::tls_support::{
    join_thread, plain_listener, port_of, raw_client, raw_client_config, Pki,
};

/// The operations of the matrix (rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Accept,
    Connect,
    Dial,
    Send,
    Recv,
    RecvInto,
    RecvLine,
    RecvFrom,
    TlsHandshake,
    /// `recv_line` and `send` on a TLS connection after its handshake.
    TlsReadWrite,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Accept,
        Op::Connect,
        Op::Dial,
        Op::Send,
        Op::Recv,
        Op::RecvInto,
        Op::RecvLine,
        Op::RecvFrom,
        Op::TlsHandshake,
        Op::TlsReadWrite,
    ];

    /// Whether the op's connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Op::TlsHandshake | Op::TlsReadWrite)
    }

    /// Whether the op reads lines (what it returns is compared line by line).
    pub fn lines(self) -> bool {
        matches!(self, Op::RecvLine | Op::TlsReadWrite)
    }
}

/// The faults of the matrix (columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    ResetBefore,
    ResetMid,
    ResetAfter,
    HalfClose,
    LocalClose,
    Dropped,
    Emfile,
    StopsReading,
    Slowloris,
    Garbage,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::ResetBefore,
        Fault::ResetMid,
        Fault::ResetAfter,
        Fault::HalfClose,
        Fault::LocalClose,
        Fault::Dropped,
        Fault::Emfile,
        Fault::StopsReading,
        Fault::Slowloris,
        Fault::Garbage,
    ];
}

/// How long a fault waits for the loop to reach the state it needs (a read parked, a reset
/// arrived): only a pause on loopback, never a bound on anything.
pub const BEAT: Duration = Duration::from_millis(20);

pub fn other(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

/// `n` numbered lines from `from` on, `LINE` bytes each.
pub fn lines(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .flat_map(|i| format!("line {i:04}\n").into_bytes())
        .collect()
}

/// Bytes of one of [`lines`].
pub const LINE: usize = 10;

thread_local! {
    static PKI: Pki = Pki::new();
}

/// A server context of the test PKI with the default handshake timeout.
pub fn server_ctx() -> TlsContext {
    PKI.with(|p| p.server_ctx())
}

/// A server context of the test PKI whose handshake timeout is short
/// ([`HANDSHAKE_TIMEOUT`]), for the cells of stalled handshakes.
pub fn impatient_server_ctx() -> TlsContext {
    PKI.with(|p| {
        TlsContext::server_builder(p.server.cert_pem.as_bytes(), p.server.key_pem.as_bytes())
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .build()
            .expect("server context")
    })
}

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// A rustls client configuration trusting the test PKI.
pub fn client_config() -> std::sync::Arc<rustls::ClientConfig> {
    PKI.with(|p| raw_client_config(&p.ca, false, None))
}

/// The test PKI's ClientHello for `localhost`.
pub fn client_hello() -> Vec<u8> {
    PKI.with(|p| crate::tls_support::client_hello(&p.ca, "localhost"))
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The far end of a connection under test: blocking, plain or TLS (rustls by hand).
pub enum Peer {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Peer {
    /// Write `bytes` now (TLS: as records).
    pub fn write(&mut self, bytes: &[u8]) {
        match self {
            Peer::Plain(s) => put(s, bytes),
            Peer::Tls(s) => {
                s.write_all(bytes).expect("peer write");
                s.flush().expect("peer flush");
            }
        }
    }

    /// End the sending side cleanly (TLS: close_notify first), still able to read.
    pub fn finish(&mut self) {
        if let Peer::Tls(s) = self {
            s.conn.send_close_notify();
            s.flush().expect("close_notify");
        }
        finish(self.tcp());
    }

    /// Close with a reset (`SO_LINGER` 0).
    pub fn reset(self) {
        match self {
            Peer::Plain(s) => reset(s),
            Peer::Tls(s) => reset(s.sock),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Peer::Plain(s) => s,
            Peer::Tls(s) => &s.sock,
        }
    }

    /// Read until `n` bytes have come (or the end, or an error).
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        let mut have = 0;
        while have < n {
            let got = match self {
                Peer::Plain(s) => s.read(&mut out[have..]),
                Peer::Tls(s) => s.read(&mut out[have..]),
            };
            match got {
                Ok(0) | Err(_) => break,
                Ok(k) => have += k,
            }
        }
        out.truncate(have);
        out
    }
}

/// A connection: `(peer, ours)`, ours buffered; TLS (ours the server, handshake done) if `tls`.
pub async fn connected(tls: bool) -> io::Result<(Peer, AsyncSocket)> {
    if !tls {
        let (peer, ours) = std_peer(Family::V4, true).await?;
        return Ok((Peer::Plain(peer), ours));
    }
    let listener = plain_listener()?;
    let port = port_of(&listener);
    let config = client_config();
    let client = std::thread::spawn(move || raw_client(config, "localhost", port));
    let ours = listener.accept().await?;
    wrap_connected_socket(&server_ctx(), &ours, HandshakeAs::Server, "").await?;
    let peer = join_thread(client).await?;
    Ok((Peer::Tls(Box::new(peer)), ours))
}

/// One read by `op` of one line's worth: `None` at the end of the stream.
pub async fn read_once(op: Op, s: &AsyncSocket) -> io::Result<Option<Vec<u8>>> {
    match op {
        Op::Recv => Ok(Some(s.recv(LINE).await?).filter(|v| !v.is_empty())),
        Op::RecvInto => {
            let mut buf = vec![0; LINE];
            let n = s.recv_into(&mut buf).await?;
            buf.truncate(n);
            Ok(Some(buf).filter(|v| !v.is_empty()))
        }
        _ => Ok(s.recv_line().await?.map(|l| (l + "\n").into_bytes())),
    }
}

/// Reads by `op` until the end: what came, and how it ended (`Ok`: a clean end of stream).
pub async fn read_to_end(op: Op, s: &AsyncSocket) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    loop {
        match read_once(op, s).await {
            Ok(Some(bytes)) => got.extend(bytes),
            Ok(None) => return (got, Ok(())),
            Err(e) => return (got, Err(e)),
        }
    }
}

/// What `op` hands over of `sent`: the bytes, or for line reads each line with `\n`.
pub fn as_read(op: Op, sent: &[u8]) -> Vec<u8> {
    if !op.lines() {
        return sent.to_vec();
    }
    let text = String::from_utf8(sent.to_vec()).expect("test lines are text");
    text.lines()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

/// Checks that `got` is exactly what `op` hands over of `sent`.
pub fn same(op: Op, got: &[u8], sent: &[u8]) -> io::Result<()> {
    let want = as_read(op, sent);
    if got == want {
        return Ok(());
    }
    Err(other(format!(
        "{op:?} read {} bytes, {:.60?}..., want {} bytes, {:.60?}...",
        got.len(),
        String::from_utf8_lossy(got),
        want.len(),
        String::from_utf8_lossy(&want)
    )))
}

/// Checks that `r` failed with `kind`.
pub fn failed_with<T: std::fmt::Debug>(r: io::Result<T>, kind: io::ErrorKind) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        other_result => Err(other(format!("want {kind:?}, got {other_result:?}"))),
    }
}

/// How a stream read by `op` ends when the peer resets: end of stream for plain sockets
/// (`SAFE_DISCONN`), `UnexpectedEof` (truncation) for TLS.
pub fn reset_end(op: Op, end: io::Result<()>) -> io::Result<()> {
    if op.tls() {
        failed_with(end, io::ErrorKind::UnexpectedEof)
    } else {
        end
    }
}

async fn round_trip(s: &AsyncSocket, line: &str) -> io::Result<()> {
    s.send(format!("{line}\n")).await?;
    match s.recv_line().await? {
        Some(l) if l == line => Ok(()),
        got => Err(other(format!("control: sent {line:?}, got {got:?}"))),
    }
}

/// Runs `cell` beside a control connection of the same loop (an echo server task and a
/// client doing round trips every 2 ms): the control must make progress while a cell that
/// waits runs (over 100 ms), and still answer after it.
pub async fn with_control(cell: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    let (client, server) = pair(Family::V4, true).await?;
    let echo = spawn(async move {
        while let Some(l) = server.recv_line().await? {
            server.send(l + "\n").await?;
        }
        io::Result::Ok(())
    });
    let (rounds, stop) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(false)));
    let (c, r, s) = (client.clone(), rounds.clone(), stop.clone());
    let pinger = spawn(async move {
        while !s.get() {
            round_trip(&c, "ping").await?;
            r.set(r.get() + 1);
            sleep_async(Duration::from_millis(2)).await;
        }
        io::Result::Ok(())
    });
    let start = Instant::now();
    let result = cell.await;
    let (took, during) = (start.elapsed(), rounds.get());
    stop.set(true);
    pinger.await?;
    result?;
    round_trip(&client, "after the cell").await?;
    if took > Duration::from_millis(100) && during == 0 {
        return Err(other(format!(
            "the control connection made no progress in the cell's {took:?}"
        )));
    }
    client.close()?;
    echo.await
}

/// Write `bytes` one at a time, `gap` apart (TLS: one record each), then end the stream.
pub fn trickle(mut peer: Peer, bytes: Vec<u8>, gap: Duration) -> std::thread::JoinHandle<Peer> {
    std::thread::spawn(move || {
        for b in bytes {
            peer.write(&[b]);
            std::thread::sleep(gap);
        }
        peer.finish();
        peer
    })
}

/// Half-close for a plain std stream.
pub fn shut_write(s: &TcpStream) {
    s.shutdown(Shutdown::Write).expect("shutdown");
}
