//! `dial` races addresses as RFC 8305 (Happy Eyeballs v2) says, on loopback only.
//!
//! A test resolver (the `Resolver` hook) answers each family with chosen addresses after a
//! chosen delay; `::1` and `127.0.0.1` stand for the two families, other ports and other
//! `127.x.y.z` addresses for more hosts. A *black hole* is a listener whose accept queue is
//! full of connections nobody accepts: the kernel drops further SYNs, so a connect to it
//! hangs as one to a host behind a broken route does (until the OS's TCP timeout, minutes).
//!
//! The tests run one at a time (a lock): two of them count the process's descriptors.

mod support;

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use asyncnet::{
    sleep_async, AsyncSocket, DialError, Dialer, Family, FamilyPreference, ResolveFuture, Resolver,
    RESOLUTION_DELAY,
};
use socket2::{Domain, Socket, Type};
use support::{run, source_of};

/// Far below any TCP connect timeout (Linux: about 2 minutes): a dial that ends within it
/// did not wait for one.
const NOT_A_TCP_TIMEOUT: Duration = Duration::from_secs(5);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ipv6_loopback() -> bool {
    support::Family::V6.available()
}

const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A listener whose accept queue is full: connects to it get no answer.
struct BlackHole {
    addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<Socket>,
}

fn black_hole(ip: IpAddr) -> BlackHole {
    let domain = Domain::for_address(SocketAddr::new(ip, 0));
    let listener = Socket::new(domain, Type::STREAM, None).expect("socket");
    listener
        .bind(&SocketAddr::new(ip, 0).into())
        .expect("bind the black hole");
    // Backlog 0: the queue holds one connection (Linux), and further SYNs are dropped.
    listener.listen(0).expect("listen");
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..32 {
        let s = Socket::new(domain, Type::STREAM, None).expect("socket");
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into()); // EINPROGRESS
                                         // A loopback handshake takes microseconds: 200 ms without one means the SYN was
                                         // dropped, so the queue is full.
        let deadline = Instant::now() + Duration::from_millis(200);
        let connected = loop {
            if s.peer_addr().is_ok() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !connected {
            // Dropped, not refused (net.ipv4.tcp_abort_on_overflow=1 would refuse).
            let error = s.take_error().expect("SO_ERROR");
            assert!(
                error.is_none(),
                "a full accept queue answered {error:?}: no black hole"
            );
        }
        fillers.push(s);
        if !connected {
            return BlackHole {
                addr,
                _listener: listener,
                _fillers: fillers,
            };
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled: no black hole on this OS");
}

/// A listening socket of ours on `ip`.
fn live(ip: IpAddr) -> io::Result<AsyncSocket> {
    let s = AsyncSocket::builder()
        .domain(Domain::for_address(SocketAddr::new(ip, 0)))
        .build()?;
    s.bind_addr(0, &ip.to_string())?;
    s.listen()?;
    Ok(s)
}

/// An address on `ip` where nothing listens (bound, so no one else takes the port): refused.
fn refusing(ip: IpAddr) -> (Socket, SocketAddr) {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        None,
    )
    .expect("socket");
    s.bind(&SocketAddr::new(ip, 0).into()).expect("bind");
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// A test resolver: per family, the addresses it answers and how long it takes.
#[derive(Clone, Default)]
struct Table {
    v6: (Duration, Vec<SocketAddr>),
    v4: (Duration, Vec<SocketAddr>),
    /// The families asked for, in order.
    asked: Rc<RefCell<Vec<Family>>>,
}

impl Table {
    fn new(v6: Vec<SocketAddr>, v4: Vec<SocketAddr>) -> Table {
        Table {
            v6: (Duration::ZERO, v6),
            v4: (Duration::ZERO, v4),
            asked: Rc::default(),
        }
    }

    fn v6_after(mut self, delay: Duration) -> Table {
        self.v6.0 = delay;
        self
    }
}

impl Resolver for Table {
    fn lookup(&self, _host: &str, _port: u16, family: Family) -> ResolveFuture {
        self.asked.borrow_mut().push(family);
        let (delay, addrs) = match family {
            Family::Ipv6 => self.v6.clone(),
            Family::Ipv4 => self.v4.clone(),
        };
        Box::pin(async move {
            if !delay.is_zero() {
                sleep_async(delay).await;
            }
            Ok(addrs)
        })
    }
}

/// Each attempt's address and when it started, as `on_attempt` saw them.
type Attempts = Rc<RefCell<Vec<(SocketAddr, Instant)>>>;

fn recording(dialer: Dialer) -> (Dialer, Attempts) {
    let seen: Attempts = Rc::default();
    let log = seen.clone();
    let dialer = dialer.on_attempt(move |addr, _| {
        log.borrow_mut().push((addr, Instant::now()));
        Ok(())
    });
    (dialer, seen)
}

fn addrs(seen: &Attempts) -> Vec<SocketAddr> {
    seen.borrow().iter().map(|(a, _)| *a).collect()
}

#[test]
fn black_holed_ipv6_first_loses_to_live_ipv4_one_attempt_delay_later() {
    let _serial = serial();
    if !ipv6_loopback() {
        return;
    }
    let hole = black_hole(V6);
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        let delay = Duration::from_millis(200);
        let (dialer, seen) = recording(
            Dialer::new()
                .attempt_delay(delay)
                .resolver(Table::new(vec![hole.addr], vec![target])),
        );
        let start = Instant::now();
        let client = dialer.dial("dual.test", 0).await?;
        let took = start.elapsed();
        assert_eq!(
            client.peer_socket_addr()?,
            target,
            "the live IPv4 address won"
        );
        assert_eq!(addrs(&seen), [hole.addr, target], "IPv6 tried first");
        let gap = seen.borrow()[1].1 - seen.borrow()[0].1;
        assert!(
            gap >= delay - Duration::from_millis(5),
            "second attempt after {gap:?}"
        );
        assert!(took < NOT_A_TCP_TIMEOUT, "connected after {took:?}");
        let peer = server.accept().await?;
        assert_eq!(peer.peer_socket_addr()?, client.local_socket_addr()?);
        Ok(())
    });
}

