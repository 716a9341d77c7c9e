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
use crate::workload::{field, measure_window, parse_kv, RoundConfig, LOADGEN_SLACK, READY_TIMEOUT};

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

/// One round against one peer.
#[derive(Clone, Debug)]
pub struct RoundResult {
    pub ops: u64,
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub idle_conns: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    pub sampled_secs: f64,
    pub server_user_secs: f64,
    pub server_sys_secs: f64,
    pub loadgen_secs: f64,
}

impl RoundResult {
    /// Server CPU per operation, µs.
    pub fn server_us_per_op(&self) -> f64 {
        (self.server_user_secs + self.server_sys_secs) * 1e6 / self.ops as f64
    }

    /// Its user-mode part (rustls and the event loop, not the kernel), µs.
    pub fn server_user_us_per_op(&self) -> f64 {
        self.server_user_secs * 1e6 / self.ops as f64
    }

    pub fn server_cpu_pct(&self) -> f64 {
        100.0 * (self.server_user_secs + self.server_sys_secs) / self.sampled_secs
    }

    /// What makes the round doubtful.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.idle_conns > 0 {
            w.push(format!(
                "{} connection(s)/slot(s) completed nothing in the window",
                self.idle_conns
            ));
        }
        if self.errors > 0 {
            w.push(format!(
                "{} connection(s) failed, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.server_cpu_pct() < 90.0 && 100.0 * self.loadgen_secs / self.sampled_secs < 90.0 {
            w.push("server and loadgen both under 90% CPU: something else held them up".into());
        }
        w
    }
}

/// One measured round of `work` against `peer`, whose server presents `cert` and `key`.
pub fn run_round(
    peer: &Peer,
    work: &TlsWorkload,
    (cert, key): (&Path, &Path),
    cfg: &RoundConfig,
) -> io::Result<RoundResult> {
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
    Ok(RoundResult {
        ops: field(&kv, "ops")?,
        rate: field(&kv, "rate")?,
        p50_us: field(&kv, "p50_us")?,
        p99_us: field(&kv, "p99_us")?,
        idle_conns: field(&kv, "idle_conns")?,
        errors: field(&kv, "errors")?,
        // Last on the line, spaces and all.
        first_error: w
            .result
            .split_once(" first_error=")
            .map(|(_, e)| e.trim().to_string())
            .filter(|e| e != "none"),
        sampled_secs: (w.end - w.start).as_secs_f64(),
        server_user_secs: w.server.0,
        server_sys_secs: w.server.1,
        loadgen_secs: w.loadgen.0 + w.loadgen.1,
    })
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
        let mut r = RoundResult {
            ops: 500,
            rate: 100.0,
            p50_us: 100.0,
            p99_us: 200.0,
            idle_conns: 0,
            errors: 0,
            first_error: None,
            sampled_secs: 5.0,
            server_user_secs: 4.0,
            server_sys_secs: 1.0,
            loadgen_secs: 5.0,
        };
        assert!(r.warnings().is_empty());
        assert!((r.server_us_per_op() - 10_000.0).abs() < 1e-6);
        r.errors = 2;
        r.first_error = Some("reset".into());
        assert!(r.warnings()[0].contains("2 connection(s) failed, first: reset"));
    }
}
