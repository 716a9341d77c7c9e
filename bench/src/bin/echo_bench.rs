//! The benchmark runner. It runs the binaries next to its own executable
//! (`cargo build --release -p asyncnet-bench` first); it compiles only the
//! `nim` and `c-floor` peers, from sources embedded in it (see
//! `asyncnet_bench::extpeers`), and only when they are selected.
//!
//! For each round, for each peer in turn (A B A B ...): start the peer's
//! server pinned to one CPU, wait for its ready line, run `loadgen` pinned
//! to another CPU, sample both processes' CPU time at the start and end of
//! the measured window, kill the server. Then print the medians per peer
//! and the ratios against the baseline peer. `--workload` picks TCP echo
//! (default), UDP echo, Unix stream echo, or all three in turn; or `idle`:
//! server memory per idle TCP connection (see `asyncnet_bench::idle`);
//! `ping` and `http`, driven by redis-benchmark and wrk (see
//! `asyncnet_bench::ping` and `asyncnet_bench::http`); or `bulk`: one
//! connection streaming through each peer (see `asyncnet_bench::bulk`).
//! `--syscalls` adds a pass that counts each peer's system calls per
//! operation under `strace` (see `asyncnet_bench::syscalls`).

use std::process::ExitCode;

use asyncnet_bench::args::Args;
use asyncnet_bench::child::taskset_available;
use asyncnet_bench::procstat::clock_ticks_per_sec;
use asyncnet_bench::report;
use asyncnet_bench::suite::{self, workloads as suite_workloads};
use asyncnet_bench::syscalls::{self, TraceConfig};
use asyncnet_bench::workload::{self, RoundConfig, Workload};
use asyncnet_bench::{extpeers, http, idle, peers, ping, rlimit};

const USAGE: &str = "\
usage: echo_bench [options]
  --workload W      echo (TCP), udp, unix (Unix stream), all (the three),
                    idle (server memory per idle TCP connection), ping
                    (Redis inline PING, driven by redis-benchmark), http
                    (HTTP/1.1 keep-alive hello world, driven by wrk), or
                    bulk (one connection streaming through the echo, MB/s)
  --rounds N        interleaved rounds per peer (default 3)
  --secs S          measured window per round, seconds (default 5)
  --warmup S        warm-up before each window, seconds (default 1)
  --conns N         connections, UDP: sockets (default 50, udp 32, idle 5000)
  --size N          bytes per message or datagram (default 64)
  --requests N      ping: redis-benchmark -n without pipelining (default 400000)
  --requests-pipelined N
                    ping: redis-benchmark -n with -P 16 (default 1000000)
  --peers A,B       servers to compare, in order (default asyncnet,tokio;
                    ping: asyncnet,tokio,tokio-tuned,nim,c-floor; also
                    asyncnet-lines, tokio-tuned, tokio-mt (never pinned),
                    nim and c-floor, the last two built here with nim / cc,
                    TCP only; http: asyncnet,hyper,nim,c-floor)
  --baseline NAME   peer the ratios are against (default tokio; http: hyper)
  --server-cpu N    CPU for the servers (default 0)
  --loadgen-cpu N   CPU for the load generator (default 1)
  --no-pin          do not use taskset
  --syscalls        then count each peer's system calls per operation under
                    strace -c -f (echo, unix, bulk, ping)
  --syscall-requests N
                    round trips per traced run (default 5000; ping: x2,
                    and x10 with -P 16; bulk: 16 MB)";

