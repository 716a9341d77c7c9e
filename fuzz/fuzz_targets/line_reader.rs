//! The line reader (`recv_line`'s logic over the socket's read buffer) fed arbitrary bytes in
//! arbitrary arrivals, polled with arbitrary limits, with and without `PEEK`, its "future"
//! dropped wherever it would wait.
//!
//! Property: every poll gives exactly what a one-screen model of the rules gives (the next
//! line's content, "too long", "wait", or the end), so no line exceeds its limit, none within
//! it is refused, `\r\n` and `\n` end lines and a lone `\r` is data; and at the end, lines +
//! terminators + what is left equal the input byte for byte.
#![no_main]

use std::io;
use std::task::Poll;

use asyncnet::fuzzing::LineReader;
use asyncnet::LineTooLong;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Chunk {
    Bytes(Vec<u8>),
    /// `count` copies of `byte`: long lines from short inputs.
    Run(u8, u16),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Arrive(Chunk),
    Line { peek: bool, max: Limit },
    End,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Limit {
    Small(u8),
    Medium(u16),
    Max,
    MaxMinusOne,
}

impl Limit {
    fn get(self) -> usize {
        match self {
            Limit::Small(n) => usize::from(n % 16),
            Limit::Medium(n) => usize::from(n),
            Limit::Max => usize::MAX,
            Limit::MaxMinusOne => usize::MAX - 1,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    buffered: bool,
    ops: Vec<Op>,
    /// The limit of the lines read at the end, after every op.
    last_max: Limit,
}

/// What the rules say the next poll gives.
#[derive(Debug, PartialEq)]
enum Expect {
    Line { content: usize, consumed: usize },
    TooLong,
    Wait,
    End,
}

/// The model: `rest` is every byte that arrived and was not taken as a line; `at_end`: the
/// peer closed and nothing more can come.
fn model(rest: &[u8], at_end: bool, max: usize) -> Expect {
    if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let content = if nl > 0 && rest[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        return if content > max {
            Expect::TooLong
        } else {
            Expect::Line {
                content,
                consumed: nl + 1,
            }
        };
    }
    if at_end {
        return match rest.len() {
            0 => Expect::End,
            n if n > max => Expect::TooLong,
            n => Expect::Line {
                content: n,
                consumed: n,
            },
        };
    }
    // Content of `max` bytes and a `\r` whose `\n` is still to come is the longest that
    // may yet be a line.
    let certain = rest.len() > max.saturating_add(1)
        || (rest.len() == max.saturating_add(1) && rest[max] != b'\r');
    if certain {
        Expect::TooLong
    } else {
        Expect::Wait
    }
}

struct Run {
    reader: LineReader,
    /// Every byte that arrived, in order.
    data: Vec<u8>,
    /// Bytes taken as lines (with their terminators).
    pos: usize,
    ended: bool,
    buffered: bool,
}

impl Run {
    fn poll(&mut self, peek: bool, max: usize) -> Poll<io::Result<Option<Vec<u8>>>> {
        let peek = peek && self.buffered;
        let got = self.reader.poll_line(peek, max);
        let rest = &self.data[self.pos..];
        let expect = model(rest, self.ended, max);
        match (&got, &expect) {
            (Poll::Ready(Ok(Some(line))), Expect::Line { content, consumed }) => {
                assert_eq!(&line[..], &rest[..*content], "the line's bytes");
                if !peek {
                    self.pos += consumed;
                }
            }
            (Poll::Ready(Err(e)), Expect::TooLong) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                let source = e.get_ref().and_then(|s| s.downcast_ref::<LineTooLong>());
                assert_eq!(source, Some(&LineTooLong { max_length: max }));
            }
            (Poll::Pending, Expect::Wait) | (Poll::Ready(Ok(None)), Expect::End) => {}
            _ => panic!(
                "max {max} peek {peek} buffered {}: got {:?}, the rules say {expect:?} (rest {:?})",
                self.buffered,
                match &got {
                    Poll::Ready(r) => Some(r.as_ref().map_err(|e| e.to_string())),
                    Poll::Pending => None,
                },
                String::from_utf8_lossy(&rest[..rest.len().min(64)]),
            ),
        }
        got
    }

    fn arrive(&mut self, bytes: &[u8]) {
        if self.ended {
            return;
        }
        self.reader.arrive(bytes);
        self.data.extend_from_slice(bytes);
    }
}

fuzz_target!(|input: Input| {
    let mut run = Run {
        reader: LineReader::new(input.buffered),
        data: Vec::new(),
        pos: 0,
        ended: false,
        buffered: input.buffered,
    };
    for op in input.ops {
        match op {
            Op::Arrive(Chunk::Bytes(b)) => run.arrive(&b),
            Op::Arrive(Chunk::Run(byte, count)) => run.arrive(&vec![byte; usize::from(count)]),
            Op::End => {
                run.reader.end();
                run.ended = true;
            }
            Op::Line { peek, max } => {
                let _ = run.poll(peek, max.get());
            }
        }
    }
    // The end: every line left, until the end of the stream or one too long.
    run.reader.end();
    run.ended = true;
    let max = input.last_max.get();
    loop {
        match run.poll(false, max) {
            Poll::Ready(Ok(Some(_))) => {}
            Poll::Ready(Ok(None)) | Poll::Ready(Err(_)) => break,
            Poll::Pending => panic!("pending after the end"),
        }
    }
    // Lines + terminators + what is left = the input.
    let rest = run.reader.take_rest();
    assert!(
        rest == run.data[run.pos..],
        "what is left is not the input's rest"
    );
});
