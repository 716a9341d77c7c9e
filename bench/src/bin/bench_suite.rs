//! The benchmark suite: every workload against every peer that serves it,
//! one table on stdout, written to `BENCHMARKS.md` (repository root) with
//! the bar chart `bench/chart.svg` beside it.
//!
//! Build first, then run: `cargo build --release -p asyncnet-bench &&
//! target/release/bench_suite`. It runs the binaries next to its own
//! executable and builds only the `nim` and `c-floor` peers, the echo ones
//! and the `http` ones (skipped with a note if `nim` or `cc` is missing);
//! `ping` needs `redis-benchmark`, `http` needs `wrk`, the system call pass
//! `strace` (each skipped with a note if missing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use asyncnet_bench::args::Args;
use asyncnet_bench::child::{taskset_available, Spawned};
use asyncnet_bench::suite::machine::Machine;
use asyncnet_bench::suite::markdown::{self, RunInfo};
use asyncnet_bench::suite::{self, svg, table, Ctx, Part, WORKLOADS};
use asyncnet_bench::syscalls::{self, TraceConfig, Tracer};
use asyncnet_bench::workload::{loadgen_path, RoundConfig};
use asyncnet_bench::{extpeers, http, peers, rlimit};

const USAGE: &str = "\
usage: bench_suite [options]
  --rounds N           interleaved rounds per peer (default 3)
  --secs S             measured window per round, seconds (default 5)
  --warmup S           warm-up before each window, seconds (default 1)
  --only A,B           workloads to run (default all: echo, bulk, ping, udp,
                       unix, http, tls, idle)
  --peers A,B          peers to run where they apply (default all: asyncnet,
                       asyncnet-lines (idle only), tokio, tokio-tuned,
                       tokio-mt, hyper (http only), nim, c-floor; in http,
                       asyncnet, nim and c-floor are its HTTP servers)
  --echo-conns A,B     connection counts of the echo rows (default 1,50,500)
  --idle-conns N       connections of the idle row (default 5000)
  --no-syscalls        skip the system call pass (default: run it if strace
                       is installed and may attach)
  --syscall-requests N round trips per traced run (default 5000; ping: x2
                       without pipelining, x10 with; http: a 2 s wrk run
                       instead, divided by its requests)
  --syscall-mb N       MB per traced bulk run (default 16)
  --server-cpu N       CPU for the servers (default 0)
  --loadgen-cpu N      CPU for the load generators (default 1)
  --no-pin             do not use taskset
  --out DIR            write DIR/BENCHMARKS.md and DIR/bench/chart.svg
                       (default: the repository this was built from)
  --no-write           print the table only";

/// The repository root this binary was built from, if it is still there.
fn default_out() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if root.join("Cargo.toml").is_file() {
        root.canonicalize().unwrap_or(root)
    } else {
        PathBuf::from(".")
    }
}

fn list<T: std::str::FromStr>(v: &str, name: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format!("invalid value {s:?} in --{name}"))
        })
        .collect()
}

/// Whether `strace` may attach to a process of ours: tried on a `sleep`.
fn strace_works() -> Result<(), String> {
    if !syscalls::tool_available() {
        return Err(format!("`{}` not found or not working", syscalls::TOOL));
    }
    let mut sleeper = Spawned::start("sleep", Path::new("sleep"), &["30".into()], None)
        .map_err(|e| e.to_string())?;
    let tracer = Tracer::attach(sleeper.pid()).map_err(|e| e.to_string())?;
    sleeper.kill().map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    tracer.finish(deadline).map_err(|e| e.to_string())?;
    Ok(())
}

