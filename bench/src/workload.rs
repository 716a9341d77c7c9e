//! Workloads as the runner sees them, and one measured round: start a
//! server, drive it with `loadgen`, sample CPU times over the measured
//! window, stop everything.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::{self, Peer};
use crate::procstat::CpuTicks;
use crate::{parse_ready_line, parse_ready_path, Listen};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Below this CPU use (in %) on both sides, a ping-pong round was held up
/// by something other than the two processes.
pub const IDLE_PCT: f64 = 90.0;
/// Slack on top of warm-up + window for the load generator to finish.
pub const LOADGEN_SLACK: Duration = Duration::from_secs(30);

/// What the servers listen on in a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP on 127.0.0.1.
    Tcp,
    /// UDP on 127.0.0.1.
    Udp,
    /// A Unix stream socket under the temporary directory.
    Unix,
}

/// A workload: what the servers listen on, and the
/// `loadgen` arguments that select and configure it (`--port` or `--path`,
/// `--secs` and `--warmup` are added per round).
#[derive(Clone, Debug)]
pub struct Workload {
    pub transport: Transport,
    pub loadgen_args: Vec<String>,
}

/// Workload `name` (`echo`, `udp` or `unix`) with `size`-byte messages and
/// `conns` connections (UDP: sockets), each with one message in flight.
pub fn by_name(name: &str, size: usize, conns: usize) -> Option<Workload> {
    let transport = match name {
        "echo" => Transport::Tcp,
        "udp" => Transport::Udp,
        "unix" => Transport::Unix,
        _ => return None,
    };
    let args = [
        "--workload",
        name,
        "--size",
        &size.to_string(),
        "--conns",
        &conns.to_string(),
    ];
    Some(Workload {
        transport,
        loadgen_args: args.map(String::from).to_vec(),
    })
}

/// TCP echo ping-pong: `conns` connections, each with one `size`-byte
/// message in flight.
pub fn echo_pingpong(size: usize, conns: usize) -> Workload {
    by_name("echo", size, conns).expect("a known workload")
}

/// A fresh path for a Unix server's socket, removed (if it is a socket)
/// when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new() -> io::Result<SocketPath> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("asyncnet-bench-{}-{n}.sock", std::process::id()));
        remove_socket(&path)?;
        Ok(SocketPath(path))
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        if let Err(e) = remove_socket(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// Removes `path` if it is a socket; nothing there is fine; anything else
/// there is an error (never removed).
fn remove_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
    }
}

/// Settings shared by every round.
#[derive(Clone, Debug)]
pub struct RoundConfig {
    pub bin_dir: PathBuf,
    pub secs: f64,
    pub warmup: f64,
    /// CPU for the server (`taskset -c`), none = unpinned.
    pub server_cpu: Option<usize>,
    /// CPU for the load generator, none = unpinned.
    pub loadgen_cpu: Option<usize>,
}

/// The outcome of one round against one peer.
#[derive(Clone, Debug)]
pub struct RoundResult {
    /// Connections (UDP: sockets) of the load generator.
    pub conns: usize,
    pub round_trips: u64,
    /// Round trips per second.
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Connections that completed no round trip in the window.
    pub idle_conns: usize,
    /// Fewest and most round trips completed by one connection.
    pub conn_min: u64,
    pub conn_max: u64,
    /// UDP: datagrams resent in the window for want of an echo.
    pub lost: u64,
    /// The window as seen by the runner (between the two /proc samples).
    pub sampled_secs: f64,
    pub server_user_secs: f64,
    pub server_sys_secs: f64,
    pub loadgen_user_secs: f64,
    pub loadgen_sys_secs: f64,
}

impl RoundResult {
    pub fn server_cpu_secs(&self) -> f64 {
        self.server_user_secs + self.server_sys_secs
    }

    /// Server CPU time per round trip, in microseconds.
    pub fn server_us_per_rt(&self) -> f64 {
        self.server_cpu_secs() * 1e6 / self.round_trips as f64
    }

    /// Server user-mode CPU time per round trip, in microseconds: the part
    /// spent outside the kernel (the event loop and the library).
    pub fn server_user_us_per_rt(&self) -> f64 {
        self.server_user_secs * 1e6 / self.round_trips as f64
    }

    /// Server CPU use over the window, in % of one CPU.
    pub fn server_cpu_pct(&self) -> f64 {
        100.0 * self.server_cpu_secs() / self.sampled_secs
    }

