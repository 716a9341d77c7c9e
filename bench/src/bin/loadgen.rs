//! Load generator: drives a server on 127.0.0.1 with one workload, then
//! prints, one per line on stdout:
//!
//! ```text
//! measure-start                      (the measured window begins)
//! measure-end                        (it ends)
//! result workload=echo conns=50 size=64 ops=N secs=S rate=R mean_us=M p50_us=A p99_us=B max_us=C idle_conns=I conn_min=X conn_max=Y lost=L errors=E first_error=TEXT
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
//! and not yet echoed; every echoed byte is checked. Its `ops` are the bytes
//! echoed in the window, `rate` bytes per second, `size` the chunk.
//!
//! `--count N` (echo, unix, bulk, burst): a fixed-size run instead of the timed
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
//! `burst` (TCP on 127.0.0.1:`--port`): `--conns` connections that are
//! mostly quiet: each sends a burst of `--burst` messages (default 8, one
//! write each), waits for every echo, then thinks for a random time
//! (exponential, mean `--think-ms`, default 10) before the next burst.
//! `ops` counts messages echoed; the latencies are per burst.
//!
//! `tls-echo` and `tls-handshake` (TLS on 127.0.0.1:`--port`, the server's
//! certificate `--cert` pinned): a ping-pong of `--size`-byte messages
//! (default 1024) on `--conns` TLS connections, or `--conns` slots (default
//! 16) each repeating connect, full handshake, 1-byte echo, close; `ops`
//! counts the round trips or the completed connections, `errors` the failed
//! ones (`first_error` the first of them, or `none`).
//!
//! Single-threaded plain mio (TLS: with rustls): it uses neither asyncnet
//! nor tokio. The `idle` workload's client runs in the suite itself.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use asyncnet_bench::loadgen::{self as lg, Bulk, Bursts, Phase, PingPong, Span, Target, UdpEcho};
use asyncnet_bench::rlimit;
use asyncnet_bench::tls::{certs, loadgen as tls};

/// The load generator (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// echo, burst, udp, unix, bulk, tls-echo or tls-handshake
    #[arg(long, default_value = "echo")]
    workload: String,
    /// The server's port on 127.0.0.1 (all but unix)
    #[arg(long)]
    port: Option<u16>,
    /// The server's socket (unix)
    #[arg(long)]
    path: Option<PathBuf>,
    /// The server's certificate, PEM, pinned (tls-*)
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Connections, udp: sockets [default: 50, udp 32, tls-handshake 16]
    #[arg(long)]
    conns: Option<usize>,
    /// Bytes per message or datagram [default: 64, tls-echo 1024]
    #[arg(long)]
    size: Option<usize>,
    /// Measured window, seconds
    #[arg(long, default_value = "5", value_parser = secs)]
    secs: Duration,
    /// Warm-up before it, seconds
    #[arg(long, default_value = "1", value_parser = secs)]
    warmup: Duration,
    /// udp: resend a datagram after so long without its echo, ms
    #[arg(long, default_value_t = 100)]
    resend_ms: u64,
    /// bulk: bytes per write
    #[arg(long, default_value_t = lg::CHUNK)]
    chunk: usize,
    /// bulk: most bytes written and not yet echoed
    #[arg(long, default_value_t = lg::IN_FLIGHT)]
    in_flight: usize,
    /// burst: messages per burst
    #[arg(long, default_value_t = 8)]
    burst: usize,
    /// burst: mean think time between bursts, ms
    #[arg(long, default_value = "10", value_parser = millis)]
    think_ms: Duration,
    /// echo, unix, bulk, burst: exactly N round trips (bulk: bytes) instead of a window
    #[arg(long)]
    count: Option<u64>,
    /// With --count: wait for a line on stdin after each measure line
    #[arg(long, requires = "count")]
    pause: bool,
}

fn secs(v: &str) -> Result<Duration, String> {
    let v: f64 = v.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| e.to_string())
}

