//! The fault matrix: every operation (accept, connect, dial, send, recv, recv_into,
//! recv_line, recv_from, TLS handshake, TLS read/write) under every fault (peer reset before,
//! mid and after, half-close, local close while pending, the future dropped mid-operation,
//! EMFILE, a peer that stops reading, slowloris, garbage), on loopback, through one harness.
//!
//! Each cell asserts the documented result (the exact outcome or error kind), that no byte
//! that arrived is lost, that a control connection on the same loop keeps working while the
//! cell runs and after it ([`faults::with_control`]), and that the process's descriptor count
//! is back where it started. Cells that cannot apply say why in [`not_applicable`]; the
//! EMFILE cells run in a child process of this test (`RLIMIT_NOFILE` is process-wide). The
//! table with what each cell asserts is in `RELIABILITY.md`.
//!
//! One test runs the whole matrix on one thread, so that descriptor counts are exact; it
//! reports every failing cell, not only the first. Linux and Windows: it counts descriptors
//! or handles (`support::open_descriptors`).
//!
//! # Portability
//! On Windows the EMFILE cells do not apply (no per-process descriptor limit to run out
//! of), and under Wine 8 neither do accept after a reset before it nor a reset right after
//! a connect (see [`not_applicable`] for what Wine does there).
#![cfg(any(target_os = "linux", windows))]

#[macro_use]
mod support;
#[path = "support/faults.rs"]
mod faults;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use asyncnet::{
    dial, rustls, sleep_async, spawn, with_timeout, wrap_connected_socket, wrap_socket,
    AsyncSocket, DatagramTruncated, HandshakeAs, InvalidUtf8Line, LineTooLong, MAX_LINE_LENGTH,
};
use faults::*;
use support::{closed_port, put, reset, run, std_peer, udp_bound, udp_socket, Family};
use tls_support::{drain, join_thread, plain_listener, port_of};
use Fault::*;
use Op::*;

const TEST_NAME: &str = "every_operation_under_every_fault_gives_its_documented_result";
/// Set in the child's environment: run the EMFILE cells.
const EMFILE_CHILD: &str = "ASYNCNET_FAULT_MATRIX_EMFILE_CHILD";

/// Why a cell does not apply, or `None` if it runs.
fn not_applicable(op: Op, fault: Fault) -> Option<&'static str> {
    if cfg!(windows) && fault == Emfile {
        return Some("Windows has no per-process descriptor limit (RLIMIT_NOFILE) to run out of");
    }
    if support::under_wine() {
        match (op, fault) {
            (Accept, ResetBefore | ResetMid) => {
                return Some(
                    "under Wine 8 accept does not hand over a connection reset before it \
                     is taken (the cell relies on Linux's TCP doing so)",
                )
            }
            (Connect | Dial, ResetAfter) => {
                return Some(
                    "under Wine 8 a reset that comes right after the connect can leave the \
                     first read waiting forever (seen: no readiness is reported)",
                )
            }
            _ => {}
        }
    }
    Some(match (op, fault) {
        (Send | Recv | RecvInto | RecvLine | RecvFrom | TlsReadWrite, Emfile) => {
            "opens no descriptor"
        }
        (Recv | RecvInto | RecvLine | RecvFrom, StopsReading) => {
            "a peer that does not read stalls our sends, not our reads (Send x StopsReading)"
        }
        (Send, Garbage) => "send writes the caller's bytes; bytes from the peer are the reads' cells",
        (Accept, StopsReading) => "accept neither reads nor writes",
        (Accept, Garbage) => {
            "plain accept reads nothing; garbage to a TLS accept is TlsHandshake x Garbage"
        }
        (Connect | Dial, ResetMid) => {
            "the kernel completes the TCP handshake; a reset after it is ResetAfter"
        }
        (Connect | Dial, StopsReading | Slowloris | Garbage) => {
            "connect ends with the TCP handshake; what the server then sends or reads is the reads' and sends' cells"
        }
        (Dial, LocalClose) => {
            "dial's socket is not the caller's until it returns; dropping the future (Dropped) stops it"
        }
        (RecvFrom, ResetBefore | ResetMid | ResetAfter | HalfClose) => {
            "UDP has no connection to reset or half-close"
        }
        (RecvFrom, Slowloris) => "a datagram arrives whole or not at all",
        _ => return None,
    })
}

