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
//! Used by `echo_bench --workload http` through [`run`]; [`run_round`],
//! [`summarize`] and [`summary_table`] are the parts another runner needs,
//! and [`trace_round`] the system call pass of the suite (`bench_suite`).

use std::fmt::Write;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{taskset_available, Spawned};
use crate::extpeers::{self, run_bounded};
use crate::peers::{self, Peer, Source, FLOOR};
use crate::procstat::{clock_ticks_per_sec, CpuTicks};
use crate::report::{request_ratio_lines, RequestFigures};
use crate::stats::median;
use crate::syscalls::{Profile, Tracer, TRACE_TIMEOUT};
use crate::workload::{self, RoundConfig};

mod wrk;

pub use wrk::{parse as parse_wrk, SocketErrors, WrkReport};

/// The load generator of this workload.
pub const TOOL: &str = "wrk";
/// Peers run when `--peers` is not given.
pub const DEFAULT_PEERS: &str = "asyncnet,hyper,nim,c-floor";
/// The peer the ratios are against unless `--baseline` says otherwise.
pub const BASELINE: &str = "hyper";
/// The Nim peer, which the ratios are also against.
pub const NIM: &str = "nim";
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
        Peer::source(NIM, Source::NimHttp),
        Peer::source(FLOOR, Source::CFloorHttp),
    ]
}

/// The peers of this workload named in a comma-separated list, in order.
pub fn select(list: &str) -> Result<Vec<Peer>, String> {
    peers::select_from(&peers(), list)
}

/// True if `wrk` runs (`wrk --version` prints its name but exits with 1).
pub fn tool_available() -> bool {
    let log = std::env::temp_dir().join(format!("asyncnet-bench-wrk-{}.log", std::process::id()));
    let ran = run_bounded(
        Command::new(TOOL).arg("--version"),
        &log,
        Duration::from_secs(10),
    )
    .is_ok();
    let said = std::fs::read_to_string(&log).is_ok_and(|t| t.starts_with("wrk "));
    let _ = std::fs::remove_file(&log);
    ran && said
}

/// wrk's `-d` for a window of `secs` seconds: whole seconds, rounded up.
pub fn whole_secs(secs: f64) -> u64 {
    secs.max(0.0).ceil() as u64
}

