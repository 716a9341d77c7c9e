//! Load generator: drives a server on 127.0.0.1 with one workload, then
//! prints, one per line on stdout:
//!
//! ```text
//! measure-start                      (the measured window begins)
//! measure-end                        (it ends)
//! result workload=echo conns=50 size=64 round_trips=N secs=S rps=R mean_us=M p50_us=A p99_us=B max_us=C idle_conns=I conn_min=X conn_max=Y
//! ```
//!
//! `idle_conns` counts connections that completed no round trip in the
//! window; `conn_min`/`conn_max` are the fewest/most round trips one
//! connection completed (a fair server keeps them close).
//!
//! Single-threaded plain mio: it uses neither asyncnet nor tokio.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use asyncnet_bench::args::Args;
use asyncnet_bench::loadgen::{self, Phase, PingPong, Report};

const USAGE: &str =
    "usage: loadgen --port PORT [--workload echo] [--conns 50] [--size 64] [--secs 5] [--warmup 1]";

fn say(line: &str) {
    let mut out = io::stdout().lock();
    // The runner reads these as they come: flush each one.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn secs(v: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("invalid --{name} {v}"))
}

fn run() -> Result<(), String> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return Ok(());
    }
    let port: u16 = args
        .take_str("port")?
        .ok_or("--port is required")?
        .parse()
        .map_err(|_| "invalid --port")?;
    let workload = args.take("workload", "echo".to_string())?;
    let conns = args.take("conns", 50usize)?;
    let size = args.take("size", 64usize)?;
    let secs_v = args.take("secs", 5.0f64)?;
    let warmup_v = args.take("warmup", 1.0f64)?;
    args.finish()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let on_phase = |p: Phase| {
        say(match p {
            Phase::MeasureStart => "measure-start",
            Phase::MeasureEnd => "measure-end",
        })
    };
    let report: Report = match workload.as_str() {
        "echo" => {
            let cfg = PingPong {
                addr,
                conns,
                size,
                warmup: secs(warmup_v, "warmup")?,
                secs: secs(secs_v, "secs")?,
            };
            loadgen::echo_pingpong(&cfg, on_phase).map_err(|e| format!("echo workload: {e}"))?
        }
        other => return Err(format!("unknown workload {other:?} (known: echo)")),
    };
    let h = &report.latency_ns;
    let conn_min = report.per_conn.iter().min().copied().unwrap_or(0);
    let conn_max = report.per_conn.iter().max().copied().unwrap_or(0);
    say(&format!(
        "result workload={workload} conns={conns} size={size} round_trips={} secs={:.6} rps={:.1} \
         mean_us={:.1} p50_us={:.1} p99_us={:.1} max_us={:.1} idle_conns={} conn_min={conn_min} conn_max={conn_max}",
        report.round_trips,
        report.window.as_secs_f64(),
        report.per_sec(),
        report.mean_us(),
        h.quantile(0.50) as f64 / 1e3,
        h.quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        report.idle_conns(),
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
