//! The `http` workload's server on asyncnet: a minimal HTTP/1.1 server
//! written on the line API, as a user of Nim's asyncnet would write it.
//!
//! Usage: `http_asyncnet [PORT]` (0 or absent: any free port), TCP on
//! 127.0.0.1 only. Prints `listening on 127.0.0.1:PORT` once it is ready.
//!
//! One `spawn`ed task per connection, on a buffered socket with
//! `TCP_NODELAY`. Per request: `recv_line_into` a reused `String` for the
//! request line (empty lines before it are skipped) and each header line
//! until the empty one (lines of at most 8 KiB, as Nim's asynchttpserver);
//! a `Content-Length` body is read and discarded with `recv`; then one
//! `send` of the response, formatted into a reused buffer: `HTTP/1.1 200
//! OK`, `Content-Type: text/plain`, `Content-Length: 13`, body
//! `Hello, World!` (none for `HEAD`), whatever the method and target.
//!
//! Keep-alive: HTTP/1.1 unless the request says `Connection: close`;
//! HTTP/1.0 only if it says `Connection: keep-alive` (then the response says
//! so too). A closing response carries `Connection: close` and the
//! connection is closed after it. A malformed request line or header gets
//! `400 Bad Request` and the connection is closed; so does a line over the
//! limit or not in UTF-8. A `Transfer-Encoding` body cannot be framed by this
//! server: `501 Not Implemented`, then close.

use std::io::{self, Write};
use std::process::ExitCode;

use asyncnet::{spawn, wait_for, AsyncSocket, Flags, SoBool};
use asyncnet_bench::{say_ready, Listen};

/// The body of every `200` response.
const BODY: &[u8] = b"Hello, World!";
/// Longest request or header line accepted (Nim's asynchttpserver: 8 KiB).
const MAX_LINE: usize = 8 * 1024;
/// Most of a request body read (and dropped) at a time.
const BODY_CHUNK: usize = 64 * 1024;

/// What the server needs to know about one request.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// `HEAD`: the response has no body.
    head: bool,
    /// HTTP/1.1 (else 1.0).
    http11: bool,
    content_length: u64,
    /// `Connection: close` was given.
    close: bool,
    /// `Connection: keep-alive` was given.
    keep_alive: bool,
    /// A `Transfer-Encoding` header was given.
    transfer_encoding: bool,
}

impl Head {
    /// Whether the connection stays open after this request's response.
    fn persistent(&self) -> bool {
        !self.close && !self.transfer_encoding && (self.http11 || self.keep_alive)
    }
}

/// RFC 9110 `tchar`: what a method or a header name is made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `METHOD SP TARGET SP HTTP/1.x`, single spaces, nothing else: the request's
/// `head` and `http11` fields, or `None` if malformed.
fn parse_request_line(line: &str) -> Option<Head> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_token(method) {
        return None;
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    Some(Head {
        head: method == "HEAD",
        http11,
        content_length: 0,
        close: false,
        keep_alive: false,
        transfer_encoding: false,
    })
}

/// Applies one header line to `head`. `Err(())` if it is malformed (no
/// colon, a name that is not a token, such as one with a space before the
/// colon or an obsolete folded line, or a bad or conflicting
/// `Content-Length`).
fn parse_header(line: &str, head: &mut Head) -> Result<(), ()> {
    let (name, value) = line.split_once(':').ok_or(())?;
    if !is_token(name) {
        return Err(());
    }
    let value = value.trim_matches([' ', '\t']);
    if name.eq_ignore_ascii_case("content-length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n: u64 = value.parse().map_err(|_| ())?;
        if head.content_length != 0 && head.content_length != n {
            return Err(());
        }
        head.content_length = n;
    } else if name.eq_ignore_ascii_case("connection") {
        for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
            head.close |= option.eq_ignore_ascii_case("close");
            head.keep_alive |= option.eq_ignore_ascii_case("keep-alive");
        }
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        head.transfer_encoding = true;
    }
    Ok(())
}

