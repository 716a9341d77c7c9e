//! Finding a line in buffered bytes: pure logic, no I/O.
//!
//! Rules: `\n` ends a line and a `\r` right before it is stripped; a lone `\r` is data; a line
//! whose content exceeds `max_length` bytes is refused as soon as that is certain, without
//! scanning (or buffering) further than `max_length + 2` bytes.
//!
//! `unsafe` in two places: [`text`] takes an ASCII line as text without the full UTF-8
//! check, and [`ShortLine::append_to`] copies a short line as one 8-byte word.
#![deny(unsafe_code)]

/// What a scan of buffered bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A line: its content is `buf[..content]`, and `consumed` bytes (with the terminator)
    /// make it up.
    Line { content: usize, consumed: usize },
    /// No terminator within the first `scanned` bytes, and the line may still be valid.
    NeedMore { scanned: usize },
    /// The line is longer than `max_length`.
    TooLong,
}

/// Look for a line in `buf`, whose first `from` bytes are known to hold no `\n`.
///
/// Always inlined: on a short line the call itself (its frame, the result through memory)
/// cost about a third of the scan (callgrind, a pipelined Redis `PING`).
#[inline(always)]
pub(crate) fn scan(buf: &[u8], from: usize, max_length: usize) -> Scan {
    // Content of max_length bytes, then "\r\n": the terminator is at most at max_length + 1.
    let limit = buf.len().min(max_length.saturating_add(2));
    let from = from.min(limit);
    match find_newline(&buf[from..limit]) {
        Some(i) => {
            let nl = from + i;
            let content = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if content > max_length {
                Scan::TooLong
            } else {
                Scan::Line {
                    content,
                    consumed: nl + 1,
                }
            }
        }
        None => {
            let too_long = buf.len() > max_length.saturating_add(1)
                || (buf.len() == max_length.saturating_add(1) && buf[max_length] != b'\r');
            if too_long {
                Scan::TooLong
            } else {
                Scan::NeedMore { scanned: limit }
            }
        }
    }
}

/// A short line of ASCII at the start of a buffer (its `\n` within the first 8 bytes), found,
/// checked and copied out one 8-byte word at a time.
///
/// What a pipelined line protocol mostly reads (`PING\r\n`, `+OK\r\n`). Callgrind, a
/// pipelined Redis `PING` served with `recv_line_into` and `send`: 392 -> 357 instructions
/// a line for finding and checking it this way instead of with [`scan`] and [`text`], and
/// 309 -> 297 for the copy of one word instead of a call to `memcpy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortLine {
    /// The buffer's first 8 bytes.
    word: [u8; 8],
    /// The line's content (no terminator): `word[..content]`, ASCII.
    content: usize,
    /// The bytes the line takes with its terminator.
    consumed: usize,
}

