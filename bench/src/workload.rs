//! Workloads as the runner sees them, and one measured round: start a
//! server, drive it with `loadgen`, sample CPU times over the measured
//! window, stop everything.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::Peer;
use crate::procstat::CpuTicks;
use crate::suite::Sample;
use crate::{parse_ready_line, Listen};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Below this CPU use (in %) on both sides, a ping-pong round was held up
/// by something other than the two processes.
pub const IDLE_PCT: f64 = 90.0;
/// Slack on top of warm-up + window for the load generator to finish.
pub const LOADGEN_SLACK: Duration = Duration::from_secs(30);

/// A `loadgen` workload: its name and the arguments that configure it
/// (`--port` or `--path`, `--secs` and `--warmup` are added per round).
/// Its servers listen on UDP for `udp`, on a Unix stream socket for `unix`,
/// on TCP otherwise; `bulk` counts MB (its bytes / 10^6) and has no latencies.
#[derive(Clone, Debug)]
pub struct Workload {
    pub loadgen_args: Vec<String>,
    pub bulk: bool,
    /// The load generator paces itself (`burst`: connections think between bursts): both
    /// sides may idle by design, and connections complete different numbers of operations.
    pub paced: bool,
    /// What the servers listen on (a Unix path is made per round).
    pub listen: Listen,
}

impl Workload {
    /// `loadgen --workload NAME ARGS...`.
    pub fn new(name: &str, args: &[(&str, usize)]) -> Workload {
        let mut loadgen_args = vec!["--workload".to_string(), name.to_string()];
        for (k, v) in args {
            loadgen_args.extend([format!("--{k}"), v.to_string()]);
        }
        let listen = match name {
            "udp" => Listen::Udp(0),
            "unix" => Listen::Unix(PathBuf::new()),
            _ => Listen::Tcp(0),
        };
        let bulk = name == "bulk";
        Workload {
            loadgen_args,
            bulk,
            paced: name == "burst",
            listen,
        }
    }
}

/// Settings shared by every round.
#[derive(Clone, Debug, Default)]
pub struct RoundConfig {
    pub bin_dir: PathBuf,
    pub secs: f64,
    pub warmup: f64,
    /// CPU for the server (`taskset -c`), none = unpinned.
    pub server_cpu: Option<usize>,
    /// CPU for the load generator, none = unpinned.
    pub loadgen_cpu: Option<usize>,
}

/// What makes a round doubtful: the server did not serve every connection
/// (`idle` of them completed nothing, or one got under half of another's),
/// UDP datagrams were `lost`, TLS connections failed (`errors`, the first
/// said `first_error`), or neither process kept its CPU busy (`both_idle`:
/// something else held them up).
pub fn warnings(
    idle: usize,
    (fewest, most): (u64, u64),
    lost: u64,
    (errors, first_error): (u64, &str),
    both_idle: bool,
) -> Vec<String> {
    let mut w = Vec::new();
    if idle > 0 {
        w.push(format!("{idle} connection(s) completed nothing in the window (lost wake-up or starvation in the server?)"));
    } else if fewest * 2 < most {
        w.push(format!(
            "unfair service: one connection completed {fewest} operations, another {most}"
        ));
    }
    if lost > 0 {
        w.push(format!(
            "{lost} datagram(s) got no echo in time and were resent (each costs the resend delay)"
        ));
    }
    if errors > 0 {
        w.push(format!(
            "{errors} connection(s) failed, first: {first_error}"
        ));
    }
    if both_idle {
        w.push(format!("server and loadgen both under {IDLE_PCT}% CPU: they waited on something else (other load on the machine, or a stall)"));
    }
    w
}

/// Parses `key=value` pairs from a line such as `result rps=1.0 p50_us=2`.
pub fn parse_kv(line: &str) -> HashMap<&str, &str> {
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// The value of `key` in a result line's pairs, parsed.
pub fn field<T: std::str::FromStr>(kv: &HashMap<&str, &str>, key: &str) -> io::Result<T> {
    kv.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("loadgen result line lacks a valid {key}="),
        )
    })
}

/// A peer's server, started and ready, for one round.
pub struct Server {
    /// The server process (killed when dropped).
    pub process: Spawned,
    /// The load generator's arguments that reach it: `--port P` or `--path PATH`.
    pub target: Vec<String>,
    /// Its port (TCP, UDP).
    pub port: u16,
    /// A Unix server's socket is in it. Declared after the process: removed after the
    /// server is killed.
    _socket_dir: Option<tempfile::TempDir>,
}

/// Starts `peer`'s server on `listen` (a Unix socket: in a fresh
/// directory, whatever the path given; pinned as `cfg` says), with
/// `flags` before the peer's own arguments (e.g. `--pong`), and waits for
/// its ready line.
pub fn start_server(
    peer: &Peer,
    listen: &Listen,
    cfg: &RoundConfig,
    flags: &[&str],
) -> io::Result<Server> {
    let server_path = peer.path(&cfg.bin_dir)?;
    let socket_dir = match listen {
        Listen::Unix(_) => Some(
            tempfile::Builder::new()
                .prefix("asyncnet-bench-")
                .tempdir()?,
        ),
        _ => None,
    };
    let listen = match &socket_dir {
        Some(dir) => Listen::Unix(dir.path().join("server.sock")),
        None => listen.clone(),
    };
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(peer.args_for(&listen));
    let (program, args) = peer.command(server_path, args);
    let process = Spawned::start(&peer.name, &program, &args, peer.cpu(cfg.server_cpu))?;
    let ready = Instant::now() + READY_TIMEOUT;
    // A Unix server must say the path it was given.
    let port = process
        .wait_for_line(ready, |l| match &listen {
            Listen::Unix(_) => (l.trim_end() == listen.ready_line(0)).then_some(0),
            _ => parse_ready_line(l),
        })
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for the ready line: {e}")))?;
    let target = match &listen {
        Listen::Unix(path) => vec!["--path".to_string(), path.display().to_string()],
        _ => vec!["--port".to_string(), port.to_string()],
    };
    Ok(Server {
        process,
        target,
        port,
        _socket_dir: socket_dir,
    })
}