#[test]
fn families_interleave_and_the_fourth_address_wins_after_three_delays() {
    let _serial = serial();
    if !ipv6_loopback() {
        return;
    }
    let (h6a, h6b, h4a) = (black_hole(V6), black_hole(V6), black_hole(V4));
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        let delay = Duration::from_millis(100);
        let table = Table::new(vec![h6a.addr, h6b.addr], vec![h4a.addr, target]);
        let asked = table.asked.clone();
        let (dialer, seen) = recording(Dialer::new().attempt_delay(delay).resolver(table));
        let start = Instant::now();
        let client = dialer.dial("many.test", 0).await?;
        let took = start.elapsed();
        assert_eq!(client.peer_socket_addr()?, target);
        // RFC 8305 section 4, First Address Family Count 1: 6, 4, 6, 4.
        assert_eq!(addrs(&seen), [h6a.addr, h4a.addr, h6b.addr, target]);
        assert_eq!(
            *asked.borrow(),
            [Family::Ipv6, Family::Ipv4],
            "AAAA asked first"
        );
        assert!(
            took >= 3 * delay - Duration::from_millis(5),
            "took {took:?}"
        );
        assert!(took < NOT_A_TCP_TIMEOUT, "took {took:?}");
        Ok(())
    });
}

#[test]
fn black_holed_ipv4_addresses_are_passed_over_for_a_live_one() {
    let _serial = serial();
    // Other 127.x.y.z addresses are other hosts: no IPv6 needed.
    let holes = [
        black_hole(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        black_hole(IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))),
    ];
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        let table = Table::new(vec![], vec![holes[0].addr, holes[1].addr, target]);
        let (dialer, seen) = recording(Dialer::new().resolver(table));
        let start = Instant::now();
        let client = dialer.dial("v4.test", 0).await?;
        let took = start.elapsed();
        assert_eq!(client.peer_socket_addr()?, target);
        assert_eq!(addrs(&seen), [holes[0].addr, holes[1].addr, target]);
        // Two default attempt delays (250 ms each), not a TCP timeout.
        assert!(took >= Duration::from_millis(495), "took {took:?}");
        assert!(took < NOT_A_TCP_TIMEOUT, "took {took:?}");
        Ok(())
    });
}