    /// What makes this round doubtful, if anything: the server did not
    /// serve every connection (some got no round trip at all, or one got
    /// under half of another's), or neither process kept its CPU busy.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.idle_conns > 0 {
            w.push(format!(
                "{} connection(s) completed no round trip in the window (lost wake-up or starvation in the server?)",
                self.idle_conns
            ));
        } else if self.conn_min * 2 < self.conn_max {
            w.push(format!(
                "unfair service: one connection completed {} round trips, another {}",
                self.conn_min, self.conn_max
            ));
        }
        if self.lost > 0 {
            w.push(format!(
                "{} datagram(s) got no echo in time and were resent (each costs the resend delay)",
                self.lost
            ));
        }
        // With one connection the two sides take turns, each waiting for the
        // other (and for the wake-up) by design: neither is ever busy.
        if self.conns > 1 && self.server_cpu_pct() < IDLE_PCT && self.loadgen_cpu_pct() < IDLE_PCT {
            w.push(format!(
                "server and loadgen both under {IDLE_PCT}% CPU: they waited on something else (other load on the machine, or a stall)"
            ));
        }
        w
    }

    /// Load generator CPU use over the window, in % of one CPU.
    pub fn loadgen_cpu_pct(&self) -> f64 {
        100.0 * (self.loadgen_user_secs + self.loadgen_sys_secs) / self.sampled_secs
    }
}

/// What a load generator's measured window gave: its `result` line, when the window began
/// and ended, and the CPU time (user, system) in seconds that the server and the load
/// generator spent in it.
pub struct Window {
    pub result: String,
    pub start: Instant,
    pub end: Instant,
    pub server: (f64, f64),
    pub loadgen: (f64, f64),
}

/// Follows the load generator through its window (`measure-start`, `measure-end`, then a
/// `result ` line), reading both processes' CPU time at each edge; then checks that the
/// load generator exited cleanly and the server lived through the round, and stops the
/// server.
pub fn measure_window(
    server: &mut Spawned,
    server_name: &str,
    loadgen: &mut Spawned,
    loadgen_name: &str,
    deadline: Instant,
) -> io::Result<Window> {
    loadgen.wait_for_line(deadline, |l| (l.trim() == "measure-start").then_some(()))?;
    let (s0, l0, start) = (
        CpuTicks::of(server.pid())?,
        CpuTicks::of(loadgen.pid())?,
        Instant::now(),
    );
    loadgen.wait_for_line(deadline, |l| (l.trim() == "measure-end").then_some(()))?;
    let (s1, l1, end) = (
        CpuTicks::of(server.pid())?,
        CpuTicks::of(loadgen.pid())?,
        Instant::now(),
    );
    let result = loadgen.wait_for_line(deadline, |l| {
        l.starts_with("result ").then(|| l.to_string())
    })?;
    match loadgen.wait_until(deadline)? {
        Some(s) if s.success() => {}
        Some(s) => return Err(io::Error::other(format!("{loadgen_name} failed: {s}"))),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{loadgen_name} did not exit"),
            ))
        }
    }
    if let Some(s) = server.try_wait()? {
        return Err(io::Error::other(format!(
            "server {server_name} exited during the round: {s}"
        )));
    }
    server.kill()?;
    Ok(Window {
        result,
        start,
        end,
        server: s1.secs_since(s0),
        loadgen: l1.secs_since(l0),
    })
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
    /// Declared after the process: removed after the server is killed.
    _socket_path: Option<SocketPath>,
}

/// Starts `peer`'s server on an ephemeral loopback TCP port (pinned as `cfg` says) and waits
/// for its ready line; returns the process and its port.
pub fn start_tcp_server(peer: &Peer, cfg: &RoundConfig) -> io::Result<(Spawned, u16)> {
    let process = Spawned::start(
        &peer.name,
        &peer.path(&cfg.bin_dir)?,
        &peer.args_for(&Listen::Tcp(0)),
        peer.cpu(cfg.server_cpu),
    )?;
    let port = process
        .wait_for_line(Instant::now() + READY_TIMEOUT, parse_ready_line)
        .map_err(waiting_for_ready)?;
    Ok((process, port))
}

fn waiting_for_ready(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("waiting for the ready line: {e}"))
}

/// Starts `peer`'s server for `transport` (pinned as `cfg` says) and waits for its ready line.
pub fn start_server(peer: &Peer, transport: Transport, cfg: &RoundConfig) -> io::Result<Server> {
    start_server_with(peer, transport, cfg, &[])
}

