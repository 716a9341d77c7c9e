//! The drive loop over in-memory pipes (as rustls's own tests do): a client and a server
//! [`Tls`] joined by two byte queues and moved as `net/transport.rs` moves them
//! (`Step::Write` → `write_records`, `Step::Read` → `read_records`, `WouldBlock` → the other
//! side runs), through pipes that split records, fill up, end early or carry garbage.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, RootCertStore};

use super::{Step, Tls, CLOSE_NOTIFY_WAIT, TICKETS_WAIT};
use crate::tls::context::Config;
use crate::tls::{TlsContext, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT};

/// One direction of the pipe; once `closed` (by its writer) and empty, reads return 0.
#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// One end of the pipe: reads `inbox` at most `max_read` bytes at a time, writes `outbox`
/// up to `capacity` bytes (then `WouldBlock`).
struct End {
    inbox: Rc<RefCell<Queue>>,
    outbox: Rc<RefCell<Queue>>,
    max_read: usize,
    capacity: usize,
}

fn pipe() -> (End, End) {
    let (a, b) = (Rc::default(), Rc::default());
    let end = |inbox: &Rc<RefCell<Queue>>, outbox: &Rc<RefCell<Queue>>| End {
        inbox: inbox.clone(),
        outbox: outbox.clone(),
        max_read: usize::MAX,
        capacity: usize::MAX,
    };
    (end(&a, &b), end(&b, &a))
}

impl End {
    /// Bytes waiting for this end to read.
    fn pending(&self) -> usize {
        self.inbox.borrow().bytes.len()
    }
    /// Bytes this end wrote that the other end has not read.
    fn sent(&self) -> usize {
        self.outbox.borrow().bytes.len()
    }
}

impl Read for End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.inbox.borrow_mut();
        if q.bytes.is_empty() && !q.closed {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.max_read);
        q.bytes.read(&mut buf[..n])
    }
}

impl Write for End {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut q = self.outbox.borrow_mut();
        let room = self.capacity - q.bytes.len();
        if room == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        q.bytes.write(&buf[..buf.len().min(room)])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Client and server sessions, not yet handshaken, on the two ends of one pipe; `leaf` is
/// the server's self-signed certificate (DER).
struct Pair {
    c: Tls,
    cp: End,
    s: Tls,
    sp: End,
    leaf: Vec<u8>,
}

/// Both sides offer ALPN "h2". The client trusts the server's certificate and takes TLS 1.3
/// only (the builder's `min_version`) or, with `tls12`, TLS 1.2 only (the builder has no
/// maximum version: that config comes from rustls itself).
fn pair(tls12: bool) -> Pair {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed cert");
    let server = TlsContext::server_builder(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .alpn(&[b"h2"])
        .build()
        .expect("server context");
    let client = if tls12 {
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let config = Config::Client(Arc::new(config));
        TlsContext {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    } else {
        TlsContext::client_builder()
            .add_root_pem(cert.pem().as_bytes())
            .min_version(TlsVersion::Tls13)
            .alpn(&[b"h2"])
            .build()
            .expect("client context")
    };
    let (cp, sp) = pipe();
    Pair {
        c: Tls::start(&client, Some("localhost")).expect("client"),
        s: Tls::start(&server, None).expect("server"),
        cp,
        sp,
        leaf: cert.der().to_vec(),
    }
}

/// One move of `poll_handshake`: `true` once the handshake is done, last flight written.
fn drive(tls: &mut Tls, pipe: &mut End) -> io::Result<bool> {
    let r = match tls.handshake_step()? {
        Step::Done => tls.write_records(pipe).map(|()| true),
        Step::Write => tls.write_records(pipe).map(|()| false),
        Step::Read => match tls.read_records(pipe) {
            Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
            r => r.map(|_| false),
        },
    };
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        r => r,
    }
}

fn handshake(p: &mut Pair) {
    for _ in 0..100_000 {
        let client_done = drive(&mut p.c, &mut p.cp).expect("client handshake");
        let server_done = drive(&mut p.s, &mut p.sp).expect("server handshake");
        if client_done && server_done {
            return;
        }
    }
    panic!("the handshake stalled");
}

fn connected(tls12: bool) -> Pair {
    let mut p = pair(tls12);
    handshake(&mut p);
    p
}

/// Encrypt all of `data` and write its records.
fn send(tls: &mut Tls, pipe: &mut End, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        let n = tls.write_plain(&data[off..]).expect("write_plain");
        assert!(n > 0, "the session took nothing");
        off += n;
    }
    tls.write_records(pipe).expect("write_records");
}

/// Read plaintext as `poll_read_tls` does until `want` bytes, the clean end, or the pipe
/// runs dry or ends: the bytes, and how many reads of the pipe brought some.
fn recv(tls: &mut Tls, pipe: &mut End, want: usize) -> (Vec<u8>, usize) {
    let (mut got, mut reads, mut buf) = (Vec::new(), 0, [0u8; 1000]);
    while got.len() < want {
        match tls.read_plain(&mut buf).expect("read_plain") {
            Some(0) => break,
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => match tls.read_records(pipe) {
                Ok(0) => break,
                Ok(_) => reads += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read_records: {e}"),
            },
        }
    }
    (got, reads)
}

/// Bytes with no short period, so that a lost or repeated stretch shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    let byte = |i: usize| (i % 251 + i / 251 + seed) as u8;
    (0..len).map(byte).collect()
}