#[test]
fn a_refused_attempt_starts_the_next_at_once() {
    let _serial = serial();
    let (_bound, closed) = refusing(V4);
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        // The longest attempt delay: only a failure can start the second attempt early.
        let table = Table::new(vec![], vec![closed, target]);
        let (dialer, seen) = recording(
            Dialer::new()
                .attempt_delay(Duration::from_secs(2))
                .resolver(table),
        );
        let start = Instant::now();
        let client = dialer.dial("refuses.test", 0).await?;
        assert_eq!(client.peer_socket_addr()?, target);
        assert_eq!(addrs(&seen), [closed, target]);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "waited for the attempt delay: {took:?}"
        );
        Ok(())
    });
}

#[test]
fn late_aaaa_answer_connects_over_ipv4_after_the_resolution_delay() {
    let _serial = serial();
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        // The AAAA answer would come after 3 s, with an address nobody listens on.
        let aaaa_delay = Duration::from_secs(3);
        let v6_target = SocketAddr::new(V6, 9);
        let table = Table::new(vec![v6_target], vec![target]).v6_after(aaaa_delay);
        let (dialer, seen) = recording(Dialer::new().resolver(table));
        let start = Instant::now();
        let client = dialer.dial("slow-aaaa.test", 0).await?;
        let took = start.elapsed();
        assert_eq!(client.peer_socket_addr()?, target);
        assert_eq!(addrs(&seen), [target]);
        let first = seen.borrow()[0].1 - start;
        assert!(
            first >= RESOLUTION_DELAY.saturating_sub(Duration::from_millis(2)),
            "connected after {first:?}, without waiting for AAAA"
        );
        assert!(took < aaaa_delay, "waited for the AAAA answer: {took:?}");
        Ok(())
    });
}

#[test]
fn aaaa_answer_within_the_resolution_delay_is_tried_first() {
    let _serial = serial();
    if !ipv6_loopback() {
        return;
    }
    run(async {
        let (s6, s4) = (live(V6)?, live(V4)?);
        let (t6, t4) = (s6.local_socket_addr()?, s4.local_socket_addr()?);
        let table = Table::new(vec![t6], vec![t4]).v6_after(Duration::from_millis(20));
        let (dialer, seen) = recording(Dialer::new().resolver(table));
        let client = dialer.dial("quick-aaaa.test", 0).await?;
        assert_eq!(client.peer_socket_addr()?, t6);
        assert_eq!(addrs(&seen), [t6]);
        Ok(())
    });
}

#[test]
fn all_refused_error_names_every_address() {
    let _serial = serial();
    let with_v6 = ipv6_loopback();
    let refusers: Vec<_> = [V6, V4, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]
        .into_iter()
        .filter(|ip| with_v6 || ip.is_ipv4())
        .map(refusing)
        .collect();
    let targets: Vec<SocketAddr> = refusers.iter().map(|r| r.1).collect();
    run(async {
        let (v6, v4) = targets.iter().partition(|a| a.is_ipv6());
        let (dialer, seen) = recording(Dialer::new().resolver(Table::new(v6, v4)));
        let e = dialer.dial("nobody.test", 80).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let text = e.to_string();
        for t in &targets {
            assert!(text.contains(&t.to_string()), "{t} missing from: {text}");
        }
        let detail: &DialError = source_of(&e).expect("a DialError source");
        let tried: Vec<SocketAddr> = detail.attempts().iter().map(|(a, _)| *a).collect();
        assert_eq!(tried, addrs(&seen), "in the order the attempts started");
        assert_eq!(tried.len(), targets.len());
        assert!(detail
            .attempts()
            .iter()
            .all(|(_, e)| e.kind() == io::ErrorKind::ConnectionRefused));
        Ok(())
    });
}

