//! TLS interop with OpenSSL's command-line peers: `openssl s_server` as the server for our
//! client, `openssl s_client` as the client of our server, over TLS 1.3 and TLS 1.2, with
//! lines (CRLF and LF) and a 10 MB binary payload each way; and the failures each side must
//! report when the other's certificate comes from an unknown CA.
//!
//! The certificates are made with rcgen for each test. Needs `openssl` (the tests skip
//! without it, except under CI (`CI=true`), where they fail) and Linux (`/proc` tells the
//! port s_server bound).
// Unix only: the openssl binary, a Unix program; skipped on Windows (not compiled there).
#![cfg(unix)]
#![cfg(target_os = "linux")]

#[path = "support/nim_cache.rs"]
#[allow(dead_code)]
mod nim_cache;
#[path = "support/tls_interop.rs"]
mod tls;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::process::Command;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use asyncnet::rustls::{self, AlertDescription, CertificateError};
use asyncnet::{
    spawn, wait_for, with_timeout, wrap_connected_socket, wrap_socket, AsyncSocket, HandshakeAs,
    SoBool, TlsContext, TlsInfo,
};
use tls::{Pki, Process};

/// Only a guard against hangs: a passing run takes a fraction of it.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// 10 MiB plus an amount that is not a multiple of any buffer or record size.
const PAYLOAD_LEN: usize = 10 * 1024 * 1024 + 4001;

/// Largest read our server makes while echoing the payload.
const ECHO_CHUNK: usize = 65536;

/// Deterministic pseudo-random bytes covering all 256 values (as in `protocol.nim`).
fn pattern_byte(index: usize) -> u8 {
    let mut x = (index as u32).wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    (x >> 24) as u8
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(pattern_byte).collect()
}

/// Panics with the first differing offset (not with 10 MB of bytes) unless `got == expected`.
fn assert_same_bytes(what: &str, got: &[u8], expected: &[u8]) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let context = |bytes: &[u8]| {
        let start = at.saturating_sub(40);
        String::from_utf8_lossy(&bytes[start.min(bytes.len())..(at + 40).min(bytes.len())])
            .into_owned()
    };
    panic!(
        "{what}: {} bytes, expected {}; first difference at offset {at}\n got: {:?}\nwant: {:?}",
        got.len(),
        expected.len(),
        context(got),
        context(expected)
    );
}

/// Where our side is, for the report when it fails or hangs.
#[derive(Clone)]
struct Phase(Rc<Cell<&'static str>>);

impl Phase {
    fn new() -> Phase {
        Phase(Rc::new(Cell::new("starting")))
    }
    fn set(&self, phase: &'static str) {
        self.0.set(phase);
    }
    fn get(&self) -> &'static str {
        self.0.get()
    }
}

fn expect_tls_info(info: Option<TlsInfo>, version: &str) {
    let info = info.expect("tls_info after the handshake");
    assert_eq!(info.protocol_version, version, "{info:?}");
    assert_eq!(info.server_name.as_deref(), Some("localhost"), "{info:?}");
    assert_eq!(info.alpn_protocol, None, "{info:?}");
    assert!(!info.cipher_suite.is_empty(), "{info:?}");
}

// ---------------------------------------------------------------------------------------
// openssl s_server, our client
// ---------------------------------------------------------------------------------------

/// Lines s_server sends us (from its stdin), with their endings.
fn s_server_lines() -> Vec<(String, &'static str)> {
    vec![
        ("crlf line from openssl".to_owned(), "\r\n"),
        ("lf line from openssl".to_owned(), "\n"),
        (String::new(), "\r\n"),
        (String::new(), "\n"),
        ("a lone \r stays in the line".to_owned(), "\n"),
        ("only the last cr is stripped\r".to_owned(), "\r\n"),
        ("utf-8: grüße ✓".to_owned(), "\n"),
        ("z".repeat(100_000), "\r\n"),
    ]
}

/// Everything our client sends s_server, which s_server prints on its stdout as is.
fn client_stream() -> Vec<Vec<u8>> {
    vec![
        b"crlf line from asyncnet\r\n".to_vec(),
        b"lf line from asyncnet\n".to_vec(),
        b"\r\n\n".to_vec(),
        "utf-8: grüße ✓\n".as_bytes().to_vec(),
        format!("PAYLOAD {PAYLOAD_LEN}\n").into_bytes(),
        payload(),
        b"bye from asyncnet\r\n".to_vec(),
    ]
}

