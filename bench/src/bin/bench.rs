//! The benchmark suite: every workload against every peer that serves it,
//! one table on stdout, written to `BENCHMARKS.md` (repository root) with
//! the bar chart `bench/chart.svg` beside it.
//!
//! The one front end. Build first, then run: `cargo build --release -p
//! asyncnet-bench && target/release/bench` (`--help` for the options). It
//! runs the binaries next to its own executable and builds only the `nim`
//! and `c-floor` peers, the echo ones and the `http` ones, and the echo
//! peer `c-uring` (skipped with a note if `nim` or `cc` is missing, and
//! `c-uring` where io_uring may not be used);
//! `ping` needs `redis-benchmark`, `http` needs `wrk`, the system call pass
//! `strace` (each skipped with a note if missing).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use asyncnet_bench::child::{taskset_available, Spawned};
use asyncnet_bench::suite::machine::Machine;
use asyncnet_bench::suite::markdown::{self, RunInfo};
use asyncnet_bench::suite::{self, svg, table, Ctx, Part, WORKLOADS};
use asyncnet_bench::syscalls::{self, TraceConfig, Tracer};
use asyncnet_bench::workload::{loadgen_path, RoundConfig};
use asyncnet_bench::{extpeers, http, peers, reliability, rlimit};

/// Every workload against every peer that serves it: one table, written to
/// BENCHMARKS.md with the chart bench/chart.svg.
#[derive(clap::Parser)]
#[command(name = "bench")]
struct Cli {
    /// Interleaved rounds per peer
    #[arg(long, default_value_t = 3, value_parser = at_least_1())]
    rounds: usize,
    /// Separate runs of the whole selection, one after the other: BENCHMARKS.md adds each
    /// run's ratios and their median (the tables are the first run's; the system call pass
    /// runs in the first only)
    #[arg(long, default_value_t = 1, value_parser = at_least_1())]
    runs: usize,
    /// Measured window per round, seconds, in (0, 3600]
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Warm-up before each window, seconds, in [0, 3600]
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Workloads to run [default: all: echo, bulk, ping, udp, unix, http, tls, idle]
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Peers to run where they apply [default: all: asyncnet, asyncnet-lines (idle only),
    /// tokio, tokio-tuned, tokio-mt, asyncnet-tpc, hyper (http only), nim, c-floor,
    /// asyncnet-uring (asyncnet with ASYNCNET_DRIVER=io_uring), asyncnet-lines-uring (idle
    /// only), c-uring (the C io_uring floor); only if named: asyncnet-accept (tls),
    /// c-floor-again and c-uring-again (A/A controls: the C floors a second time, whose
    /// ratio to the first is the run's noise); in http, asyncnet, nim and c-floor are its
    /// HTTP servers]
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Connection counts of the echo rows
    #[arg(long, value_delimiter = ',', default_value = "1,50,500,1000,5000", value_parser = at_least_1())]
    echo_conns: Vec<usize>,
    /// Skip the bursty echo row (echo64 burst8 c1000: 1,000 connections, each sending a
    /// burst of 8 messages, then thinking for a random time, mean 100 ms)
    #[arg(long)]
    no_echo_burst: bool,
    /// Connections of the idle row
    #[arg(long, default_value_t = 5000, value_parser = at_least_1())]
    idle_conns: usize,
    /// Skip the system call pass (default: run it if strace is installed and may attach)
    #[arg(long)]
    no_syscalls: bool,
    /// Round trips per traced run (ping: x2 without pipelining, x10 with; http: a 2 s
    /// wrk run instead, divided by its requests)
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    syscall_requests: u64,
    /// MB per traced bulk run
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    syscall_mb: u64,
    /// CPU for the servers
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the load generators
    #[arg(long, default_value_t = 1)]
    loadgen_cpu: usize,
    /// Do not use taskset
    #[arg(long)]
    no_pin: bool,
    /// Write DIR/BENCHMARKS.md and DIR/bench/chart.svg [default: the repository this was
    /// built from]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the table only
    #[arg(long)]
    no_write: bool,
    /// Instead of the suite: N connections held at once on asyncnet's line server, all
    /// exchanging 10 lines; its memory and descriptors per connection (RELIABILITY.md)
    #[arg(long, value_name = "N", value_parser = at_least_1())]
    c10k: Option<usize>,
    /// Instead of the suite: MINUTES of mixed load (lines, large lines, TLS, churn, resets,
    /// slow readers) on asyncnet's line and TLS servers, their memory and descriptors
    /// sampled every 10 s (RELIABILITY.md)
    #[arg(long, value_name = "MINUTES")]
    soak: Option<f64>,
}

/// A count of at least 1.
fn at_least_1() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// The repository root this binary was built from, if it is still there.
fn default_out() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if root.join("Cargo.toml").is_file() {
        root.canonicalize().unwrap_or(root)
    } else {
        PathBuf::from(".")
    }
}

