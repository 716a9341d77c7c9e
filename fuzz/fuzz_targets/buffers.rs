//! The socket's read and write buffers (`net/buffer.rs`) under random interleavings of every
//! operation the socket uses, checked after each against a plain model: a queue of bytes for
//! the read side; a queue plus the three sequence numbers for the write side.
//!
//! Properties: the unread and pending bytes are the model's, byte for byte; `scanned` never
//! claims bytes it does not cover (or a `\n`); written <= committed <= accepted, and
//! accepted - written is the pending length; every byte handed in comes out exactly once; a
//! read's record of the front (`Mirror`) matches only while the front is the bytes it recorded.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::task::Poll;

use asyncnet::fuzzing::{Buffers, FrontRecord};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Fill {
    Ok(u16),
    Err,
    Pending,
}

#[derive(Arbitrary, Debug)]
enum Op {
    // Read side.
    Extend(Vec<u8>),
    ExtendRun(u8, u16),
    Consume(u16),
    UnreadFront(Vec<u8>),
    TakeAll,
    TakeInto(u16),
    TakeFront(u16),
    /// A read records the first n unread bytes as its own (`Mirror`).
    Mirror(u16),
    FillFrom {
        max: u16,
        fill: Fill,
        byte: u8,
    },
    /// Record a true "no `\n` in the first n bytes", as the line scan does.
    Scan(u16),
    // Write side.
    NoteDirect(u16),
    Push(Vec<u8>),
    PushRun(u8, u16),
    /// Commit the end of an earlier push (index among the pushes, from the last).
    Commit(u8),
    DiscardUncommitted,
    Advance(u16),
    TakePending,
    Discard,
}

#[derive(Default)]
struct Model {
    unread: VecDeque<u8>,
    pending: VecDeque<u8>,
    accepted: u64,
    written: u64,
    committed: u64,
    /// Ends of pushes, for `Commit`.
    ends: Vec<u64>,
    /// Every byte the read side gave out (consumed or taken), and every byte handed in.
    read_in: Vec<u8>,
    read_out: Vec<u8>,
    /// The last records of the front, with the bytes each recorded.
    mirrors: VecDeque<(FrontRecord, Vec<u8>)>,
}