#[test]
fn every_operation_under_every_fault_gives_its_documented_result() {
    let emfile_child = std::env::var_os(EMFILE_CHILD).is_some();
    big();
    // What the first cell would otherwise count as its own: the loop's descriptors (poller,
    // waker) and whatever the first connection made lazily.
    run(with_control(async { Ok(()) }));
    // `ASYNCNET_FAULT_MATRIX_ONLY="Op x Fault"`: run that cell only (while debugging one).
    let only = std::env::var("ASYNCNET_FAULT_MATRIX_ONLY").ok();
    #[cfg(unix)]
    if emfile_child {
        limit_descriptors(64);
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for op in Op::ALL {
        for fault in Fault::ALL {
            if not_applicable(op, fault).is_some()
                || (fault == Emfile) != emfile_child
                || only
                    .as_ref()
                    .is_some_and(|o| *o != format!("{op:?} x {fault:?}"))
            {
                continue;
            }
            ran += 1;
            // At once on Linux; on Windows once the loop has let closed sockets go.
            let before = asyncnet::wait_for(support::open_descriptors_at_rest());
            let r = std::panic::catch_unwind(|| run(with_control(cell(op, fault))));
            let after = asyncnet::wait_for(support::open_descriptors_settled(before));
            match r {
                Err(p) => failures.push(format!(
                    "{op:?} x {fault:?}: {}",
                    support::panic_message(&*p)
                )),
                Ok(()) if after != before => failures.push(format!(
                    "{op:?} x {fault:?}: {before} descriptors before, {after} after"
                )),
                Ok(()) => {}
            }
        }
    }
    if cfg!(unix) && !emfile_child && only.is_none() {
        match emfile_cells_in_a_child() {
            Ok(n) => ran += n,
            Err(e) => failures.push(format!("the EMFILE cells: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{ran} cells passed");
}

/// Runs this test again as a child whose descriptors are limited, running the EMFILE cells
/// only; returns how many passed.
#[cfg_attr(windows, allow(dead_code))]
fn emfile_cells_in_a_child() -> Result<usize, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(EMFILE_CHILD, "1")
        .output()
        .map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("child failed ({}):\n{text}", out.status));
    }
    // libtest prints the test's name on the same line.
    text.lines()
        .find_map(|l| {
            l.strip_suffix(" cells passed")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no count in the child's output:\n{text}"))
}

/// Lowers `RLIMIT_NOFILE` so that only about `slots` more descriptors can be opened.
#[cfg(unix)]
fn limit_descriptors(slots: libc::rlim_t) {
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::rlim_t>().ok())
        .max()
        .unwrap_or(0);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = highest + 1 + slots;
    // SAFETY: `lim` is a valid rlimit that setrlimit only reads.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(r, 0, "setrlimit: {}", io::Error::last_os_error());
}

/// Opens `/dev/null` until the process is out of descriptors (`EMFILE`); dropping the files
/// frees them.
#[cfg(unix)]
fn exhaust() -> Vec<std::fs::File> {
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return files;
            }
        }
    }
}

/// One cell.
async fn cell(op: Op, fault: Fault) -> io::Result<()> {
    match (op, fault) {
        (_, Emfile) => emfile_cell(op).await,
        (Recv | RecvInto | RecvLine, _) | (TlsReadWrite, _) if fault != StopsReading => {
            read_cell(op, fault).await
        }
        (Send, _) => send_cell(false, fault).await,
        (TlsReadWrite, _) => send_cell(true, fault).await,
        (Accept, _) => accept_cell(fault).await,
        (Connect | Dial, _) => connect_cell(op, fault).await,
        (RecvFrom, _) => recv_from_cell(fault).await,
        (TlsHandshake, _) => handshake_cell(fault).await,
        _ => unreachable!("{op:?} x {fault:?} does not apply"),
    }
}

