//! Binding, listening, accepting, connecting and dialing, with the addresses each reports,
//! on IPv4 and IPv6 loopback.

#[macro_use]
mod support;

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use asyncnet::{dial, dial_with, resolve_host, AsyncSocket, Protocol, SoBool};
use support::{closed_port, listener, port, run, socket, Family};

fn bind_to_port_zero_gets_a_port_from_the_os(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        s.bind_addr(0, fam.loopback())?;
        let (text, p) = s.local_addr()?;
        assert_eq!(text, fam.loopback());
        assert_ne!(p, 0);
        assert_eq!(s.local_socket_addr()?, SocketAddr::new(fam.ip(), p));
        Ok(())
    })
}

fn bind_to_the_empty_address_means_every_interface(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        s.set_sock_opt(SoBool::ReuseAddr, true)?;
        s.bind_addr(0, "")?;
        let (text, p) = s.local_addr()?;
        assert_eq!(text, fam.any_text());
        assert_ne!(p, 0);
        s.listen()?;
        // Reachable through the loopback.
        let client = socket(fam, true)?;
        client.connect(fam.loopback(), p).await?;
        let (from, accepted) = s.accept_addr().await?;
        assert_eq!(from, fam.loopback());
        assert_eq!(accepted.local_addr()?, (fam.loopback().to_owned(), p));
        Ok(())
    })
}

fn bind_to_an_address_of_the_other_family_maps_ipv4_or_fails(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        match fam {
            Family::V4 => {
                let e = s
                    .bind_addr(0, Family::V6.loopback())
                    .expect_err("wrong family");
                assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable, "{e}");
            }
            Family::V6 => {
                // Windows makes IPv6 sockets IPv6-only by default: dual stack on request.
                #[cfg(windows)]
                {
                    let e = s
                        .bind_addr(0, Family::V4.loopback())
                        .expect_err("IPv6-only by default");
                    assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable, "{e}");
                    socket2::SockRef::from(&s).set_only_v6(false)?;
                }
                // An IPv6 socket takes an IPv4 address as IPv4-mapped (dual stack).
                s.bind_addr(0, Family::V4.loopback())?;
                assert_eq!(s.local_addr()?.0, Family::V4.loopback());
            }
        }
        Ok(())
    })
}

fn bind_to_a_port_in_use_fails(fam: Family) {
    run(async move {
        let l = listener(fam)?;
        let s = socket(fam, true)?;
        let e = s
            .bind_addr(port(&l), fam.loopback())
            .expect_err("port in use");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        Ok(())
    })
}

fn accept_addr_reports_the_peer_address_as_text(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let client = socket(fam, true)?;
        client.connect(fam.loopback(), port(&server)).await?;
        let (text, accepted) = server.accept_addr().await?;
        assert_eq!(text, fam.loopback());
        // The addresses mirror each other.
        assert_eq!(accepted.peer_addr()?, client.local_addr()?);
        assert_eq!(client.peer_addr()?, accepted.local_addr()?);
        assert_eq!(client.peer_addr()?, server.local_addr()?);
        assert_eq!(accepted.peer_socket_addr()?, client.local_socket_addr()?);
        // Typed form as well.
        let client2 = socket(fam, true)?;
        client2.connect(fam.loopback(), port(&server)).await?;
        let (addr, accepted2) = server.accept_socket_addr().await?;
        assert_eq!(addr, Some(client2.local_socket_addr()?));
        assert_eq!(accepted2.peer_socket_addr()?, client2.local_socket_addr()?);
        Ok(())
    })
}

fn accept_takes_connections_in_order_and_they_work_both_ways(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let c = socket(fam, true)?;
            c.connect(fam.loopback(), port(&server)).await?;
            clients.push(c);
        }
        for c in &clients {
            let a = server.accept().await?;
            assert_eq!(a.peer_addr()?, c.local_addr()?, "accepted in connect order");
            assert!(a.is_buffered());
            c.send("ping\n").await?;
            assert_eq!(a.recv_line().await?.as_deref(), Some("ping"));
            a.send("pong\r\n").await?;
            assert_eq!(c.recv_line().await?.as_deref(), Some("pong"));
        }
        Ok(())
    })
}

fn listen_with_a_backlog_accepts(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        s.bind_addr(0, fam.loopback())?;
        s.listen_backlog(1)?;
        assert!(s.get_sock_opt(SoBool::AcceptConn)?);
        let _c = TcpStream::connect((fam.ip(), port(&s)))?;
        s.accept().await?;
        Ok(())
    })
}

