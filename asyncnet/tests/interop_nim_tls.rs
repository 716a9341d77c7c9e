//! TLS interop with Nim's own `std/asyncnet` over OpenSSL (`nim c -d:ssl`): a Nim client
//! with `newContext(verifyMode = CVerifyPeer, caFile = ...)` against our wrapped listener,
//! exchanging CRLF and LF lines and a binary payload, as in `interop_nim.rs` (the protocol is
//! `tests/support/nim/protocol.nim`; the client is `tls_echo_client.nim`).
//!
//! Needs `nim` (Nim 1.6) and OpenSSL's libssl at run time: the test skips without `nim`,
//! except under CI (`CI=true`), where it fails.

#[path = "support/tls_interop.rs"]
mod tls;

use std::cell::Cell;
use std::io;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use asyncnet::{wait_for, with_timeout, wrap_socket, AsyncSocket, SoBool, TlsInfo};
use tls::{Pki, Process};

/// Only a guard against hangs: a passing run takes a fraction of it.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// `payloadLen` in protocol.nim.
const PAYLOAD_LEN: usize = 4 * 1024 * 1024 + 4001;

/// Largest read our server makes while echoing the payload.
const ECHO_CHUNK: usize = 65536;

/// `patternByte` in protocol.nim.
fn pattern_byte(index: usize) -> u8 {
    let mut x = (index as u32).wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    (x >> 24) as u8
}

/// `replyEnding` in protocol.nim.
fn reply_ending(index: usize) -> &'static str {
    ["\r\n", "\n"][index % 2]
}

/// The lines `tls_echo_client.nim` sends, as `recv_line` must return them.
fn lines_sent_by_nim_client() -> Vec<String> {
    [
        "crlf line from nim over tls",
        "lf line from nim over tls",
        "",
        "",
        "a lone \r stays in the line",
        "only the last cr is stripped\r",
        "utf-8: grüße ✓",
        &"x".repeat(100_000),
        "tab\tseparated\tvalues",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Where our side is, for the report when it fails or hangs.
#[derive(Clone)]
struct Phase(Rc<Cell<&'static str>>);

impl Phase {
    fn set(&self, phase: &'static str) {
        self.0.set(phase);
    }
}

/// What our server saw from the Nim client.
struct Served {
    peer: String,
    info: Option<TlsInfo>,
    lines: Vec<String>,
    payload_len: usize,
    payload_mismatch: Option<usize>,
    /// What reading after `BYE` gave: end of stream, or the error for a close without
    /// close_notify.
    after_bye: io::Result<Option<String>>,
}

/// Our side of protocol.nim as the server, for one client, on a wrapped listener.
async fn serve_one_client(listener: AsyncSocket, phase: Phase) -> io::Result<Served> {
    phase.set("accepting (TCP, then the TLS handshake)");
    let (peer, sock) = listener.accept_addr().await?;
    listener.close();
    let info = sock.tls_info();
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
            // Echo as it arrives: the Nim client sends and receives at once.
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
                sock.send(&chunk).await?;
                payload_len += chunk.len();
            }
        } else if line == "BYE" {
            phase.set("answering BYE, then reading the end of stream");
            sock.send("bye\r\n").await?;
            let after_bye = sock.recv_line().await;
            sock.close();
            return Ok(Served {
                peer,
                info,
                lines,
                payload_len,
                payload_mismatch,
                after_bye,
            });
        } else {
            sock.send(format!("{line}{}", reply_ending(lines.len())))
                .await?;
            lines.push(line);
        }
    }
}

#[test]
fn nim_asyncnet_tls_client_verifies_our_server_and_exchanges_lines_and_a_payload() {
    let Some(program) = tls::nim_ssl_program("tls_echo_client") else {
        return;
    };
    let pki = Pki::new("asyncnet interop CA (nim)");
    let listener = AsyncSocket::new().expect("socket");
    listener
        .set_sock_opt(SoBool::ReuseAddr, true)
        .expect("SO_REUSEADDR");
    listener.bind_addr(0, "127.0.0.1").expect("bind");
    listener.listen().expect("listen");
    wrap_socket(&pki.server_context(), &listener).expect("wrap the listener");
    let (_, port) = listener.local_addr().expect("local address");

    let mut command = Command::new(&program);
    command.arg(port.to_string()).arg(&pki.ca_file);
    let client = Process::spawn("tls_echo_client", command).expect("start the Nim client");

    let phase = Phase(Rc::new(Cell::new("starting")));
    let served = wait_for(with_timeout(
        serve_one_client(listener, phase.clone()),
        HANG_GUARD,
    ))
    .map_err(io::Error::from)
    .and_then(|served| served);
    let finished = client.finish(HANG_GUARD);
    let report = match &finished {
        Ok(finished) => finished.to_string(),
        Err(error) => error.to_string(),
    };
    let served = served.unwrap_or_else(|error| {
        panic!(
            "our server failed while {}: {error} (kind {:?})\n{report}",
            phase.0.get(),
            error.kind()
        )
    });
    let finished = finished
        .expect("the Nim client exits")
        .check_success()
        .unwrap_or_else(|report| panic!("the Nim client failed:\n{report}"));
    assert!(
        String::from_utf8_lossy(&finished.stdout).contains("nim tls client: ok"),
        "unexpected Nim client output:\n{finished}"
    );

    assert_eq!(served.peer, "127.0.0.1");
    let info = served.info.expect("tls_info after the handshake");
    // OpenSSL 3 with Nim's default context (protSSLv23: any version) negotiates TLS 1.3.
    assert_eq!(info.protocol_version, "TLSv1_3", "{info:?}");
    // Nim sends SNI for a host name.
    assert_eq!(info.server_name.as_deref(), Some("localhost"), "{info:?}");
    assert_eq!(served.lines, lines_sent_by_nim_client());
    assert_eq!(served.payload_len, PAYLOAD_LEN);
    assert_eq!(served.payload_mismatch, None, "first payload byte wrong");
    // Nim 1.6's asyncnet `close` runs SSL_shutdown into its memory BIO but never sends the
    // close_notify it produced: we see a close without it, which we must report as possible
    // truncation. A Nim that sends it gives a clean end of stream.
    match &served.after_bye {
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        other => panic!("after BYE: expected the end of stream, got {other:?}"),
    }
}