fn millis(v: &str) -> Result<Duration, String> {
    let v: f64 = v.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v / 1e3).map_err(|e| e.to_string())
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    // The runner reads these as they come: flush each one.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn run() -> Result<(), String> {
    let cli: Cli = clap::Parser::parse();
    let workload = cli.workload.as_str();
    let conns = cli.conns.unwrap_or(match workload {
        "bulk" => 1,
        "udp" => 32,
        "tls-handshake" => 16,
        _ => 50,
    });
    let size = match workload {
        "tls-echo" => cli.size.unwrap_or(1024),
        "bulk" => cli.chunk,
        _ => cli.size.unwrap_or(64),
    };
    let span = Span {
        warmup: cli.warmup,
        secs: cli.secs,
        count: cli.count,
    };
    if span.count.is_some() && !matches!(workload, "echo" | "unix" | "bulk" | "burst") {
        return Err(format!(
            "--count is for echo, unix, bulk and burst, not {workload}"
        ));
    }
    // Hundreds of connections need
    // more files than a default soft limit of 1024 may allow.
    rlimit::ensure_nofile(conns)?;
    let addr = || -> Result<SocketAddr, String> {
        let port = cli.port.ok_or("--port is required")?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    };
    let pause = cli.pause;
    let on_phase = |p: Phase| {
        say(match p {
            Phase::MeasureStart => "measure-start",
            Phase::MeasureEnd => "measure-end",
        });
        if pause {
            // The runner's go-ahead: a line (or the end) on stdin.
            let _ = io::stdin().read_line(&mut String::new());
        }
    };
    let report = match workload {
        "bulk" => {
            let in_flight = cli.in_flight;
            let cfg = Bulk {
                addr: addr()?,
                chunk: size,
                in_flight,
                span,
            };
            lg::bulk(&cfg, on_phase)
        }
        "echo" | "unix" => {
            let target = match &cli.path {
                Some(path) if workload == "unix" => Target::Unix(path.clone()),
                _ if workload == "unix" => {
                    return Err("--path is required for --workload unix".into())
                }
                _ => Target::Tcp(addr()?),
            };
            let cfg = PingPong {
                target,
                conns,
                size,
                span,
            };
            lg::echo_pingpong(&cfg, on_phase)
        }
        "burst" => {
            let cfg = Bursts {
                addr: addr()?,
                conns,
                size,
                burst: cli.burst,
                think: cli.think_ms,
                span,
            };
            lg::echo_bursts(&cfg, on_phase)
        }
        "udp" => {
            let resend_after = Duration::from_millis(cli.resend_ms);
            let cfg = UdpEcho {
                addr: addr()?,
                socks: conns,
                size,
                resend_after,
                span,
            };
            lg::udp_echo(&cfg, on_phase)
        }
        "tls-echo" | "tls-handshake" => {
            let cert = cli.cert.as_ref().ok_or("--cert is required for tls-*")?;
            let settings = tls::Settings {
                addr: addr()?,
                config: certs::client_config(cert).map_err(|e| e.to_string())?,
                mode: match workload {
                    "tls-echo" => tls::Mode::Echo { size },
                    _ => tls::Mode::Handshake,
                },
                conns,
                span,
            };
            tls::run(&settings, on_phase)
        }
        other => {
            return Err(format!(
                "unknown workload {other:?} (known: echo, burst, udp, unix, bulk, tls-echo, tls-handshake)"
            ))
        }
    };
    let report = report.map_err(|e| format!("{workload} workload: {e}"))?;
    let h = &report.latency_ns;
    say(&format!(
        "result workload={workload} conns={conns} size={size} ops={} secs={:.6} rate={:.1} \
         mean_us={:.1} p50_us={:.1} p99_us={:.1} max_us={:.1} idle_conns={} conn_min={} conn_max={} lost={} errors={} first_error={}",
        report.ops,
        report.window.as_secs_f64(),
        report.per_sec(),
        report.mean_us(),
        h.value_at_quantile(0.50) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        report.idle_conns(),
        report.per_conn.iter().min().copied().unwrap_or(0),
        report.per_conn.iter().max().copied().unwrap_or(0),
        report.lost,
        report.errors,
        report.first_error.as_deref().unwrap_or("none"),
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