/// `listen`'s default backlog (`SOMAXCONN`) queues a burst of connections that nobody accepts
/// yet. A regression test: on Windows it was Winsock 1's `SOMAXCONN`, 5, and a full queue
/// drops a SYN, so the connect waits for the retry, a second later (1,000 clients at once
/// saw ends of stream under Wine).
#[test]
fn the_default_backlog_queues_a_burst_of_connections_before_any_accept() {
    // Over Winsock 1's 5, under the 128 of macOS and the BSDs.
    const BURST: usize = 64;
    run(async {
        let server = listener(Family::V4)?;
        let addr = SocketAddr::new(Family::V4.ip(), port(&server));
        // Blocking, on the loop's thread: nothing accepts meanwhile. A loopback handshake
        // takes microseconds; a dropped SYN is sent again after a second.
        let clients = (0..BURST)
            .map(|i| {
                let c = TcpStream::connect_timeout(&addr, Duration::from_millis(900))
                    .map_err(|e| io::Error::new(e.kind(), format!("connect {i}: {e}")))?;
                (&c).write_all(format!("{i}\n").as_bytes())?;
                Ok(c)
            })
            .collect::<io::Result<Vec<_>>>()?;
        for i in 0..BURST {
            let a = server.accept().await?;
            assert_eq!(
                a.recv_line().await?,
                Some(i.to_string()),
                "in connect order"
            );
        }
        drop(clients);
        Ok(())
    })
}

fn accept_on_a_socket_that_is_not_listening_fails(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        s.bind_addr(0, fam.loopback())?;
        let e = s.accept().await.expect_err("not listening");
        #[cfg(unix)]
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        // WSAEINVAL
        #[cfg(windows)]
        assert_eq!(e.raw_os_error(), Some(10022), "{e}");
        Ok(())
    })
}

fn connect_to_an_ip_literal(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let client = socket(fam, true)?;
        client.connect(fam.loopback(), port(&server)).await?;
        assert_eq!(
            client.peer_addr()?,
            (fam.loopback().to_owned(), port(&server))
        );
        let accepted = server.accept().await?;
        client.send("x").await?;
        assert_eq!(accepted.recv(1).await?, b"x");
        Ok(())
    })
}

#[test]
fn connect_to_a_bracketed_ipv6_literal() {
    if !Family::V6.available() {
        return;
    }
    run(async {
        let server = listener(Family::V6)?;
        let client = socket(Family::V6, true)?;
        client.connect("[::1]", port(&server)).await?;
        assert_eq!(client.peer_addr()?.0, "::1");
        Ok(())
    })
}

fn connect_to_localhost(fam: Family) {
    run(async move {
        let addrs = resolve_host("localhost", 0).await?;
        assert!(!addrs.is_empty(), "localhost resolves");
        let has_family = addrs.iter().any(|a| match fam {
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        });
        let server = listener(fam)?;
        let client = socket(fam, true)?;
        let r = client.connect("localhost", port(&server)).await;
        if has_family {
            assert!(
                addrs.contains(&SocketAddr::new(fam.ip(), 0)),
                "localhost of {fam:?} is the loopback: {addrs:?}"
            );
            r?;
            assert_eq!(client.peer_addr()?.0, fam.loopback());
            server.accept().await?;
        } else {
            // e.g. /etc/hosts maps localhost to 127.0.0.1 only. An IPv6 socket tries it as
            // ::ffff:127.0.0.1, where nothing listens (the server is on [::1]).
            let e = r.expect_err("no address of this family");
            let expected = match fam {
                Family::V4 => io::ErrorKind::AddrNotAvailable,
                // Windows: IPv6 sockets are IPv6-only by default, so only AAAA records are
                // looked up, and localhost has none.
                Family::V6 if cfg!(windows) => io::ErrorKind::NotFound,
                Family::V6 => io::ErrorKind::ConnectionRefused,
            };
            assert_eq!(e.kind(), expected, "{e}");
        }
        Ok(())
    })
}

fn connect_to_a_closed_port_is_refused(fam: Family) {
    run(async move {
        let client = socket(fam, true)?;
        let e = client
            .connect(fam.loopback(), closed_port(fam))
            .await
            .expect_err("nothing listens");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        Ok(())
    })
}

fn dial_an_ip_literal(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let client = dial(fam.loopback(), port(&server)).await?;
        assert!(client.is_buffered());
        assert_eq!(
            client.peer_addr()?,
            (fam.loopback().to_owned(), port(&server))
        );
        let (from, accepted) = server.accept_addr().await?;
        assert_eq!(from, fam.loopback());
        client.send("dialed\n").await?;
        assert_eq!(accepted.recv_line().await?.as_deref(), Some("dialed"));
        Ok(())
    })
}

fn dial_unbuffered(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let client = dial_with(fam.loopback(), port(&server), Protocol::TCP, false).await?;
        assert!(!client.is_buffered());
        let accepted = server.accept().await?;
        accepted.send("hi").await?;
        let mut got = Vec::new();
        while got.len() < 2 {
            let chunk = client.recv(2).await?;
            assert!(!chunk.is_empty());
            got.extend(chunk);
        }
        assert_eq!(got, b"hi");
        Ok(())
    })
}

