//! UDP: Nim's own scenario (many clients, one echo socket, sender ports checked), IPv6,
//! empty and maximum-size datagrams, truncation reported as an error, the `_into` form,
//! connected datagram sockets, options, name resolution, and cancel safety of `recv_from`.

#[macro_use]
mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, with_timeout, AsyncSocket, DatagramTruncated, SoBool};
use support::{port, run, settle, source_of, udp_bound, udp_socket, Family};

/// Nim's `tasyncudp`: clients, and datagrams each client sends.
const CLIENTS: usize = 50;
const DATAGRAMS: usize = 100;

/// The largest UDP payload over IPv4: 65,535 - 20 (IP header) - 8 (UDP header).
const MAX_IPV4_PAYLOAD: usize = 65_507;

/// Only decides how soon a future is dropped, never whether the test passes.
const SHORT: Duration = Duration::from_millis(2);

/// A payload that is not the same byte over and over.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

/// What client `id` sends as its datagram `n`; names the port it sends from.
fn message(id: usize, own_port: u16, n: usize) -> String {
    format!("client {id} port {own_port} datagram {n}")
}

/// `(id, port, n)` back from a [`message`].
fn parse_message(data: &[u8]) -> (usize, u16, usize) {
    let text = std::str::from_utf8(data).expect("an ASCII message");
    let fields: Vec<&str> = text.split(' ').collect();
    match fields[..] {
        ["client", id, "port", p, "datagram", n] => (
            id.parse().expect("id"),
            p.parse().expect("port"),
            n.parse().expect("n"),
        ),
        _ => panic!("unexpected datagram {text:?}"),
    }
}

async fn udp_client(id: usize, server_port: u16) -> io::Result<()> {
    let sock = udp_bound(Family::V4)?;
    let own_port = port(&sock);
    for n in 0..DATAGRAMS {
        let sent = message(id, own_port, n);
        sock.send_to("127.0.0.1", server_port, &sent).await?;
        let (data, address, from_port) = sock.recv_from(128).await?;
        assert_eq!(
            (address.as_str(), from_port),
            ("127.0.0.1", server_port),
            "client {id}: the answer came from the server's address and port"
        );
        assert_eq!(data, sent.as_bytes(), "client {id}: the answer is the echo");
    }
    sock.close()?;
    Ok(())
}

/// What the echo socket saw: client id -> (the port it sent from, its datagrams' numbers
/// in arrival order).
type Seen = HashMap<usize, (u16, Vec<usize>)>;

#[test]
fn fifty_clients_hundred_datagrams_each_all_echoed_with_sender_ports_checked() {
    run(async {
        let server = udp_bound(Family::V4)?;
        let server_port = port(&server);
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let echo_seen = seen.clone();
        let echo = spawn(async move {
            for _ in 0..CLIENTS * DATAGRAMS {
                let (data, address, from_port) = server.recv_from(128).await?;
                let (id, own_port, n) = parse_message(&data);
                assert_eq!(address, "127.0.0.1");
                assert_eq!(
                    from_port, own_port,
                    "the server saw client {id} send from its own port"
                );
                {
                    let mut seen = echo_seen.borrow_mut();
                    let entry = seen.entry(id).or_insert((from_port, Vec::new()));
                    assert_eq!(entry.0, from_port, "client {id} changed ports");
                    entry.1.push(n);
                }
                server.send_to(&address, from_port, &data).await?;
            }
            Ok::<_, io::Error>(())
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| spawn(udp_client(id, server_port)))
            .collect();
        for c in clients {
            c.await?;
        }
        echo.await?;
        let seen = seen.borrow();
        assert_eq!(seen.len(), CLIENTS, "every client was heard");
        let ports: std::collections::HashSet<u16> = seen.values().map(|(p, _)| *p).collect();
        assert_eq!(ports.len(), CLIENTS, "every client had a port of its own");
        for (id, (_, ns)) in seen.iter() {
            assert_eq!(
                *ns,
                (0..DATAGRAMS).collect::<Vec<_>>(),
                "client {id}: every datagram, in order"
            );
        }
        Ok(())
    })
}

#[test]
fn udp_over_ipv6_loopback_round_trips_with_sender_address() {
    if !Family::V6.available() {
        return;
    }
    run(async {
        let a = udp_bound(Family::V6)?;
        let b = udp_bound(Family::V6)?;
        assert_eq!(a.local_addr()?.0, "::1");
        // Bracketed and bare literals both name the loopback.
        b.send_to("[::1]", port(&a), "over v6").await?;
        let (data, address, from_port) = a.recv_from(64).await?;
        assert_eq!(
            (&data[..], address.as_str(), from_port),
            (&b"over v6"[..], "::1", port(&b))
        );
        a.send_to(&address, from_port, "and back").await?;
        let (data, address, from_port) = b.recv_from(64).await?;
        assert_eq!(
            (&data[..], address.as_str(), from_port),
            (&b"and back"[..], "::1", port(&a))
        );
        Ok(())
    })
}

#[test]
fn zero_length_datagrams_arrive_as_empty_datagrams_not_eof() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        tx.send_to("127.0.0.1", port(&rx), b"").await?;
        tx.send_to("127.0.0.1", port(&rx), b"after").await?;
        tx.send_to("127.0.0.1", port(&rx), b"").await?;
        let (data, address, from) = rx.recv_from(64).await?;
        assert!(data.is_empty());
        assert_eq!((address.as_str(), from), ("127.0.0.1", port(&tx)));
        // The socket is not at end-of-stream: the next datagram still comes.
        assert_eq!(rx.recv_from(64).await?.0, b"after");
        let mut buf = [0xAAu8; 8];
        let (mut address, mut from) = (String::new(), 0);
        let n = rx.recv_from_into(&mut buf, &mut address, &mut from).await?;
        assert_eq!((n, address.as_str(), from), (0, "127.0.0.1", port(&tx)));
        assert!(!rx.is_closed());
        Ok(())
    })
}