/// The arguments of one wrk run against 127.0.0.1:`port`.
pub fn wrk_args(port: u16, conns: usize, secs: u64) -> Vec<String> {
    vec![
        "-t1".into(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".into(),
        format!("http://127.0.0.1:{port}/"),
    ]
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
    match wrk.wait_until(deadline)? {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(io::Error::other(format!(
                "{TOOL} failed: {s}; it said:\n{out}"
            )))
        }
        None => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{TOOL} did not exit"),
            ))
        }
    }
    parse_wrk(&out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One measured run of one peer.
#[derive(Clone, Debug)]
pub struct HttpResult {
    pub peer: String,
    pub wrk: WrkReport,
    /// Between the two CPU readings.
    pub wall_secs: f64,
    pub server_user_secs: f64,
    pub server_sys_secs: f64,
}

impl HttpResult {
    /// Server CPU (user + system) per request, in microseconds (NaN if wrk
    /// completed none).
    pub fn server_us_per_req(&self) -> f64 {
        (self.server_user_secs + self.server_sys_secs) * 1e6 / self.wrk.requests as f64
    }

    /// The user-mode part of it.
    pub fn server_user_us_per_req(&self) -> f64 {
        self.server_user_secs * 1e6 / self.wrk.requests as f64
    }

    /// Server CPU use over the run, in % of one CPU.
    pub fn server_cpu_pct(&self) -> f64 {
        100.0 * (self.server_user_secs + self.server_sys_secs) / self.wall_secs
    }

    /// What makes this run doubtful: failed requests or connections.
    pub fn warnings(&self) -> Vec<String> {
        report_warnings(&self.wrk)
    }
}

/// One round against `peer`: warm-up, then the measured wrk run. Every
/// process started here is killed before this returns, on success, error or
/// panic.
pub fn run_round(peer: &Peer, conns: usize, cfg: &RoundConfig) -> io::Result<HttpResult> {
    let (mut server, port) = workload::start_tcp_server(peer, cfg)?;
    let warmup = whole_secs(cfg.warmup);
    if warmup > 0 {
        run_wrk(port, conns, warmup, cfg.loadgen_cpu)
            .map_err(|e| io::Error::new(e.kind(), format!("warm-up: {e}")))?;
    }
    let (s0, t0) = (CpuTicks::of(server.pid())?, Instant::now());
    let report = run_wrk(port, conns, whole_secs(cfg.secs).max(1), cfg.loadgen_cpu)?;
    let (s1, t1) = (CpuTicks::of(server.pid())?, Instant::now());
    if let Some(s) = server.try_wait()? {
        return Err(io::Error::other(format!(
            "server {} exited during the run: {s}",
            peer.name
        )));
    }
    server.kill()?;
    let (server_user_secs, server_sys_secs) = s1.secs_since(s0);
    Ok(HttpResult {
        peer: peer.name.clone(),
        wrk: report,
        wall_secs: (t1 - t0).as_secs_f64(),
        server_user_secs,
        server_sys_secs,
    })
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
    let (mut server, port) = workload::start_tcp_server(peer, cfg)?;
    let tracer = Tracer::attach(server.pid())?;
    let report = run_wrk(port, conns, secs.max(1), cfg.loadgen_cpu)?;
    if let Some(s) = server.try_wait()? {
        return Err(io::Error::other(format!(
            "server {} exited during the traced run: {s}",
            peer.name
        )));
    }
    server.kill()?;
    let counts = tracer.finish(Instant::now() + TRACE_TIMEOUT)?;
    let problems = report_warnings(&report);
    if !problems.is_empty() {
        return Err(io::Error::other(format!(
            "traced {TOOL} run: {}",
            problems.join("; ")
        )));
    }
    Ok(Profile::new(&counts, report.requests as f64))
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
    if wrk.socket_errors.total() > 0 {
        w.push(format!("socket errors: {}", wrk.socket_errors));
    }
    w
}

/// The header of the per-round rows.
pub fn round_header() -> String {
    format!(
        "{:>5}  {:<10} {:>10} {:>12} {:>9} {:>9} {:>11} {:>9} {:>8}",
        "round",
        "peer",
        "requests",
        "requests/s",
        "p50 µs",
        "p99 µs",
        "srv µs/req",
        "(user)",
        "srv CPU"
    )
}

/// One round's row.
pub fn round_row(round: usize, r: &HttpResult) -> String {
    format!(
        "{:>5}  {:<10} {:>10} {:>12.0} {:>9.1} {:>9.1} {:>11.3} {:>9.3} {:>7.1}%",
        round,
        r.peer,
        r.wrk.requests,
        r.wrk.rps,
        r.wrk.p50_us,
        r.wrk.p99_us,
        r.server_us_per_req(),
        r.server_user_us_per_req(),
        r.server_cpu_pct()
    )
}

/// Medians of one peer over its rounds, per column.
#[derive(Clone, Debug)]
pub struct HttpSummary {
    pub peer: String,
    pub rounds: usize,
    pub rps: f64,
    pub server_us_per_req: f64,
    pub server_user_us_per_req: f64,
    pub server_cpu_pct: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Per peer named in `peers` (in that order) with results: the medians, per
/// column.
pub fn summarize(results: &[HttpResult], peers: &[String]) -> Vec<HttpSummary> {
    let mut out = Vec::new();
    for name in peers {
        let rs: Vec<&HttpResult> = results.iter().filter(|r| &r.peer == name).collect();
        if rs.is_empty() {
            continue;
        }
        let med = |f: fn(&HttpResult) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        out.push(HttpSummary {
            peer: name.clone(),
            rounds: rs.len(),
            rps: med(|r| r.wrk.rps),
            server_us_per_req: med(HttpResult::server_us_per_req),
            server_user_us_per_req: med(HttpResult::server_user_us_per_req),
            server_cpu_pct: med(HttpResult::server_cpu_pct),
            p50_us: med(|r| r.wrk.p50_us),
            p99_us: med(|r| r.wrk.p99_us),
        });
    }
    out
}

/// The medians table, then the ratios of every other peer against
/// `baseline` and against [`NIM`] (when they ran) and, if the C floor ran,
/// each other peer as a multiple of the floor.
pub fn summary_table(summaries: &[HttpSummary], baseline: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>12} {:>9} {:>9} {:>11} {:>9} {:>8}",
        "peer", "rounds", "requests/s", "p50 µs", "p99 µs", "srv µs/req", "(user)", "srv CPU"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>12.0} {:>9.1} {:>9.1} {:>11.3} {:>9.3} {:>7.1}%",
            s.peer,
            s.rounds,
            s.rps,
            s.p50_us,
            s.p99_us,
            s.server_us_per_req,
            s.server_user_us_per_req,
            s.server_cpu_pct
        );
    }
    let mut references = vec![baseline];
    if baseline != NIM {
        references.push(NIM);
    }
    let rows: Vec<RequestFigures<'_>> = summaries
        .iter()
        .map(|s| RequestFigures {
            peer: &s.peer,
            rps: s.rps,
            server_us_per_req: s.server_us_per_req,
            server_user_us_per_req: s.server_user_us_per_req,
        })
        .collect();
    for (i, reference) in references.iter().enumerate() {
        // The floor lines once, after the last reference's.
        let last = i + 1 == references.len();
        request_ratio_lines(&mut out, "", &rows, reference, last);
    }
    out
}

