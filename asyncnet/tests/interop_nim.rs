//! Interop with the real thing: Nim's own `std/asyncnet` as a client against
//! our server, and as a server against our client, exchanging CRLF and LF
//! lines and a large binary payload.
//!
//! The Nim side lives in `tests/support/nim/`; `protocol.nim` there describes
//! the protocol that this file implements in Rust. Needs `nim` (Nim 1.6): the
//! tests skip without it, except under CI (`CI=true`), where they fail.
// Unix only: Nim's asyncnet peers, built and run as Linux programs; skipped on Windows (not compiled there).
#![cfg(unix)]

#[path = "support/nim.rs"]
mod nim;
#[path = "support/nim_cache.rs"]
mod nim_cache;
#[path = "support/nim_protocol.rs"]
mod protocol;

use std::io;
use std::process::Command;
use std::time::Duration;

use asyncnet::{dial, spawn, wait_for, with_timeout, AsyncSocket, SoBool};
use protocol::{
    first_pattern_mismatch, lines_sent_by_nim_client, payload, serve_one_client, Phase, PAYLOAD_LEN,
};

/// Only a guard against hangs: a passing run takes a fraction of it.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// What our client sends to `echo_server.nim`, with the line endings. No CR
/// inside a line: Nim's `recvLine` would drop the byte after it.
fn lines_for_nim_server() -> Vec<(String, &'static str)> {
    vec![
        ("crlf line from rust".to_owned(), "\r\n"),
        ("lf line from rust".to_owned(), "\n"),
        (String::new(), "\r\n"),
        (String::new(), "\n"),
        ("utf-8: grüße ✓".to_owned(), "\n"),
        ("y".repeat(100_000), "\r\n"),
        ("tab\tseparated\tvalues".to_owned(), "\n"),
    ]
}

#[test]
fn nim_asyncnet_client_exchanges_crlf_and_lf_lines_and_a_large_payload_with_our_server() {
    let Some(programs) = nim::programs() else {
        return;
    };
    let listener = AsyncSocket::new().expect("socket");
    listener
        .set_sock_opt(SoBool::ReuseAddr, true)
        .expect("SO_REUSEADDR");
    listener.bind_addr(0, "127.0.0.1").expect("bind");
    listener.listen().expect("listen");
    let (_, port) = listener.local_addr().expect("local address");

    let mut command = Command::new(&programs.echo_client);
    command.arg(port.to_string());
    let client = nim::Process::spawn("echo_client", command).expect("start the Nim client");

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
    let session = match served {
        Ok(session) => session,
        Err(error) => panic!("our server failed while {}: {error}\n{report}", phase.get()),
    };
    let finished = finished
        .expect("the Nim client exits")
        .check_success()
        .unwrap_or_else(|report| panic!("the Nim client saw wrong replies:\n{report}"));
    assert!(
        finished.stdout.contains("nim client: ok"),
        "unexpected Nim client output:\n{finished}"
    );

    assert_eq!(session.peer, "127.0.0.1");
    assert_eq!(session.lines, lines_sent_by_nim_client(""));
    assert_eq!(session.payload.len(), PAYLOAD_LEN);
    assert_eq!(
        first_pattern_mismatch(&session.payload),
        None,
        "first payload byte our server received wrong"
    );
    assert_eq!(
        session.after_bye.as_ref().ok(),
        Some(&None),
        "after BYE: {:?}",
        session.after_bye
    );
}

/// What our client got back from the Nim server.
struct DrivenSession {
    echoes: Vec<Option<String>>,
    payload: Vec<u8>,
    farewell: Vec<Option<String>>,
}

/// Our side of the protocol as the client: a spawned task writes everything
/// while this one reads the replies through a clone of the same socket.
async fn drive_nim_server(port: u16, phase: Phase) -> io::Result<DrivenSession> {
    phase.set("dialing");
    let sock = dial("127.0.0.1", port).await?;
    let lines = lines_for_nim_server();
    let writer = {
        let sock = sock.clone();
        let lines = lines.clone();
        spawn(async move {
            for (text, ending) in &lines {
                sock.send(format!("{text}{ending}")).await?;
            }
            sock.send(format!("PAYLOAD {PAYLOAD_LEN}\n")).await?;
            sock.send(payload()).await?;
            sock.send("BYE\r\n").await?;
            Ok::<(), io::Error>(())
        })
    };

    phase.set("reading the line echoes");
    let mut echoes = Vec::new();
    for _ in &lines {
        echoes.push(sock.recv_line().await?);
    }
    phase.set("reading the payload echo");
    let payload = sock.recv(PAYLOAD_LEN).await?;
    phase.set("waiting for the writer task");
    writer.await?;
    phase.set("reading the farewell lines and the end of stream");
    let mut farewell = Vec::new();
    // Bounded: a server that never stops talking fails the assertion below.
    while farewell.len() < 8 {
        let line = sock.recv_line().await?;
        let end_of_stream = line.is_none();
        farewell.push(line);
        if end_of_stream {
            break;
        }
    }
    sock.close()?;
    Ok(DrivenSession {
        echoes,
        payload,
        farewell,
    })
}

#[test]
fn our_client_exchanges_crlf_and_lf_lines_and_a_large_payload_with_nim_asyncnet_server() {
    let Some(programs) = nim::programs() else {
        return;
    };
    let mut server = nim::Process::spawn("echo_server", Command::new(&programs.echo_server))
        .expect("start the Nim server");
    let port_line = server
        .stdout_line(HANG_GUARD)
        .expect("the Nim server's port");
    let port: u16 = port_line
        .strip_prefix("PORT ")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("expected `PORT <n>`, got {port_line:?}"));

    let phase = Phase::new();
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
    let driven = wait_for(with_timeout(
        drive_nim_server(port, phase.clone()),
        HANG_GUARD,
    ))
    .map_err(io::Error::from)
    .and_then(|driven| driven);
    let finished = server.finish(HANG_GUARD);
    let report = match &finished {
        Ok(finished) => finished.to_string(),
        Err(error) => error.to_string(),
    };
    let session = match driven {
        Ok(session) => session,
        Err(error) => panic!("our client failed while {}: {error}\n{report}", phase.get()),
    };
    let finished = finished
        .expect("the Nim server exits")
        .check_success()
        .unwrap_or_else(|report| panic!("the Nim server saw wrong data:\n{report}"));
    assert!(
        finished.stdout.contains("nim server: ok"),
        "unexpected Nim server output:\n{finished}"
    );

    let expected_echoes: Vec<Option<String>> = lines_for_nim_server()
        .into_iter()
        .map(|(text, _)| Some(text))
        .collect();
    assert_eq!(session.echoes, expected_echoes);
    assert_eq!(session.payload.len(), PAYLOAD_LEN);
    assert_eq!(
        first_pattern_mismatch(&session.payload),
        None,
        "first payload byte our client received wrong"
    );
    // Nim ends with a lone CR inside a line and a partial last line, which
    // only our parser handles.
    assert_eq!(
        session.farewell,
        [
            Some("bye".to_owned()),
            Some("a lone \r stays in the line".to_owned()),
            Some("partial line at end of stream".to_owned()),
            None,
        ]
    );
}

#[test]
fn payload_pattern_covers_every_byte_value() {
    let mut seen = [false; 256];
    for byte in payload() {
        seen[usize::from(byte)] = true;
    }
    assert!(seen.iter().all(|&seen| seen));
}