fn run() -> Result<(), String> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return Ok(());
    }
    let workload_arg = args.take("workload", "echo".to_string())?;
    let rounds: usize = args.take("rounds", 3)?;
    let secs: f64 = args.take("secs", 5.0)?;
    let warmup: f64 = args.take("warmup", 1.0)?;
    let conns: Option<usize> = args
        .take_str("conns")?
        .map(|c| c.parse())
        .transpose()
        .map_err(|_| "invalid value for --conns")?;
    let size: usize = args.take("size", 64)?;
    let requests: u64 = args.take("requests", ping::REQUESTS)?;
    let requests_pipelined: u64 = args.take("requests-pipelined", ping::REQUESTS_PIPELINED)?;
    let peer_list = args.take_str("peers")?;
    let baseline = args.take_str("baseline")?;
    let server_cpu: usize = args.take("server-cpu", 0)?;
    let loadgen_cpu: usize = args.take("loadgen-cpu", 1)?;
    let no_pin = args.take_flag("no-pin");
    let trace_syscalls = args.take_flag("syscalls");
    let trace_requests: u64 = args.take("syscall-requests", TraceConfig::default().requests)?;
    args.finish()?;
    if rounds == 0
        || conns == Some(0)
        || size == 0
        || requests == 0
        || requests_pipelined == 0
        || trace_requests == 0
    {
        return Err(
            "--rounds, --conns, --size, --requests* and --syscall-requests must be at least 1"
                .into(),
        );
    }
    if workload_arg == "http" {
        return http::run(&http::Options {
            rounds,
            secs,
            warmup,
            conns: conns.unwrap_or(http::CONNS),
            peers: peer_list,
            baseline,
            server_cpu,
            loadgen_cpu,
            no_pin,
        });
    }
    let baseline = baseline.unwrap_or_else(|| "tokio".to_string());
    let idle = workload_arg == "idle";
    let ping = workload_arg == "ping";
    let bulk = workload_arg == "bulk";
    let names_w: Vec<&str> = match workload_arg.as_str() {
        "all" => workload::NAMES.to_vec(),
        "idle" | "ping" | "bulk" => Vec::new(),
        w if workload::NAMES.contains(&w) => vec![w],
        w => {
            return Err(format!(
                "unknown workload {w:?} (known: {}, all, idle, ping, http, bulk)",
                workload::NAMES.join(", ")
            ))
        }
    };
    if ping && !ping::tool_available() {
        println!(
            "note: `{}` not found or not working (package redis-tools): skipping workload ping",
            ping::TOOL
        );
        return Ok(());
    }
    let default_peers = if ping {
        ping::DEFAULT_PEERS
    } else {
        "asyncnet,tokio"
    };
    let peer_list = peer_list.unwrap_or_else(|| default_peers.to_string());
    if names_w.contains(&"udp") && size < 9 {
        return Err("--size must be at least 9 for udp (sequence number and newline)".into());
    }
    let works: Vec<Workload> = names_w
        .iter()
        .map(|w| {
            let n = conns.unwrap_or_else(|| workload::default_conns(w));
            workload::by_name(w, size, n).expect("a known workload")
        })
        .collect();
    if !(secs > 0.0 && secs <= 3600.0 && (0.0..=3600.0).contains(&warmup)) {
        return Err("--secs must be in (0, 3600] and --warmup in [0, 3600]".into());
    }
    // Servers and loadgen inherit the raised limit (500 connections may
    // not fit under a soft limit of 1024 in both).
    if let (false, Some(n)) = (works.is_empty(), conns) {
        rlimit::ensure_nofile(n)?;
    }

    let peers = peers::select(&peer_list)?;
    let bin_dir = peers::bin_dir().map_err(|e| e.to_string())?;
    // Peers built from source (nim, c-floor): their directory is removed when
    // `_build_dir` drops, after every server is killed (each round kills its own).
    let (_build_dir, peers) = extpeers::prepare_in_own_dir(peers)?;
    // Fail before the first round if anything is missing.
    for p in &peers {
        p.path(&bin_dir).map_err(|e| e.to_string())?;
    }
    let loadgen = peers::sibling(&bin_dir, "loadgen");
    if !loadgen.is_file() {
        return Err(format!(
            "{} not found (run `cargo build --release -p asyncnet-bench` first)",
            loadgen.display()
        ));
    }

    let pinned = !no_pin && taskset_available();
    if !no_pin && !pinned {
        println!("note: taskset not found or not working: running unpinned");
    }
    let cfg = RoundConfig {
        bin_dir,
        secs,
        warmup,
        server_cpu: pinned.then_some(server_cpu),
        loadgen_cpu: pinned.then_some(loadgen_cpu),
    };
    let unpinned: Vec<&str> = peers
        .iter()
        .filter(|p| !p.pinned)
        .map(|p| p.name.as_str())
        .collect();
    let pin_note = match (pinned, unpinned.is_empty()) {
        (true, true) => format!("server on CPU {server_cpu}, loadgen on CPU {loadgen_cpu}"),
        (true, false) => format!(
            "server on CPU {server_cpu} (never pinned: {}), loadgen on CPU {loadgen_cpu}",
            unpinned.join(", ")
        ),
        (false, _) => "unpinned".to_string(),
    };
    if idle {
        let n = conns.unwrap_or(workload::IDLE_CONNS);
        return run_idle(&peers, n, rounds, &cfg, &pin_note, &baseline);
    }
    let trace = (trace_syscalls && syscalls_usable()).then_some(TraceConfig {
        requests: trace_requests,
        ..TraceConfig::default()
    });
    let ctx = suite::Ctx {
        rounds,
        cfg: cfg.clone(),
        peers: peers.clone(),
        only_peers: None,
        http_peers: Vec::new(),
        echo_conns: Vec::new(),
        idle_conns: 0,
        trace,
        verbose: true,
    };
    if bulk {
        let w = asyncnet_bench::bulk::workload(
            asyncnet_bench::bulk::CHUNK,
            asyncnet_bench::bulk::IN_FLIGHT,
        );
        println!("{}, on 127.0.0.1", w.describe);
        println!(
            "{rounds} interleaved rounds ({secs} s measured after {warmup} s warm-up); {pin_note}"
        );
        let part = suite_workloads::bulk_rows(&ctx, &peers);
        print_part(&part);
        return finish(&part);
    }
    if ping {
        let n = conns.unwrap_or(50);
        let requests = [requests, requests_pipelined];
        run_ping(&peers, n, requests, rounds, &cfg, &pin_note, &baseline)?;
        let part = suite_workloads::ping_syscalls(&ctx, &peers, n);
        print_part(&part);
        return finish(&part);
    }
    let mut ratios = Vec::new();
    for (i, work) in works.iter().enumerate() {
        if i > 0 {
            println!();
        }
        // Peers built from source serve TCP only.
        let (peers, skipped): (Vec<_>, Vec<_>) = peers
            .iter()
            .cloned()
            .partition(|p| work.transport == workload::Transport::Tcp || !p.tcp_only);
        for p in &skipped {
            println!(
                "note: peer {} serves TCP only: skipped in workload {}",
                p.name, work.name
            );
        }
        if peers.is_empty() {
            continue;
        }
        let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
        let summaries = run_workload(work, &peers, &names, rounds, &cfg, &pin_note, &baseline)?;
        ratios.push((work.name.clone(), summaries));
    }
    if ratios.len() > 1 {
        println!();
        println!("ratios against {baseline}, per workload (round trips/s: higher is better; server CPU per round trip: lower is better):");
        for (w, summaries) in &ratios {
            print!("{}", report::ratio_lines(summaries, &baseline, Some(w)));
        }
    }
    let part = suite_workloads::loadgen_syscalls(&ctx, &works, &peers);
    print_part(&part);
    finish(&part)
}