#[test]
fn handshake_completes_tls13_and_tls12_with_info_and_peer_leaf() {
    for (tls12, version, suite) in [
        (false, "TLSv1_3", "TLS13_"),
        (true, "TLSv1_2", "TLS_ECDHE_"),
    ] {
        let p = connected(tls12);
        assert_eq!(p.c.handshake_step().unwrap(), Step::Done);
        assert_eq!(p.s.handshake_step().unwrap(), Step::Done);
        for info in [p.c.info().unwrap(), p.s.info().unwrap()] {
            assert_eq!(info.protocol_version, version);
            assert!(info.cipher_suite.starts_with(suite), "{info:?}");
            assert_eq!(info.server_name.as_deref(), Some("localhost"));
            assert_eq!(info.alpn_protocol.as_deref(), Some(&b"h2"[..]));
        }
        assert_eq!(p.c.peer_certificates(), vec![p.leaf.clone()]);
        assert!(p.s.peer_certificates().is_empty());
    }
}

#[test]
fn records_split_at_every_byte_arrive_whole_and_in_order() {
    for tls12 in [false, true] {
        // The handshake's records, one byte a read both ways; then data both ways.
        let mut p = pair(tls12);
        p.cp.max_read = 1;
        p.sp.max_read = 1;
        handshake(&mut p);
        let (up, down) = (pattern(3000, 1), pattern(3000, 2));
        send(&mut p.c, &mut p.cp, &up);
        send(&mut p.s, &mut p.sp, &down);
        assert_eq!(recv(&mut p.s, &mut p.sp, up.len()).0, up);
        assert_eq!(recv(&mut p.c, &mut p.cp, down.len()).0, down);
        // One record of data, k bytes a read for every k up to past its length.
        assert_eq!(p.sp.pending(), 0);
        p.sp.max_read = usize::MAX;
        send(&mut p.c, &mut p.cp, &pattern(200, 0));
        let record = p.sp.pending();
        assert_eq!(recv(&mut p.s, &mut p.sp, 200), (pattern(200, 0), 1));
        for k in 1..=record + 1 {
            p.sp.max_read = k;
            let msg = pattern(200, k);
            send(&mut p.c, &mut p.cp, &msg);
            assert_eq!(p.sp.pending(), record, "one record");
            let (got, reads) = recv(&mut p.s, &mut p.sp, msg.len());
            assert_eq!(got, msg, "{k} bytes a read");
            // No plaintext before the record's last byte is in.
            assert_eq!(reads, record.div_ceil(k), "{k} bytes a read");
        }
    }
}