#[test]
fn dial_localhost() {
    run(async {
        let addrs = resolve_host("localhost", 0).await?;
        // Listen on a loopback that localhost names; dial tries every address in turn.
        let fam = if addrs.iter().any(|a| a.ip() == Family::V4.ip()) {
            Family::V4
        } else {
            Family::V6
        };
        let server = listener(fam)?;
        let client = dial("localhost", port(&server)).await?;
        assert_eq!(
            client.peer_addr()?,
            (fam.loopback().to_owned(), port(&server))
        );
        let accepted = server.accept().await?;
        client.send("via localhost\n").await?;
        assert_eq!(
            accepted.recv_line().await?.as_deref(),
            Some("via localhost")
        );
        Ok(())
    })
}

fn dial_a_closed_port_returns_the_error(fam: Family) {
    run(async move {
        let e = dial(fam.loopback(), closed_port(fam))
            .await
            .expect_err("nothing listens");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        Ok(())
    })
}

#[test]
fn dial_an_unresolvable_name_fails() {
    run(async {
        // `.invalid` never resolves (RFC 2606).
        let r = dial("no-such-host.invalid", 80).await;
        assert!(r.is_err(), "dialed a name that cannot exist");
        let r = resolve_host("no-such-host.invalid", 80).await;
        assert!(r.is_err());
        let client = AsyncSocket::new()?;
        assert!(client.connect("no-such-host.invalid", 80).await.is_err());
        Ok(())
    })
}

#[test]
fn dial_an_empty_name_fails() {
    run(async {
        let e = dial("", 80).await.expect_err("empty host");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        Ok(())
    })
}

#[test]
fn resolve_host_returns_literals_without_a_lookup() {
    run(async {
        assert_eq!(
            resolve_host("127.0.0.1", 7).await?,
            vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 7)]
        );
        assert_eq!(
            resolve_host("[::1]", 8).await?,
            vec![SocketAddr::new(Family::V6.ip(), 8)]
        );
        Ok(())
    })
}

#[test]
fn a_dual_stack_listener_shows_ipv4_peers_without_the_mapped_prefix() {
    if !Family::V6.available() {
        return;
    }
    run(async {
        let server = socket(Family::V6, true)?;
        // Portability: Windows makes IPv6 sockets IPv6-only by default (Linux follows
        // net.ipv6.bindv6only, off by default): the listener asks for dual stack there.
        if cfg!(windows) {
            socket2::SockRef::from(&server).set_only_v6(false)?;
        }
        let only_v6 = socket2::SockRef::from(&server).only_v6()?;
        if only_v6 {
            eprintln!("skipped: IPv6 sockets are IPv6-only here (net.ipv6.bindv6only)");
            return Ok(());
        }
        server.set_sock_opt(SoBool::ReuseAddr, true)?;
        server.bind_addr(0, "")?;
        server.listen()?;
        let client = socket(Family::V4, true)?;
        client.connect("127.0.0.1", port(&server)).await?;
        let (text, accepted) = server.accept_addr().await?;
        assert_eq!(text, "127.0.0.1", "no ::ffff: prefix");
        assert_eq!(accepted.peer_addr()?, client.local_addr()?);
        assert_eq!(accepted.local_addr()?.0, "127.0.0.1");
        let typed = accepted.peer_socket_addr()?;
        assert!(
            typed.is_ipv6(),
            "the typed address keeps the mapped form: {typed}"
        );
        Ok(())
    })
}

#[test]
fn bind_to_localhost_resolves_the_name() {
    run(async {
        let s = AsyncSocket::new()?;
        s.bind_addr(0, "localhost")?;
        assert_eq!(s.local_addr()?.0, "127.0.0.1");
        Ok(())
    })
}

fn addresses_of_an_unconnected_socket(fam: Family) {
    run(async move {
        let s = socket(fam, true)?;
        if cfg!(windows) {
            // Winsock has no address for an unbound socket: WSAEINVAL.
            let e = s.local_addr().expect_err("unbound");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        } else {
            assert_eq!(s.local_addr()?, (fam.any_text().to_owned(), 0), "unbound");
        }
        let e = s.peer_addr().expect_err("no peer");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        s.bind_addr(0, fam.loopback())?;
        assert_eq!(s.local_addr()?.0, fam.loopback());
        assert!(s.peer_socket_addr().is_err());
        Ok(())
    })
}

family_tests!(
    addresses_of_an_unconnected_socket,
    bind_to_port_zero_gets_a_port_from_the_os,
    bind_to_the_empty_address_means_every_interface,
    bind_to_an_address_of_the_other_family_maps_ipv4_or_fails,
    bind_to_a_port_in_use_fails,
    accept_addr_reports_the_peer_address_as_text,
    accept_takes_connections_in_order_and_they_work_both_ways,
    listen_with_a_backlog_accepts,
    accept_on_a_socket_that_is_not_listening_fails,
    connect_to_an_ip_literal,
    connect_to_localhost,
    connect_to_a_closed_port_is_refused,
    dial_an_ip_literal,
    dial_unbuffered,
    dial_a_closed_port_returns_the_error,
);