/// Expects a future dropped by `with_timeout` while still pending.
fn was_pending<T: std::fmt::Debug>(r: Result<T, asyncnet::Elapsed>) -> io::Result<()> {
    match r {
        Err(_) => Ok(()),
        Ok(v) => Err(other(format!(
            "the operation was to be pending, it gave {v:?}"
        ))),
    }
}

/// Recv, RecvInto, RecvLine, and TLS reads (`recv_line`).
async fn read_cell(op: Op, fault: Fault) -> io::Result<()> {
    let (mut peer, ours) = connected(op.tls()).await?;
    match fault {
        ResetBefore => {
            let sent = lines(0, 3);
            peer.write(&sent);
            peer.reset();
            sleep_async(BEAT).await;
            let (got, end) = read_to_end(op, &ours).await;
            same(op, &got, &sent)?;
            reset_end(op, end)
        }
        ResetMid => {
            let s = ours.clone();
            let reader = spawn(async move { io::Result::Ok(read_to_end(op, &s).await) });
            sleep_async(BEAT).await;
            let sent = b"line 0000\nline 00";
            peer.write(sent);
            sleep_async(BEAT).await;
            peer.reset();
            let (got, end) = reader.await?;
            if !op.tls() {
                // The partial line is the last one.
                same(op, &got, sent)?;
                return end;
            }
            // TLS: the truncation is an error; what arrived of the last line stays buffered.
            same(op, &got, &sent[..LINE])?;
            reset_end(op, end)?;
            match ours.recv(sent.len() - LINE).await? == sent[LINE..] {
                true => Ok(()),
                false => Err(other("the partial line's bytes are not buffered")),
            }
        }
        ResetAfter => {
            let sent = lines(0, 2);
            peer.write(&sent);
            let mut got = read_once(op, &ours).await?.unwrap_or_default();
            got.extend(read_once(op, &ours).await?.unwrap_or_default());
            same(op, &got, &sent)?;
            peer.reset();
            sleep_async(BEAT).await;
            let (rest, end) = read_to_end(op, &ours).await;
            same(op, &rest, b"")?;
            reset_end(op, end)
        }
        HalfClose => {
            let sent = lines(0, 3);
            peer.write(&sent);
            peer.finish();
            let (got, end) = read_to_end(op, &ours).await;
            same(op, &got, &sent)?;
            end?;
            // Our side still sends.
            ours.send("reply\n").await?;
            ours.flush().await?;
            let reply = join_thread(std::thread::spawn(move || peer.read_n(6))).await;
            if reply != b"reply\n" {
                return Err(other(format!(
                    "after the half-close the peer got {reply:?}"
                )));
            }
            Ok(())
        }
        LocalClose => {
            let s = ours.clone();
            let reader = spawn(async move { read_once(op, &s).await });
            sleep_async(BEAT).await;
            ours.close()?;
            failed_with(reader.await, io::ErrorKind::NotConnected)
        }
        Dropped => {
            let sent = lines(0, 3);
            peer.write(&sent[..5]);
            was_pending(with_timeout(read_once(op, &ours), BEAT).await)?;
            peer.write(&sent[5..]);
            peer.finish();
            let (got, end) = read_to_end(op, &ours).await;
            same(op, &got, &sent)?;
            end
        }
        Slowloris => {
            let sent = lines(0, 4);
            let trickler = trickle(peer, sent.clone(), Duration::from_millis(3));
            let (got, end) = read_to_end(op, &ours).await;
            drop(join_thread(trickler).await);
            same(op, &got, &sent)?;
            end
        }
        Garbage if op.tls() => {
            // An application-data record whose authentication cannot hold.
            put(
                &mut peer.tcp().try_clone()?,
                &[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5],
            );
            let e = ours.recv_line().await.expect_err("a corrupt record");
            match (e.kind(), tls_support::source::<rustls::Error>(&e)) {
                (io::ErrorKind::InvalidData, Some(_)) => Ok(()),
                _ => Err(other(format!("a corrupt record gave {e:?}"))),
            }
        }
        Garbage if op.lines() => {
            peer.write(b"ok 1\n\xff\xfe bad\nok 2\n");
            let long = [vec![b'x'; MAX_LINE_LENGTH + 1], b"\n".to_vec()].concat();
            peer.write(&long);
            peer.finish();
            expect_line(&ours, "ok 1").await?;
            let e = ours.recv_line().await.expect_err("not UTF-8");
            match support::source_of::<InvalidUtf8Line>(&e) {
                Some(bad) if bad.bytes == b"\xff\xfe bad" => {}
                _ => return Err(other(format!("invalid UTF-8 gave {e:?}"))),
            }
            expect_line(&ours, "ok 2").await?;
            let e = ours.recv_line().await.expect_err("too long");
            if support::source_of::<LineTooLong>(&e).is_none() {
                return Err(other(format!("an over-long line gave {e:?}")));
            }
            // Its bytes stay buffered, every one.
            if ours.recv(long.len()).await? != long {
                return Err(other("the over-long line's bytes differ"));
            }
            expect_end(&ours).await
        }
        Garbage => {
            let sent: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
            peer.write(&sent);
            peer.finish();
            let (got, end) = read_to_end(op, &ours).await;
            same(op, &got, &sent)?;
            end
        }
        Emfile | StopsReading => unreachable!(),
    }
}

