//! The `idle` workload: how much memory a server spends per idle
//! connection. Start the server, read its resident memory (`VmRSS` of
//! `/proc/PID/status`), have `loadgen` open `conns` connections that each
//! exchange one echo and then stay open, read the server's memory again:
//! `(with - before) / conns` is the cost of one connection (its socket
//! object, task or closure, buffers) in the server's own memory. The
//! kernel's socket memory is not in it.

use std::fmt::Write;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::{self, Peer, FLOOR};
use crate::procstat::vm_rss_kb;
use crate::stats::median;
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
    let (mut server, port) = workload::start_tcp_server(peer, cfg)?;
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
    if let Some(s) = server.try_wait()? {
        return Err(io::Error::other(format!(
            "server {} exited during the round: {s}",
            peer.name
        )));
    }
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

pub fn round_header(conns: usize) -> String {
    format!(
        "{:>5}  {:<14} {:>14} {:>14} {:>10} {:>8}",
        "round",
        "peer",
        "RSS before KB",
        format!("with {conns} KB"),
        "KB/conn",
        "setup s"
    )
}

pub fn round_row(round: usize, r: &IdleResult) -> String {
    format!(
        "{round:>5}  {:<14} {:>14} {:>14} {:>10.2} {:>8.2}",
        r.peer,
        r.rss_before_kb,
        r.rss_with_kb,
        r.kb_per_conn(),
        r.setup_secs
    )
}

/// Medians over the rounds of one peer.
#[derive(Clone, Debug)]
pub struct IdleSummary {
    pub peer: String,
    pub rounds: usize,
    pub rss_before_kb: f64,
    pub rss_with_kb: f64,
    pub kb_per_conn: f64,
}

/// One summary per peer named in `peers` (in that order) that has results.
pub fn summarize(results: &[IdleResult], peers: &[String]) -> Vec<IdleSummary> {
    peers
        .iter()
        .filter_map(|name| {
            let rs: Vec<&IdleResult> = results.iter().filter(|r| &r.peer == name).collect();
            if rs.is_empty() {
                return None;
            }
            let med =
                |f: fn(&IdleResult) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            Some(IdleSummary {
                peer: name.clone(),
                rounds: rs.len(),
                rss_before_kb: med(|r| r.rss_before_kb as f64),
                rss_with_kb: med(|r| r.rss_with_kb as f64),
                kb_per_conn: med(IdleResult::kb_per_conn),
            })
        })
        .collect()
}

/// The medians table, each peer against `baseline`, and against the C
/// floor if it ran.
pub fn summary_table(summaries: &[IdleSummary], baseline: &str, conns: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>14} {:>14} {:>10}",
        "peer",
        "rounds",
        "RSS before KB",
        format!("with {conns} KB"),
        "KB/conn"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<14} {:>6} {:>14.0} {:>14.0} {:>10.2}",
            s.peer, s.rounds, s.rss_before_kb, s.rss_with_kb, s.kb_per_conn
        );
    }
    if let Some(base) = summaries.iter().find(|s| s.peer == baseline) {
        for s in summaries.iter().filter(|s| s.peer != baseline) {
            let _ = writeln!(
                out,
                "ratio {}/{}: memory per idle connection {:.3}x (lower is better)",
                s.peer,
                base.peer,
                s.kb_per_conn / base.kb_per_conn
            );
        }
    }
    if let Some(floor) = summaries.iter().find(|s| s.peer == FLOOR) {
        for s in summaries.iter().filter(|s| s.peer != FLOOR) {
            let _ = write!(
                out,
                "{}: {:+.2} KB per connection over the C floor",
                s.peer,
                s.kb_per_conn - floor.kb_per_conn
            );
            // The floor keeps next to nothing per connection: a ratio to
            // it means little unless it is clearly above zero.
            if floor.kb_per_conn >= 0.1 {
                let _ = write!(
                    out,
                    " ({:.2}x the C floor)",
                    s.kb_per_conn / floor.kb_per_conn
                );
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(peer: &str, before: u64, with: u64) -> IdleResult {
        IdleResult {
            peer: peer.into(),
            conns: 1000,
            rss_before_kb: before,
            rss_with_kb: with,
            setup_secs: 0.5,
        }
    }

    #[test]
    fn per_connection_and_table() {
        let rs = [
            r("a", 1000, 9000),
            r("b", 1000, 5000),
            r(FLOOR, 500, 600),
            r("a", 1000, 11000),
        ];
        assert_eq!(rs[0].kb_per_conn(), 8.0);
        assert!(!round_row(1, &rs[0]).is_empty());
        assert!(round_header(1000).contains("with 1000 KB"));
        let s = summarize(&rs, &["a".into(), "b".into(), FLOOR.into()]);
        assert_eq!((s[0].rounds, s[0].kb_per_conn), (2, 9.0));
        let t = summary_table(&s, "b", 1000);
        assert!(
            t.contains("ratio a/b: memory per idle connection 2.250x"),
            "{t}"
        );
        assert!(
            t.contains("a: +8.90 KB per connection over the C floor (90.00x the C floor)"),
            "{t}"
        );
    }
}