/// The options of `echo_bench --workload http`.
#[derive(Clone, Debug)]
pub struct Options {
    pub rounds: usize,
    /// Measured window (rounded up to whole seconds for wrk).
    pub secs: f64,
    /// Warm-up wrk run before it (0: none).
    pub warmup: f64,
    pub conns: usize,
    /// `--peers`; [`DEFAULT_PEERS`] if `None`.
    pub peers: Option<String>,
    /// `--baseline`; [`BASELINE`] if `None`.
    pub baseline: Option<String>,
    pub server_cpu: usize,
    pub loadgen_cpu: usize,
    /// Run without `taskset`.
    pub no_pin: bool,
}

/// The whole workload as `echo_bench --workload http` runs it: builds the
/// peers that come from source, runs the rounds (A B A B ...), prints a row
/// per round (and a warning line under a doubtful one), then the medians
/// and ratios. Without wrk it prints a note and succeeds.
pub fn run(opts: &Options) -> Result<(), String> {
    if opts.rounds == 0 || opts.conns == 0 {
        return Err("--rounds and --conns must be at least 1".into());
    }
    if !(opts.secs > 0.0 && opts.secs <= 3600.0 && (0.0..=3600.0).contains(&opts.warmup)) {
        return Err("--secs must be in (0, 3600] and --warmup in [0, 3600]".into());
    }
    let peers = select(opts.peers.as_deref().unwrap_or(DEFAULT_PEERS))?;
    let baseline = opts.baseline.as_deref().unwrap_or(BASELINE);
    if !tool_available() {
        println!("note: `{TOOL}` not found or not working (package wrk): skipping workload http");
        return Ok(());
    }
    // Peers built from source (nim, c-floor): their directory is removed when
    // `_build_dir` drops, after every server is killed (each round kills its own).
    let (_build_dir, peers) = extpeers::prepare_in_own_dir(peers)?;
    let bin_dir = peers::bin_dir().map_err(|e| e.to_string())?;
    for p in &peers {
        p.path(&bin_dir).map_err(|e| e.to_string())?;
    }
    let pinned = !opts.no_pin && taskset_available();
    if !opts.no_pin && !pinned {
        println!("note: taskset not found or not working: running unpinned");
    }
    let cfg = RoundConfig {
        bin_dir,
        secs: whole_secs(opts.secs).max(1) as f64,
        warmup: whole_secs(opts.warmup) as f64,
        server_cpu: pinned.then_some(opts.server_cpu),
        loadgen_cpu: pinned.then_some(opts.loadgen_cpu),
    };
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    println!(
        "HTTP/1.1 keep-alive hello world on 127.0.0.1: {TOOL} -t1 -c{} -d{}s --latency, after a {} s {TOOL} warm-up",
        opts.conns, cfg.secs, cfg.warmup
    );
    println!(
        "{} interleaved rounds of {}; {}",
        opts.rounds,
        names.join(", "),
        if pinned {
            format!(
                "server on CPU {}, {TOOL} on CPU {}",
                opts.server_cpu, opts.loadgen_cpu
            )
        } else {
            "unpinned".to_string()
        }
    );
    println!(
        "server CPU from /proc/PID/stat ({} ticks/s) read before and after the measured {TOOL} run",
        clock_ticks_per_sec()
    );
    println!();
    println!("{}", round_header());
    let mut results = Vec::new();
    let mut warned = 0;
    for round in 1..=opts.rounds {
        for peer in &peers {
            let r = run_round(peer, opts.conns, &cfg)
                .map_err(|e| format!("http round {round}, peer {}: {e}", peer.name))?;
            println!("{}", round_row(round, &r));
            let ws = r.warnings();
            for w in &ws {
                println!("       warning ({}): {w}", r.peer);
            }
            warned += usize::from(!ws.is_empty());
            results.push(r);
        }
    }
    println!();
    println!("medians over {} rounds (http):", opts.rounds);
    print!("{}", summary_table(&summarize(&results, &names), baseline));
    if warned > 0 {
        println!("{warned} round(s) had warnings (see above): treat their figures with care");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(peer: &str, rps: f64, requests: u64, cpu: f64) -> HttpResult {
        HttpResult {
            peer: peer.into(),
            wrk: WrkReport {
                requests,
                secs: 2.0,
                rps,
                p50_us: 200.0,
                p99_us: 900.0,
                non_2xx: 0,
                socket_errors: SocketErrors::default(),
            },
            wall_secs: 2.0,
            server_user_secs: cpu / 4.0,
            server_sys_secs: cpu * 3.0 / 4.0,
        }
    }

    #[test]
    fn peers_and_arguments() {
        let p = select("c-floor,asyncnet").unwrap();
        assert_eq!(p[0].name, FLOOR);
        assert!(matches!(
            p[0].program,
            peers::Program::Source(Source::CFloorHttp)
        ));
        assert!(matches!(
            p[1].program,
            peers::Program::Sibling("http_asyncnet")
        ));
        assert_eq!(p[1].args_for(&crate::Listen::Tcp(0)), ["0"]);
        assert_eq!(select(DEFAULT_PEERS).unwrap().len(), 4);
        assert!(select("tokio").unwrap_err().contains("unknown peer"));
        assert_eq!(
            wrk_args(8080, 50, 5),
            ["-t1", "-c50", "-d5s", "--latency", "http://127.0.0.1:8080/"]
        );
        assert_eq!(whole_secs(0.3), 1);
        assert_eq!(whole_secs(2.0), 2);
        assert_eq!(whole_secs(0.0), 0);
    }

    #[test]
    fn medians_ratios_and_warnings() {
        let rs = [
            result("asyncnet", 100.0, 1000, 0.004),
            result("asyncnet", 300.0, 1000, 0.002),
            result("hyper", 200.0, 1000, 0.004),
            result(NIM, 100.0, 1000, 0.008),
            result(FLOOR, 400.0, 1000, 0.002),
        ];
        let names = ["asyncnet", "hyper", NIM, FLOOR].map(String::from);
        let s = summarize(&rs, &names);
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].rounds, s[0].rps), (2, 200.0));
        assert!((s[0].server_us_per_req - 3.0).abs() < 1e-9);
        assert!((s[0].server_user_us_per_req - 0.75).abs() < 1e-9);
        assert!((s[0].server_cpu_pct - 0.15).abs() < 1e-9);
        let table = summary_table(&s, BASELINE);
        assert!(
            table.contains("ratio asyncnet/hyper: requests/s 1.000x (higher is better); server CPU per request 0.750x"),
            "{table}"
        );
        assert!(
            table.contains("ratio asyncnet/nim: requests/s 2.000x"),
            "{table}"
        );
        assert!(table.contains("ratio hyper/nim: "), "{table}");
        assert!(!table.contains("ratio nim/nim"), "{table}");
        assert!(
            table.contains("asyncnet: requests/s 0.500x the C floor; server CPU per request 1.50x"),
            "{table}"
        );
        assert!(round_row(1, &rs[0]).contains(" 4.000 "));
        assert!(round_header().contains("srv µs/req"));
        assert!(rs[0].warnings().is_empty());
        let mut bad = rs[0].clone();
        bad.wrk.non_2xx = 3;
        bad.wrk.socket_errors.read = 2;
        let w = bad.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("read 2"));
    }
}