#[test]
fn close_notify_ends_cleanly_after_the_data_sent_before_it() {
    let mut p = connected(false);
    send(&mut p.c, &mut p.cp, b"first ");
    send(&mut p.c, &mut p.cp, b"second");
    assert!(p.c.send_close_notify());
    p.c.write_records(&mut p.cp).unwrap();
    p.sp.max_read = 1;
    let (mut got, mut buf) = (Vec::new(), [0u8; 64]);
    loop {
        match p.s.read_plain(&mut buf).unwrap() {
            Some(0) => break,
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => assert_eq!(p.s.read_records(&mut p.sp).unwrap(), 1),
        }
    }
    // The end comes once close_notify is all in, after every byte of data.
    assert_eq!(p.sp.pending(), 0);
    assert_eq!(got, b"first second");
    assert_eq!(p.s.read_plain(&mut buf).unwrap(), Some(0));
}

#[test]
fn pipe_end_without_close_notify_is_unexpected_eof() {
    let mut p = connected(false);
    send(&mut p.c, &mut p.cp, b"cut here");
    p.cp.outbox.borrow_mut().closed = true;
    assert_eq!(recv(&mut p.s, &mut p.sp, 8).0, b"cut here");
    assert_eq!(p.s.read_plain(&mut [0; 16]).unwrap(), None);
    assert_eq!(p.s.read_records(&mut p.sp).unwrap(), 0);
    let err = p.s.read_plain(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn half_a_client_hello_then_the_end_leaves_the_handshake_reading() {
    let mut p = pair(false);
    p.cp.capacity = 100;
    let err = p.c.write_records(&mut p.cp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "a longer ClientHello");
    p.cp.outbox.borrow_mut().closed = true;
    assert_eq!(p.s.read_records(&mut p.sp).unwrap(), 100);
    assert_eq!(p.s.handshake_step().unwrap(), Step::Read);
    assert_eq!(p.s.read_records(&mut p.sp).unwrap(), 0);
    assert_eq!(p.s.handshake_step().unwrap(), Step::Read);
    assert!(p.s.info().is_none());
    assert_eq!(p.sp.sent(), 0, "the server said nothing");
}

#[test]
fn garbage_instead_of_a_client_hello_is_invalid_data_with_an_alert() {
    let mut p = pair(false);
    let garbage = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    p.cp.write_all(garbage).unwrap();
    let err = p.s.read_records(&mut p.sp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(p.sp.sent() > 0, "no alert for the peer");
    // The client takes the alert as the end of its handshake.
    p.c.write_records(&mut p.cp).unwrap();
    let err = p.c.read_records(&mut p.cp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
}

#[test]
fn full_pipe_would_block_then_every_byte_arrives_once() {
    let mut p = connected(false);
    p.cp.capacity = 1000;
    let data = pattern(50_000, 3);
    let (mut off, mut blocked, mut got) = (0, 0, Vec::new());
    while got.len() < data.len() {
        off += p.c.write_plain(&data[off..]).unwrap();
        match p.c.write_records(&mut p.cp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert_eq!(p.cp.sent(), 1000, "WouldBlock before the pipe was full");
                assert!(p.c.wants_write());
                blocked += 1;
            }
            Err(e) => panic!("{e}"),
        }
        got.extend(recv(&mut p.s, &mut p.sp, usize::MAX).0);
        assert_eq!(p.sp.pending(), 0, "the reader drained the pipe");
    }
    assert!(blocked >= 40, "the pipe filled {blocked} times");
    assert!(got == data, "{} bytes of {}", got.len(), data.len());
}

#[test]
fn closer_sends_the_rest_then_close_notify_through_a_full_pipe() {
    let mut p = connected(false);
    // TLS 1.3: the server's session tickets wait unread, and the closer takes them.
    assert!(p.cp.pending() > 0);
    // More than the session buffers (64 KiB): the closer feeds it as records leave.
    let rest = pattern(100_000, 4);
    let mut closer = p.c.into_closer(rest.clone()).expect("a finished session");
    assert_eq!(closer.limit(Duration::from_secs(7)), Duration::from_secs(7));
    closer.drain_incoming(&mut p.cp);
    assert_eq!(p.cp.pending(), 0);
    p.cp.capacity = 2000;
    let (mut got, mut full) = (Vec::new(), 0);
    while !closer.step(&mut p.cp).unwrap() {
        assert_eq!(p.cp.sent(), 2000, "Ok(false) before the pipe was full");
        full += 1;
        got.extend(recv(&mut p.s, &mut p.sp, usize::MAX).0);
    }
    assert!(full >= 40, "the pipe filled {full} times");
    got.extend(recv(&mut p.s, &mut p.sp, usize::MAX).0);
    assert!(got == rest, "{} bytes of {}", got.len(), rest.len());
    assert_eq!(p.s.read_plain(&mut [0; 16]).unwrap(), Some(0));
    assert!(closer.step(&mut p.cp).unwrap(), "done stays done");
    assert_eq!(p.sp.pending(), 0, "close_notify went out once");
}

#[test]
fn a_tls13_client_closing_before_its_session_tickets_waits_for_them_within_a_bound() {
    let before = Instant::now();
    let mut p = connected(false);
    // The server's tickets are in the pipe, unread: as if still on their way.
    let mut closer = p.c.into_closer(Vec::new()).expect("a finished session");
    let until = closer
        .wait_for_peer_until(Instant::now())
        .expect("a client that closes at once waits for its tickets");
    assert!(until >= before + TICKETS_WAIT && until <= Instant::now() + CLOSE_NOTIFY_WAIT);
    assert_eq!(closer.wait_for_peer_until(until), None, "and no longer");
    assert!(closer.step(&mut p.cp).unwrap(), "close_notify out");
    assert!(closer.read_peer(&mut p.cp).unwrap(), "the tickets came");
    assert_eq!(p.cp.pending(), 0);
    assert!(!closer.read_peer(&mut p.cp).unwrap(), "nothing more yet");
    // Bytes that are no records at all (after our close_notify rustls must not see them).
    p.sp.write_all(b"not a record").unwrap();
    assert!(closer.read_peer(&mut p.cp).unwrap(), "they came");
    // A server never waits, nor does a TLS 1.2 client (no tickets after the handshake).
    let p = connected(false);
    let closer = p.s.into_closer(Vec::new()).expect("a finished session");
    assert_eq!(closer.wait_for_peer_until(Instant::now()), None);
    let p = connected(true);
    let closer = p.c.into_closer(Vec::new()).expect("a finished session");
    assert_eq!(closer.wait_for_peer_until(Instant::now()), None);
}

#[test]
fn into_closer_is_none_while_handshaking_then_sends_close_notify_alone() {
    let mut p = pair(true);
    drive(&mut p.c, &mut p.cp).unwrap();
    drive(&mut p.s, &mut p.sp).unwrap();
    assert_ne!(p.c.handshake_step().unwrap(), Step::Done);
    assert_ne!(p.s.handshake_step().unwrap(), Step::Done);
    assert!(p.c.into_closer(b"rest".to_vec()).is_none());
    assert!(p.s.into_closer(b"rest".to_vec()).is_none());
    let mut p = connected(true);
    let mut closer = p.c.into_closer(Vec::new()).expect("a finished session");
    assert_eq!(closer.limit(Duration::from_secs(7)), CLOSE_NOTIFY_WAIT);
    assert!(closer.step(&mut p.cp).unwrap());
    assert_eq!(recv(&mut p.s, &mut p.sp, usize::MAX), (vec![], 1));
    assert_eq!(p.s.read_plain(&mut [0; 16]).unwrap(), Some(0));
}

#[test]
fn a_good_record_before_a_corrupt_one_in_the_same_read_is_read_before_the_error() {
    let mut p = connected(false);
    send(&mut p.c, &mut p.cp, b"fine\n");
    // An application-data record whose ciphertext is made up, in the same pipe read.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend((0..0x40u8).map(|i| i.wrapping_mul(31)));
    p.cp.write_all(&record).unwrap();
    let mut buf = [0u8; 100];
    // Drain what the handshake left (session tickets) and the two records in one go.
    let mut got = Vec::new();
    let err = loop {
        match p.s.read_plain(&mut buf) {
            Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
            Ok(None) => {
                p.s.read_records(&mut p.sp)
                    .expect("the error waits for the data");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"fine\n", "the data before the bad record");
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(p.sp.sent() > 0, "an alert for the peer");
    let again = p.s.read_plain(&mut buf).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::InvalidData, "the error stays");
}
