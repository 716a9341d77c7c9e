//! Next to tokio: an asyncnet future awaited on a tokio runtime fails loudly at once (it would
//! never be woken there), and the bridge that works (the `tokio_bridge` example: asyncnet on
//! a thread of its own, channels between the two) does.

mod support;

#[path = "../examples/tokio_bridge.rs"]
mod bridge;

use std::io;
use std::time::Duration;

use asyncnet::AsyncSocket;

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
}

/// The loud failure every asyncnet operation that must wait gives under another runtime.
fn assert_names_the_fix(e: &io::Error) {
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("outside asyncnet's event loop") && text.contains("asyncnet::wait_for"),
        "{text}"
    );
}

#[test]
fn a_dial_awaited_on_tokio_fails_at_once_instead_of_hanging() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let outcome = support::in_fresh_thread(move || {
        // The connect has to wait for the handshake's event, which nobody would deliver.
        tokio_runtime()
            .block_on(asyncnet::dial("127.0.0.1", port))
            .map(drop)
    });
    let e = outcome.expect("no hang").expect_err("dial fails");
    assert_names_the_fix(&e);
    drop(listener);
}

#[test]
fn a_read_that_must_wait_on_tokio_fails_at_once() {
    let outcome = support::in_fresh_thread(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        let sock = AsyncSocket::from_fd(server_side.into(), true).expect("adopt");
        let e = tokio_runtime()
            .block_on(sock.recv_line())
            .expect_err("nothing arrived: it must wait, and cannot");
        drop(client);
        assert_names_the_fix(&e);
    });
    outcome.expect("no hang");
}

#[test]
fn a_send_awaited_on_tokio_fails_instead_of_queueing_bytes_nothing_would_write() {
    let outcome = support::in_fresh_thread(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        let sock = AsyncSocket::from_fd(server_side.into(), true).expect("adopt");
        let e = tokio_runtime()
            .block_on(sock.send("lost?\n"))
            .expect_err("a coalesced send would be written by a loop that never runs");
        drop(client);
        assert_names_the_fix(&e);
    });
    outcome.expect("no hang");
}

#[test]
fn sleep_async_awaited_on_tokio_panics_naming_the_fix() {
    let outcome = support::in_fresh_thread(|| {
        tokio_runtime().block_on(asyncnet::sleep_async(Duration::from_millis(10)));
    });
    let message = outcome.expect_err("a loud failure");
    assert!(message.contains("asyncnet::wait_for"), "{message}");
}

#[test]
fn the_tokio_bridge_example_answers_through_asyncnets_thread() {
    let answers = bridge::run().expect("the bridge");
    assert_eq!(answers, ["echo: one", "echo: two", "echo: three"]);
}