/// True if `strace` is installed (else a note).
fn syscalls_usable() -> bool {
    let ok = syscalls::tool_available();
    if !ok {
        println!(
            "note: `{}` not found or not working: skipping the system call pass",
            syscalls::TOOL
        );
    }
    ok
}

/// Prints the rows, system call rows and notes of `part`, if any.
fn print_part(part: &suite::Part) {
    if !part.rows.is_empty() {
        println!();
        print!("{}", suite::table::text(&part.rows));
    }
    if !part.syscalls.is_empty() {
        println!();
        println!("system calls per operation (strace -c -f attached to the server):");
        print!("{}", suite::table::syscalls_text(&part.syscalls));
    }
    for n in &part.notes {
        println!("note: {n}");
    }
}

/// Fails if `part` had errors.
fn finish(part: &suite::Part) -> Result<(), String> {
    match part.errors {
        0 => Ok(()),
        n => Err(format!("{n} error(s) (see above)")),
    }
}

/// The `idle` workload: rounds of each peer in turn, then the medians.
fn run_idle(
    peers: &[peers::Peer],
    conns: usize,
    rounds: usize,
    cfg: &RoundConfig,
    pin_note: &str,
    baseline: &str,
) -> Result<(), String> {
    // Servers and loadgen inherit the raised limit.
    let limit = rlimit::raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    if limit < conns as u64 + 64 {
        return Err(format!(
            "{conns} connections need more open files than RLIMIT_NOFILE allows ({limit}; see `ulimit -Hn`)"
        ));
    }
    println!(
        "Server memory per idle TCP connection: {conns} connections on 127.0.0.1, one {}-byte echo each, then idle",
        idle::SIZE
    );
    println!(
        "{rounds} interleaved rounds of {}; {pin_note}; RLIMIT_NOFILE {limit}",
        peers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("VmRSS from /proc/PID/status once listening, and with the connections open; KB/conn = difference / {conns}");
    println!();
    println!("{}", idle::round_header(conns));
    let mut results = Vec::new();
    for round in 1..=rounds {
        for peer in peers {
            let r = idle::run_round(peer, conns, cfg)
                .map_err(|e| format!("idle round {round}, peer {}: {e}", peer.name))?;
            println!("{}", idle::round_row(round, &r));
            results.push(r);
        }
    }
    println!();
    println!("medians over {rounds} rounds (idle):");
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    print!(
        "{}",
        idle::summary_table(&idle::summarize(&results, &names), baseline, conns)
    );
    Ok(())
}

/// The `ping` workload: per round, per peer, each pipeline depth in turn
/// (`requests[0]` requests without pipelining, `requests[1]` with), then the
/// medians.
fn run_ping(
    peers: &[peers::Peer],
    conns: usize,
    requests: [u64; 2],
    rounds: usize,
    cfg: &RoundConfig,
    pin_note: &str,
    baseline: &str,
) -> Result<(), String> {
    println!(
        "Redis inline PING on 127.0.0.1: {} -t ping_inline -c {conns}, -n {} -P 1 and -n {} -P 16, against each peer's --pong mode",
        ping::TOOL,
        requests[0],
        requests[1]
    );
    println!(
        "{rounds} interleaved rounds of {}; {pin_note} ({} in the load generator's place)",
        peers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        ping::TOOL
    );
    println!(
        "server CPU from /proc/PID/stat ({} ticks/s) read before and after each {} run",
        clock_ticks_per_sec(),
        ping::TOOL
    );
    println!();
    println!("{}", ping::round_header());
    let mut results = Vec::new();
    for round in 1..=rounds {
        for peer in peers {
            for (pipeline, n) in ping::PIPELINES.into_iter().zip(requests) {
                let r = ping::run_round(peer, pipeline, n, conns, cfg).map_err(|e| {
                    format!("ping round {round}, peer {}, -P {pipeline}: {e}", peer.name)
                })?;
                println!("{}", ping::round_row(round, &r));
                results.push(r);
            }
        }
    }
    println!();
    println!("medians over {rounds} rounds (ping):");
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    print!(
        "{}",
        ping::summary_table(&ping::summarize(&results, &names), baseline)
    );
    Ok(())
}

/// All rounds of one workload, printed as they come, then its medians and
/// ratios.
fn run_workload(
    work: &Workload,
    peers: &[peers::Peer],
    names: &[String],
    rounds: usize,
    cfg: &RoundConfig,
    pin_note: &str,
    baseline: &str,
) -> Result<Vec<report::Summary>, String> {
    println!(
        "{}, on {}",
        work.describe,
        match work.transport {
            workload::Transport::Unix => "a socket under /tmp",
            _ => "127.0.0.1",
        }
    );
    println!(
        "{rounds} interleaved rounds of {} ({} s measured after {} s warm-up); {pin_note}",
        names.join(", "),
        cfg.secs,
        cfg.warmup,
    );
    println!(
        "CPU times from /proc/PID/stat ({} ticks/s) over the measured window",
        clock_ticks_per_sec()
    );
    println!();
    println!("{}", report::round_header());

    let mut results = Vec::new();
    let mut warnings = 0;
    for round in 1..=rounds {
        for peer in peers {
            let r = workload::run_round(peer, work, cfg)
                .map_err(|e| format!("{} round {round}, peer {}: {e}", work.name, peer.name))?;
            println!("{}", report::round_row(round, &r));
            let ws = r.warnings();
            for w in &ws {
                println!("       warning ({}): {w}", r.peer);
            }
            warnings += usize::from(!ws.is_empty());
            results.push(r);
        }
    }

    println!();
    println!("medians over {rounds} rounds ({}):", work.name);
    let summaries = report::summarize(&results, names);
    print!("{}", report::summary_table(&summaries, baseline));
    if warnings > 0 {
        println!("{warnings} round(s) had warnings (see above): treat their figures with care");
    }
    Ok(summaries)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
