//! Unix domain sockets: a stream server with many clients, datagram sockets, addresses
//! (paths, unnamed, Linux abstract names), the errors of bad paths, and everything TCP
//! sockets offer (lines, buffering, `PEEK`, `recv(n)`, large sends, close while waiting)
//! on Unix streams.
// Unix only: Unix-domain sockets; skipped on Windows (not compiled there).
#![cfg(unix)]

#[macro_use]
mod support;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;

use asyncnet::{spawn, AsyncSocket, DatagramTruncated, Domain, Flags, SockType};
use support::{run, settle, source_of, unix_socket, TempSocketPath};

const CLIENTS: usize = 200;
const LINES: usize = 50;

/// A listening Unix stream socket at a fresh path; accepted sockets buffered or not.
fn unix_listener(tag: &str, buffered: bool) -> io::Result<(AsyncSocket, TempSocketPath)> {
    let path = TempSocketPath::new(tag);
    let server = AsyncSocket::builder()
        .domain(Domain::UNIX)
        .buffered(buffered)
        .build()?;
    server.bind_unix(path.path())?;
    server.listen()?;
    Ok((server, path))
}

/// A connected Unix stream pair `(client, accepted)`, both buffered or both not, and the
/// listener's path (removed when dropped).
async fn unix_pair(buffered: bool) -> io::Result<(AsyncSocket, AsyncSocket, TempSocketPath)> {
    let (server, path) = unix_listener("pair", buffered)?;
    let client = AsyncSocket::builder()
        .domain(Domain::UNIX)
        .buffered(buffered)
        .build()?;
    client.connect_unix(path.path()).await?;
    let accepted = server.accept().await?;
    server.close()?;
    Ok((client, accepted, path))
}

fn line(id: usize, n: usize) -> String {
    format!("{id}:{n}:{}", "y".repeat(n % 13))
}

async fn echo_lines(conn: AsyncSocket, served: Rc<RefCell<usize>>) -> io::Result<()> {
    while let Some(l) = conn.recv_line().await? {
        *served.borrow_mut() += 1;
        conn.send(format!("{l}\n")).await?;
    }
    conn.close()?;
    Ok(())
}

async fn line_client(path: PathBuf, id: usize) -> io::Result<()> {
    let c = unix_socket(SockType::STREAM)?;
    c.connect_unix(&path).await?;
    for n in 0..LINES {
        // Both terminators: the server strips either.
        let end = if n % 2 == 0 { "\r\n" } else { "\n" };
        c.send(format!("{}{end}", line(id, n))).await?;
        if n % 10 == 0 {
            support::yield_now().await;
        }
    }
    c.shutdown_write()?;
    for n in 0..LINES {
        assert_eq!(c.recv_line().await?, Some(line(id, n)), "client {id}");
    }
    assert_eq!(c.recv_line().await?, None, "client {id}: end of stream");
    c.close()?;
    Ok(())
}

#[test]
fn two_hundred_clients_fifty_lines_each_over_a_unix_stream_all_echoed() {
    run(async {
        let (server, path) = unix_listener("scale", true)?;
        let served = Rc::new(RefCell::new(0));
        let acceptor = server.clone();
        let counter = served.clone();
        let accept_loop = spawn(async move {
            let mut handlers = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let conn = acceptor.accept().await?;
                handlers.push(spawn(echo_lines(conn, counter.clone())));
            }
            for h in handlers {
                h.await?;
            }
            Ok::<_, io::Error>(())
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| spawn(line_client(path.path().to_owned(), id)))
            .collect();
        for c in clients {
            c.await?;
        }
        accept_loop.await?;
        assert_eq!(*served.borrow(), CLIENTS * LINES, "every line received");
        server.close()?;
        Ok(())
    })
}

