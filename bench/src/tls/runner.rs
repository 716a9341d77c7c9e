//! One measured round of the TLS benchmark, and its report.
//!
//! A round: start the peer's server (pinned to the server CPU) with the certificate files,
//! wait for its ready line, run `tls_loadgen` (pinned to the load generator's CPU), sample both
//! processes' CPU time when it prints `measure-start` and `measure-end`, kill the server.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::parse_ready_line;
use crate::stats::median;
use crate::workload::{field, measure_window, parse_kv};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of warm-up + window for the load generator to finish.
pub const LOADGEN_SLACK: Duration = Duration::from_secs(30);

/// A TLS server under comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPeer {
    pub name: &'static str,
    pub bin: &'static str,
    /// Arguments before `--cert`, `--key` and the port.
    pub args: &'static [&'static str],
}

/// Every known TLS peer; the runner's default is `asyncnet,tokio`.
pub const PEERS: [TlsPeer; 3] = [
    TlsPeer {
        name: "asyncnet",
        bin: "tls_echo_asyncnet",
        args: &[],
    },
    TlsPeer {
        name: "tokio",
        bin: "tls_echo_tokio",
        args: &[],
    },
    TlsPeer {
        name: "asyncnet-accept",
        bin: "tls_echo_asyncnet",
        args: &["--accept-tls"],
    },
];

/// The peers named in a comma-separated list, in that order, each once.
pub fn select(list: &str) -> Result<Vec<TlsPeer>, String> {
    let mut out: Vec<TlsPeer> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = PEERS.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<_> = PEERS.iter().map(|p| p.name).collect();
            format!("unknown TLS peer {name:?} (known: {})", names.join(", "))
        })?;
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        return Err("no peer selected".into());
    }
    Ok(out)
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
    pub fn name(&self) -> &'static str {
        match self {
            TlsWorkload::Echo { .. } => "echo",
            TlsWorkload::Handshake { .. } => "handshake",
        }
    }

    /// What one operation is, for the table.
    pub fn unit(&self) -> &'static str {
        match self {
            TlsWorkload::Echo { .. } => "round trips/s",
            TlsWorkload::Handshake { .. } => "handshakes/s",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TlsWorkload::Echo { size, conns } => format!(
                "TLS echo ping-pong, {size}-byte messages, {conns} connections (TLS 1.3, handshakes before the window)"
            ),
            TlsWorkload::Handshake { conns } => format!(
                "TLS handshakes, {conns} in parallel: connect, full TLS 1.3 handshake (no resumption), 1-byte echo, close_notify, server closes"
            ),
        }
    }

    /// The load generator's arguments for this workload.
    pub fn loadgen_args(&self) -> Vec<String> {
        let mut a = vec!["--mode".to_string(), self.name().to_string()];
        match *self {
            TlsWorkload::Echo { size, conns } => a.extend([
                "--size".into(),
                size.to_string(),
                "--conns".into(),
                conns.to_string(),
            ]),
            TlsWorkload::Handshake { conns } => a.extend(["--conns".into(), conns.to_string()]),
        }
        a
    }
}

/// Settings shared by every round.
#[derive(Clone, Debug)]
pub struct RoundConfig {
    pub bin_dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub secs: f64,
    pub warmup: f64,
    /// `taskset -c` CPU lists (e.g. `0`, `1-3`); none = unpinned.
    pub server_cpus: Option<String>,
    pub loadgen_cpus: Option<String>,
}

/// One round against one peer.
#[derive(Clone, Debug)]
pub struct RoundResult {
    pub peer: String,
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

    pub fn loadgen_cpu_pct(&self) -> f64 {
        100.0 * self.loadgen_secs / self.sampled_secs
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
        if self.server_cpu_pct() < 90.0 && self.loadgen_cpu_pct() < 90.0 {
            w.push("server and loadgen both under 90% CPU: something else held them up".into());
        }
        w
    }
}

fn start(name: &str, program: &Path, args: &[String], cpus: Option<&str>) -> io::Result<Spawned> {
    match cpus {
        // `taskset -c LIST PROGRAM ARGS`: taskset execs the program, so the pid is its own.
        Some(list) => {
            let mut a = vec![
                "-c".to_string(),
                list.to_string(),
                program.display().to_string(),
            ];
            a.extend_from_slice(args);
            Spawned::start(name, Path::new("taskset"), &a, None)
        }
        None => Spawned::start(name, program, args, None),
    }
}