/// What our client saw from s_server.
struct Driven {
    info: Option<TlsInfo>,
    chain: Vec<Vec<u8>>,
    lines: Vec<Option<String>>,
    payload: Vec<u8>,
}

/// Our client: connect with verification against "localhost", write `client_stream` from a
/// task while this one reads s_server's lines and payload.
async fn drive_s_server(port: u16, ctx: TlsContext, phase: Phase) -> io::Result<Driven> {
    let sock = AsyncSocket::new()?;
    wrap_socket(&ctx, &sock)?;
    phase.set("connecting (TCP, then the TLS handshake)");
    sock.connect("localhost", port).await?;
    let info = sock.tls_info();
    let chain = sock.peer_certificates();

    let writer = {
        let sock = sock.clone();
        spawn(async move {
            for part in client_stream() {
                sock.send(part).await?;
            }
            Ok::<(), io::Error>(())
        })
    };
    phase.set("reading s_server's lines");
    let mut lines = Vec::new();
    for _ in s_server_lines() {
        lines.push(sock.recv_line().await?);
    }
    phase.set("reading s_server's payload");
    let payload = sock.recv(PAYLOAD_LEN).await?;
    phase.set("waiting for the writer task");
    writer.await?;
    sock.close()?;
    Ok(Driven {
        info,
        chain,
        lines,
        payload,
    })
}

/// Starts `openssl s_server` for one connection on an ephemeral loopback port, quiet (its
/// stdout is then exactly what it received), and returns it with its port.
fn start_s_server(pki: &Pki, extra: &[&str]) -> (Process, u16) {
    let mut command = Command::new("openssl");
    command
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "1",
            "-quiet",
        ])
        .arg("-cert")
        .arg(&pki.cert_file)
        .arg("-key")
        .arg(&pki.key_file)
        .args(extra);
    let mut server = Process::spawn("openssl s_server", command).expect("start openssl s_server");
    let port = tls::listening_port(&mut server, Instant::now() + HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}"));
    (server, port)
}

fn our_client_exchanges_lines_and_10_mb_with_s_server(extra: &[&str], version: &str) {
    let Some(()) = tls::openssl() else {
        return;
    };
    let pki = Pki::new("asyncnet interop CA (s_server)");
    let (server, port) = start_s_server(&pki, extra);
    // s_server sends its stdin to the client; it stays open until s_server exits.
    for (text, ending) in s_server_lines() {
        server.write_stdin(format!("{text}{ending}"));
    }
    server.write_stdin(payload());

    let phase = Phase::new();
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
    let driven = wait_for(with_timeout(
        drive_s_server(port, pki.client_context(), phase.clone()),
        HANG_GUARD,
    ))
    .map_err(io::Error::from)
    .and_then(|driven| driven);
    let driven = match driven {
        Ok(driven) => driven,
        Err(e) => panic!(
            "our client failed while {}: {e} (kind {:?})\n{}",
            phase.get(),
            e.kind(),
            server.report_so_far()
        ),
    };
    // Our close_notify ends s_server's only session, and s_server with it.
    let finished = server
        .finish(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}"))
        .check_success()
        .unwrap_or_else(|report| panic!("s_server failed:\n{report}"));

    expect_tls_info(driven.info, version);
    assert_eq!(driven.chain.len(), 1, "peer_certificates: leaf only");
    assert!(
        driven.chain[0] == pki.cert_der,
        "peer_certificates: not our leaf"
    );
    let expected_lines: Vec<Option<String>> = s_server_lines()
        .into_iter()
        .map(|(text, _)| Some(text))
        .collect();
    assert_eq!(driven.lines, expected_lines, "lines from s_server");
    assert_same_bytes("payload from s_server", &driven.payload, &payload());
    assert_same_bytes(
        "what s_server received (its stdout)",
        &finished.stdout,
        &client_stream().concat(),
    );
}

#[test]
fn our_client_exchanges_lines_and_10_mb_with_openssl_s_server_tls13() {
    our_client_exchanges_lines_and_10_mb_with_s_server(&[], "TLSv1_3");
}

#[test]
fn our_client_exchanges_lines_and_10_mb_with_openssl_s_server_tls12() {
    our_client_exchanges_lines_and_10_mb_with_s_server(&["-tls1_2"], "TLSv1_2");
}

