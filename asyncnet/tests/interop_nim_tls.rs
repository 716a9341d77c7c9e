//! TLS interop with Nim's own `std/asyncnet` over OpenSSL (`nim c -d:ssl`): a Nim client
//! with `newContext(verifyMode = CVerifyPeer, caFile = ...)` against our wrapped listener,
//! exchanging CRLF and LF lines and a binary payload, as in `interop_nim.rs` (the protocol is
//! `tests/support/nim/protocol.nim`; the client is `tls_echo_client.nim`).
//!
//! Needs `nim` (Nim 1.6) and OpenSSL's libssl at run time: the test skips without `nim`,
//! except under CI (`CI=true`), where it fails.
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]
// Unix only: Nim's asyncnet peers, built and run as Linux programs; skipped on Windows (not compiled there).
#![cfg(unix)]

#[path = "support/nim_cache.rs"]
mod nim_cache;
#[path = "support/nim_protocol.rs"]
mod protocol;
#[path = "support/tls_interop.rs"]
mod tls;

use std::io;
use std::process::Command;
use std::time::Duration;

use asyncnet::{wait_for, with_timeout, wrap_socket, AsyncSocket, SoBool};
use protocol::{
    first_pattern_mismatch, lines_sent_by_nim_client, serve_one_client, Phase, PAYLOAD_LEN,
};
use tls::{Pki, Process};

/// Only a guard against hangs: a passing run takes a fraction of it.
const HANG_GUARD: Duration = Duration::from_secs(120);

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

    let phase = Phase::new();
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
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
            phase.get(),
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
    assert_eq!(served.lines, lines_sent_by_nim_client(" over tls"));
    assert_eq!(served.payload.len(), PAYLOAD_LEN);
    assert_eq!(
        first_pattern_mismatch(&served.payload),
        None,
        "first payload byte wrong"
    );
    // Nim 1.6's asyncnet `close` runs SSL_shutdown into its memory BIO but never sends the
    // close_notify it produced: we see a close without it, which we must report as possible
    // truncation. A Nim that sends it gives a clean end of stream.
    match &served.after_bye {
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        other => panic!("after BYE: expected the end of stream, got {other:?}"),
    }
}