fn exe(dir: &Path, bin: &str) -> io::Result<PathBuf> {
    let p = crate::peers::sibling(dir, bin);
    if p.is_file() {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found (run `cargo build --release -p asyncnet-bench` first)",
                p.display()
            ),
        ))
    }
}

/// Checks that the binaries of `peers` and the load generator exist.
pub fn check_binaries(dir: &Path, peers: &[TlsPeer]) -> io::Result<()> {
    exe(dir, "tls_loadgen")?;
    for p in peers {
        exe(dir, p.bin)?;
    }
    Ok(())
}

/// One measured round of `work` against `peer`.
pub fn run_round(peer: &TlsPeer, work: &TlsWorkload, cfg: &RoundConfig) -> io::Result<RoundResult> {
    let mut args: Vec<String> = peer.args.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--cert".into(),
        cfg.cert.display().to_string(),
        "--key".into(),
        cfg.key.display().to_string(),
        "0".into(),
    ]);
    let mut server = start(
        peer.name,
        &exe(&cfg.bin_dir, peer.bin)?,
        &args,
        cfg.server_cpus.as_deref(),
    )?;
    let port = server
        .wait_for_line(Instant::now() + READY_TIMEOUT, parse_ready_line)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("waiting for {}'s ready line: {e}", peer.name),
            )
        })?;

    let mut args = work.loadgen_args();
    args.extend([
        "--port".into(),
        port.to_string(),
        "--cert".into(),
        cfg.cert.display().to_string(),
        "--secs".into(),
        cfg.secs.to_string(),
        "--warmup".into(),
        cfg.warmup.to_string(),
    ]);
    let mut loadgen = start(
        "tls_loadgen",
        &exe(&cfg.bin_dir, "tls_loadgen")?,
        &args,
        cfg.loadgen_cpus.as_deref(),
    )?;
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.warmup + cfg.secs) + LOADGEN_SLACK;
    let window = measure_window(
        &mut server,
        peer.name,
        &mut loadgen,
        "tls_loadgen",
        deadline,
    )?;
    let result = window.result;
    let (t0, t1) = (window.start, window.end);
    let ((su, ss), (lu, ls)) = (window.server, window.loadgen);

    let kv = parse_kv(&result);
    Ok(RoundResult {
        peer: peer.name.to_string(),
        ops: field(&kv, "ops")?,
        rate: field(&kv, "rate")?,
        p50_us: field(&kv, "p50_us")?,
        p99_us: field(&kv, "p99_us")?,
        idle_conns: field(&kv, "idle_conns")?,
        errors: field(&kv, "errors")?,
        // Last on the line, spaces and all.
        first_error: result
            .split_once(" first_error=")
            .map(|(_, e)| e.trim().to_string())
            .filter(|e| e != "none"),
        sampled_secs: (t1 - t0).as_secs_f64(),
        server_user_secs: su,
        server_sys_secs: ss,
        loadgen_secs: lu + ls,
    })
}

pub fn round_header(work: &TlsWorkload) -> String {
    format!(
        "{:>5}  {:<16} {:>13} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7}",
        "round",
        "peer",
        work.unit(),
        "p50 µs",
        "p99 µs",
        "srv µs/op",
        "(user)",
        "srv CPU",
        "lg CPU"
    )
}

pub fn round_row(round: usize, r: &RoundResult) -> String {
    format!(
        "{round:>5}  {:<16} {:>13.0} {:>9.1} {:>9.1} {:>10.2} {:>9.2} {:>6.1}% {:>6.1}%",
        r.peer,
        r.rate,
        r.p50_us,
        r.p99_us,
        r.server_us_per_op(),
        r.server_user_us_per_op(),
        r.server_cpu_pct(),
        r.loadgen_cpu_pct()
    )
}

/// Medians of one peer's rounds.
#[derive(Clone, Debug)]
pub struct Summary {
    pub peer: String,
    pub rounds: usize,
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_us_per_op: f64,
    pub server_user_us_per_op: f64,
    pub server_cpu_pct: f64,
    pub loadgen_cpu_pct: f64,
}

