//! Load generator: drives a server on 127.0.0.1 with one workload, then
//! prints, one per line on stdout:
//!
//! ```text
//! measure-start                      (the measured window begins)
//! measure-end                        (it ends)
//! result workload=echo conns=50 size=64 round_trips=N secs=S rps=R mean_us=M p50_us=A p99_us=B max_us=C idle_conns=I conn_min=X conn_max=Y lost=L
//! ```
//!
//! Workloads: `echo` (TCP on 127.0.0.1:`--port`), `unix` (Unix stream
//! socket at `--path`), both a ping-pong of `--conns` connections (default
//! 50); `udp` (127.0.0.1:`--port`), `--conns` sockets (default 32) each with
//! one datagram in flight, resent after `--resend-ms` (default 100) without
//! an echo; `lost` counts those resends in the window (always 0 for the
//! stream workloads).
//!
//! `bulk` (TCP on 127.0.0.1:`--port`): one connection streaming
//! `--chunk`-byte writes (default 65536) of a checkable byte stream through
//! the echo server, at most `--in-flight` bytes (default 1048576) written
//! and not yet echoed; every echoed byte is checked. Prints
//! `result workload=bulk conns=1 chunk=C in_flight=F bytes=B secs=S mb_per_sec=M reads=R writes=W`
//! (bytes echoed in the window, MB = 10^6 bytes; the client's reads and
//! writes in it).
//!
//! `--count N` (echo, unix, bulk): a fixed-size run instead of the timed
//! window: a warm-up (one round trip per connection; bulk: `--in-flight`
//! bytes), then exactly N round trips (bulk: N bytes), with nothing in
//! flight at `measure-start` and `measure-end`. With `--pause` as well, it
//! waits after printing each of those two lines for a line on stdin (the
//! system call pass attaches `strace` to the server in between).
//!
//! `idle_conns` counts connections that completed no round trip in the
//! window; `conn_min`/`conn_max` are the fewest/most round trips one
//! connection completed (a fair server keeps them close).
//!
//! `idle` (TCP on 127.0.0.1:`--port`): opens `--conns` connections (default
//! 5000) one after another, each exchanging one `--size`-byte echo, prints
//! `result workload=idle conns=N setup_secs=S` and holds them open, idle,
//! for `--hold-secs` (default 120; the runner kills it sooner, once it has
//! read the server's memory). It raises its soft limit on open files to the
//! hard limit first.
//!
//! Single-threaded plain mio (`idle`: blocking std sockets): it uses
//! neither asyncnet nor tokio.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use asyncnet_bench::bulk::{self, Bulk};
use asyncnet_bench::loadgen::{self, Phase, PingPong, Report, Target, UdpEcho};
use asyncnet_bench::rlimit;

/// The load generator (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// echo, udp, unix, bulk or idle
    #[arg(long, default_value = "echo")]
    workload: String,
    /// The server's port on 127.0.0.1 (all but unix)
    #[arg(long)]
    port: Option<u16>,
    /// The server's socket (unix)
    #[arg(long)]
    path: Option<PathBuf>,
    /// Connections, udp: sockets [default: 50, udp 32, idle 5000]
    #[arg(long)]
    conns: Option<usize>,
    /// Bytes per message or datagram
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured window, seconds
    #[arg(long, default_value = "5", value_parser = secs)]
    secs: Duration,
    /// Warm-up before it, seconds
    #[arg(long, default_value = "1", value_parser = secs)]
    warmup: Duration,
    /// udp: resend a datagram after so long without its echo, ms
    #[arg(long, default_value_t = 100)]
    resend_ms: u64,
    /// idle: how long to hold the connections, seconds
    #[arg(long, default_value = "120", value_parser = secs)]
    hold_secs: Duration,
    /// bulk: bytes per write
    #[arg(long, default_value_t = bulk::CHUNK)]
    chunk: usize,
    /// bulk: most bytes written and not yet echoed
    #[arg(long, default_value_t = bulk::IN_FLIGHT)]
    in_flight: usize,
    /// echo, unix, bulk: exactly N round trips (bulk: bytes) instead of a window
    #[arg(long)]
    count: Option<u64>,
    /// With --count: wait for a line on stdin after each measure line
    #[arg(long, requires = "count")]
    pause: bool,
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    // The runner reads these as they come: flush each one.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Blocks until a line (or the end) arrives on stdin: the runner's go-ahead.
fn wait_for_stdin() {
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
}

