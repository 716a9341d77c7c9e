//! One measured round of a TLS workload.
//!
//! A round: start the peer's server (pinned to the server CPU) with the certificate files,
//! wait for its ready line, run `tls_loadgen` (pinned to the load generator's CPU), sample both
//! processes' CPU time when it prints `measure-start` and `measure-end`, kill the server.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::parse_ready_line;
use crate::peers::{self, Peer};
use crate::suite::Sample;
use crate::workload::{
    self, field, measure_window, parse_kv, RoundConfig, LOADGEN_SLACK, READY_TIMEOUT,
};

/// Every TLS peer: `asyncnet`, `tokio` (tokio-rustls), and `asyncnet-accept` (the listener
/// wrapped, so `accept` does the handshakes; run only if named in `--peers`).
pub fn peers() -> Vec<Peer> {
    let mut accept = Peer::sibling("asyncnet-accept", "tls_echo_asyncnet");
    accept.args.push("--accept-tls".into());
    vec![
        Peer::sibling("asyncnet", "tls_echo_asyncnet"),
        Peer::sibling("tokio", "tls_echo_tokio"),
        accept,
    ]
}

/// The TLS workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsWorkload {
    /// Ping-pong of `size`-byte messages on `conns` connections.
    Echo { size: usize, conns: usize },
    /// Connect, full handshake, 1-byte echo, close, on `conns` slots in parallel.
    Handshake { conns: usize },
}

impl TlsWorkload {
    /// The load generator's arguments for this workload.
    pub fn loadgen_args(&self) -> Vec<String> {
        let (mode, conns, size) = match *self {
            TlsWorkload::Echo { size, conns } => ("echo", conns, Some(size)),
            TlsWorkload::Handshake { conns } => ("handshake", conns, None),
        };
        let mut a = vec!["--mode".into(), mode.into()];
        if let Some(size) = size {
            a.extend(["--size".into(), size.to_string()]);
        }
        a.extend(["--conns".into(), conns.to_string()]);
        a
    }
}

/// What makes a TLS round doubtful: `idle` connections (handshake: slots) that completed
/// nothing in the window, `errors` failed connections (the first said `first_error`), or
/// neither process kept its CPU busy.
pub fn warnings(idle: usize, errors: u64, first_error: &str, both_idle: bool) -> Vec<String> {
    let mut w = Vec::new();
    if idle > 0 {
        w.push(format!(
            "{idle} connection(s)/slot(s) completed nothing in the window"
        ));
    }
    if errors > 0 {
        w.push(format!(
            "{errors} connection(s) failed, first: {first_error}"
        ));
    }
    if both_idle {
        w.push(workload::both_idle_warning());
    }
    w
}

/// One measured round of `work` against `peer`, whose server presents `cert` and `key`.
pub fn run_round(
    peer: &Peer,
    work: &TlsWorkload,
    (cert, key): (&Path, &Path),
    cfg: &RoundConfig,
) -> io::Result<Sample> {
    let mut args = peer.args.clone();
    args.extend(
        [
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
            "0",
        ]
        .map(String::from),
    );
    let path = peer.path(&cfg.bin_dir)?;
    let mut server = Spawned::start(&peer.name, &path, &args, peer.cpu(cfg.server_cpu))?;
    let port = server
        .wait_for_line(Instant::now() + READY_TIMEOUT, parse_ready_line)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("waiting for {}'s ready line: {e}", peer.name),
            )
        })?;
    let mut args = work.loadgen_args();
    for (k, v) in [
        ("--port", port.to_string()),
        ("--cert", cert.display().to_string()),
        ("--secs", cfg.secs.to_string()),
        ("--warmup", cfg.warmup.to_string()),
    ] {
        args.extend([k.to_string(), v]);
    }
    let loadgen = peers::Peer::sibling("tls_loadgen", "tls_loadgen").path(&cfg.bin_dir)?;
    let mut loadgen = Spawned::start("tls_loadgen", &loadgen, &args, cfg.loadgen_cpu)?;
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.warmup + cfg.secs) + LOADGEN_SLACK;
    let w = measure_window(
        &mut server,
        &peer.name,
        &mut loadgen,
        "tls_loadgen",
        deadline,
    )?;
    let kv = parse_kv(&w.result);
    let mut s = w.sample(field(&kv, "ops")?, field(&kv, "rate")?);
    s.p50_us = Some(field(&kv, "p50_us")?);
    s.p99_us = Some(field(&kv, "p99_us")?);
    // Last on the line, spaces and all.
    let first_error = w
        .result
        .split_once(" first_error=")
        .map_or("?", |(_, e)| e.trim());
    s.warnings = warnings(
        field(&kv, "idle_conns")?,
        field(&kv, "errors")?,
        first_error,
        w.both_idle(),
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_arguments_and_warnings() {
        let w = TlsWorkload::Echo {
            size: 1024,
            conns: 50,
        };
        assert_eq!(
            w.loadgen_args(),
            ["--mode", "echo", "--size", "1024", "--conns", "50"]
        );
        assert_eq!(
            TlsWorkload::Handshake { conns: 8 }.loadgen_args(),
            ["--mode", "handshake", "--conns", "8"]
        );
        assert!(warnings(0, 0, "none", false).is_empty());
        let w = warnings(1, 2, "reset", true);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[1].contains("2 connection(s) failed, first: reset"));
    }
}