#[test]
fn our_client_rejects_an_openssl_s_server_certificate_from_an_unknown_ca() {
    let Some(()) = tls::openssl() else {
        return;
    };
    let pki = Pki::new("asyncnet interop CA (s_server)");
    let other = Pki::new("some other CA");
    let (server, port) = start_s_server(&pki, &[]);
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
    let result = wait_for(with_timeout(
        async {
            let sock = AsyncSocket::new()?;
            wrap_socket(&other.client_context(), &sock)?;
            sock.connect("localhost", port).await
        },
        HANG_GUARD,
    ))
    .map_err(io::Error::from)
    .and_then(|r| r);
    let error = result.expect_err("the handshake must fail: the CA is not trusted");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    let tls_error = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("no rustls::Error in {error:?}"));
    assert!(
        matches!(
            tls_error,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{tls_error:?}"
    );
    // s_server saw the alert; its exit status does not matter (dropping it kills it).
    drop(server);
}

// ---------------------------------------------------------------------------------------
// openssl s_client, our server
// ---------------------------------------------------------------------------------------

/// Lines s_client sends (from its stdin), with their endings.
fn s_client_lines() -> Vec<(String, &'static str)> {
    vec![
        ("crlf line from s_client".to_owned(), "\r\n"),
        ("lf line from s_client".to_owned(), "\n"),
        (String::new(), "\r\n"),
        (String::new(), "\n"),
        ("a lone \r stays in the line".to_owned(), "\n"),
        ("only the last cr is stripped\r".to_owned(), "\r\n"),
        ("utf-8: grüße ✓".to_owned(), "\r\n"),
        ("w".repeat(100_000), "\n"),
    ]
}

/// Our server answers line `index` with CRLF when `index` is even, LF when odd.
fn reply_ending(index: usize) -> &'static str {
    ["\r\n", "\n"][index % 2]
}

/// What s_client must print: the echoes, the payload, then `bye`.
fn expected_s_client_stdout() -> Vec<u8> {
    let mut out = Vec::new();
    for (index, (text, _)) in s_client_lines().iter().enumerate() {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(reply_ending(index).as_bytes());
    }
    out.extend_from_slice(&payload());
    out.extend_from_slice(b"bye\n");
    out
}

/// Bytes our server's reader hands to its writer task: reading never waits for writing, so
/// a peer that writes before it reads (s_client does) cannot deadlock the echo.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Vec<u8>>,
    closed: bool,
    waker: Option<Waker>,
}

#[derive(Clone, Default)]
struct SharedOutbox(Rc<RefCell<Outbox>>);

impl SharedOutbox {
    fn push(&self, bytes: impl Into<Vec<u8>>) {
        let mut outbox = self.0.borrow_mut();
        outbox.chunks.push_back(bytes.into());
        if let Some(waker) = outbox.waker.take() {
            waker.wake();
        }
    }

    fn close(&self) {
        let mut outbox = self.0.borrow_mut();
        outbox.closed = true;
        if let Some(waker) = outbox.waker.take() {
            waker.wake();
        }
    }