async fn expect_line(s: &AsyncSocket, want: &str) -> io::Result<()> {
    match s.recv_line().await? {
        Some(l) if l == want => Ok(()),
        got => Err(other(format!("want line {want:?}, got {got:?}"))),
    }
}

async fn expect_end(s: &AsyncSocket) -> io::Result<()> {
    match s.recv_line().await? {
        None => Ok(()),
        got => Err(other(format!("want the end of the stream, got {got:?}"))),
    }
}

fn disconnected(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        r => Err(other(format!(
            "want BrokenPipe or ConnectionReset, got {r:?}"
        ))),
    }
}

/// More than loopback's socket buffers hold: a send of it waits for the peer to read.
const BIG: usize = 32 << 20;

/// [`BIG`] bytes that a lost, repeated or misplaced chunk cannot reproduce (a counter), made
/// once (before the first cell: making them takes a while in a debug build).
fn big() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| (0..BIG as u32 / 4).flat_map(u32::to_le_bytes).collect())
}

/// The peer reads `n` bytes in a thread (slowly if `chunk` is small), then returns them.
fn reader(
    mut peer: Peer,
    n: usize,
    chunk: usize,
    gap: Duration,
) -> std::thread::JoinHandle<(Vec<u8>, Peer)> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n {
            let part = peer.read_n(chunk.min(n - got.len()));
            if part.is_empty() {
                break;
            }
            got.extend(part);
            std::thread::sleep(gap);
        }
        (got, peer)
    })
}