#[test]
fn timeout_over_black_holes_is_timed_out_and_names_them() {
    let _serial = serial();
    let holes = [
        black_hole(V4),
        black_hole(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))),
    ];
    run(async {
        let table = Table::new(vec![], vec![holes[0].addr, holes[1].addr]);
        let dialer = Dialer::new()
            .attempt_delay(Duration::from_millis(100))
            .timeout(Duration::from_millis(400))
            .resolver(table);
        let start = Instant::now();
        let e = dialer.dial("holes.test", 0).await.unwrap_err();
        assert!(start.elapsed() < NOT_A_TCP_TIMEOUT);
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let detail: &DialError = source_of(&e).expect("a DialError source");
        assert!(detail.timed_out());
        assert_eq!(detail.attempts().len(), 2);
        let text = e.to_string();
        assert!(
            text.contains(&holes[0].addr.to_string()) && text.contains(&holes[1].addr.to_string()),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn literal_addresses_never_reach_the_resolver() {
    let _serial = serial();
    run(async {
        let server = live(V4)?;
        let port = server.local_addr()?.1;
        let calls = Rc::new(RefCell::new(0));
        let counted = calls.clone();
        let dialer = Dialer::new().resolver(move |_host: String, _port: u16, _family: Family| {
            *counted.borrow_mut() += 1;
            async { Ok(vec![]) }
        });
        dialer.dial("127.0.0.1", port).await?;
        if ipv6_loopback() {
            let s6 = live(V6)?;
            dialer.dial("[::1]", s6.local_addr()?.1).await?;
            dialer.dial("::1", s6.local_addr()?.1).await?;
        }
        assert_eq!(*calls.borrow(), 0);
        // A name does reach it.
        assert!(dialer.dial("name.test", port).await.is_err());
        assert_eq!(*calls.borrow(), 2, "one AAAA and one A lookup");
        Ok(())
    });
}

#[test]
fn local_address_restricts_the_dial_to_its_family() {
    let _serial = serial();
    run(async {
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        let table = Table::new(vec![SocketAddr::new(V6, 9)], vec![target]);
        let asked = table.asked.clone();
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)), 0);
        let (dialer, seen) = recording(Dialer::new().local_addr(local).resolver(table));
        let client = dialer.dial("bound.test", 0).await?;
        assert_eq!(client.local_socket_addr()?.ip(), local.ip());
        assert_eq!(addrs(&seen), [target]);
        assert_eq!(*asked.borrow(), [Family::Ipv4], "no AAAA lookup");
        let e = Dialer::new()
            .local_addr(local)
            .families(FamilyPreference::Ipv6Only)
            .dial("bound.test", 0)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        Ok(())
    });
}

