//! The `http` workload's server on asyncnet: a minimal HTTP/1.1 server
//! written on the line API, as a user of Nim's asyncnet would write it.
//!
//! Usage: `http_asyncnet [PORT]` (0 or absent: any free port), TCP on
//! 127.0.0.1 only. Prints `listening on 127.0.0.1:PORT` once it is ready.
//!
//! One `spawn`ed task per connection, on a buffered socket with
//! `TCP_NODELAY`. Per request: `recv_line_into` a reused `String` for the
//! request line (`METHOD TARGET HTTP/1.x`; empty lines before it are
//! skipped) and each header line until the empty one (lines of at most
//! 8 KiB, as Nim's asynchttpserver); a `Content-Length` body is read and
//! discarded; then one `send` of the response, formatted into a reused
//! buffer: `HTTP/1.1 200 OK`, `Content-Type: text/plain`, `Content-Length:
//! 13`, body `Hello, World!` (none for `HEAD`), whatever the method and
//! target.
//!
//! Keep-alive: HTTP/1.1 unless the request says `Connection: close`;
//! HTTP/1.0 only if it says `Connection: keep-alive` (then the response says
//! so too). A closing response carries `Connection: close` and the
//! connection is closed after it. A malformed request line or header, a line
//! over the limit or not in UTF-8 gets `400 Bad Request` and a close.

use std::io::{self, Write};
use std::process::ExitCode;

use asyncnet::{spawn, wait_for, AsyncSocket, Flags, SoBool};
use asyncnet_bench::{say_ready, Listen};

/// Longest request or header line accepted (Nim's asynchttpserver: 8 KiB).
const MAX_LINE: usize = 8 * 1024;

/// What the server needs to know about one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    /// `HEAD`: the response has no body.
    head: bool,
    /// HTTP/1.1 (else 1.0).
    http11: bool,
    content_length: u64,
    /// `Connection: close`, `Connection: keep-alive` given.
    close: bool,
    keep_alive: bool,
}

impl Head {
    /// Whether the connection stays open after this request's response.
    fn persistent(&self) -> bool {
        !self.close && (self.http11 || self.keep_alive)
    }
}

/// `METHOD SP TARGET SP HTTP/1.x`, single spaces, nothing else.
fn parse_request_line(line: &str) -> Option<Head> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || target.is_empty() {
        return None;
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    let head = method == "HEAD";
    Some(Head {
        head,
        http11,
        ..Head::default()
    })
}

/// Applies one header line to `head`; `None` if it is malformed (no colon,
/// a space in the name, a bad or conflicting `Content-Length`).
fn parse_header(line: &str, head: &mut Head) -> Option<()> {
    let (name, value) = line.split_once(':')?;
    if name.is_empty() || name.contains([' ', '\t']) {
        return None;
    }
    let value = value.trim_matches([' ', '\t']);
    if name.eq_ignore_ascii_case("content-length") {
        let n = value
            .parse()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))?;
        if head.content_length != 0 && head.content_length != n {
            return None;
        }
        head.content_length = n;
    } else if name.eq_ignore_ascii_case("connection") {
        for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
            head.close |= option.eq_ignore_ascii_case("close");
            head.keep_alive |= option.eq_ignore_ascii_case("keep-alive");
        }
    }
    Some(())
}

/// Formats a whole response into `out` (cleared first), with a `Connection`
/// header if `connection` is not empty.
fn respond(out: &mut Vec<u8>, status: &str, body: &str, connection: &str) {
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
    let _ = write!(out, "\r\n{body}");
}

/// Reads one request's line and headers: `Ok(None)` at end of stream or on a
/// socket error, `Err(())` if it is malformed (worth a 400).
async fn read_head(client: &AsyncSocket, line: &mut String) -> Result<Option<Head>, ()> {
    let mut head = None;
    loop {
        line.clear();
        match client
            .recv_line_into_with(line, Flags::default(), MAX_LINE)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(()),
            Err(_) => return Ok(None),
        }
        match &mut head {
            None if line.is_empty() => {}
            None => head = Some(parse_request_line(line).ok_or(())?),
            Some(_) if line.is_empty() => return Ok(head),
            Some(h) => parse_header(line, h).ok_or(())?,
        }
    }
}

async fn serve_client(client: AsyncSocket) {
    let mut line = String::new();
    let mut out = Vec::new();
    loop {
        let head = match read_head(&client, &mut line).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(()) => {
                respond(&mut out, "400 Bad Request", "Bad Request", "close");
                let _ = client.send(&out[..]).await;
                break;
            }
        };
        // The body, read and dropped; a buffered `recv` waits for all it
        // asks for, so a short one means the stream ended.
        let mut left = head.content_length;
        while left > 0 {
            let want = left.min(64 * 1024) as usize;
            match client.recv(want).await {
                Ok(got) if got.len() == want => left -= want as u64,
                _ => break,
            }
        }
        let persistent = head.persistent();
        let connection = match (persistent, head.http11) {
            (false, _) => "close",
            (true, false) => "keep-alive",
            (true, true) => "",
        };
        respond(&mut out, "200 OK", "Hello, World!", connection);
        if head.head {
            out.truncate(out.len() - 13);
        }
        if left > 0 || client.send(&out[..]).await.is_err() || !persistent {
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
    fn requests_and_responses() {
        let h = parse_request_line("HEAD /x?y=1 HTTP/1.0").unwrap();
        assert!(!h.http11 && h.head && !h.persistent());
        for bad in [
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 x",
            "GET / HTTP/2.0",
        ] {
            assert_eq!(parse_request_line(bad), None, "{bad:?}");
        }
        let mut h = parse_request_line("POST / HTTP/1.1").unwrap();
        assert!(h.persistent());
        parse_header("content-LENGTH:\t 12 ", &mut h).unwrap();
        assert_eq!(h.content_length, 12);
        for bad in [
            "Content-Length: 13",
            "Content-Length: +1",
            "no colon",
            "Host : x",
        ] {
            assert!(parse_header(bad, &mut h).is_none(), "{bad:?}");
        }
        parse_header("Connection: Upgrade, CLOSE", &mut h).unwrap();
        assert!(h.close && !h.persistent());
        let mut out = Vec::new();
        respond(&mut out, "200 OK", "Hello, World!", "close");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"
        );
    }
}