    /// Everything queued, or `None` once closed and empty.
    async fn next(&self) -> Option<Vec<u8>> {
        poll_fn(|cx| {
            let mut outbox = self.0.borrow_mut();
            if !outbox.chunks.is_empty() {
                return Poll::Ready(Some(outbox.chunks.drain(..).flatten().collect()));
            }
            if outbox.closed {
                return Poll::Ready(None);
            }
            outbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Closes the outbox when the reader ends, however it ends.
struct CloseOnDrop(SharedOutbox);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What our server saw from s_client.
struct Served {
    peer: String,
    info: Option<TlsInfo>,
    lines: Vec<String>,
    payload_len: usize,
    payload_mismatch: Option<usize>,
}

/// Our server for one client on a wrapped listener: echo lines (alternating CRLF and LF),
/// the payload announced by `PAYLOAD <n>`, and `bye` for `BYE`, then close (close_notify).
async fn serve_one(listener: AsyncSocket, phase: Phase) -> io::Result<Served> {
    phase.set("accepting (TCP, then the TLS handshake)");
    let (peer, sock) = listener.accept_addr().await?;
    listener.close()?;
    let info = sock.tls_info();
    let outbox = SharedOutbox::default();
    let writer = {
        let sock = sock.clone();
        let outbox = outbox.clone();
        spawn(async move {
            while let Some(bytes) = outbox.next().await {
                sock.send(bytes).await?;
            }
            Ok::<(), io::Error>(())
        })
    };
    let closer = CloseOnDrop(outbox.clone());
    let mut lines = Vec::new();
    let mut payload_len = 0;
    let mut payload_mismatch = None;
    loop {
        phase.set("reading lines");
        let line = sock.recv_line().await?.ok_or_else(|| {
            io::Error::other(format!("end of stream after {} lines", lines.len()))
        })?;
        if let Some(len) = line.strip_prefix("PAYLOAD ") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::other(format!("bad payload header {line:?}")))?;
            phase.set("echoing the payload");
            while payload_len < len {
                let chunk = sock.recv(ECHO_CHUNK.min(len - payload_len)).await?;
                if chunk.is_empty() {
                    return Err(io::Error::other(format!(
                        "end of stream after {payload_len} of {len} payload bytes"
                    )));
                }
                if payload_mismatch.is_none() {
                    payload_mismatch = chunk
                        .iter()
                        .enumerate()
                        .position(|(i, &b)| b != pattern_byte(payload_len + i))
                        .map(|i| payload_len + i);
                }
                payload_len += chunk.len();
                outbox.push(chunk);
            }
        } else if line == "BYE" {
            outbox.push(b"bye\n".to_vec());
            break;
        } else {
            outbox.push(format!("{line}{}", reply_ending(lines.len())));
            lines.push(line);
        }
    }
    drop(closer);
    phase.set("writing the last echoes");
    writer.await?;
    sock.close()?;
    Ok(Served {
        peer,
        info,
        lines,
        payload_len,
        payload_mismatch,
    })
}

/// A wrapped listener on an ephemeral loopback port.
fn tls_listener(ctx: &TlsContext) -> io::Result<AsyncSocket> {
    let listener = AsyncSocket::new()?;
    listener.set_sock_opt(SoBool::ReuseAddr, true)?;
    listener.bind_addr(0, "127.0.0.1")?;
    listener.listen()?;
    wrap_socket(ctx, &listener)?;
    Ok(listener)
}

/// Runs `body(listener, phase)` on a std thread of its own (its own loop, hang-guarded);
/// returns the listener's port and a receiver for the result.
fn serve_in_thread<T: Send + 'static, F>(
    ctx: TlsContext,
    body: fn(AsyncSocket, Phase) -> F,
) -> (u16, mpsc::Receiver<Result<T, String>>)
where
    F: std::future::Future<Output = io::Result<T>> + 'static,
{
    let (port_tx, port_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let listener = match tls_listener(&ctx) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = port_tx.send(Err(format!("our listener: {e}")));
                return;
            }
        };
        let _ = port_tx.send(Ok(listener.local_addr().expect("local address").1));
        let phase = Phase::new();
        asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
        let result = wait_for(with_timeout(body(listener, phase.clone()), HANG_GUARD))
            .map_err(io::Error::from)
            .and_then(|r| r)
            .map_err(|e| {
                format!(
                    "our server failed while {}: {e} (kind {:?})",
                    phase.get(),
                    e.kind()
                )
            });
        let _ = done_tx.send(result);
    });
    let port = port_rx
        .recv_timeout(HANG_GUARD)
        .expect("our server thread reports its port")
        .unwrap_or_else(|e| panic!("{e}"));
    (port, done_rx)
}

fn s_client_command(pki_ca: &std::path::Path, port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(pki_ca)
        .args(["-verify_return_error", "-quiet", "-nocommands"])
        .args(extra);
    command
}