#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[test]
fn tls_handshake_runs_on_the_winner_only() {
    let _serial = serial();
    #[path = "support/tls.rs"]
    mod tls_support;
    let pki = tls_support::Pki::new();
    let hole = black_hole(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    run(async {
        let server = tls_support::tls_listener(&pki.server_ctx())?;
        let target = server.local_socket_addr()?;
        let accepted = asyncnet::spawn(async move { server.accept().await });
        let table = Table::new(vec![], vec![hole.addr, target]);
        let (dialer, seen) = recording(
            Dialer::new()
                .attempt_delay(Duration::from_millis(100))
                .tls(&pki.client_ctx())
                .resolver(table),
        );
        // The certificate is for "localhost": the name dialled is the name verified.
        let client = dialer.dial("localhost", 0).await?;
        assert!(client.tls_info().is_some(), "handshake done");
        assert_eq!(addrs(&seen), [hole.addr, target]);
        let peer = accepted.await?;
        client.send("over tls\n").await?;
        assert_eq!(peer.recv_line().await?.as_deref(), Some("over tls"));
        Ok(())
    });
}

#[test]
// Counts descriptors (Linux) or handles (Windows): `support::open_descriptors`.
#[cfg(any(target_os = "linux", windows))]
fn dropped_dial_mid_race_leaves_no_descriptor_and_drops_its_lookups() {
    let _serial = serial();
    let holes = [
        black_hole(V4),
        black_hole(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4))),
    ];
    run(async {
        // Make the loop's own descriptors before counting.
        sleep_async(Duration::from_millis(1)).await;
        let before = support::open_descriptors_at_rest().await;
        let v6_flag = Rc::new(std::cell::Cell::new(false));
        let v6_dropped = v6_flag.clone();
        let hole_addrs = [holes[0].addr, holes[1].addr];
        let resolver = move |_host: String, _port: u16, family: Family| {
            let flag = match family {
                Family::Ipv6 => Some(support::DropFlag(v6_dropped.clone())),
                Family::Ipv4 => None,
            };
            async move {
                match flag {
                    // An AAAA lookup that never answers.
                    Some(flag) => {
                        let _flag = flag;
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    None => Ok(hole_addrs.to_vec()),
                }
            }
        };
        let (dialer, seen) = recording(
            Dialer::new()
                .attempt_delay(Duration::from_millis(100))
                .resolver(resolver),
        );
        // Past the Resolution Delay and one attempt delay: two attempts under way. Under
        // Wine, whose sockets are slower to make, with more time for the second to start.
        let past = Duration::from_millis(if support::under_wine() { 1000 } else { 250 });
        let r = asyncnet::with_timeout(dialer.dial("drop.test", 0), past).await;
        assert!(r.is_err(), "the dial cannot have connected");
        assert_eq!(addrs(&seen), hole_addrs);
        assert!(
            v6_flag.get(),
            "the pending AAAA lookup was dropped with the dial"
        );
        assert_eq!(
            support::open_descriptors_settled(before).await,
            before,
            "every attempt's socket closed"
        );
        Ok(())
    });
}