impl ShortLine {
    /// The short line at the start of `buf`. `None` when `buf`'s first 8 bytes hold no `\n`
    /// (or `buf` has fewer), the content is not ASCII, or it is longer than `max_length`:
    /// [`scan`] and [`text`] then decide. Where a scan stands (bytes known to hold no `\n`)
    /// does not matter: the first `\n` of `buf` is the one either finds.
    #[inline(always)]
    pub(crate) fn find(buf: &[u8], max_length: usize) -> Option<ShortLine> {
        let word = *buf.first_chunk::<8>()?;
        let bits = u64::from_le_bytes(word);
        let nl = first_zero_byte(bits ^ u64::from_ne_bytes([b'\n'; 8]))?;
        // The bytes before the `\n` (nl <= 7, so the shift is in range) must be ASCII.
        if bits & ((1u64 << (nl * 8)) - 1) & HIGHS != 0 {
            return None;
        }
        let content = if nl > 0 && word[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        (content <= max_length).then_some(ShortLine {
            word,
            content,
            consumed: nl + 1,
        })
    }

    /// The bytes the line takes with its terminator.
    pub(crate) fn consumed(&self) -> usize {
        self.consumed
    }

    /// The line's content as text.
    #[cfg(test)]
    fn text(&self) -> &str {
        std::str::from_utf8(&self.word[..self.content]).expect("ASCII")
    }

    /// Append the content to `out`: the whole word into `out`'s spare room, of which the
    /// content's bytes are then taken (a copy of constant size, no call); by
    /// [`String::push_str`] when fewer than 8 bytes are spare, so `out` grows only as that
    /// would.
    #[allow(unsafe_code)]
    #[inline(always)]
    pub(crate) fn append_to(&self, out: &mut String) {
        debug_assert!(self.content < 8 && self.word[..self.content].is_ascii());
        if out.capacity() - out.len() < 8 {
            // SAFETY: the content is ASCII (checked in `find`), so valid UTF-8.
            out.push_str(unsafe { std::str::from_utf8_unchecked(&self.word[..self.content]) });
            return;
        }
        // SAFETY: `out` has at least 8 bytes of spare capacity (checked above), so the copy
        // of 8 bytes stays inside its allocation and does not overlap `self.word`. The new
        // length covers only the content's bytes (`content < 8`), which are ASCII, so `out`
        // stays UTF-8; the bytes past it are spare capacity, which need not be.
        unsafe {
            let v = out.as_mut_vec();
            let len = v.len();
            std::ptr::copy_nonoverlapping(self.word.as_ptr(), v.as_mut_ptr().add(len), 8);
            v.set_len(len + self.content);
        }
    }
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The index of the lowest zero byte of `word` (read little-endian), if any. A byte flagged
/// by the subtraction is zero, or above a zero byte (a borrow), never below the first one.
#[inline(always)]
fn first_zero_byte(word: u64) -> Option<usize> {
    let zero = word.wrapping_sub(ONES) & !word & HIGHS;
    (zero != 0).then(|| (zero.trailing_zeros() / 8) as usize)
}

/// The position of the first `\n` in `bytes`.
///
/// Line protocols mostly send short lines (`PING\r\n`, a header line), and the next one
/// usually starts the bytes scanned. memchr's vector search costs about 100 instructions a
/// call on such a line, most of it setup; the first 16 bytes are checked here first, eight
/// at a time in a `u64` (or one by one when fewer than eight are left), and memchr takes
/// the rest. Callgrind, a pipelined Redis `PING`: the scan went from about 100 instructions
/// per line to about 25.
#[inline]
pub(crate) fn find_newline(bytes: &[u8]) -> Option<usize> {
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut at = 0;
    while at < 16 {
        let rest = &bytes[at..];
        let Some(word) = rest.first_chunk::<8>() else {
            // Fewer than eight left: one at a time (no more than seven).
            return rest.iter().position(|&b| b == b'\n').map(|i| at + i);
        };
        // A byte of the word is zero where a `\n` was.
        if let Some(i) = first_zero_byte(u64::from_le_bytes(*word) ^ NEWLINES) {
            return Some(at + i);
        }
        at += 8;
    }
    memchr::memchr(b'\n', &bytes[at..]).map(|i| at + i)
}

/// A line's content as text: `Err` unless it is UTF-8. ASCII, what line protocols mostly
/// carry, is told apart first, at a fraction of the cost of the full check on a short line
/// (callgrind, a pipelined Redis `PING`: about 70 instructions less per line).
#[allow(unsafe_code)]
#[inline]
pub(crate) fn text(line: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if line.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(line) });
    }
    std::str::from_utf8(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` to a scanner in the chunks given by `cuts` and collect lines as a reader
    /// would (at end of stream a partial line is a line).
    fn lines_split_at(input: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Vec<u8>>, usize> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut scanned = 0;
        let mut prev = 0;
        let mut feed = cuts.to_vec();
        feed.push(input.len());
        for &cut in &feed {
            buf.extend_from_slice(&input[prev..cut]);
            prev = cut;
            loop {
                match scan(&buf, scanned, max) {
                    Scan::Line { content, consumed } => {
                        out.push(buf[..content].to_vec());
                        buf.drain(..consumed);
                        scanned = 0;
                    }
                    Scan::NeedMore { scanned: s } => {
                        scanned = s;
                        break;
                    }
                    Scan::TooLong => return Err(out.len()),
                }
            }
        }
        if !buf.is_empty() {
            out.push(buf);
        }
        Ok(out)
    }

    const SAMPLE: &[u8] = b"one\r\ntwo\n\n\r\nlone\rcr\n\xff\xfe bad utf8\r\nlast";

    fn expected() -> Vec<Vec<u8>> {
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"".to_vec(),
            b"lone\rcr".to_vec(),
            b"\xff\xfe bad utf8".to_vec(),
            b"last".to_vec(),
        ]
    }

    #[test]
    fn text_is_what_the_standard_utf8_check_says_ascii_or_not() {
        let cases: [&[u8]; 9] = [
            b"",
            b"PING",
            b"GET / HTTP/1.1",
            "gr\u{fc}\u{df}e, \u{4e16}\u{754c} \u{1f980}".as_bytes(),
            b"\xff\xfe bad",
            b"ascii then a cut \xe4\xb8",
            b"\x80",
            b"nul \0 and del \x7f are ascii",
            &[b'a'; 1000],
        ];
        for line in cases {
            assert_eq!(text(line), std::str::from_utf8(line), "{line:?}");
        }
    }

    #[test]
    fn find_newline_finds_the_first_newline_wherever_it_is_and_whatever_surrounds_it() {
        // Every length to past the word-at-a-time part, every position of the first `\n`
        // (or none), a second `\n` after it, and around it every byte value in turn: the
        // bytes next to `\n` in value (0x0b, 0x09, 0x8a, 0x00...) are the ones a word trick
        // gets wrong.
        for len in 0..40 {
            for first in (0..len).map(Some).chain([None]) {
                for fill in 0..=255u8 {
                    if fill == b'\n' {
                        continue;
                    }
                    let mut bytes = vec![fill; len];
                    if let Some(i) = first {
                        bytes[i] = b'\n';
                        if i + 3 < len {
                            bytes[i + 3] = b'\n';
                        }
                    }
                    let want = bytes.iter().position(|&b| b == b'\n');
                    assert_eq!(find_newline(&bytes), want, "{bytes:?}");
                }
            }
        }
    }

    /// What `scan` and `text` make of the start of `buf`: a line's text and length.
    fn scanned_line(buf: &[u8], max: usize) -> Option<(&str, usize)> {
        match scan(buf, 0, max) {
            Scan::Line { content, consumed } => Some((text(&buf[..content]).ok()?, consumed)),
            _ => None,
        }
    }

    #[test]
    fn a_short_line_is_the_line_scan_and_text_find_whenever_it_finds_one() {
        // Every buffer length to past the word, every place of the first `\n` (or none), a
        // `\r` before it or not, and as the other bytes every value in turn (0x80 and up:
        // not ASCII; 0x0a's neighbours: what a word trick gets wrong), under limits around
        // the content's length.
        let mut found = 0;
        for len in 0..12 {
            for nl in (0..len).map(Some).chain([None]) {
                for cr in [false, true] {
                    for fill in (0..=255u8).filter(|&b| b != b'\n') {
                        let mut buf = vec![fill; len];
                        if let Some(i) = nl {
                            buf[i] = b'\n';
                            if cr && i > 0 {
                                buf[i - 1] = b'\r';
                            }
                        }
                        for max in [0, 1, 3, 5, 6, 7, 100] {
                            let Some(short) = ShortLine::find(&buf, max) else {
                                // Not short: the line, if any, is long, late or not ASCII.
                                if let Some((line, consumed)) = scanned_line(&buf, max) {
                                    assert!(consumed > 8 || len < 8 || !line.is_ascii());
                                }
                                continue;
                            };
                            found += 1;
                            let want = scanned_line(&buf, max).expect("a line");
                            assert_eq!((short.text(), short.consumed()), want, "{buf:?} {max}");
                        }
                    }
                }
            }
        }
        assert!(found > 10_000, "{found}");
    }

    #[test]
    fn appending_a_short_line_adds_its_content_and_grows_the_string_as_push_str_does() {
        let short = ShortLine::find(b"PING\r\n+PONG", 100).expect("a short line");
        assert_eq!(short.consumed(), 6);
        for capacity in 0..16 {
            for already in 0..=capacity {
                let mut out = String::with_capacity(capacity);
                out.push_str(&"x".repeat(already));
                let before = out.capacity();
                short.append_to(&mut out);
                assert_eq!(out, format!("{}PING", "x".repeat(already)));
                if before - already >= 4 {
                    assert_eq!(out.capacity(), before, "room for the line: no growth");
                }
            }
        }
    }

    #[test]
    fn every_single_split_gives_the_same_lines() {
        for cut in 0..=SAMPLE.len() {
            assert_eq!(
                lines_split_at(SAMPLE, &[cut], 100),
                Ok(expected()),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_pair_of_splits_gives_the_same_lines() {
        for a in 0..=SAMPLE.len() {
            for b in a..=SAMPLE.len() {
                assert_eq!(lines_split_at(SAMPLE, &[a, b], 100), Ok(expected()));
            }
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_lines() {
        let cuts: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(lines_split_at(SAMPLE, &cuts, 100), Ok(expected()));
    }

    #[test]
    fn lone_cr_at_end_of_stream_is_data() {
        assert_eq!(
            lines_split_at(b"abc\r", &[], 100),
            Ok(vec![b"abc\r".to_vec()])
        );
    }

    #[test]
    fn line_of_exactly_max_length_passes_with_either_terminator() {
        for input in [&b"12345\r\n"[..], b"12345\n"] {
            for cut in 0..=input.len() {
                assert_eq!(
                    lines_split_at(input, &[cut], 5),
                    Ok(vec![b"12345".to_vec()])
                );
            }
        }
    }

    #[test]
    fn line_one_over_max_length_is_refused_however_split() {
        for input in [&b"123456\r\n"[..], b"123456\n", b"123456"] {
            for cut in 0..=input.len() {
                assert_eq!(
                    lines_split_at(input, &[cut], 5),
                    Err(0),
                    "{input:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn too_long_is_decided_without_scanning_past_the_limit() {
        let big = vec![b'x'; 10_000];
        assert_eq!(scan(&big, 0, 10), Scan::TooLong);
        assert_eq!(scan(b"0123456789\r", 0, 10), Scan::NeedMore { scanned: 11 });
        assert_eq!(scan(b"0123456789x", 0, 10), Scan::TooLong);
    }

    #[test]
    fn zero_max_length_allows_only_empty_lines() {
        assert_eq!(
            scan(b"\r\n", 0, 0),
            Scan::Line {
                content: 0,
                consumed: 2
            }
        );
        assert_eq!(
            scan(b"\n", 0, 0),
            Scan::Line {
                content: 0,
                consumed: 1
            }
        );
        assert_eq!(scan(b"a\n", 0, 0), Scan::TooLong);
        assert_eq!(scan(b"\r", 0, 0), Scan::NeedMore { scanned: 1 });
    }
}
