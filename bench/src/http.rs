//! The `http` workload: HTTP/1.1 keep-alive "hello world", driven by `wrk`
//! (not by our load generator).
//!
//! Per round and peer: start the peer's HTTP server (its own program, see
//! [`peers()`]) on the server CPU, run `wrk -t1 -cCONNS -dWARMUPs --latency`
//! on the load generator's CPU as a warm-up (skipped for `--warmup 0`), then
//! read the server's CPU time from `/proc/PID/stat`, run the measured
//! `wrk -t1 -cCONNS -dSECSs --latency http://127.0.0.1:PORT/` to completion,
//! read the server's CPU time again and kill the server. Requests/s and the
//! latency percentiles are wrk's; server CPU per request is the CPU time
//! between the two readings over the requests wrk completed (it includes
//! wrk opening its connections, a negligible part). wrk takes whole seconds,
//! so the window and the warm-up are rounded up to them.
//!
//! [`run_round`] is one measured round, [`trace_round`] the system call pass.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::child::Spawned;
#[cfg(test)]
use crate::peers::Program;
use crate::peers::{Peer, FLOOR};
use crate::procstat::CpuTicks;
use crate::suite::Sample;
use crate::syscalls::Profile;
use crate::workload::{self, RoundConfig};
use crate::Listen;

mod wrk;

pub use wrk::{parse as parse_wrk, WrkReport};

/// The load generator of this workload.
pub const TOOL: &str = "wrk";
/// Default connections (`wrk -c`).
pub const CONNS: usize = 50;
/// How much longer than its `-d` a wrk run may take before it is killed.
pub const RUN_SLACK: Duration = Duration::from_secs(30);
/// The `-d` of the traced wrk run of the system call pass ([`trace_round`]),
/// seconds.
pub const TRACE_SECS: u64 = 2;

/// Every peer of this workload: `asyncnet` (`http_asyncnet`), `hyper`
/// (`http_hyper`), `nim` (Nim's asynchttpserver, `peers/http_nim.nim`) and
/// `c-floor` (`peers/http_floor.c`), the last two built at run time.
pub fn peers() -> Vec<Peer> {
    vec![
        Peer::sibling("asyncnet", "http_asyncnet"),
        Peer::sibling("hyper", "http_hyper"),
        Peer::source("nim", "http_nim.nim"),
        Peer::source(FLOOR, "http_floor.c"),
    ]
}

/// True if `wrk` runs (`wrk --version` prints its name but exits with 1).
pub fn tool_available() -> bool {
    crate::extpeers::probe(TOOL, &["--version"]).is_some_and(|(_, said)| said.starts_with("wrk "))
}

/// wrk's `-d` for a window of `secs` seconds: whole seconds, rounded up.
pub fn whole_secs(secs: f64) -> u64 {
    secs.max(0.0).ceil() as u64
}

/// The arguments of one wrk run against 127.0.0.1:`port`.
pub fn wrk_args(port: u16, conns: usize, secs: u64) -> Vec<String> {
    let args = format!("-t1 -c{conns} -d{secs}s --latency http://127.0.0.1:{port}/");
    args.split(' ').map(String::from).collect()
}

/// Runs wrk to completion (bounded by its duration plus [`RUN_SLACK`]) and
/// parses its output.
fn run_wrk(port: u16, conns: usize, secs: u64, cpu: Option<usize>) -> io::Result<WrkReport> {
    let wrk = Spawned::start(TOOL, Path::new(TOOL), &wrk_args(port, conns, secs), cpu)?;
    run_to_end(wrk, Instant::now() + Duration::from_secs(secs) + RUN_SLACK)
}