pub fn summarize(results: &[RoundResult], peers: &[TlsPeer]) -> Vec<Summary> {
    peers
        .iter()
        .filter_map(|p| {
            let rs: Vec<&RoundResult> = results.iter().filter(|r| r.peer == p.name).collect();
            if rs.is_empty() {
                return None;
            }
            let med = |f: &dyn Fn(&RoundResult) -> f64| {
                median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            Some(Summary {
                peer: p.name.to_string(),
                rounds: rs.len(),
                rate: med(&|r| r.rate),
                p50_us: med(&|r| r.p50_us),
                p99_us: med(&|r| r.p99_us),
                server_us_per_op: med(&RoundResult::server_us_per_op),
                server_user_us_per_op: med(&RoundResult::server_user_us_per_op),
                server_cpu_pct: med(&RoundResult::server_cpu_pct),
                loadgen_cpu_pct: med(&RoundResult::loadgen_cpu_pct),
            })
        })
        .collect()
}

pub fn summary_table(work: &TlsWorkload, summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>13} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7}",
        "peer",
        "rounds",
        work.unit(),
        "p50 µs",
        "p99 µs",
        "srv µs/op",
        "(user)",
        "srv CPU",
        "lg CPU"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>13.0} {:>9.1} {:>9.1} {:>10.2} {:>9.2} {:>6.1}% {:>6.1}%",
            s.peer,
            s.rounds,
            s.rate,
            s.p50_us,
            s.p99_us,
            s.server_us_per_op,
            s.server_user_us_per_op,
            s.server_cpu_pct,
            s.loadgen_cpu_pct
        );
    }
    out
}

/// Each peer's ratios against `baseline`, one line each.
pub fn ratio_lines(work: &TlsWorkload, summaries: &[Summary], baseline: &str) -> String {
    let mut out = String::new();
    let Some(base) = summaries.iter().find(|s| s.peer == baseline) else {
        return out;
    };
    for s in summaries.iter().filter(|s| s.peer != baseline) {
        let _ = writeln!(
            out,
            "{}: ratio {}/{}: {} {:.3}x (higher is better); server CPU per op {:.3}x, user part {:.3}x (lower is better)",
            work.name(),
            s.peer,
            base.peer,
            work.unit(),
            s.rate / base.rate,
            s.server_us_per_op / base.server_us_per_op,
            s.server_user_us_per_op / base.server_user_us_per_op,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(peer: &str, rate: f64, cpu: f64) -> RoundResult {
        RoundResult {
            peer: peer.into(),
            ops: (rate * 5.0) as u64,
            rate,
            p50_us: 100.0,
            p99_us: 200.0,
            idle_conns: 0,
            errors: 0,
            first_error: None,
            sampled_secs: 5.0,
            server_user_secs: cpu * 0.8,
            server_sys_secs: cpu * 0.2,
            loadgen_secs: 5.0,
        }
    }

    #[test]
    fn peers_and_args() {
        let p = select("tokio,asyncnet,tokio").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "tokio");
        assert!(select("nope").is_err());
        assert!(select(" ").is_err());
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
    }

    #[test]
    fn report() {
        let kv = parse_kv("result mode=echo ops=10 rate=2.5 first_error=none");
        assert_eq!(field::<u64>(&kv, "ops").unwrap(), 10);
        assert!(field::<u64>(&kv, "p50_us").is_err());
        let rs = [
            result("asyncnet", 100.0, 5.0),
            result("tokio", 200.0, 5.0),
            result("asyncnet", 300.0, 5.0),
        ];
        let peers = select("asyncnet,tokio").unwrap();
        let s = summarize(&rs, &peers);
        assert_eq!((s[0].rounds, s[0].rate), (2, 200.0));
        let w = TlsWorkload::Handshake { conns: 4 };
        let lines = ratio_lines(&w, &s, "tokio");
        assert!(
            lines.starts_with("handshake: ratio asyncnet/tokio: handshakes/s 1.000x"),
            "{lines}"
        );
        assert!(summary_table(&w, &s).contains("asyncnet"));
        assert!(!round_row(1, &rs[0]).is_empty());
        assert!(rs[0].warnings().is_empty());
        let mut bad = rs[0].clone();
        bad.errors = 2;
        bad.first_error = Some("reset".into());
        assert!(bad.warnings()[0].contains("2 connection(s) failed, first: reset"));
    }
}