#[test]
fn datagram_of_65507_bytes_the_ipv4_maximum_round_trips_whole() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        let big = pattern(MAX_IPV4_PAYLOAD, 1);
        tx.send_to("127.0.0.1", port(&rx), &big).await?;
        let (data, _, from) = rx.recv_from(MAX_IPV4_PAYLOAD).await?;
        assert_eq!(from, port(&tx));
        assert_eq!(data.len(), MAX_IPV4_PAYLOAD);
        assert!(data == big, "the payload came back unchanged");
        // And back, received with room to spare.
        rx.send_to("127.0.0.1", port(&tx), &data).await?;
        let (back, _, _) = tx.recv_from(100_000).await?;
        assert!(back == big);
        // One byte more cannot be sent at all: the error, not a cut datagram.
        let too_big = pattern(MAX_IPV4_PAYLOAD + 1, 2);
        let e = tx
            .send_to("127.0.0.1", port(&rx), &too_big)
            .await
            .expect_err("a datagram over the IPv4 maximum");
        #[cfg(unix)]
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
        // WSAEMSGSIZE
        #[cfg(windows)]
        assert_eq!(e.raw_os_error(), Some(10040), "{e}");
        Ok(())
    })
}

#[test]
fn datagram_larger_than_size_is_invalid_data_with_kept_bytes_and_sender() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        let whole = pattern(100, 3);
        tx.send_to("127.0.0.1", port(&rx), &whole).await?;
        tx.send_to("127.0.0.1", port(&rx), "next").await?;
        let e = rx
            .recv_from(10)
            .await
            .expect_err("a cut datagram is an error");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let cut = source_of::<DatagramTruncated>(&e).expect("source is DatagramTruncated");
        assert_eq!(cut.data, &whole[..10], "the kept bytes");
        assert_eq!(
            (cut.address.as_str(), cut.port),
            ("127.0.0.1", port(&tx)),
            "the sender"
        );
        // The cut datagram is gone (not returned again); the next one is whole.
        assert_eq!(rx.recv_from(10).await?.0, b"next");

        // The `_into` form: the kept bytes are in the caller's buffer, address and port set.
        tx.send_to("127.0.0.1", port(&rx), &whole).await?;
        let mut buf = [0u8; 16];
        let (mut address, mut from) = (String::new(), 0);
        let e = rx
            .recv_from_into(&mut buf, &mut address, &mut from)
            .await
            .expect_err("a cut datagram is an error");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let cut = source_of::<DatagramTruncated>(&e).expect("source is DatagramTruncated");
        assert!(
            cut.data.is_empty(),
            "the kept bytes are in the buffer instead"
        );
        assert_eq!((cut.address.as_str(), cut.port), ("127.0.0.1", port(&tx)));
        assert_eq!(&buf[..], &whole[..16]);
        assert_eq!((address.as_str(), from), ("127.0.0.1", port(&tx)));
        Ok(())
    })
}

