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
use crate::workload::{self, parse_kv, RoundConfig};

/// How long the load generator may take to set up all connections.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause before each memory reading, for the server to finish what the
/// last event gave it.
pub const SETTLE: Duration = Duration::from_millis(300);
/// Message size of the one echo per connection.
pub const SIZE: usize = 64;

/// One round against one peer.
#[derive(Clone, Debug)]
pub struct IdleResult {
    pub peer: String,
    pub conns: usize,
    /// VmRSS once the server is listening, in KiB.
    pub rss_before_kb: u64,
    /// VmRSS with all connections open (and idle), in KiB.
    pub rss_with_kb: u64,
    /// How long the load generator took to open the connections.
    pub setup_secs: f64,
}

impl IdleResult {
    /// Server memory per connection, in KiB.
    pub fn kb_per_conn(&self) -> f64 {
        (self.rss_with_kb as f64 - self.rss_before_kb as f64) / self.conns as f64
    }
}

/// Runs one `idle` round against `peer`: every process started here is
/// killed before this returns, on success, error or panic.
pub fn run_round(peer: &Peer, conns: usize, cfg: &RoundConfig) -> io::Result<IdleResult> {
    let loadgen_path = peers::sibling(&cfg.bin_dir, "loadgen");
    let workload::Server {
        process: mut server,
        port,
        ..
    } = workload::start_server(peer, workload::Transport::Tcp, cfg, &[])?;
    thread::sleep(SETTLE);
    let rss_before_kb = vm_rss_kb(server.pid())?;

    let args: Vec<String> = [
        "--workload",
        "idle",
        "--port",
        &port.to_string(),
        "--conns",
        &conns.to_string(),
        "--size",
        &SIZE.to_string(),
        "--hold-secs",
        &(SETUP_TIMEOUT.as_secs() * 2).to_string(),
    ]
    .map(String::from)
    .to_vec();
    let loadgen = Spawned::start("loadgen", &loadgen_path, &args, cfg.loadgen_cpu)?;
    let result = loadgen.wait_for_line(Instant::now() + SETUP_TIMEOUT, |l| {
        l.starts_with("result ").then(|| l.to_string())
    })?;
    let kv = parse_kv(&result);
    let opened: usize = kv.get("conns").and_then(|v| v.parse().ok()).unwrap_or(0);
    if opened != conns {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("loadgen opened {opened} connections, not {conns}"),
        ));
    }
    let setup_secs = kv
        .get("setup_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    thread::sleep(SETTLE);
    server.check_alive()?;
    let rss_with_kb = vm_rss_kb(server.pid())?;
    // Both killed here by their drop: loadgen first, then the server.
    drop(loadgen);
    server.kill()?;
    Ok(IdleResult {
        peer: peer.name.clone(),
        conns,
        rss_before_kb,
        rss_with_kb,
        setup_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection() {
        let r = IdleResult {
            peer: "a".into(),
            conns: 1000,
            rss_before_kb: 1000,
            rss_with_kb: 9000,
            setup_secs: 0.5,
        };
        assert_eq!(r.kb_per_conn(), 8.0);
    }
}