fn run() -> Result<bool, String> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return Ok(true);
    }
    let rounds: usize = args.take("rounds", 3)?;
    let secs: f64 = args.take("secs", 5.0)?;
    let warmup: f64 = args.take("warmup", 1.0)?;
    let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let only: Vec<String> = list(&args.take("only", all.join(","))?, "only")?;
    let only_peers: Option<Vec<String>> = args
        .take_str("peers")?
        .map(|l| list(&l, "peers"))
        .transpose()?;
    let echo_conns: Vec<usize> = list(
        &args.take("echo-conns", "1,50,500".to_string())?,
        "echo-conns",
    )?;
    let idle_conns: usize = args.take("idle-conns", 5000)?;
    let no_syscalls = args.take_flag("no-syscalls");
    let trace_requests: u64 = args.take("syscall-requests", TraceConfig::default().requests)?;
    let trace_mb: u64 = args.take("syscall-mb", TraceConfig::default().bulk_bytes / 1_000_000)?;
    let server_cpu: usize = args.take("server-cpu", 0)?;
    let loadgen_cpu: usize = args.take("loadgen-cpu", 1)?;
    let no_pin = args.take_flag("no-pin");
    let out_dir = args
        .take_str("out")?
        .map(PathBuf::from)
        .unwrap_or_else(default_out);
    let no_write = args.take_flag("no-write");
    args.finish()?;
    if rounds == 0 || idle_conns == 0 || trace_requests == 0 || trace_mb == 0 {
        return Err(
            "--rounds, --idle-conns, --syscall-requests and --syscall-mb must be at least 1".into(),
        );
    }
    if echo_conns.is_empty() || echo_conns.contains(&0) {
        return Err("--echo-conns needs counts of at least 1".into());
    }
    if !(secs > 0.0 && secs <= 3600.0 && (0.0..=3600.0).contains(&warmup)) {
        return Err("--secs must be in (0, 3600] and --warmup in [0, 3600]".into());
    }
    for w in &only {
        if !all.contains(&w.as_str()) {
            return Err(format!(
                "unknown workload {w:?} (known: {})",
                all.join(", ")
            ));
        }
    }
    let machine = Machine::probe();
    // Servers and load generators inherit it.
    rlimit::raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;

    let known = suite::workloads::known_peers();
    if let Some(only) = &only_peers {
        if let Some(p) = only.iter().find(|p| !known.contains(p)) {
            return Err(format!("unknown peer {p:?} (known: {})", known.join(", ")));
        }
    }
    let wanted = |name: &str| {
        only_peers
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == name))
    };
    // The peers built from source (nim, c-floor) serve TCP only: not
    // worth building for the udp, unix and tls rows alone.
    let tcp_rows = only
        .iter()
        .any(|w| ["echo", "bulk", "ping", "idle"].contains(&w.as_str()));
    let selected: Vec<peers::Peer> = peers::all()
        .into_iter()
        .filter(|p| wanted(&p.name))
        .filter(|p| tcp_rows || !matches!(p.program, peers::Program::Source(_)))
        .collect();
    let bin_dir = peers::bin_dir().map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    // nim and c-floor: built into a private directory, removed at the end.
    let build_dir = extpeers::BuildDir::new().map_err(|e| e.to_string())?;
    let built = extpeers::prepare(selected.clone(), &build_dir)?;
    for p in &selected {
        if !built.iter().any(|b| b.name == p.name) {
            notes.push(format!(
                "peer {}: not built (its compiler is missing): skipped everywhere",
                p.name
            ));
        }
    }
    for p in &built {
        p.path(&bin_dir).map_err(|e| e.to_string())?;
    }
    // The http row's servers (its own nim and c-floor too), only if it
    // will run: selected and wrk there (else it notes why it skipped).
    let http_selected: Vec<peers::Peer> =
        if only.iter().any(|w| w == "http") && http::tool_available() {
            http::peers()
                .into_iter()
                .filter(|p| wanted(&p.name))
                .collect()
        } else {
            Vec::new()
        };
    let http_built = extpeers::prepare(http_selected.clone(), &build_dir)?;
    for p in &http_selected {
        if !http_built.iter().any(|b| b.name == p.name) {
            notes.push(format!(
                "http peer {}: not built (its compiler is missing): skipped",
                p.name
            ));
        }
    }
    for p in &http_built {
        p.path(&bin_dir).map_err(|e| e.to_string())?;
    }
    let pinned = !no_pin && taskset_available();
    if !no_pin && !pinned {
        notes.push("taskset not found or not working: everything ran unpinned".into());
    }
    let cfg = RoundConfig {
        bin_dir,
        secs,
        warmup,
        server_cpu: pinned.then_some(server_cpu),
        loadgen_cpu: pinned.then_some(loadgen_cpu),
    };
    loadgen_path(&cfg).map_err(|e| e.to_string())?;
    let pinning = if pinned {
        format!("servers on CPU {server_cpu} (`taskset`; tokio-mt never pinned), load generators on CPU {loadgen_cpu}")
    } else {
        "none (unpinned)".to_string()
    };
    let (trace, syscalls_note) = if no_syscalls {
        (None, "Not run (`--no-syscalls`).".to_string())
    } else {
        match strace_works() {
            Ok(()) => (
                Some(TraceConfig {
                    requests: trace_requests,
                    bulk_bytes: trace_mb * 1_000_000,
                }),
                format!(
                    "Counted with `strace -c -f` attached to each server once it was ready and warmed up, over {trace_requests} round trips (bulk: {trace_mb} MB; ping: {} requests without pipelining, {} with `-P 16`, the 50 connections' setup and close included; http: one {} s `wrk` run with strace attached before it starts, as wrk cannot stop after N requests, divided by the requests wrk counted, its 50 connections' setup and close included and the up to 50 requests in flight at its end served but not counted), divided by the operations. strace slows the server: these runs are not timed. `(EAGAIN)` counts the reads that found nothing.",
                    trace_requests * 2,
                    trace_requests * 10,
                    http::TRACE_SECS
                ),
            ),
            Err(e) => {
                let why = format!("Skipped: strace cannot be used here ({e}). With `kernel.yama.ptrace_scope` above 0, run as root or `sudo sysctl kernel.yama.ptrace_scope=0`.");
                println!("note: system call pass {why}");
                (None, why)
            }
        }
    };
    let ctx = Ctx {
        rounds,
        cfg,
        peers: built,
        only_peers,
        http_peers: http_built,
        echo_conns,
        idle_conns,
        trace,
        verbose: true,
    };

    let mut part = Part {
        notes,
        ..Part::default()
    };
    for w in WORKLOADS
        .iter()
        .filter(|w| only.iter().any(|o| o == w.name))
    {
        println!("== {}: {}", w.name, w.describe);
        part.extend((w.run)(&ctx));
    }
    drop(build_dir);

    println!();
    println!("medians over {rounds} round(s) ({secs} s windows); x tokio and x C floor: server cost per op over theirs");
    print!("{}", table::text(&part.rows));
    if let Some(line) = table::reference_line(&part.rows) {
        println!("{line}");
    }
    if let Some(line) = table::warned_line(&part.rows) {
        println!("{line}");
    }
    if !part.syscalls.is_empty() {
        println!();
        println!("system calls per operation:");
        print!("{}", table::syscalls_text(&part.syscalls));
    }
    if !part.notes.is_empty() {
        println!();
        println!("notes:");
        for n in &part.notes {
            println!("  {n}");
        }
    }

    if !no_write {
        let command: Vec<String> = std::env::args().collect();
        let exe = Path::new(&command[0])
            .file_name()
            .map(|f| format!("target/release/{}", f.to_string_lossy()))
            .unwrap_or_else(|| command[0].clone());
        let command = std::iter::once(exe)
            .chain(command[1..].iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let info = RunInfo {
            machine,
            command,
            rounds,
            secs,
            warmup,
            pinning,
            chart: "bench/chart.svg".into(),
            syscalls: syscalls_note,
            workloads: only.clone(),
        };
        let md = out_dir.join("BENCHMARKS.md");
        let svg_path = out_dir.join("bench").join("chart.svg");
        let write = |path: &Path, text: String| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, text)
        };
        write(&md, markdown::document(&info, &part))
            .map_err(|e| format!("writing {}: {e}", md.display()))?;
        write(&svg_path, svg::chart(&part.rows))
            .map_err(|e| format!("writing {}: {e}", svg_path.display()))?;
        println!();
        println!("wrote {} and {}", md.display(), svg_path.display());
    }
    if part.errors > 0 {
        println!("{} error(s) (see the notes)", part.errors);
    }
    Ok(part.errors == 0)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_suite: {e}");
            ExitCode::FAILURE
        }
    }
}
