//! The TLS drive loop (`tls/session.rs`, sans-IO) as a victim, server or client, TLS 1.3 or
//! 1.2, talking to an honest peer through an in-memory pipe with a man in the middle: the
//! peer's bytes are flipped, inserted, deleted or cut at arbitrary stream offsets (the
//! handshake, then records of arbitrary messages), and read in arbitrary pieces.
//!
//! Properties: no panic and no hang (once its pipe has ended, the victim decides); every
//! error is a clean `io::Error` (`InvalidData` carrying a `rustls::Error`, or
//! `UnexpectedEof`); the plaintext delivered is a prefix of what the peer sent; a clean end
//! only after every byte and the peer's close_notify; every message whose records all came
//! before the first altered byte is delivered before the error; untouched, everything arrives.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use asyncnet::fuzzing::{client_context, HandshakeStep, TlsSession};
use asyncnet::rustls;
use asyncnet::{TlsContext, TlsVersion};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Mutation {
    Xor { at: u16, mask: u8 },
    Insert { at: u16, bytes: Vec<u8> },
    Delete { at: u16, len: u8 },
    Truncate { at: u16 },
}

impl Mutation {
    /// The first offset of the peer's stream it alters, if it alters any.
    fn first(&self) -> Option<u64> {
        match *self {
            Mutation::Xor { at, mask } if mask != 0 => Some(at.into()),
            Mutation::Insert { at, ref bytes } if !bytes.is_empty() => Some(at.into()),
            Mutation::Delete { at, len } if len != 0 => Some(at.into()),
            Mutation::Truncate { at } => Some(at.into()),
            _ => None,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    tls12: bool,
    victim_is_server: bool,
    mutations: Vec<Mutation>,
    /// The peer's plaintext, one `write` each once its handshake is done.
    messages: Vec<Vec<u8>>,
    close_notify: bool,
    /// The victim's pipe reads take at most this many bytes each (cycled; 0: no limit).
    read_sizes: Vec<u16>,
    /// The victim's plaintext buffer (1 to 256 bytes).
    plain_buf: u8,
}

struct Contexts {
    server: TlsContext,
    client13: TlsContext,
    client12: TlsContext,
}

/// One Ed25519 certificate for the process (fixed-size signatures: the handshake's bytes keep
/// their offsets from run to run).
fn contexts() -> &'static Contexts {
    static CONTEXTS: OnceLock<Contexts> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let server =
            TlsContext::server_builder(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
                .build()
                .expect("server context");
        let client13 = TlsContext::client_builder()
            .add_root_pem(cert.pem().as_bytes())
            .min_version(TlsVersion::Tls13)
            .build()
            .expect("client context");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Contexts {
            server,
            client13,
            client12: client_context(Arc::new(config)),
        }
    })
}

#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    closed: bool,
    /// Bytes ever written.
    total: u64,
}

/// One end of a pipe: reads `inbox` (at most `max_read` a time), writes `outbox`.
struct End {
    inbox: Rc<RefCell<Queue>>,
    outbox: Rc<RefCell<Queue>>,
    max_read: usize,
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
        q.bytes.extend(buf);
        q.total += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Moves the peer's bytes (`raw`) to the victim (`out`), altering them on the way.
struct Middle {
    raw: Rc<RefCell<Queue>>,
    out: Rc<RefCell<Queue>>,
    mutations: Vec<Mutation>,
    off: u64,
    cut: bool,
}

impl Middle {
    fn pass(&mut self) -> bool {
        let mut raw = self.raw.borrow_mut();
        let mut out = self.out.borrow_mut();
        let moved = !raw.bytes.is_empty() || (raw.closed && !out.closed);
        for mut x in raw.bytes.drain(..) {
            let o = self.off;
            self.off += 1;
            if self.cut {
                continue;
            }
            let mut deleted = false;
            for m in &self.mutations {
                match *m {
                    Mutation::Insert { at, ref bytes } if u64::from(at) == o => {
                        out.bytes.extend(bytes);
                    }
                    Mutation::Truncate { at } if u64::from(at) == o => self.cut = true,
                    Mutation::Delete { at, len } => {
                        deleted |= (u64::from(at)..u64::from(at) + u64::from(len)).contains(&o);
                    }
                    Mutation::Xor { at, mask } if u64::from(at) == o => x ^= mask,
                    _ => {}
                }
            }
            if self.cut {
                continue;
            }
            if !deleted {
                out.bytes.push_back(x);
            }
        }
        if raw.closed || self.cut {
            out.closed = true;
        }
        moved
    }
}

/// One move of a handshake, as `poll_handshake` makes it: `Ok(true)` once done.
fn drive(tls: &mut TlsSession, pipe: &mut End) -> io::Result<bool> {
    let r = match tls.handshake_step()? {
        HandshakeStep::Done => tls.write_records(pipe).map(|()| true),
        HandshakeStep::Write => tls.write_records(pipe).map(|()| false),
        HandshakeStep::Read => match tls.read_records(pipe) {
            Ok(0) => Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the pipe ended during the handshake",
            )),
            r => r.map(|_| false),
        },
    };
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        r => r,
    }
}

/// A victim's error must be one a caller can handle.
fn check_error(e: &io::Error) {
    match e.kind() {
        ErrorKind::InvalidData => {
            let tls = e.get_ref().and_then(|s| s.downcast_ref::<rustls::Error>());
            assert!(tls.is_some(), "InvalidData without a rustls error: {e:?}");
        }
        ErrorKind::UnexpectedEof => {}
        _ => panic!("unexpected error kind: {e:?}"),
    }
}