/// Send, and TLS writes (StopsReading).
async fn send_cell(tls: bool, fault: Fault) -> io::Result<()> {
    let (peer, ours) = connected(tls).await?;
    let big = &big()[..if tls { 8 << 20 } else { BIG }];
    match fault {
        ResetBefore => {
            peer.reset();
            if !ours.recv(1).await?.is_empty() {
                return Err(other("the reset is the end of the stream"));
            }
            // Coalesced: the send completes; writing finds the peer gone, and says so.
            ours.send("into the void").await?;
            disconnected(ours.flush().await)?;
            failed_with(ours.send("again").await, io::ErrorKind::BrokenPipe)
        }
        ResetMid => {
            let s = ours.clone();
            let sender = spawn(async move { s.send(big).await });
            sleep_async(BEAT).await;
            let (_, peer) = join_thread(reader(peer, 64 << 10, 64 << 10, Duration::ZERO)).await;
            peer.reset();
            // SAFE_DISCONN: the send ends, the socket records the disconnection.
            sender.await?;
            if !ours.is_disconnected() {
                return Err(other("the socket does not know the peer is gone"));
            }
            failed_with(ours.send("x").await, io::ErrorKind::BrokenPipe)
        }
        ResetAfter => {
            let sent = &big[..256 << 10];
            let r = reader(peer, sent.len(), 64 << 10, Duration::ZERO);
            ours.send(sent).await?;
            ours.flush().await?;
            let (got, peer) = join_thread(r).await;
            if got != sent {
                return Err(other(format!(
                    "the peer got {} of {} bytes",
                    got.len(),
                    sent.len()
                )));
            }
            peer.reset();
            if !ours.recv(1).await?.is_empty() {
                return Err(other("the reset is the end of the stream"));
            }
            ours.send("late").await?;
            disconnected(ours.flush().await)
        }
        HalfClose => {
            shut_write(peer.tcp());
            expect_end(&ours).await?;
            let r = reader(peer, big.len(), 1 << 20, Duration::ZERO);
            ours.send(&big).await?;
            ours.flush().await?;
            if join_thread(r).await.0 != big {
                return Err(other(
                    "after the peer's half-close it did not get every byte",
                ));
            }
            Ok(())
        }
        LocalClose => {
            let s = ours.clone();
            let sender = spawn(async move { s.send(big).await });
            sleep_async(BEAT).await;
            ours.close()?;
            failed_with(sender.await, io::ErrorKind::NotConnected)?;
            let tcp = peer.tcp().try_clone()?;
            let got = join_thread(std::thread::spawn(move || drain(&tcp))).await;
            // What went out is a clean prefix of the message.
            if got.is_empty() || got[..] != big[..got.len()] {
                return Err(other(format!(
                    "the peer got {} bytes, not a prefix",
                    got.len()
                )));
            }
            Ok(())
        }
        Dropped => {
            was_pending(with_timeout(ours.send(big), BEAT).await)?;
            let r = reader(peer, big.len(), 1 << 20, Duration::ZERO);
            ours.flush().await?;
            // The dropped send still delivers its whole message.
            if join_thread(r).await.0 != big {
                return Err(other("a dropped send lost or tore its message"));
            }
            Ok(())
        }
        StopsReading => {
            let s = ours.clone();
            let sender = spawn(async move { s.send(big).await });
            sleep_async(Duration::from_millis(150)).await;
            if sender.is_finished() {
                return Err(other("the send did not wait for a peer that does not read"));
            }
            let r = reader(peer, big.len(), 1 << 20, Duration::ZERO);
            sender.await?;
            ours.flush().await?;
            if join_thread(r).await.0 != big {
                return Err(other("the peer that read late did not get every byte"));
            }
            Ok(())
        }
        Slowloris => {
            let n = 8 << 20;
            let r = reader(peer, n, 32 << 10, Duration::from_micros(500));
            ours.send(&big[..n]).await?;
            ours.flush().await?;
            if join_thread(r).await.0 != big[..n] {
                return Err(other("the slow reader did not get every byte"));
            }
            Ok(())
        }
        Garbage | Emfile => unreachable!(),
    }
}

/// A blocking client of `port`, `TCP_NODELAY`.
fn client(port: u16) -> io::Result<TcpStream> {
    let c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_nodelay(true)?;
    Ok(c)
}

/// Sends a line from `c` and expects it on `accepted`.
async fn serves(accepted: &AsyncSocket, c: &mut TcpStream) -> io::Result<()> {
    put(c, b"good\n");
    expect_line(accepted, "good").await
}