fn run_to_end(mut wrk: Spawned, deadline: Instant) -> io::Result<WrkReport> {
    let mut out = String::new();
    loop {
        match wrk.next_line(deadline) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    wrk.finish(deadline, &format!("; it said:\n{out}"))?;
    parse_wrk(&out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One round against `peer`: warm-up, then the measured wrk run. Every
/// process started here is killed before this returns, on success, error or
/// panic.
pub fn run_round(peer: &Peer, conns: usize, cfg: &RoundConfig) -> io::Result<Sample> {
    let workload::Server {
        process: mut server,
        port,
        ..
    } = workload::start_server(peer, &Listen::Tcp(0), cfg, &[])?;
    let warmup = whole_secs(cfg.warmup);
    if warmup > 0 {
        run_wrk(port, conns, warmup, cfg.loadgen_cpu)
            .map_err(|e| io::Error::new(e.kind(), format!("warm-up: {e}")))?;
    }
    let (s0, t0) = (CpuTicks::of(server.pid())?, Instant::now());
    let report = run_wrk(port, conns, whole_secs(cfg.secs).max(1), cfg.loadgen_cpu)?;
    let (s1, t1) = (CpuTicks::of(server.pid())?, Instant::now());
    server.stop()?;
    Ok(sample(&report, (t1 - t0).as_secs_f64(), s1.secs_since(s0)))
}

/// A measured wrk run in the suite's terms, the server having spent `cpu` (user, system)
/// seconds in `secs`.
pub fn sample(wrk: &WrkReport, secs: f64, cpu: (f64, f64)) -> Sample {
    Sample {
        p50_us: Some(wrk.p50_us),
        p99_us: Some(wrk.p99_us),
        warnings: report_warnings(wrk),
        ..Sample::measured(wrk.rps, wrk.requests as f64, secs, cpu)
    }
}

/// The system call pass for `peer`: `strace -c -f` attached to its server
/// once it is ready, one `wrk -t1 -cCONNS -dSECSs` run (wrk cannot stop
/// after N requests), the server killed, and the counts divided by the
/// requests wrk completed. Only the counts are used: strace slows the
/// server many times over. They include wrk's `conns` connections being
/// accepted, set up and closed (a few calls each), and the up to `conns`
/// requests in flight when wrk stops, which the server reads (and may
/// answer) but wrk does not count: both amortized over the run's requests.
/// A run in which wrk saw a failed request or socket error is an error (its
/// counts would not be those of served requests).
pub fn trace_round(peer: &Peer, conns: usize, secs: u64, cfg: &RoundConfig) -> io::Result<Profile> {
    crate::syscalls::traced(peer, &[], cfg, |port| {
        let report = run_wrk(port, conns, secs.max(1), cfg.loadgen_cpu)?;
        let problems = report_warnings(&report);
        if !problems.is_empty() {
            let problems = problems.join("; ");
            return Err(io::Error::other(format!("traced {TOOL} run: {problems}")));
        }
        Ok(report.requests as f64)
    })
}

/// What makes a wrk run doubtful: no request completed, failed requests or
/// socket errors.
fn report_warnings(wrk: &WrkReport) -> Vec<String> {
    let mut w = Vec::new();
    if wrk.requests == 0 {
        w.push("no request completed".to_string());
    }
    if wrk.non_2xx > 0 {
        w.push(format!("{} responses were not 2xx or 3xx", wrk.non_2xx));
    }
    if wrk.socket_errors > 0 {
        w.push(format!("{} socket errors", wrk.socket_errors));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_arguments_and_warnings() {
        let p = peers();
        assert!(matches!(p[3].program, Program::Source("http_floor.c")));
        assert!(matches!(p[0].program, Program::Sibling("http_asyncnet")));
        assert_eq!(
            wrk_args(8080, 50, 5),
            ["-t1", "-c50", "-d5s", "--latency", "http://127.0.0.1:8080/"]
        );
        assert_eq!(
            (whole_secs(0.3), whole_secs(2.0), whole_secs(0.0)),
            (1, 2, 0)
        );
        let mut wrk = parse_wrk(include_str!("../tests/data/wrk-ok.txt")).unwrap();
        assert!(report_warnings(&wrk).is_empty());
        (wrk.non_2xx, wrk.socket_errors) = (3, 2);
        let s = sample(&wrk, 2.0, (0.2, 0.8));
        assert_eq!((s.p50_us, s.p99_us), (Some(191.0), Some(880.0)));
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[1].contains("2 socket errors"));
    }
}