#[test]
fn recv_from_into_fills_caller_buffers_and_reuses_the_address_string() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx1 = udp_bound(Family::V4)?;
        let tx2 = udp_bound(Family::V4)?;
        let mut buf = [0u8; 64];
        let mut address = String::with_capacity(64);
        address.push_str("stale text that must be cleared");
        let storage = address.as_ptr();
        let mut from = 0u16;

        tx1.send_to("127.0.0.1", port(&rx), "first").await?;
        let n = rx.recv_from_into(&mut buf, &mut address, &mut from).await?;
        assert_eq!(n, 5, "the byte count");
        assert_eq!(&buf[..n], b"first");
        assert_eq!((address.as_str(), from), ("127.0.0.1", port(&tx1)));
        assert_eq!(address.as_ptr(), storage, "the string's storage was reused");

        tx2.send_to("127.0.0.1", port(&rx), "second!").await?;
        let n = rx.recv_from_into(&mut buf, &mut address, &mut from).await?;
        assert_eq!(&buf[..n], b"second!");
        assert_eq!((address.as_str(), from), ("127.0.0.1", port(&tx2)));
        assert_eq!(address.as_ptr(), storage);
        Ok(())
    })
}

#[test]
fn datagram_calls_on_a_tcp_socket_fail_with_invalid_input() {
    run(async {
        let tcp = AsyncSocket::new()?;
        let e = tcp.send_to("127.0.0.1", 9, "x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "send_to: {e}");
        let to = "127.0.0.1:9".parse().unwrap();
        let e = tcp.send_to_addr(to, "x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "send_to_addr: {e}");
        let e = tcp.recv_from(10).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "recv_from: {e}");
        let (mut buf, mut address, mut from) = ([0u8; 4], String::new(), 0);
        let e = tcp
            .recv_from_into(&mut buf, &mut address, &mut from)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "recv_from_into: {e}");
        Ok(())
    })
}

#[test]
fn bound_and_connected_udp_socket_sends_and_receives_one_datagram_each() {
    run(async {
        let a = udp_bound(Family::V4)?;
        let b = udp_socket(Family::V4)?;
        b.bind_addr(0, "127.0.0.1")?;
        b.connect("127.0.0.1", port(&a)).await?;
        assert_eq!(b.peer_addr()?, ("127.0.0.1".to_owned(), port(&a)));

        b.send("one datagram").await?;
        b.send("another").await?;
        let (data, address, from) = a.recv_from(64).await?;
        assert_eq!(
            (&data[..], address.as_str(), from),
            (&b"one datagram"[..], "127.0.0.1", port(&b))
        );
        assert_eq!(
            a.recv_from(64).await?.0,
            b"another",
            "two sends, two datagrams"
        );

        // A stranger's datagram is filtered by the kernel; the peer's comes through.
        let stranger = udp_bound(Family::V4)?;
        stranger
            .send_to("127.0.0.1", port(&b), "not for you")
            .await?;
        a.send_to("127.0.0.1", port(&b), "reply").await?;
        a.send_to("127.0.0.1", port(&b), "second reply").await?;
        // `recv(n)` takes one datagram, even when more are queued.
        assert_eq!(b.recv(64).await?, b"reply");
        assert_eq!(b.recv(64).await?, b"second reply");

        // A connected datagram socket reports truncation on `recv` too.
        a.send_to("127.0.0.1", port(&b), "0123456789").await?;
        let e = b.recv(4).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let cut = source_of::<DatagramTruncated>(&e).expect("DatagramTruncated");
        assert_eq!(cut.data, b"0123");
        Ok(())
    })
}

#[test]
fn broadcast_option_is_set_and_read_back_on_a_udp_socket() {
    run(async {
        let s = udp_socket(Family::V4)?;
        assert!(!s.get_sock_opt(SoBool::Broadcast)?, "off by default");
        s.set_sock_opt(SoBool::Broadcast, true)?;
        assert!(s.get_sock_opt(SoBool::Broadcast)?);
        s.set_sock_opt(SoBool::Broadcast, false)?;
        assert!(!s.get_sock_opt(SoBool::Broadcast)?);
        Ok(())
    })
}

#[test]
fn send_to_localhost_resolves_the_name() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_socket(Family::V4)?;
        tx.send_to("localhost", port(&rx), "by name").await?;
        let (data, address, from) = rx.recv_from(64).await?;
        assert_eq!(
            (&data[..], address.as_str()),
            (&b"by name"[..], "127.0.0.1")
        );
        assert_eq!(from, port(&tx), "the sender was bound by its first send");
        Ok(())
    })
}