async fn accept_cell(fault: Fault) -> io::Result<()> {
    let listener = plain_listener()?;
    let port = port_of(&listener);
    match fault {
        ResetBefore => {
            reset(client(port)?);
            let mut good = client(port)?;
            sleep_async(BEAT).await;
            // The kernel hands the reset connection over: its first read is the end.
            let first = listener.accept().await?;
            expect_end(&first).await?;
            serves(&listener.accept().await?, &mut good).await
        }
        ResetMid => {
            // A wrapped listener: the client resets mid-handshake, accept skips it.
            wrap_socket(&server_ctx(), &listener)?;
            let mut bad = client(port)?;
            put(&mut bad, &client_hello()[..60]);
            reset(bad);
            let config = client_config();
            let good = std::thread::spawn(move || {
                let mut s = tls_support::raw_client(config, "localhost", port)?;
                std::io::Write::write_all(&mut s, b"good\n")?;
                std::io::Write::flush(&mut s)?;
                io::Result::Ok(s)
            });
            let accepted = listener.accept().await?;
            let _good = join_thread(good).await?;
            expect_line(&accepted, "good").await?;
            match listener.take_accept_error() {
                Some(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
                e => Err(other(format!("the skipped handshake's error: {e:?}"))),
            }
        }
        ResetAfter => {
            let c = client(port)?;
            let first = listener.accept().await?;
            reset(c);
            expect_end(&first).await?;
            let mut good = client(port)?;
            serves(&listener.accept().await?, &mut good).await
        }
        HalfClose => {
            let mut c = client(port)?;
            put(&mut c, b"hello\n");
            shut_write(&c);
            let a = listener.accept().await?;
            expect_line(&a, "hello").await?;
            expect_end(&a).await?;
            a.send("bye\n").await?;
            a.flush().await?;
            let mut got = [0u8; 4];
            c.read_exact(&mut got)?;
            (got == *b"bye\n")
                .then_some(())
                .ok_or_else(|| other("no reply after the half-close"))
        }
        LocalClose => {
            let l = listener.clone();
            let accepting = spawn(async move { l.accept().await });
            sleep_async(BEAT).await;
            listener.close()?;
            failed_with(accepting.await, io::ErrorKind::NotConnected)
        }
        Dropped => {
            was_pending(with_timeout(listener.accept(), BEAT).await)?;
            let mut good = client(port)?;
            serves(&listener.accept().await?, &mut good).await
        }
        Slowloris => {
            // A client that never speaks does not hold accept: it comes, and the next one.
            let silent = client(port)?;
            let mut good = client(port)?;
            let first = listener.accept().await?;
            if first.peer_socket_addr()? != silent.local_addr()? {
                return Err(other("accept did not hand over the silent client first"));
            }
            serves(&listener.accept().await?, &mut good).await
        }
        _ => unreachable!(),
    }
}

/// Connects to `port` by `op` (`connect` on a new socket, or `dial`).
async fn open(op: Op, port: u16) -> io::Result<AsyncSocket> {
    if op == Dial {
        return dial("127.0.0.1", port).await;
    }
    let s = AsyncSocket::new()?;
    s.connect("127.0.0.1", port).await?;
    Ok(s)
}

/// A listener whose accept queue is full (backlog 0, one connection in it): a new connect
/// stays pending (the kernel drops its SYN).
fn full_listener() -> io::Result<(socket2::Socket, TcpStream, u16)> {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    l.listen(0)?;
    let port = l.local_addr()?.as_socket().expect("inet").port();
    let filler = client(port)?;
    Ok((l, filler, port))
}

async fn connect_cell(op: Op, fault: Fault) -> io::Result<()> {
    match fault {
        ResetBefore => failed_with(
            open(op, closed_port(Family::V4)).await,
            io::ErrorKind::ConnectionRefused,
        ),
        ResetAfter | HalfClose => {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let port = l.local_addr()?.port();
            let half = fault == HalfClose;
            // The reset comes once our side has seen the connection made: before it, the
            // connect itself would fail with it (a race on a busy machine, not this cell).
            let (opened, wait_opened) = std::sync::mpsc::channel::<()>();
            let server = std::thread::spawn(move || {
                let (mut c, _) = l.accept()?;
                if !half {
                    let _ = wait_opened.recv();
                    reset(c);
                    return io::Result::Ok(Vec::new());
                }
                put(&mut c, b"hello\n");
                shut_write(&c);
                Ok(drain(&c))
            });
            let s = open(op, port).await;
            let _ = opened.send(());
            let s = s?;
            if half {
                expect_line(&s, "hello").await?;
            }
            expect_end(&s).await?;
            if half {
                s.send("bye\n").await?;
                s.close()?;
            }
            let got = join_thread(server).await?;
            if got != (if half { &b"bye\n"[..] } else { b"" }) {
                return Err(other(format!("the server got {got:?}")));
            }
            Ok(())
        }
        LocalClose => {
            let (_l, _filler, port) = full_listener()?;
            let s = AsyncSocket::new()?;
            let c = s.clone();
            let connecting = spawn(async move { c.connect("127.0.0.1", port).await });
            sleep_async(BEAT).await;
            if connecting.is_finished() {
                return Err(other("the connect to a full accept queue did not wait"));
            }
            s.close()?;
            failed_with(connecting.await, io::ErrorKind::NotConnected)
        }
        Dropped => {
            let (_l, _filler, port) = full_listener()?;
            if op == Dial {
                // dial closes the socket it had opened.
                return was_pending(with_timeout(dial("127.0.0.1", port), BEAT).await);
            }
            let s = AsyncSocket::new()?;
            was_pending(with_timeout(s.connect("127.0.0.1", port), BEAT).await)?;
            s.close()
        }
        _ => unreachable!(),
    }
}

async fn recv_from_cell(fault: Fault) -> io::Result<()> {
    let ours = udp_bound(Family::V4)?;
    let port = ours.local_addr()?.1;
    let them = udp_socket(Family::V4)?;
    match fault {
        LocalClose => {
            let s = ours.clone();
            let receiving = spawn(async move { s.recv_from(64).await });
            sleep_async(BEAT).await;
            ours.close()?;
            failed_with(receiving.await, io::ErrorKind::NotConnected)
        }
        Dropped => {
            was_pending(with_timeout(ours.recv_from(64), BEAT).await)?;
            them.send_to("127.0.0.1", port, "one").await?;
            let (data, _, from) = ours.recv_from(64).await?;
            if data != b"one" || from != them.local_addr()?.1 {
                return Err(other(format!(
                    "after a dropped recv_from: {data:?} from {from}"
                )));
            }
            Ok(())
        }
        Garbage => {
            them.send_to("127.0.0.1", port, [7u8; 100]).await?;
            them.send_to("127.0.0.1", port, b"").await?;
            them.send_to("127.0.0.1", port, "ok").await?;
            let e = ours.recv_from(8).await.expect_err("a datagram over `size`");
            match support::source_of::<DatagramTruncated>(&e) {
                Some(t) if e.kind() == io::ErrorKind::InvalidData && t.data == [7u8; 8] => {}
                _ => return Err(other(format!("an over-long datagram gave {e:?}"))),
            }
            if !ours.recv_from(64).await?.0.is_empty() {
                return Err(other("the empty datagram is not empty"));
            }
            match ours.recv_from(64).await?.0 == b"ok" {
                true => Ok(()),
                false => Err(other("the datagram after the garbage differs")),
            }
        }
        _ => unreachable!(),
    }
}

/// Our server-side handshake on `ours`; with a short timeout (300 ms) if `impatient`.
async fn handshake(ours: &AsyncSocket, impatient: bool) -> io::Result<()> {
    let ctx = if impatient {
        impatient_server_ctx()
    } else {
        server_ctx()
    };
    wrap_connected_socket(&ctx, ours, HandshakeAs::Server, "").await
}

async fn handshake_cell(fault: Fault) -> io::Result<()> {
    if fault == ResetAfter {
        let (peer, ours) = connected(true).await?;
        peer.reset();
        sleep_async(BEAT).await;
        return failed_with(ours.recv_line().await, io::ErrorKind::UnexpectedEof);
    }
    let (mut peer, ours) = std_peer(Family::V4, true).await?;
    let hello = client_hello();
    match fault {
        ResetBefore => {
            reset(peer);
            sleep_async(BEAT).await;
            failed_with(handshake(&ours, false).await, io::ErrorKind::UnexpectedEof)
        }
        ResetMid => {
            put(&mut peer, &hello[..60]);
            reset(peer);
            failed_with(handshake(&ours, false).await, io::ErrorKind::UnexpectedEof)
        }
        HalfClose => {
            put(&mut peer, &hello);
            shut_write(&peer);
            failed_with(handshake(&ours, false).await, io::ErrorKind::UnexpectedEof)
        }
        LocalClose => {
            let s = ours.clone();
            let shaking = spawn(async move { handshake(&s, false).await });
            sleep_async(BEAT).await;
            ours.close()?;
            failed_with(shaking.await, io::ErrorKind::NotConnected)
        }
        Dropped => {
            was_pending(with_timeout(handshake(&ours, false), BEAT).await)?;
            ours.close()
        }
        StopsReading => {
            put(&mut peer, &hello);
            failed_with(handshake(&ours, true).await, io::ErrorKind::TimedOut)
        }
        Slowloris => {
            let tcp = peer.try_clone()?;
            let trickler = std::thread::spawn(move || {
                for b in hello {
                    if std::io::Write::write_all(&mut &tcp, &[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let r = failed_with(handshake(&ours, true).await, io::ErrorKind::TimedOut);
            ours.close()?;
            join_thread(trickler).await;
            r
        }
        Garbage => {
            put(&mut peer, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            let e = handshake(&ours, false)
                .await
                .expect_err("HTTP is no ClientHello");
            match (e.kind(), tls_support::source::<rustls::Error>(&e)) {
                (io::ErrorKind::InvalidData, Some(_)) => Ok(()),
                _ => Err(other(format!("garbage gave {e:?}"))),
            }
        }
        ResetAfter | Emfile => unreachable!(),
    }
}

/// The EMFILE cells: none on Windows (see [`not_applicable`]).
#[cfg(windows)]
async fn emfile_cell(_op: Op) -> io::Result<()> {
    unreachable!()
}

/// The EMFILE cells (in the child, whose descriptors are limited).
#[cfg(unix)]
async fn emfile_cell(op: Op) -> io::Result<()> {
    let listener = plain_listener()?;
    let port = port_of(&listener);
    match op {
        Accept | TlsHandshake => {
            if op == TlsHandshake {
                wrap_socket(&server_ctx(), &listener)?;
            }
            // Connected before the descriptors run out (a client needs one too).
            let mut c = client(port)?;
            let tls_client = (op == TlsHandshake).then(|| {
                let config = client_config();
                let tcp = c.try_clone().expect("clone");
                std::thread::spawn(move || tls_support::raw_client_on(config, "localhost", tcp))
            });
            let hog = exhaust();
            let l = listener.clone();
            let accepting = spawn(async move { l.accept().await });
            sleep_async(Duration::from_millis(50)).await;
            if accepting.is_finished() {
                return Err(other("accept did not wait for a descriptor"));
            }
            match listener.take_accept_error() {
                Some(e) if e.raw_os_error() == Some(libc::EMFILE) => {}
                e => return Err(other(format!("accept recorded {e:?}, not EMFILE"))),
            }
            drop(hog);
            let accepted = accepting.await?;
            match tls_client {
                None => serves(&accepted, &mut c).await,
                Some(h) => {
                    let mut s = join_thread(h).await?;
                    std::io::Write::write_all(&mut s, b"good\n")?;
                    std::io::Write::flush(&mut s)?;
                    expect_line(&accepted, "good").await
                }
            }
        }
        Connect => {
            // A socket made before: connecting takes no new descriptor.
            let s = AsyncSocket::new()?;
            let hog = exhaust();
            let made = AsyncSocket::new().map(drop);
            let r = s.connect("127.0.0.1", port).await;
            drop(hog);
            r?;
            let accepted = listener.accept().await?;
            s.send("good\n").await?;
            expect_line(&accepted, "good").await?;
            match made {
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => Ok(()),
                r => Err(other(format!(
                    "a new socket with no descriptor left: {r:?}"
                ))),
            }
        }
        Dial => {
            let hog = exhaust();
            let r = dial("127.0.0.1", port).await.map(drop);
            drop(hog);
            // The attempt's own error, inside the DialError that names the address tried.
            let attempt_emfile = |e: &io::Error| {
                e.get_ref()
                    .and_then(|s| s.downcast_ref::<asyncnet::DialError>())
                    .is_some_and(|d| {
                        d.attempts()
                            .iter()
                            .any(|(_, a)| a.raw_os_error() == Some(libc::EMFILE))
                    })
            };
            match r {
                Err(e) if attempt_emfile(&e) => {}
                r => return Err(other(format!("dial with no descriptor left: {r:?}"))),
            }
            let s = dial("127.0.0.1", port).await?;
            let accepted = listener.accept().await?;
            s.send("good\n").await?;
            expect_line(&accepted, "good").await
        }
        _ => unreachable!(),
    }
}