fuzz_target!(|input: Input| {
    let ctx = contexts();
    let (mut peer, mut victim) = {
        let client_ctx = if input.tls12 {
            &ctx.client12
        } else {
            &ctx.client13
        };
        let client = TlsSession::start(client_ctx, Some("localhost")).expect("client");
        let server = TlsSession::start(&ctx.server, None).expect("server");
        if input.victim_is_server {
            (client, server)
        } else {
            (server, client)
        }
    };
    let first_altered = input.mutations.iter().filter_map(Mutation::first).min();
    let raw: Rc<RefCell<Queue>> = Rc::default();
    let to_victim: Rc<RefCell<Queue>> = Rc::default();
    let to_peer: Rc<RefCell<Queue>> = Rc::default();
    let mut peer_pipe = End {
        inbox: to_peer.clone(),
        outbox: raw.clone(),
        max_read: usize::MAX,
    };
    let mut victim_pipe = End {
        inbox: to_victim.clone(),
        outbox: to_peer.clone(),
        max_read: usize::MAX,
    };
    let mut middle = Middle {
        raw: raw.clone(),
        out: to_victim.clone(),
        mutations: input.mutations,
        off: 0,
        cut: false,
    };
    let read_sizes: Vec<usize> = input
        .read_sizes
        .iter()
        .map(|&n| if n == 0 { usize::MAX } else { usize::from(n) })
        .collect();
    let mut reads = 0usize;
    let mut buf = vec![0u8; usize::from(input.plain_buf).max(1)];

    let mut sent = Vec::new();
    // (end of the message's records in the peer's stream, end of its plaintext).
    let mut boundaries = Vec::new();
    let mut peer_done = false;
    let mut victim_shaken = false;
    let mut delivered = Vec::new();
    let mut outcome: Option<io::Result<()>> = None;

    let state = |victim_shaken: bool, peer_done: bool, delivered: usize| {
        (
            raw.borrow().total,
            to_peer.borrow().total,
            to_victim.borrow().bytes.len(),
            to_victim.borrow().closed,
            victim_shaken,
            peer_done,
            delivered,
        )
    };
    for _ in 0..10_000 {
        let before = state(victim_shaken, peer_done, delivered.len());
        // The honest peer: handshake, then every message, then (maybe) close_notify.
        if !peer_done {
            match drive(&mut peer, &mut peer_pipe) {
                Ok(true) => {
                    for m in &input.messages {
                        let mut off = 0;
                        while off < m.len() {
                            off += peer.write_plain(&m[off..]).expect("peer write_plain");
                            peer.write_records(&mut peer_pipe).expect("peer records");
                        }
                        sent.extend_from_slice(m);
                        boundaries.push((raw.borrow().total, sent.len()));
                    }
                    if input.close_notify {
                        assert!(peer.send_close_notify());
                        peer.write_records(&mut peer_pipe).expect("close_notify");
                    }
                    peer_done = true;
                    raw.borrow_mut().closed = true;
                }
                Ok(false) => {}
                // The peer gave up (the victim's alert, or an answer to altered bytes).
                Err(_) => {
                    peer_done = true;
                    raw.borrow_mut().closed = true;
                }
            }
        }
        middle.pass();
        // The victim: handshake, then read until an end.
        if !read_sizes.is_empty() {
            victim_pipe.max_read = read_sizes[reads % read_sizes.len()];
        }
        if !victim_shaken {
            reads += 1;
            match drive(&mut victim, &mut victim_pipe) {
                Ok(done) => victim_shaken = done,
                Err(e) => outcome = Some(Err(e)),
            }
        } else {
            let mut ended_reads = 0;
            loop {
                match victim.read_plain(&mut buf) {
                    Ok(Some(0)) => {
                        outcome = Some(Ok(()));
                        break;
                    }
                    Ok(Some(n)) => delivered.extend_from_slice(&buf[..n]),
                    Ok(None) => {
                        reads += 1;
                        if !read_sizes.is_empty() {
                            victim_pipe.max_read = read_sizes[reads % read_sizes.len()];
                        }
                        match victim.read_records(&mut victim_pipe) {
                            Ok(0) => {
                                ended_reads += 1;
                                assert!(ended_reads < 3, "no decision after the pipe's end");
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => {
                                outcome = Some(Err(e));
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        outcome = Some(Err(e));
                        break;
                    }
                }
            }
        }
        if outcome.is_some() {
            break;
        }
        if state(victim_shaken, peer_done, delivered.len()) == before {
            if raw.borrow().closed {
                break;
            }
            // Both sides wait for each other (bytes were deleted): the peer gives up.
            peer_done = true;
            raw.borrow_mut().closed = true;
        }
    }

    let outcome = outcome.expect("the victim never decided, though its pipe ended");
    assert!(
        sent.starts_with(&delivered),
        "delivered plaintext the peer never sent"
    );
    match &outcome {
        Ok(()) => {
            assert!(input.close_notify, "a clean end without close_notify");
            assert!(delivered == sent, "a clean end before every byte");
        }
        Err(e) => check_error(e),
    }
    for &(stream_end, plain_end) in &boundaries {
        if first_altered.is_none_or(|f| stream_end <= f) {
            assert!(
                delivered.len() >= plain_end,
                "{} bytes delivered of {plain_end} sent before the first altered byte",
                delivered.len()
            );
        }
    }
    if first_altered.is_none() {
        assert!(delivered == sent, "untouched, not everything arrived");
        match &outcome {
            Ok(()) => {}
            Err(e) => {
                assert!(!input.close_notify, "untouched, close_notify was lost: {e}");
                assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "untouched: {e}");
            }
        }
    }
});