/// Formats a whole response into `out` (cleared first). `connection`: the
/// value of a `Connection` header to add, if any.
fn respond(out: &mut Vec<u8>, status: &str, body: &[u8], with_body: bool, connection: &str) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !connection.is_empty() {
        let _ = write!(out, "Connection: {connection}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
}

/// Sends `status` with its reason as the body and `Connection: close`.
async fn refuse(client: &AsyncSocket, out: &mut Vec<u8>, status: &str) {
    let reason = status.split_once(' ').map_or(status, |(_, r)| r);
    respond(out, status, reason.as_bytes(), true, "close");
    let _ = client.send(&out[..]).await;
}

/// How reading a request ended.
enum Read {
    Request(Head),
    /// End of stream or a socket error: close without a response.
    Gone,
    /// Answer this status, then close.
    Refuse(&'static str),
}

/// The next line into `line` (cleared first): `Ok(true)` if there is one,
/// `Ok(false)` at end of stream, `Err(true)` if it is too long or not UTF-8
/// (worth a 400), `Err(false)` on a socket error.
async fn next_line(client: &AsyncSocket, line: &mut String) -> Result<bool, bool> {
    line.clear();
    match client
        .recv_line_into_with(line, Flags::default(), MAX_LINE)
        .await
    {
        Ok(got) => Ok(got),
        Err(e) => Err(e.kind() == io::ErrorKind::InvalidData),
    }
}

/// Reads one request's line and headers.
async fn read_head(client: &AsyncSocket, line: &mut String) -> Read {
    let bad = |refuse: bool| {
        if refuse {
            Read::Refuse("400 Bad Request")
        } else {
            Read::Gone
        }
    };
    let mut head = loop {
        match next_line(client, line).await {
            Ok(false) => return Read::Gone,
            Err(refuse) => return bad(refuse),
            Ok(true) if line.is_empty() => continue,
            Ok(true) => match parse_request_line(line) {
                Some(head) => break head,
                None => return Read::Refuse("400 Bad Request"),
            },
        }
    };
    loop {
        match next_line(client, line).await {
            Ok(false) => return Read::Gone,
            Err(refuse) => return bad(refuse),
            Ok(true) if line.is_empty() => return Read::Request(head),
            Ok(true) => {
                if parse_header(line, &mut head).is_err() {
                    return Read::Refuse("400 Bad Request");
                }
            }
        }
    }
}

async fn serve_client(client: AsyncSocket) {
    let mut line = String::new();
    let mut out = Vec::new();
    loop {
        let head = match read_head(&client, &mut line).await {
            Read::Request(head) => head,
            Read::Gone => break,
            Read::Refuse(status) => {
                refuse(&client, &mut out, status).await;
                break;
            }
        };
        if head.transfer_encoding {
            refuse(&client, &mut out, "501 Not Implemented").await;
            break;
        }
        // The body, read and dropped; a buffered `recv` waits for all it
        // asks for, so a short one means the stream ended.
        let mut left = head.content_length;
        while left > 0 {
            let want = left.min(BODY_CHUNK as u64) as usize;
            match client.recv(want).await {
                Ok(got) if got.len() == want => left -= want as u64,
                _ => break,
            }
        }
        if left > 0 {
            break;
        }
        let persistent = head.persistent();
        let connection = match (persistent, head.http11) {
            (false, _) => "close",
            (true, false) => "keep-alive",
            (true, true) => "",
        };
        respond(&mut out, "200 OK", BODY, !head.head, connection);
        if client.send(&out[..]).await.is_err() || !persistent {
            break;
        }
    }
    // The peer has gone or was refused: nothing is left to report.
    let _ = client.close();
}

async fn serve(port: u16) -> io::Result<()> {
    // Accepted sockets are buffered, as the listener is.
    let server = AsyncSocket::builder().buffered(true).build()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    say_ready(&Listen::Tcp(port), server.local_addr()?.1)?;
    loop {
        let client = server.accept().await?;
        client.set_sock_opt(SoBool::NoDelay, true)?;
        // Detached: each task ends with its connection and never fails.
        drop(spawn(serve_client(client)));
    }
}

/// The `http` workload's server on asyncnet (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// TCP port on 127.0.0.1; 0: any free one
    #[arg(default_value_t = 0)]
    port: u16,
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    match wait_for(serve(cli.port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_asyncnet: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let h = parse_request_line("GET / HTTP/1.1").unwrap();
        assert!(h.http11 && !h.head && h.persistent());
        let h = parse_request_line("HEAD /x?y=1 HTTP/1.0").unwrap();
        assert!(!h.http11 && h.head && !h.persistent());
        for bad in [
            "",
            "GET",
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 x",
            "GET / HTTP/2.0",
            "GET / http/1.1",
            "G(T / HTTP/1.1",
            "GET /\x7f HTTP/1.1",
            "GET / HTTP/1.1\r",
        ] {
            assert_eq!(parse_request_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn headers() {
        let mut h = parse_request_line("POST / HTTP/1.1").unwrap();
        parse_header("Host: x", &mut h).unwrap();
        parse_header("content-LENGTH:\t 12 ", &mut h).unwrap();
        assert_eq!(h.content_length, 12);
        parse_header("Content-Length: 12", &mut h).unwrap();
        assert!(parse_header("Content-Length: 13", &mut h).is_err());
        assert!(parse_header("Content-Length: -1", &mut h).is_err());
        assert!(parse_header("Content-Length: +1", &mut h).is_err());
        assert!(parse_header("Content-Length:", &mut h).is_err());
        assert!(parse_header("no colon", &mut h).is_err());
        assert!(parse_header("Host : x", &mut h).is_err());
        assert!(parse_header(" folded", &mut h).is_err());
        assert!(h.persistent());
        parse_header("Connection: Upgrade, CLOSE", &mut h).unwrap();
        assert!(h.close && !h.persistent());
        let mut h = parse_request_line("GET / HTTP/1.0").unwrap();
        parse_header("Connection: keep-alive", &mut h).unwrap();
        assert!(h.persistent());
        parse_header("Transfer-Encoding: chunked", &mut h).unwrap();
        assert!(!h.persistent());
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        respond(&mut out, "200 OK", BODY, true, "");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
        );
        respond(&mut out, "200 OK", BODY, false, "close");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
        );
    }
}
