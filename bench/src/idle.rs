//! The `idle` workload: how much memory a server spends per idle
//! connection. Start the server, read its resident memory (`VmRSS` of
//! `/proc/PID/status`), have `loadgen` open `conns` connections that each
//! exchange one echo and then stay open, read the server's memory again:
//! `(with - before) / conns` is the cost of one connection (its socket
//! object, task or closure, buffers) in the server's own memory. The
//! kernel's socket memory is not in it.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::{self, Peer};
use crate::procstat::vm_rss_kb;
use crate::workload::{self, field, parse_kv, RoundConfig};

/// How long the load generator may take to set up all connections.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause before each memory reading, for the server to finish what the
/// last event gave it.
pub const SETTLE: Duration = Duration::from_millis(300);
/// Message size of the one echo per connection.
pub const SIZE: usize = 64;

/// Runs one `idle` round against `peer`: server memory per connection, in
/// KiB. Every process started here is killed before this returns, on
/// success, error or panic.
pub fn run_round(peer: &Peer, conns: usize, cfg: &RoundConfig) -> io::Result<f64> {
    let loadgen_path = peers::sibling(&cfg.bin_dir, "loadgen");
    let workload::Server {
        process: mut server,
        port,
        ..
    } = workload::start_server(peer, workload::Transport::Tcp, cfg, &[])?;
    thread::sleep(SETTLE);
    let rss_before_kb = vm_rss_kb(server.pid())?;

    let hold = SETUP_TIMEOUT.as_secs() * 2;
    let args =
        format!("--workload idle --port {port} --conns {conns} --size {SIZE} --hold-secs {hold}");
    let args: Vec<String> = args.split(' ').map(String::from).collect();
    let loadgen = Spawned::start("loadgen", &loadgen_path, &args, cfg.loadgen_cpu)?;
    let result = loadgen.wait_for_line(Instant::now() + SETUP_TIMEOUT, |l| {
        l.starts_with("result ").then(|| l.to_string())
    })?;
    let opened: usize = field(&parse_kv(&result), "conns")?;
    if opened != conns {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("loadgen opened {opened} connections, not {conns}"),
        ));
    }
    thread::sleep(SETTLE);
    server.check_alive()?;
    let rss_with_kb = vm_rss_kb(server.pid())?;
    // Both killed here by their drop: loadgen first, then the server.
    drop(loadgen);
    server.kill()?;
    Ok((rss_with_kb as f64 - rss_before_kb as f64) / conns as f64)
}
