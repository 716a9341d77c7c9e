//! TLS load generator: drives a TLS echo server on 127.0.0.1 with one workload, then prints,
//! one per line on stdout:
//!
//! ```text
//! measure-start
//! measure-end
//! result mode=echo conns=50 size=1024 ops=N secs=S rate=R p50_us=A p99_us=B max_us=C idle_conns=I conn_min=X conn_max=Y errors=E first_error=TEXT
//! ```
//!
//! `--mode echo`: ping-pong of `--size`-byte messages on `--conns` connections (ops = round
//! trips). `--mode handshake`: `--conns` slots each repeating connect, full handshake, 1-byte
//! echo, close (ops = completed connections; `errors` = failed ones, `first_error` the first
//! of them, or `none`). The server's certificate (`--cert`, PEM) is pinned.
//!
//! Single-threaded mio + rustls: neither asyncnet nor tokio.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use asyncnet_bench::tls::certs;
use asyncnet_bench::tls::loadgen::{self, Mode, Phase, Settings};

/// The TLS load generator (see the module documentation).
#[derive(clap::Parser)]
struct Cli {
    /// echo or handshake
    #[arg(long, default_value = "echo")]
    mode: String,
    /// The server's port on 127.0.0.1
    #[arg(long)]
    port: u16,
    /// The server's certificate (PEM), pinned
    #[arg(long)]
    cert: PathBuf,
    /// Connections (handshake: slots) [default: 50, handshake 16]
    #[arg(long)]
    conns: Option<usize>,
    /// Bytes per message (echo)
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured window, seconds
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Warm-up before it, seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn secs(v: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("invalid --{name} {v}"))
}

fn run() -> Result<(), String> {
    let cli: Cli = clap::Parser::parse();
    let (mode_name, cert, size) = (cli.mode, cli.cert, cli.size);
    let conns = cli
        .conns
        .unwrap_or(if mode_name == "handshake" { 16 } else { 50 });
    let mode = match mode_name.as_str() {
        "echo" if size > 0 => Mode::Echo { size },
        "echo" => return Err("--size must be at least 1".into()),
        "handshake" => Mode::Handshake,
        m => return Err(format!("unknown mode {m:?} (known: echo, handshake)")),
    };
    let port = cli.port;
    let (secs_v, warmup_v) = (cli.secs, cli.warmup);
    let pinned = certs::read_cert(&cert).map_err(|e| e.to_string())?;
    let settings = Settings {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        config: certs::client_config(pinned).map_err(|e| e.to_string())?,
        server_name: certs::server_name(),
        mode,
        conns,
        warmup: secs(warmup_v, "warmup")?,
        secs: secs(secs_v, "secs")?,
    };
    let report = loadgen::run(&settings, |p| {
        say(match p {
            Phase::MeasureStart => "measure-start",
            Phase::MeasureEnd => "measure-end",
        })
    })
    .map_err(|e| format!("{mode_name} workload: {e}"))?;
    let h = &report.latency_ns;
    say(&format!(
        "result mode={mode_name} conns={conns} size={size} ops={} secs={:.6} rate={:.1} \
         p50_us={:.1} p99_us={:.1} max_us={:.1} idle_conns={} conn_min={} conn_max={} errors={} first_error={}",
        report.ops,
        report.window.as_secs_f64(),
        report.per_sec(),
        h.quantile(0.50) as f64 / 1e3,
        h.quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        report.idle_conns(),
        report.per_conn.iter().min().copied().unwrap_or(0),
        report.per_conn.iter().max().copied().unwrap_or(0),
        report.errors,
        report.first_error.as_deref().unwrap_or("none"),
    ));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
