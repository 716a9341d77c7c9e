//! Our side of `tests/support/nim/protocol.nim`, shared by the plain and the TLS interop
//! tests: the payload pattern, the reply endings, and the server loop.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use asyncnet::AsyncSocket;
#[cfg(feature = "tls")]
use asyncnet::TlsInfo;

/// `payloadLen` in protocol.nim: 4 MiB plus an amount that is not a multiple of any buffer
/// size.
pub const PAYLOAD_LEN: usize = 4 * 1024 * 1024 + 4001;

/// Largest read our server makes while echoing the payload.
pub const ECHO_CHUNK: usize = 65536;

/// `patternByte` in protocol.nim.
pub fn pattern_byte(index: usize) -> u8 {
    let mut x = (index as u32).wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    (x >> 24) as u8
}

#[allow(dead_code)] // used by the plain interop test only
pub fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(pattern_byte).collect()
}

/// Offset of the first byte of `data` that is not the pattern, if any.
pub fn first_pattern_mismatch(data: &[u8]) -> Option<usize> {
    data.iter()
        .enumerate()
        .position(|(index, &byte)| byte != pattern_byte(index))
}

/// `replyEnding` in protocol.nim: the reply to line `index` ends with CRLF when `index` is
/// even and with LF when it is odd.
pub fn reply_ending(index: usize) -> &'static str {
    ["\r\n", "\n"][index % 2]
}

/// The lines a Nim client sends, as `recv_line` must return them: CRLF and LF stripped,
/// empty lines kept, a lone CR kept, only the CR right before the LF stripped. `suffix`
/// tells the clients' first two lines apart.
pub fn lines_sent_by_nim_client(suffix: &str) -> Vec<String> {
    vec![
        format!("crlf line from nim{suffix}"),
        format!("lf line from nim{suffix}"),
        String::new(),
        String::new(),
        "a lone \r stays in the line".to_owned(),
        "only the last cr is stripped\r".to_owned(),
        "utf-8: grüße ✓".to_owned(),
        "x".repeat(100_000),
        "tab\tseparated\tvalues".to_owned(),
    ]
}

/// Where our side of a session is, for the report when it fails or hangs.
#[derive(Clone)]
pub struct Phase(Rc<Cell<&'static str>>);

impl Phase {
    pub fn new() -> Phase {
        Phase(Rc::new(Cell::new("starting")))
    }

    pub fn set(&self, phase: &'static str) {
        self.0.set(phase);
    }

    pub fn get(&self) -> &'static str {
        self.0.get()
    }
}

/// What our server saw from the Nim client.
pub struct Served {
    pub peer: String,
    /// The TLS session, if the listener was wrapped.
    #[cfg(feature = "tls")]
    #[allow(dead_code)] // read by the TLS test only
    pub info: Option<TlsInfo>,
    pub lines: Vec<String>,
    pub payload: Vec<u8>,
    /// What reading after `BYE` gave: end of stream, a line, or an error (a TLS close
    /// without close_notify).
    pub after_bye: io::Result<Option<String>>,
}

fn protocol_error(message: String) -> io::Error {
    io::Error::other(message)
}

/// Our side of the protocol as the server, for one client.
pub async fn serve_one_client(listener: AsyncSocket, phase: Phase) -> io::Result<Served> {
    phase.set("accepting");
    let (peer, sock) = listener.accept_addr().await?;
    listener.close()?;
    #[cfg(feature = "tls")]
    let info = sock.tls_info();
    let mut lines = Vec::new();
    let mut payload = Vec::new();
    loop {
        phase.set("reading lines");
        let line = sock
            .recv_line()
            .await?
            .ok_or_else(|| protocol_error(format!("end of stream after {} lines", lines.len())))?;
        if let Some(len) = line.strip_prefix("PAYLOAD ") {
            let len: usize = len
                .parse()
                .map_err(|_| protocol_error(format!("bad payload header {line:?}")))?;
            // Echo as it arrives: the Nim client sends and receives at once.
            phase.set("echoing the payload");
            while payload.len() < len {
                let chunk = sock.recv(ECHO_CHUNK.min(len - payload.len())).await?;
                if chunk.is_empty() {
                    return Err(protocol_error(format!(
                        "end of stream after {} of {len} payload bytes",
                        payload.len()
                    )));
                }
                sock.send(&chunk).await?;
                payload.extend_from_slice(&chunk);
            }
        } else if line == "BYE" {
            phase.set("answering BYE, then reading the end of stream");
            sock.send("bye\r\n").await?;
            let after_bye = sock.recv_line().await;
            sock.close()?;
            return Ok(Served {
                peer,
                #[cfg(feature = "tls")]
                info,
                lines,
                payload,
                after_bye,
            });
        } else {
            sock.send(format!("{line}{}", reply_ending(lines.len())))
                .await?;
            lines.push(line);
        }
    }
}