fn s_client_exchanges_lines_and_10_mb_with_our_server(extra: &[&str], version: &str) {
    let Some(()) = tls::openssl() else {
        return;
    };
    let pki = Pki::new("asyncnet interop CA (s_client)");
    let (port, served) = serve_in_thread(pki.server_context(), serve_one);

    let client = Process::spawn(
        "openssl s_client",
        s_client_command(&pki.ca_file, port, extra),
    )
    .expect("start openssl s_client");
    // s_client sends its stdin to the server; stdin stays open until s_client exits (at
    // our close_notify), so that its end cannot end the session early.
    for (text, ending) in s_client_lines() {
        client.write_stdin(format!("{text}{ending}"));
    }
    client.write_stdin(format!("PAYLOAD {PAYLOAD_LEN}\n"));
    client.write_stdin(payload());
    client.write_stdin("BYE\r\n");

    let finished = client.finish(HANG_GUARD);
    let served = served
        .recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("our server thread did not report"));
    let report = match &finished {
        Ok(finished) => finished.to_string(),
        Err(e) => e.to_string(),
    };
    let served = served.unwrap_or_else(|e| panic!("{e}\n{report}"));
    let finished = finished
        .expect("s_client exits")
        .check_success()
        .unwrap_or_else(|report| panic!("s_client failed:\n{report}"));

    assert_eq!(served.peer, "127.0.0.1");
    expect_tls_info(served.info, version);
    let expected_lines: Vec<String> = s_client_lines().into_iter().map(|(t, _)| t).collect();
    assert_eq!(served.lines, expected_lines, "lines our server read");
    assert_eq!(served.payload_len, PAYLOAD_LEN);
    assert_eq!(served.payload_mismatch, None, "first payload byte wrong");
    assert_same_bytes(
        "what s_client received (its stdout)",
        &finished.stdout,
        &expected_s_client_stdout(),
    );
    assert!(
        finished.stderr.contains("verify return:1"),
        "s_client did not report a verified chain:\n{}",
        finished.stderr
    );
}

#[test]
fn openssl_s_client_exchanges_lines_and_10_mb_with_our_server_tls13() {
    s_client_exchanges_lines_and_10_mb_with_our_server(&[], "TLSv1_3");
}

#[test]
fn openssl_s_client_exchanges_lines_and_10_mb_with_our_server_tls12() {
    s_client_exchanges_lines_and_10_mb_with_our_server(&["-tls1_2"], "TLSv1_2");
}

/// Accept one plain connection and run the server handshake on it, returning its result.
async fn handshake_one(listener: AsyncSocket, ctx: TlsContext) -> io::Result<()> {
    let sock = listener.accept().await?;
    listener.close()?;
    let result = wrap_connected_socket(&ctx, &sock, HandshakeAs::Server, "").await;
    sock.close()?;
    result
}

#[test]
fn openssl_s_client_rejects_our_server_certificate_from_an_unknown_ca() {
    let Some(()) = tls::openssl() else {
        return;
    };
    let pki = Pki::new("asyncnet interop CA (s_client)");
    let other = Pki::new("some other CA");
    let (port_tx, port_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let ctx = pki.server_context();
    thread::spawn(move || {
        asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
        let result = wait_for(with_timeout(
            async {
                // A plain listener: the handshake's error comes back to us, not to accept.
                let listener = AsyncSocket::new()?;
                listener.bind_addr(0, "127.0.0.1")?;
                listener.listen()?;
                let _ = port_tx.send(listener.local_addr()?.1);
                handshake_one(listener, ctx).await
            },
            HANG_GUARD,
        ))
        .map_err(io::Error::from)
        .and_then(|r| r);
        // The error itself cannot cross threads as is; its parts can.
        let _ = done_tx.send(result.map_err(|e| {
            let alert = e
                .get_ref()
                .and_then(|s| s.downcast_ref::<rustls::Error>())
                .cloned();
            (e.kind(), e.to_string(), alert)
        }));
    });
    let port = port_rx
        .recv_timeout(HANG_GUARD)
        .expect("our server thread reports its port");
    let client = Process::spawn(
        "openssl s_client",
        s_client_command(&other.ca_file, port, &[]),
    )
    .expect("start openssl s_client");
    let finished = client.finish(HANG_GUARD).unwrap_or_else(|e| panic!("{e}"));
    let result = done_rx
        .recv_timeout(HANG_GUARD)
        .expect("our server thread reports");

    assert!(
        !finished.status.success(),
        "s_client accepted a certificate from an unknown CA:\n{finished}"
    );
    assert!(
        finished
            .stderr
            .contains("unable to get local issuer certificate"),
        "s_client's verification error:\n{finished}"
    );
    let (kind, message, tls_error) = result.expect_err("our handshake must fail");
    assert_eq!(kind, io::ErrorKind::InvalidData, "{message}");
    assert_eq!(
        tls_error,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
        "{message}"
    );
}