fn check(b: &Buffers, m: &Model) {
    assert!(b.unread().iter().eq(m.unread.iter()), "unread bytes");
    assert_eq!(b.read_len(), m.unread.len());
    assert_eq!(b.read_is_empty(), m.unread.is_empty());
    assert!(b.scanned() <= b.read_len(), "scanned past the bytes");
    assert!(
        !b.unread()[..b.scanned()].contains(&b'\n'),
        "scanned covers a newline"
    );
    assert!(b.pending().iter().eq(m.pending.iter()), "pending bytes");
    assert_eq!(b.write_len(), m.pending.len());
    assert_eq!(b.write_is_empty(), m.pending.is_empty());
    assert_eq!(
        (b.accepted(), b.written(), b.committed()),
        (m.accepted, m.written, m.committed)
    );
    assert!(m.written <= m.committed && m.committed <= m.accepted);
    assert_eq!(m.accepted - m.written, m.pending.len() as u64);
    assert_eq!(b.has_uncommitted(), m.accepted > m.committed);
    for (mirror, front) in &m.mirrors {
        if b.mirrors(*mirror) {
            assert!(
                !front.is_empty() && m.unread.iter().take(front.len()).eq(front.iter()),
                "a record of the front matches bytes that are not the ones it recorded"
            );
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut b = Buffers::default();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Extend(bytes) => {
                b.extend(&bytes);
                m.unread.extend(&bytes);
                m.read_in.extend(&bytes);
            }
            Op::ExtendRun(byte, n) => {
                let bytes = vec![byte; usize::from(n)];
                b.extend(&bytes);
                m.unread.extend(&bytes);
                m.read_in.extend(&bytes);
            }
            Op::Consume(n) => {
                let n = usize::from(n).min(m.unread.len());
                b.consume(n);
                m.read_out.extend(m.unread.drain(..n));
            }
            Op::UnreadFront(bytes) => {
                // Bytes taken by a read that could not finish go back in front: they are
                // "in" again (they were counted out when taken).
                let k = bytes.len().min(m.read_out.len());
                let bytes = m.read_out[m.read_out.len() - k..].to_vec();
                m.read_out.truncate(m.read_out.len() - k);
                for &x in bytes.iter().rev() {
                    m.unread.push_front(x);
                }
                b.unread_front(bytes);
            }
            Op::TakeAll => {
                let got = b.take_all();
                let want: Vec<u8> = m.unread.drain(..).collect();
                assert_eq!(got, want, "take_all");
                m.read_out.extend(want);
            }
            Op::TakeInto(n) => {
                let mut out = vec![0u8; usize::from(n)];
                let got = b.take_into(&mut out);
                let want = out.len().min(m.unread.len());
                assert_eq!(got, want, "take_into's count");
                let expected: Vec<u8> = m.unread.drain(..want).collect();
                assert_eq!(&out[..got], &expected[..], "take_into's bytes");
                m.read_out.extend(expected);
            }
            Op::TakeFront(n) => {
                let got = b.take_front(usize::from(n));
                let want: Vec<u8> = m.unread.drain(..got.len()).collect();
                assert_eq!(got.len(), usize::from(n).min(got.len() + m.unread.len()));
                assert_eq!(got, want, "take_front");
                m.read_out.extend(want);
            }
            Op::Mirror(n) => {
                let n = usize::from(n).min(m.unread.len());
                let front: Vec<u8> = m.unread.iter().take(n).copied().collect();
                m.mirrors.push_back((b.mirror(n), front));
                if m.mirrors.len() > 8 {
                    m.mirrors.pop_front();
                }
            }
            Op::FillFrom { max, fill, byte } => {
                let max = usize::from(max);
                let r = b.fill_from(max, |buf| {
                    assert_eq!(buf.len(), max, "fill_from offers max bytes");
                    match fill {
                        Fill::Ok(n) => {
                            let n = usize::from(n).min(max);
                            buf[..n].fill(byte);
                            Poll::Ready(Ok(n))
                        }
                        Fill::Err => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                        Fill::Pending => Poll::Pending,
                    }
                });
                if let Poll::Ready(Ok(n)) = r {
                    m.unread.extend(std::iter::repeat_n(byte, n));
                    m.read_in.extend(std::iter::repeat_n(byte, n));
                }
            }
            Op::Scan(n) => {
                let clean = m.unread.iter().take_while(|&&x| x != b'\n').count();
                b.set_scanned(usize::from(n).min(clean));
            }
            Op::NoteDirect(n) => {
                if m.pending.is_empty() {
                    let end = b.note_direct(usize::from(n));
                    m.accepted += u64::from(n);
                    m.written += u64::from(n);
                    m.committed = m.accepted;
                    assert_eq!(end, m.accepted);
                }
            }
            Op::Push(bytes) => push(&mut b, &mut m, &bytes),
            Op::PushRun(byte, n) => push(&mut b, &mut m, &vec![byte; usize::from(n)]),
            Op::Commit(back) => {
                if let Some(i) = m.ends.len().checked_sub(1 + usize::from(back)) {
                    let end = m.ends[i];
                    b.commit(end);
                    m.committed = m.committed.max(end.min(m.accepted));
                }
            }
            Op::DiscardUncommitted => {
                let from = b.discard_uncommitted();
                let keep_to = m.committed.max(m.written);
                assert_eq!(from, keep_to);
                m.pending.truncate((keep_to - m.written) as usize);
                m.accepted = keep_to;
                m.committed = keep_to;
                m.ends.retain(|&e| e <= keep_to);
            }
            Op::Advance(n) => {
                let n = usize::from(n).min(m.pending.len());
                b.advance(n);
                m.pending.drain(..n);
                m.written += n as u64;
                m.committed = m.committed.max(m.written);
            }
            Op::TakePending => {
                let got = b.take_pending();
                let want: Vec<u8> = m.pending.drain(..).collect();
                assert_eq!(got, want, "take_pending");
                m.written = m.accepted;
                m.committed = m.accepted;
            }
            Op::Discard => {
                let n = b.discard();
                assert_eq!(n, m.pending.len());
                m.pending.clear();
                m.written = m.accepted;
                m.committed = m.accepted;
            }
        }
        check(&b, &m);
    }
    // Every byte handed to the read side came out once, in order, or is still unread.
    let mut out = m.read_out.clone();
    out.extend(b.take_all());
    assert!(
        out == m.read_in,
        "the read side lost, repeated or reordered bytes"
    );
});

fn push(b: &mut Buffers, m: &mut Model, bytes: &[u8]) {
    let end = b.push(bytes);
    m.pending.extend(bytes);
    m.accepted += bytes.len() as u64;
    assert_eq!(end, m.accepted);
    m.ends.push(end);
}