#[test]
// Counts descriptors (Linux) or handles (Windows): `support::open_descriptors`.
#[cfg(any(target_os = "linux", windows))]
fn a_thousand_parallel_dials_to_dead_and_live_addresses_leave_no_descriptor() {
    let _serial = serial();
    let wanted: usize = 1000;
    // Each dial holds at most two sockets; the accepted side one more.
    let limit = support::raise_nofile_limit(4 * wanted as support::Rlim + 256) as usize;
    let dials = if limit >= 4 * wanted + 256 {
        wanted
    } else {
        let msg = format!("RLIMIT_NOFILE {limit} is below {}", 4 * wanted + 256);
        if support::in_ci() {
            panic!("{msg}");
        }
        let scaled = limit.saturating_sub(256) / 4;
        eprintln!("{msg}: running {scaled} dials instead of {wanted}");
        scaled
    };
    let hole = black_hole(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)));
    let (_bound, closed) = refusing(V4);
    let (_bound2, closed2) = refusing(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    // Under Wine each socket costs calls to its server: the first turn alone, which makes a
    // socket for every dial, takes about 1.8 s there (50 ms on Linux), so the overall
    // timeout leaves room for it. What each dial must give is the same.
    let timeout = Duration::from_millis(if support::under_wine() { 6000 } else { 1500 });
    run(async move {
        // What a first socket makes lazily (the loop's poller, Winsock's state) exists
        // before the count.
        drop(AsyncSocket::new()?);
        let before = support::open_descriptors_at_rest().await;
        let server = live(V4)?;
        let target = server.local_socket_addr()?;
        let acceptor = server.clone();
        let accepted = Rc::new(std::cell::Cell::new(0usize));
        let counter = accepted.clone();
        let accepting = asyncnet::spawn(async move {
            while acceptor.accept().await.is_ok() {
                counter.set(counter.get() + 1); // the socket is dropped at once: closed
            }
        });
        let mut handles = Vec::with_capacity(dials);
        for i in 0..dials {
            let list = match i % 4 {
                0 => vec![hole.addr, target], // live after one attempt delay
                1 => vec![closed, target],    // live at once
                2 => vec![closed, closed2],   // refused
                _ => vec![hole.addr],         // times out
            };
            let dialer = Dialer::new()
                .attempt_delay(Duration::from_millis(100))
                .timeout(timeout)
                .resolver(Table::new(vec![], list));
            handles.push(asyncnet::spawn(async move {
                let r = dialer.dial("mix.test", 0).await;
                Ok::<_, io::Error>((i, r.map(|s| s.peer_socket_addr().ok())))
            }));
        }
        let mut counts = [0usize; 4];
        for h in handles {
            let (i, r) = h.await?;
            match (i % 4, r) {
                (0 | 1, Ok(peer)) => assert_eq!(peer, Some(target)),
                (2, Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
                (3, Err(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
                (k, r) => panic!("dial {i} (kind {k}): unexpected {r:?}"),
            }
            counts[i % 4] += 1;
        }
        assert_eq!(counts.iter().sum::<usize>(), dials);
        // Let the acceptor take every queued connection, then stop it.
        let live_dials = counts[0] + counts[1];
        let deadline = Instant::now() + NOT_A_TCP_TIMEOUT;
        while accepted.get() < live_dials && Instant::now() < deadline {
            sleep_async(Duration::from_millis(10)).await;
        }
        assert_eq!(
            accepted.get(),
            live_dials,
            "every winner reached the server"
        );
        server.close()?;
        accepting.await;
        assert_eq!(
            support::open_descriptors_settled(before).await,
            before,
            "every socket closed (and the listener)"
        );
        Ok(())
    });
}

#[test]
fn system_resolver_asks_each_family_on_its_own() {
    let _serial = serial();
    run(async {
        use asyncnet::SystemResolver;
        let v4 = SystemResolver.lookup("localhost", 80, Family::Ipv4).await?;
        assert!(!v4.is_empty(), "localhost has an A record");
        assert!(v4.iter().all(|a| a.is_ipv4() && a.port() == 80), "{v4:?}");
        // Some machines have no ::1 for localhost: then an error or nothing, never IPv4.
        if let Ok(v6) = SystemResolver.lookup("localhost", 80, Family::Ipv6).await {
            assert!(v6.iter().all(|a| a.is_ipv6() && a.port() == 80), "{v6:?}");
        }
        // Through dial: "localhost" connects whichever family the server is on.
        let server = live(V4)?;
        let client = asyncnet::dial("localhost", server.local_addr()?.1).await?;
        assert_eq!(client.peer_socket_addr()?, server.local_socket_addr()?);
        Ok(())
    });
}

#[test]
fn connect_by_name_on_an_ipv6_socket_reaches_an_ipv4_only_server() {
    let _serial = serial();
    if !ipv6_loopback() {
        return;
    }
    run(async {
        // Only 127.0.0.1 listens: "localhost"'s ::1 (if any) refuses, then the IPv4 address
        // is tried, IPv4-mapped, on the same socket.
        let server = live(V4)?;
        let port = server.local_addr()?.1;
        let client = AsyncSocket::builder().domain(Domain::IPV6).build()?;
        // Dual stack, which Linux gives by default and Windows does not.
        socket2::SockRef::from(&client).set_only_v6(false)?;
        client.connect("localhost", port).await?;
        assert_eq!(client.peer_addr()?, ("127.0.0.1".to_string(), port));
        // An IPv4 socket never asks for AAAA records and never tries ::1.
        let v4 = AsyncSocket::new()?;
        v4.connect("localhost", port).await?;
        assert_eq!(v4.peer_socket_addr()?, server.local_socket_addr()?);
        Ok(())
    });
}