#[test]
fn unix_datagrams_round_trip_with_the_sender_path_and_port_zero() {
    run(async {
        let (pa, pb) = (TempSocketPath::new("dga"), TempSocketPath::new("dgb"));
        let a = unix_socket(SockType::DGRAM)?;
        a.bind_unix(pa.path())?;
        let b = unix_socket(SockType::DGRAM)?;
        b.bind_unix(pb.path())?;
        assert_eq!(a.local_addr()?, (pa.text(), 0));

        // Fewer than Linux's default `max_dgram_qlen` (10): all fit in a's queue at once.
        for i in 0..8 {
            b.send_to_unix(pa.path(), format!("datagram {i}")).await?;
        }
        b.send_to_unix(pa.path(), b"").await?;
        for i in 0..8 {
            let (data, address, port) = a.recv_from(64).await?;
            assert_eq!(data, format!("datagram {i}").as_bytes(), "in order");
            assert_eq!((address, port), (pb.text(), 0), "the sender's path");
        }
        let (data, _, _) = a.recv_from(64).await?;
        assert!(data.is_empty(), "an empty datagram is not end-of-stream");

        a.send_to_unix(pb.path(), "reply").await?;
        assert_eq!(b.recv_from(64).await?, (b"reply".to_vec(), pa.text(), 0));

        // Truncation is reported with the sender's path.
        b.send_to_unix(pa.path(), "0123456789").await?;
        let e = a.recv_from(3).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let cut = source_of::<DatagramTruncated>(&e).expect("DatagramTruncated");
        assert_eq!(
            (&cut.data[..], &cut.address[..], cut.port),
            (&b"012"[..], &pb.text()[..], 0)
        );

        // A connected Unix datagram socket: `send`/`recv`, one datagram each.
        let pc = TempSocketPath::new("dgc");
        let c = unix_socket(SockType::DGRAM)?;
        c.bind_unix(pc.path())?;
        c.connect_unix(pa.path()).await?;
        assert_eq!(c.peer_addr()?, (pa.text(), 0));
        c.send("one").await?;
        c.send("two").await?;
        assert_eq!(a.recv_from(64).await?, (b"one".to_vec(), pc.text(), 0));
        assert_eq!(a.recv_from(64).await?.0, b"two");
        a.send_to_unix(pc.path(), "back").await?;
        assert_eq!(c.recv(64).await?, b"back");
        Ok(())
    })
}

#[test]
fn unnamed_unix_datagram_sender_shows_as_an_empty_address() {
    run(async {
        let pa = TempSocketPath::new("anon-rx");
        let a = unix_socket(SockType::DGRAM)?;
        a.bind_unix(pa.path())?;
        let anon = unix_socket(SockType::DGRAM)?;
        anon.send_to_unix(pa.path(), "who?").await?;
        anon.send_to_unix(pa.path(), "me").await?;
        assert_eq!(a.recv_from(64).await?, (b"who?".to_vec(), String::new(), 0));
        let (mut buf, mut address, mut port) = ([0u8; 8], String::from("stale"), 9);
        let n = a.recv_from_into(&mut buf, &mut address, &mut port).await?;
        assert_eq!((&buf[..n], address.as_str(), port), (&b"me"[..], "", 0));
        Ok(())
    })
}

/// `send_to_unix` into `to` from `senders` sockets at once, `each` datagrams apiece, while
/// one receiver reads them all: far more than the receiver's queue holds (Linux's
/// `max_dgram_qlen` is 10 by default), so senders must wait for room and then go on.
async fn many_unix_datagram_senders(senders: usize, each: usize) -> io::Result<()> {
    let to = TempSocketPath::new("dgq");
    let rx = unix_socket(SockType::DGRAM)?;
    rx.bind_unix(to.path())?;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let path = to.path().to_owned();
            spawn(async move {
                // Named: `recv_from` of an unnamed sender is tested on its own.
                let own = TempSocketPath::new("dgq-tx");
                let tx = unix_socket(SockType::DGRAM)?;
                tx.bind_unix(own.path())?;
                for i in 0..each {
                    tx.send_to_unix(&path, format!("{s} {i}")).await?;
                }
                Ok::<_, io::Error>(())
            })
        })
        .collect();
    let mut next = vec![0; senders];
    for _ in 0..senders * each {
        let (data, _, _) = rx.recv_from(64).await?;
        let text = String::from_utf8(data).expect("ASCII");
        let (s, i) = text.split_once(' ').expect("two fields");
        let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[s], "sender {s}: in order, none missing");
        next[s] += 1;
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

#[test]
fn one_unix_datagram_sender_outpacing_the_receiver_queue_waits_and_loses_nothing() {
    run(many_unix_datagram_senders(1, 200))
}

#[test]
fn many_unix_datagram_senders_outpacing_the_receiver_queue_all_get_through() {
    run(many_unix_datagram_senders(5, 40))
}