/// [`start_server`] with `flags` before the peer's own arguments (e.g. `--pong`).
pub fn start_server_with(
    peer: &Peer,
    transport: Transport,
    cfg: &RoundConfig,
    flags: &[&str],
) -> io::Result<Server> {
    let server_path = peer.path(&cfg.bin_dir)?;
    let socket_path = match transport {
        Transport::Unix => Some(SocketPath::new()?),
        _ => None,
    };
    let listen = match (transport, &socket_path) {
        (Transport::Tcp, _) => Listen::Tcp(0),
        (Transport::Udp, _) => Listen::Udp(0),
        (Transport::Unix, Some(p)) => Listen::Unix(p.0.clone()),
        (Transport::Unix, None) => unreachable!("made above"),
    };
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(peer.args_for(&listen));
    let process = Spawned::start(&peer.name, &server_path, &args, peer.cpu(cfg.server_cpu))?;
    let ready = Instant::now() + READY_TIMEOUT;
    let target = match &listen {
        Listen::Unix(path) => {
            let got = process
                .wait_for_line(ready, parse_ready_path)
                .map_err(waiting_for_ready)?;
            if got != *path {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "server listens on {}, not on {}",
                        got.display(),
                        path.display()
                    ),
                ));
            }
            vec!["--path".to_string(), got.display().to_string()]
        }
        _ => {
            let port = process
                .wait_for_line(ready, parse_ready_line)
                .map_err(waiting_for_ready)?;
            vec!["--port".to_string(), port.to_string()]
        }
    };
    Ok(Server {
        process,
        target,
        _socket_path: socket_path,
    })
}

/// The path of the `loadgen` binary, checked to exist.
pub fn loadgen_path(cfg: &RoundConfig) -> io::Result<PathBuf> {
    let path = peers::sibling(&cfg.bin_dir, "loadgen");
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found (run `cargo build --release -p asyncnet-bench` first)",
                path.display()
            ),
        ))
    }
}

/// One timed round of `workload` against `peer`, before its result line is
/// interpreted: start the server, run `loadgen` with the workload's
/// arguments plus the target, `--secs` and `--warmup`, and measure both
/// processes over the window. Every process started here is killed before
/// this returns, on success, error or panic.
pub fn measured_round(peer: &Peer, workload: &Workload, cfg: &RoundConfig) -> io::Result<Window> {
    let loadgen_path = loadgen_path(cfg)?;
    let mut server = start_server(peer, workload.transport, cfg)?;
    let mut args = workload.loadgen_args.clone();
    args.extend(server.target.iter().cloned());
    args.extend([
        "--secs".to_string(),
        cfg.secs.to_string(),
        "--warmup".to_string(),
        cfg.warmup.to_string(),
    ]);
    let mut loadgen = Spawned::start("loadgen", &loadgen_path, &args, cfg.loadgen_cpu)?;
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.warmup + cfg.secs) + LOADGEN_SLACK;
    measure_window(
        &mut server.process,
        &peer.name,
        &mut loadgen,
        "loadgen",
        deadline,
    )
}

/// Runs one round of `workload` against `peer`. Every process started here
/// is killed before this returns, on success, error or panic.
pub fn run_round(peer: &Peer, workload: &Workload, cfg: &RoundConfig) -> io::Result<RoundResult> {
    let window = measured_round(peer, workload, cfg)?;
    let result = window.result;
    let (t0, t1) = (window.start, window.end);
    let ((server_user_secs, server_sys_secs), (loadgen_user_secs, loadgen_sys_secs)) =
        (window.server, window.loadgen);

    let kv = parse_kv(&result);
    Ok(RoundResult {
        conns: field(&kv, "conns")?,
        round_trips: field(&kv, "round_trips")?,
        rps: field(&kv, "rps")?,
        p50_us: field(&kv, "p50_us")?,
        p99_us: field(&kv, "p99_us")?,
        idle_conns: field(&kv, "idle_conns")?,
        conn_min: field(&kv, "conn_min")?,
        conn_max: field(&kv, "conn_max")?,
        lost: if kv.contains_key("lost") {
            field(&kv, "lost")?
        } else {
            0
        },
        sampled_secs: (t1 - t0).as_secs_f64(),
        server_user_secs,
        server_sys_secs,
        loadgen_user_secs,
        loadgen_sys_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_lines() {
        let kv = parse_kv("result workload=echo rps=12.5 round_trips=10 junk");
        assert_eq!(kv["workload"], "echo");
        assert_eq!(field::<f64>(&kv, "rps").unwrap(), 12.5);
        assert_eq!(field::<u64>(&kv, "round_trips").unwrap(), 10);
        assert!(field::<u64>(&kv, "p50_us").is_err());
    }

    #[test]
    fn socket_paths_are_cleaned_up() {
        let p = SocketPath::new().unwrap();
        let path = p.0.clone();
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(p);
        assert!(!path.exists());
        drop(l);
        let file = std::env::temp_dir().join(format!("asyncnet-bench-test-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        assert!(remove_socket(&file).is_err());
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn workload_args() {
        assert_eq!(
            echo_pingpong(64, 50).loadgen_args,
            ["--workload", "echo", "--size", "64", "--conns", "50"]
        );
        assert_eq!(by_name("udp", 64, 32).unwrap().transport, Transport::Udp);
        assert!(by_name("nope", 64, 1).is_none());
    }
}