/// The path of the `loadgen` binary, checked to exist.
pub fn loadgen_path(cfg: &RoundConfig) -> io::Result<PathBuf> {
    Peer::sibling("loadgen", "loadgen").path(&cfg.bin_dir)
}

/// Runs one round of `workload` against `peer`: start the server, run
/// `loadgen` with the workload's arguments plus the target, `--secs` and
/// `--warmup`, read both processes' CPU time when it prints `measure-start`
/// and `measure-end`, then check that it exited cleanly and that the server
/// lived through the round. Every process started here is killed before
/// this returns, on success, error or panic.
pub fn run_round(peer: &Peer, workload: &Workload, cfg: &RoundConfig) -> io::Result<Sample> {
    let loadgen_path = loadgen_path(cfg)?;
    let mut server = start_server(peer, &workload.listen, cfg, &[])?;
    let mut args = workload.loadgen_args.clone();
    args.extend(server.target.iter().cloned());
    let span = format!("--secs {} --warmup {}", cfg.secs, cfg.warmup);
    args.extend(span.split(' ').map(String::from));
    let mut lg = Spawned::start("loadgen", &loadgen_path, &args, cfg.loadgen_cpu)?;
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.warmup + cfg.secs) + LOADGEN_SLACK;
    let pids = (server.process.pid(), lg.pid());
    let edge = |want: &'static str| {
        lg.wait_for_line(deadline, |l| (l.trim() == want).then_some(()))?;
        Ok::<_, io::Error>((CpuTicks::of(pids.0)?, CpuTicks::of(pids.1)?, Instant::now()))
    };
    let (s0, l0, start) = edge("measure-start")?;
    let (s1, l1, end) = edge("measure-end")?;
    let result = lg.wait_for_line(deadline, |l| {
        l.starts_with("result ").then(|| l.to_string())
    })?;
    lg.finish(deadline, "")?;
    server.process.stop()?;
    let secs = (end - start).as_secs_f64();
    let (server_cpu, loadgen_cpu) = (s1.secs_since(s0), l1.secs_since(l0));
    let busy = |(user, sys): (f64, f64)| 100.0 * (user + sys) / secs >= IDLE_PCT;

    let kv = parse_kv(&result);
    let scale = if workload.bulk { 1e-6 } else { 1.0 };
    let ops = field::<f64>(&kv, "ops")? * scale;
    let mut s = Sample::measured(field::<f64>(&kv, "rate")? * scale, ops, secs, server_cpu)
        .with_loadgen(loadgen_cpu, ops);
    if !workload.bulk {
        s.p50_us = Some(field(&kv, "p50_us")?);
        s.p99_us = Some(field(&kv, "p99_us")?);
    }
    // With one connection the two sides of a ping-pong take turns by design.
    let conns: usize = field(&kv, "conns")?;
    let both_idle =
        !workload.paced && (workload.bulk || conns > 1) && !busy(server_cpu) && !busy(loadgen_cpu);
    let (fewest, most) = (field(&kv, "conn_min")?, field(&kv, "conn_max")?);
    // Paced connections think for random times: their counts differ by design (one that
    // completed nothing is still flagged).
    let spread = if workload.paced {
        (most, most)
    } else {
        (fewest, most)
    };
    // Last on the line, spaces and all.
    let first_error = result
        .split_once(" first_error=")
        .map_or("?", |(_, e)| e.trim());
    s.warnings = warnings(
        field(&kv, "idle_conns")?,
        spread,
        field(&kv, "lost")?,
        (field(&kv, "errors")?, first_error),
        both_idle,
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_warnings_and_arguments() {
        let kv = parse_kv("result workload=echo rps=12.5 round_trips=10 junk");
        assert_eq!(
            (kv["workload"], field::<f64>(&kv, "rps").unwrap()),
            ("echo", 12.5)
        );
        assert!(field::<u64>(&kv, "p50_us").is_err());
        assert!(warnings(0, (10, 11), 0, (0, "none"), false).is_empty());
        assert!(warnings(3, (0, 11), 0, (0, "none"), false)[0].contains("3 connection"));
        let w = warnings(0, (1, 11), 2, (2, "reset"), true);
        assert!(
            w[0].contains("unfair") && w[1].contains("2 datagram"),
            "{w:?}"
        );
        assert!(
            w[2].contains("2 connection(s) failed, first: reset"),
            "{w:?}"
        );
        assert!(w[3].contains("both under"), "{w:?}");
        let w = Workload::new("unix", &[("size", 64), ("conns", 50)]);
        assert_eq!(
            w.loadgen_args,
            ["--workload", "unix", "--size", "64", "--conns", "50"]
        );
        assert!(matches!(w.listen, Listen::Unix(_)) && !w.bulk && !w.paced);
        let w = Workload::new("burst", &[("burst", 8), ("think-ms", 100)]);
        assert_eq!(
            w.loadgen_args,
            ["--workload", "burst", "--burst", "8", "--think-ms", "100"]
        );
        assert!(matches!(w.listen, Listen::Tcp(0)) && w.paced);
    }
}