#[test]
fn connecting_to_a_missing_path_is_not_found() {
    run(async {
        let path = TempSocketPath::new("missing");
        let c = unix_socket(SockType::STREAM)?;
        let e = c.connect_unix(path.path()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let d = unix_socket(SockType::DGRAM)?;
        let e = d.send_to_unix(path.path(), "x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "send_to_unix: {e}");

        // A socket file with nobody listening: refused.
        let bound = unix_socket(SockType::STREAM)?;
        bound.bind_unix(path.path())?;
        let c = unix_socket(SockType::STREAM)?;
        let e = c.connect_unix(path.path()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        Ok(())
    })
}

#[test]
fn binding_an_existing_path_is_addr_in_use() {
    run(async {
        let (_server, path) = unix_listener("inuse", true)?;
        let second = unix_socket(SockType::STREAM)?;
        let e = second.bind_unix(path.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");

        // A plain file in the way, too; it is left alone.
        let file = TempSocketPath::new("plainfile");
        std::fs::write(file.path(), "keep me")?;
        let e = second.bind_unix(file.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert_eq!(std::fs::read(file.path())?, b"keep me");
        Ok(())
    })
}

#[test]
fn path_longer_than_the_os_allows_is_invalid_input_and_creates_no_file() {
    run(async {
        let dir = std::env::temp_dir();
        let long = dir.join(format!(
            "asyncnet-{}-{}",
            std::process::id(),
            "l".repeat(200)
        ));
        assert!(long.as_os_str().len() >= 200);
        // The prefix the kernel would have kept, had the path been cut short.
        let cut = PathBuf::from(OsStr::from_bytes(&long.as_os_str().as_bytes()[..107]));
        for path in [&long, &cut] {
            let _ = std::fs::remove_file(path);
        }

        let s = unix_socket(SockType::STREAM)?;
        let e = s.bind_unix(&long).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "bind: {e}");
        let e = s.connect_unix(&long).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "connect: {e}");
        let d = unix_socket(SockType::DGRAM)?;
        let e = d.bind_unix(&long).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "datagram bind: {e}");
        let e = d.send_to_unix(&long, "x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "send_to_unix: {e}");

        assert!(!long.exists(), "no file at the long path");
        assert!(!cut.exists(), "no file at a truncated path");
        assert_eq!(
            s.local_addr()?,
            (String::new(), 0),
            "the socket stayed unbound"
        );
        Ok(())
    })
}

#[test]
fn nul_inside_a_path_is_invalid_input() {
    run(async {
        let before = TempSocketPath::new("nul");
        let mut bytes = before.path().as_os_str().as_bytes().to_vec();
        bytes.extend_from_slice(b"\0after");
        let with_nul = PathBuf::from(OsStr::from_bytes(&bytes));

        let s = unix_socket(SockType::STREAM)?;
        let e = s.bind_unix(&with_nul).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "bind: {e}");
        let e = s.connect_unix(&with_nul).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "connect: {e}");
        let d = unix_socket(SockType::DGRAM)?;
        let e = d.send_to_unix(&with_nul, "x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "send_to_unix: {e}");
        assert!(
            !before.path().exists(),
            "nothing bound at the part before the NUL"
        );

        let e = s.bind_unix("").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "empty path: {e}");
        Ok(())
    })
}

#[cfg(target_os = "linux")]
#[test]
fn linux_abstract_name_binds_connects_and_shows_as_at_name() {
    run(async {
        let name = format!("asyncnet-abstract-{}", std::process::id());
        let address = format!("\0{name}");
        let server = unix_socket(SockType::STREAM)?;
        server.bind_unix(&address)?;
        server.listen()?;
        assert_eq!(server.local_addr()?, (format!("@{name}"), 0));
        assert!(!std::path::Path::new(&name).exists(), "no file");

        let client = unix_socket(SockType::STREAM)?;
        client.connect_unix(&address).await?;
        assert_eq!(client.peer_addr()?, (format!("@{name}"), 0));
        let (peer, conn) = server.accept_addr().await?;
        assert_eq!(peer, "", "an unnamed client");
        client.send("over an abstract name\n").await?;
        assert_eq!(
            conn.recv_line().await?.as_deref(),
            Some("over an abstract name")
        );

        // Abstract datagram sockets too.
        let dname = format!("asyncnet-abstract-dgram-{}", std::process::id());
        let d = unix_socket(SockType::DGRAM)?;
        d.bind_unix(format!("\0{dname}"))?;
        let tx = unix_socket(SockType::DGRAM)?;
        tx.bind_unix(format!("\0{dname}-tx"))?;
        tx.send_to_unix(format!("\0{dname}"), "abstract datagram")
            .await?;
        assert_eq!(
            d.recv_from(64).await?,
            (b"abstract datagram".to_vec(), format!("@{dname}-tx"), 0)
        );
        Ok(())
    })
}

#[test]
fn local_addr_peer_addr_and_accept_addr_on_a_unix_stream() {
    run(async {
        let (server, path) = unix_listener("addrs", true)?;
        assert_eq!(server.local_addr()?, (path.text(), 0), "the bound path");
        let client = unix_socket(SockType::STREAM)?;
        assert_eq!(client.local_addr()?, (String::new(), 0), "unnamed");
        client.connect_unix(path.path()).await?;
        assert_eq!(client.peer_addr()?, (path.text(), 0), "the server's path");
        assert_eq!(client.local_addr()?, (String::new(), 0), "still unnamed");
        let (address, conn) = server.accept_addr().await?;
        assert_eq!(address, "", "an unnamed client");
        assert_eq!(conn.local_addr()?, (path.text(), 0));
        assert_eq!(conn.peer_addr()?, (String::new(), 0));

        // A client bound to a path of its own is shown by that path.
        let named_path = TempSocketPath::new("named-client");
        let named = unix_socket(SockType::STREAM)?;
        named.bind_unix(named_path.path())?;
        named.connect_unix(path.path()).await?;
        let (address, conn) = server.accept_addr().await?;
        assert_eq!(address, named_path.text());
        assert_eq!(conn.peer_addr()?, (named_path.text(), 0));

        // The typed forms say plainly that these are not IP addresses.
        let e = client.peer_socket_addr().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        Ok(())
    })
}

#[test]
fn lines_on_a_unix_stream_buffered_and_unbuffered() {
    for buffered in [true, false] {
        run(async move {
            let (client, conn, _path) = unix_pair(buffered).await?;
            client
                .send("crlf\r\nlf\n\r\n\na lone \r stays\nthe partial end")
                .await?;
            client.shutdown_write()?;
            for want in ["crlf", "lf", "", "", "a lone \r stays", "the partial end"] {
                assert_eq!(conn.recv_line().await?.as_deref(), Some(want), "{buffered}");
            }
            assert_eq!(conn.recv_line().await?, None, "end of stream");
            Ok(())
        })
    }
}

#[test]
fn buffering_and_peek_on_a_unix_stream() {
    for buffered in [true, false] {
        run(async move {
            let (client, conn, _path) = unix_pair(buffered).await?;
            client.send("first\nsecond\nthird").await?;
            assert_eq!(
                conn.recv_line_with(Flags::PEEK, asyncnet::MAX_LINE_LENGTH)
                    .await?
                    .as_deref(),
                Some("first"),
                "a peeked line"
            );
            assert_eq!(
                conn.recv_line().await?.as_deref(),
                Some("first"),
                "is still there"
            );
            if buffered {
                assert!(conn.has_data_buffered(), "the rest was read ahead");
            }
            let peeked = conn.recv_with(6, Flags::PEEK).await?;
            assert_eq!(peeked, b"second");
            assert_eq!(conn.recv(7).await?, b"second\n");
            client.close()?;
            let rest = conn.recv(100).await?;
            assert_eq!(rest, b"third");
            assert!(conn.recv(100).await?.is_empty(), "end of stream");
            assert!(!conn.has_data_buffered());
            Ok(())
        })
    }
}

#[test]
fn recv_n_waits_for_n_bytes_when_buffered_and_gives_what_came_when_not() {
    run(async {
        let (client, conn, _path) = unix_pair(true).await?;
        let reader = spawn({
            let conn = conn.clone();
            async move { conn.recv(10).await }
        });
        client.send("01234").await?;
        settle().await;
        assert!(
            !reader.is_finished(),
            "buffered recv(10) waits for all 10 bytes"
        );
        client.send("56789extra").await?;
        assert_eq!(reader.await?, b"0123456789");
        assert_eq!(conn.recv(5).await?, b"extra");
        Ok(())
    });
    run(async {
        let (client, conn, _path) = unix_pair(false).await?;
        client.send("01234").await?;
        assert_eq!(
            conn.recv(10).await?,
            b"01234",
            "unbuffered: what one read gave"
        );
        Ok(())
    })
}

#[test]
fn five_megabyte_payload_crosses_a_unix_stream_intact() {
    const LEN: usize = 5 * 1024 * 1024;
    run(async {
        let (client, conn, _path) = unix_pair(true).await?;
        let payload: Vec<u8> = (0..LEN).map(|i| (i * 7 % 253) as u8).collect();
        let sent = payload.clone();
        let writer = spawn(async move {
            client.send(&sent).await?;
            client.close()?;
            Ok::<_, io::Error>(())
        });
        let got = conn.recv(LEN).await?;
        writer.await?;
        assert_eq!(got.len(), LEN);
        assert!(got == payload, "the payload arrived unchanged");
        assert!(conn.recv(1).await?.is_empty(), "then end of stream");
        Ok(())
    })
}

#[test]
fn close_while_recv_waits_on_a_unix_stream_ends_it_with_not_connected() {
    for buffered in [true, false] {
        run(async move {
            let (_client, conn, _path) = unix_pair(buffered).await?;
            let waiting = spawn({
                let conn = conn.clone();
                async move { conn.recv(10).await }
            });
            let line_waiting = spawn({
                let conn = conn.clone();
                async move { conn.recv_line().await }
            });
            settle().await;
            assert!(!waiting.is_finished());
            conn.close()?;
            let e = waiting.await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
            let e = line_waiting.await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
            Ok(())
        })
    }
}