/// Whether `strace` may attach to a process of ours: tried on a `sleep`.
fn strace_works() -> Result<(), Box<dyn Error>> {
    if !extpeers::probe(syscalls::TOOL, &["-V"]).is_some_and(|(ok, _)| ok) {
        return Err(format!("`{}` not found or not working", syscalls::TOOL).into());
    }
    let mut sleeper = Spawned::start("sleep", Path::new("sleep"), &["30".into()], None)?;
    let tracer = Tracer::attach(sleeper.pid())?;
    sleeper.kill()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    tracer.finish(deadline)?;
    Ok(())
}

fn run() -> Result<bool, Box<dyn Error>> {
    let cli: Cli = clap::Parser::parse();
    let (rounds, secs, warmup) = (cli.rounds, cli.secs, cli.warmup);
    let (trace_requests, trace_mb) = (cli.syscall_requests, cli.syscall_mb);
    let (server_cpu, loadgen_cpu) = (cli.server_cpu, cli.loadgen_cpu);
    let out_dir = cli.out.clone().unwrap_or_else(default_out);
    let all: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
    let only: Vec<String> = if cli.only.is_empty() {
        all.iter().map(|w| w.to_string()).collect()
    } else {
        cli.only.clone()
    };
    if !(secs > 0.0 && secs <= 3600.0 && (0.0..=3600.0).contains(&warmup)) {
        return Err("--secs must be in (0, 3600] and --warmup in [0, 3600]".into());
    }
    for w in &only {
        if !all.contains(&w.as_str()) {
            return Err(format!("unknown workload {w:?} (known: {})", all.join(", ")).into());
        }
    }
    // Servers and load generators inherit it.
    rlimit::raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    if cli.c10k.is_some() || cli.soak.is_some() {
        let bin_dir = peers::bin_dir()?;
        if let Some(conns) = cli.c10k {
            rlimit::ensure_nofile(conns)?;
            reliability::c10k(conns, bin_dir.clone())?;
        }
        return Ok(cli
            .soak
            .map_or(Ok(true), |m| reliability::soak(m, bin_dir))?);
    }
    let machine = Machine::probe();

    let known = suite::workloads::known_peers();
    let only_peers = cli.peers.clone();
    if let Some(only) = &only_peers {
        if let Some(p) = only.iter().find(|p| !known.contains(p)) {
            return Err(format!("unknown peer {p:?} (known: {})", known.join(", ")).into());
        }
    }
    let wanted = |name: &str| peers::wanted(only_peers.as_deref(), name);
    // The peers built from source: nim serves TCP only, c-floor and c-uring TCP and Unix
    // stream sockets; none is worth building for the udp and tls rows alone.
    let source_rows = only
        .iter()
        .any(|w| ["echo", "bulk", "ping", "idle", "unix"].contains(&w.as_str()));
    let selected: Vec<peers::Peer> = peers::all()
        .into_iter()
        .filter(|p| wanted(&p.name))
        .filter(|p| source_rows || !matches!(p.program, peers::Program::Source(_)))
        .collect();
    let bin_dir = peers::bin_dir()?;
    let mut notes = Vec::new();
    // nim, c-floor and c-uring: built into a private directory, removed at the end.
    let build_dir = tempfile::Builder::new()
        .prefix("asyncnet-bench-peers-")
        .tempdir()?;
    let mut build = |selected: Vec<peers::Peer>| -> Result<Vec<peers::Peer>, Box<dyn Error>> {
        let built = extpeers::prepare(selected, &build_dir, &mut notes)?;
        for p in &built {
            p.path(&bin_dir)?;
        }
        Ok(built)
    };
    let built = build(selected)?;
    // The http row's servers (its own nim and c-floor too), only if it
    // will run: selected and wrk there (else it notes why it skipped).
    let http = only.iter().any(|w| w == "http") && http::tool_available();
    let http_built = build(
        http::peers()
            .into_iter()
            .filter(|p| http && wanted(&p.name))
            .collect(),
    )?;
    let pinned = !cli.no_pin && taskset_available();
    if !cli.no_pin && !pinned {
        notes.push("taskset not found or not working: everything ran unpinned".into());
    }
    let cfg = RoundConfig {
        bin_dir,
        secs,
        warmup,
        server_cpu: pinned.then_some(server_cpu),
        loadgen_cpu: pinned.then_some(loadgen_cpu),
    };
    loadgen_path(&cfg)?;
    let pinning = if pinned {
        format!("servers on CPU {server_cpu} (`taskset`; tokio-mt and asyncnet-tpc never pinned), load generators on CPU {loadgen_cpu}")
    } else {
        "none (unpinned)".to_string()
    };
    let (trace, syscalls_note) = if cli.no_syscalls {
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
    let mut ctx = Ctx {
        rounds,
        cfg,
        peers: built,
        only_peers,
        http_peers: http_built,
        echo_conns: cli.echo_conns.clone(),
        echo_burst: !cli.no_echo_burst,
        idle_conns: cli.idle_conns,
        trace,
        verbose: true,
    };

    let mut part = Part {
        notes,
        ..Part::default()
    };
    // Each run's rows; `part` is the first run's, with every run's notes and errors.
    let mut runs: Vec<Vec<suite::Row>> = Vec::new();
    for run in 1..=cli.runs {
        if cli.runs > 1 {
            println!("=== run {run} of {}", cli.runs);
        }
        let mut this = Part::default();
        for w in WORKLOADS.iter().filter(|w| only.iter().any(|o| o == w.0)) {
            println!("== {}: {}", w.0, w.1);
            this.extend((w.2)(&ctx));
        }
        runs.push(this.rows.clone());
        if run == 1 {
            part.extend(this);
        } else {
            part.notes
                .extend(this.notes.into_iter().map(|n| format!("run {run}: {n}")));
            part.errors += this.errors;
        }
        // The system call pass is not timed: once is enough.
        ctx.trace = None;
    }
    drop(build_dir);

    println!();
    println!("medians over {rounds} round(s) ({secs} s windows); x tokio and x C floor: server cost per op over theirs");
    print!("{}", table::table(&part.rows));
    if let Some(line) = table::reference_line(&part.rows) {
        println!("{line}");
    }
    if let Some(line) = table::warned_line(&part.rows) {
        println!("{line}");
    }
    if let Some(uring) = table::uring_table(&part.rows) {
        println!();
        println!(
            "io_uring: one peer's median server cost per op over another's (lower is better):"
        );
        print!("{uring}");
    }
    if let Some(across) = suite::runs::runs_table(&runs) {
        println!();
        println!("across {} runs: median (each run):", runs.len());
        print!("{across}");
        for line in suite::runs::growth_lines(&runs) {
            println!("{line}");
        }
    }
    if !part.syscalls.is_empty() {
        println!();
        println!("system calls per operation:");
        print!("{}", table::syscalls(&part.syscalls));
    }
    if !part.notes.is_empty() {
        println!();
        println!("notes:");
        for n in &part.notes {
            println!("  {n}");
        }
    }

    if !cli.no_write {
        let args =
            std::iter::once("target/release/bench".to_string()).chain(std::env::args().skip(1));
        let command = args.collect::<Vec<_>>().join(" ");
        let info = RunInfo {
            machine,
            command,
            rounds,
            secs,
            warmup,
            pinning,
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
        write(&md, markdown::document(&info, &part, &runs))
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
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