fn secs(v: &str) -> Result<Duration, String> {
    let v: f64 = v.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| e.to_string())
}

fn run() -> Result<(), String> {
    let Cli {
        workload,
        port,
        path,
        conns,
        size,
        secs,
        warmup,
        resend_ms,
        hold_secs: hold,
        chunk,
        in_flight,
        count,
        pause,
    } = clap::Parser::parse();
    let conns = conns.unwrap_or(match workload.as_str() {
        "udp" => 32,
        "idle" => 5000,
        _ => 50,
    });
    if count.is_some() && !matches!(workload.as_str(), "echo" | "unix" | "bulk") {
        return Err(format!(
            "--count is for echo, unix and bulk, not {workload}"
        ));
    }
    // Hundreds of connections (and the idle workload's thousands) need
    // more files than a default soft limit of 1024 may allow.
    if workload != "bulk" {
        rlimit::ensure_nofile(conns)?;
    }
    let addr = || -> Result<SocketAddr, String> {
        let port = port.ok_or("--port is required")?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    };

    let on_phase = |p: Phase| {
        say(match p {
            Phase::MeasureStart => "measure-start",
            Phase::MeasureEnd => "measure-end",
        });
        if pause {
            wait_for_stdin();
        }
    };
    if workload == "idle" {
        let (held, took) = loadgen::idle_conns(addr()?, conns, size, Duration::from_secs(10))
            .map_err(|e| format!("idle workload: {e}"))?;
        say(&format!(
            "result workload=idle conns={} size={size} setup_secs={:.3}",
            held.len(),
            took.as_secs_f64()
        ));
        std::thread::sleep(hold);
        drop(held);
        return Ok(());
    }
    if workload == "bulk" {
        let cfg = Bulk {
            addr: addr()?,
            chunk,
            in_flight,
            warmup,
            secs,
            count,
        };
        let r = bulk::bulk(&cfg, on_phase).map_err(|e| format!("bulk workload: {e}"))?;
        say(&format!(
            "result workload=bulk conns=1 chunk={chunk} in_flight={in_flight} bytes={} secs={:.6} mb_per_sec={:.3} reads={} writes={}",
            r.bytes,
            r.window.as_secs_f64(),
            r.mb_per_sec(),
            r.reads,
            r.writes
        ));
        return Ok(());
    }
    let report: Report = match workload.as_str() {
        "echo" | "unix" => {
            let target = if workload == "echo" {
                Target::Tcp(addr()?)
            } else {
                Target::Unix(path.ok_or("--path is required for --workload unix")?)
            };
            let cfg = PingPong {
                target,
                conns,
                size,
                warmup,
                secs,
                count,
            };
            loadgen::echo_pingpong(&cfg, on_phase)
        }
        "udp" => {
            let cfg = UdpEcho {
                addr: addr()?,
                socks: conns,
                size,
                resend_after: Duration::from_millis(resend_ms),
                warmup,
                secs,
            };
            loadgen::udp_echo(&cfg, on_phase)
        }
        other => {
            return Err(format!(
                "unknown workload {other:?} (known: echo, udp, unix, bulk, idle)"
            ))
        }
    }
    .map_err(|e| format!("{workload} workload: {e}"))?;
    let h = &report.latency_ns;
    let conn_min = report.per_conn.iter().min().copied().unwrap_or(0);
    let conn_max = report.per_conn.iter().max().copied().unwrap_or(0);
    say(&format!(
        "result workload={workload} conns={conns} size={size} round_trips={} secs={:.6} rps={:.1} \
         mean_us={:.1} p50_us={:.1} p99_us={:.1} max_us={:.1} idle_conns={} conn_min={conn_min} conn_max={conn_max} lost={}",
        report.round_trips,
        report.window.as_secs_f64(),
        report.per_sec(),
        report.mean_us(),
        h.quantile(0.50) as f64 / 1e3,
        h.quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        report.idle_conns(),
        report.lost,
    ));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