/// Nim's echo idiom (`sendTo` with what `recvFrom` gave) on a dual-stack IPv6 socket: an
/// IPv4 client's address is shown as plain IPv4 (`127.0.0.1`), and must be usable to reply.
#[test]
fn dual_stack_ipv6_socket_replies_to_an_ipv4_sender_at_the_address_recv_from_gave() {
    if !Family::V6.available() {
        return;
    }
    run(async {
        let server = udp_socket(Family::V6)?;
        // Windows makes IPv6 sockets IPv6-only by default.
        #[cfg(windows)]
        socket2::SockRef::from(&server).set_only_v6(false)?;
        server.bind_addr(0, "")?;
        let client = udp_bound(Family::V4)?;
        client
            .send_to("127.0.0.1", port(&server), "v4 to v6")
            .await?;
        let (data, address, from) = server.recv_from(64).await?;
        assert_eq!((address.as_str(), from), ("127.0.0.1", port(&client)));
        server.send_to(&address, from, &data).await?;
        assert_eq!(client.recv_from(64).await?.0, b"v4 to v6");
        Ok(())
    })
}

/// Poll `fut` once; return what that gave.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Receive `count` datagrams and check they are `first..first + count` in order.
async fn expect_in_order(rx: &AsyncSocket, first: usize, count: usize) -> io::Result<()> {
    for i in first..first + count {
        let (data, _, _) = rx.recv_from(64).await?;
        assert_eq!(
            String::from_utf8_lossy(&data),
            format!("datagram {i}"),
            "every datagram, in order"
        );
    }
    Ok(())
}

/// Nothing more is queued: a receive only times out.
async fn expect_nothing_more(rx: &AsyncSocket) {
    let r = with_timeout(rx.recv_from(64), SHORT).await;
    assert!(r.is_err(), "an unexpected extra datagram: {r:?}");
}

#[test]
fn recv_from_dropped_by_timeout_before_any_datagram_loses_nothing() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        for _ in 0..10 {
            let r = with_timeout(rx.recv_from(64), SHORT).await;
            assert!(r.is_err(), "nothing was sent yet: {r:?}");
        }
        for i in 0..20 {
            tx.send_to("127.0.0.1", port(&rx), format!("datagram {i}"))
                .await?;
        }
        expect_in_order(&rx, 0, 20).await?;
        expect_nothing_more(&rx).await;
        Ok(())
    })
}

#[test]
fn recv_from_polled_then_dropped_while_datagrams_are_queued_loses_nothing() {
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        let mut sent = 0;
        for _ in 0..10 {
            let mut fut = Box::pin(rx.recv_from(64));
            let first = poll_once(fut.as_mut()).await;
            assert!(first.is_pending(), "nothing is queued yet: {first:?}");
            for _ in 0..5 {
                tx.send_to("127.0.0.1", port(&rx), format!("datagram {sent}"))
                    .await?;
                sent += 1;
            }
            // Let the loop see the socket readable and wake the receive, which never runs.
            settle().await;
            drop(fut);
            // Later calls get every one of them, in order.
            expect_in_order(&rx, sent - 5, 5).await?;
        }
        // Also receives parked in tasks that are cancelled after their wake-up.
        for _ in 0..5 {
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let rx = rx.clone();
                    spawn(async move { rx.recv_from(64).await })
                })
                .collect();
            settle().await;
            tx.send_to("127.0.0.1", port(&rx), format!("datagram {sent}"))
                .await?;
            sent += 1;
            for w in waiters {
                assert!(!w.is_finished(), "a waiter ran before it was cancelled");
                w.abort();
            }
            expect_in_order(&rx, sent - 1, 1).await?;
        }
        expect_nothing_more(&rx).await;
        Ok(())
    })
}

#[test]
fn recv_from_timeouts_racing_arrivals_lose_no_datagram() {
    const COUNT: usize = 200;
    run(async {
        let rx = udp_bound(Family::V4)?;
        let tx = udp_bound(Family::V4)?;
        let to = port(&rx);
        let sender = spawn(async move {
            for i in 0..COUNT {
                tx.send_to("127.0.0.1", to, format!("datagram {i}")).await?;
                if i % 4 == 0 {
                    sleep_async(Duration::from_millis(1)).await;
                }
            }
            Ok::<_, io::Error>(())
        });
        let mut got = Vec::new();
        let mut timeouts = 0;
        while got.len() < COUNT {
            match with_timeout(rx.recv_from(64), Duration::from_millis(1)).await {
                Ok(r) => got.push(String::from_utf8(r?.0).expect("ASCII")),
                Err(_) => timeouts += 1,
            }
        }
        sender.await?;
        let want: Vec<String> = (0..COUNT).map(|i| format!("datagram {i}")).collect();
        assert_eq!(got, want, "every datagram, in order ({timeouts} timeouts)");
        expect_nothing_more(&rx).await;
        Ok(())
    })
}
