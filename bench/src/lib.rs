//! Loopback benchmarks for `asyncnet`.
//!
//! The crate is a handful of binaries (see `src/bin/`) plus the small modules
//! they share:
//!
//! * [`args`]: a tiny `--key value` parser (no clap).
//! * [`bulk`]: the `bulk` workload (one connection streaming through an
//!   echo server, MB/s).
//! * [`stats`]: latency histogram, medians.
//! * [`procstat`]: CPU time of a process from `/proc/PID/stat`.
//! * [`loadgen`]: the load generator's workloads (plain mio).
//! * [`child`]: child processes pinned with `taskset`, killed on drop, read
//!   line by line with timeouts.
//! * [`peers`]: the servers under comparison.
//! * [`extpeers`]: the peers built at run time from `peers/` (Nim, C).
//! * [`idle`]: the `idle` workload (server memory per idle connection).
//! * [`ping`]: the `ping` workload (Redis inline PING, `redis-benchmark`).
//! * [`http`]: the `http` workload (HTTP/1.1 keep-alive hello world, `wrk`).
//! * [`rlimit`]: raising `RLIMIT_NOFILE` (the only unsafe code here).
//! * [`workload`]: what the load generator does, and one measured round of it.
//! * [`report`]: the table printed at the end.
//! * [`syscalls`]: system calls per operation, by name (`strace -c -f`).
//! * [`suite`]: the whole suite (`bench_suite`): every workload, one table,
//!   `BENCHMARKS.md` and its SVG chart.
//! * [`tls`]: the TLS benchmark (`tls_bench`): certificates, its load
//!   generator (mio + rustls) and its runner.
//!
//! Every server ("peer") follows the same contract: it takes what to listen
//! on as its last arguments ([`Listen`]: `PORT` for TCP on 127.0.0.1,
//! `--udp PORT`, `--unix PATH`; port 0 = any free one), prints exactly
//! `listening on 127.0.0.1:PORT` (or `listening on PATH`) on stdout once it
//! is ready, and echoes every byte it receives on every connection until
//! end of stream (UDP: every datagram back to its sender). The `http`
//! workload's peers serve HTTP instead of echoing (see [`http`]).

// Unsafe only in `rlimit` (two libc calls).
#![deny(unsafe_code)]

use std::path::PathBuf;

pub mod args;
pub mod bulk;
pub mod child;
pub mod extpeers;
pub mod http;
pub mod idle;
pub mod loadgen;
pub mod peers;
pub mod ping;
pub mod procstat;
pub mod report;
#[allow(unsafe_code)]
pub mod rlimit;
pub mod stats;
pub mod suite;
pub mod syscalls;
pub mod tls;
pub mod workload;

/// The line every server prints on stdout once it is ready, followed by
/// `127.0.0.1:PORT` (TCP and UDP) or the socket's path (Unix).
pub const READY_PREFIX: &str = "listening on ";

/// Parses the port out of a ready line such as `listening on 127.0.0.1:4242`.
pub fn parse_ready_line(line: &str) -> Option<u16> {
    let addr = line.trim().strip_prefix(READY_PREFIX)?;
    let port = addr.strip_prefix("127.0.0.1:")?;
    port.parse().ok()
}

/// Parses the path out of a Unix server's ready line such as
/// `listening on /tmp/x.sock` (an absolute path).
pub fn parse_ready_path(line: &str) -> Option<PathBuf> {
    let path = line.trim_end().strip_prefix(READY_PREFIX)?;
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// What a server listens on, from its arguments: `[PORT]` (TCP),
/// `--udp [PORT]` (UDP) or `--unix PATH` (Unix stream). A port of 0 (or
/// none) means any free one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(u16),
    Udp(u16),
    Unix(PathBuf),
}

impl Listen {
    /// The server arguments that select this (what [`server_args`] parses).
    pub fn to_args(&self) -> Vec<String> {
        match self {
            Listen::Tcp(port) => vec![port.to_string()],
            Listen::Udp(port) => vec!["--udp".into(), port.to_string()],
            Listen::Unix(path) => vec!["--unix".into(), path.display().to_string()],
        }
    }

    /// The ready line a server prints for this, given the port it got
    /// (ignored for Unix).
    pub fn ready_line(&self, port: u16) -> String {
        match self {
            Listen::Tcp(_) | Listen::Udp(_) => format!("{READY_PREFIX}127.0.0.1:{port}"),
            Listen::Unix(path) => format!("{READY_PREFIX}{}", path.display()),
        }
    }
}

/// Prints the ready line for `listen` (see [`Listen::ready_line`]) and
/// flushes it.
pub fn say_ready(listen: &Listen, port: u16) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", listen.ready_line(port))?;
    out.flush()
}

/// The arguments of a server binary: the flags it knows (each `--NAME`,
/// returned in the order of `flags`, true if given), then what to listen
/// on (see [`Listen`]).
pub fn server_args<const N: usize>(flags: [&str; N]) -> Result<([bool; N], Listen), String> {
    server_args_from(flags, std::env::args().skip(1))
}

fn server_args_from<const N: usize>(
    flags: [&str; N],
    items: impl IntoIterator<Item = String>,
) -> Result<([bool; N], Listen), String> {
    let mut args = args::Args::new(items);
    let set = flags.map(|f| args.take_flag(f));
    let usage = || {
        let f: String = flags.iter().map(|f| format!("[--{f}] ")).collect();
        format!("usage: SERVER {f}[PORT] | --udp [PORT] | --unix PATH (PORT 0 = any free port)")
    };
    let unix = args.take_str("unix")?;
    let udp = args.take_flag("udp");
    let mut rest = args.into_vec();
    if rest.len() > 1 || rest.first().is_some_and(|a| a.starts_with("--")) {
        return Err(usage());
    }
    if let Some(path) = unix {
        if udp || !rest.is_empty() {
            return Err(usage());
        }
        return Ok((set, Listen::Unix(PathBuf::from(path))));
    }
    let port = match rest.pop() {
        None => 0,
        Some(p) => p
            .parse()
            .map_err(|_| format!("invalid port {p:?}; {}", usage()))?,
    };
    Ok((
        set,
        if udp {
            Listen::Udp(port)
        } else {
            Listen::Tcp(port)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(
            parse_ready_line("listening on 127.0.0.1:4242\n"),
            Some(4242)
        );
        assert_eq!(parse_ready_line("listening on 0.0.0.0:4242"), None);
        assert_eq!(parse_ready_line("hello"), None);
        assert_eq!(parse_ready_line("listening on 127.0.0.1:x"), None);
    }

    #[test]
    fn ready_path() {
        assert_eq!(
            parse_ready_path("listening on /tmp/a b.sock\n"),
            Some(PathBuf::from("/tmp/a b.sock"))
        );
        assert_eq!(parse_ready_path("listening on 127.0.0.1:1"), None);
        let l = Listen::Unix("/tmp/x.sock".into());
        assert_eq!(
            parse_ready_path(&l.ready_line(0)),
            Some(PathBuf::from("/tmp/x.sock"))
        );
        assert_eq!(parse_ready_line(&Listen::Udp(0).ready_line(7)), Some(7));
    }

    #[test]
    fn server_arguments() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            server_args_from(["lines"], v(&[])),
            Ok(([false], Listen::Tcp(0)))
        );
        assert_eq!(
            server_args_from(["lines"], v(&["--lines", "80"])),
            Ok(([true], Listen::Tcp(80)))
        );
        assert_eq!(server_args_from([], v(&["80"])), Ok(([], Listen::Tcp(80))));
        assert_eq!(
            server_args_from([], v(&["--udp", "81"])),
            Ok(([], Listen::Udp(81)))
        );
        assert_eq!(
            server_args_from([], v(&["--udp"])),
            Ok(([], Listen::Udp(0)))
        );
        assert_eq!(
            server_args_from([], v(&["--unix", "/tmp/s"])),
            Ok(([], Listen::Unix("/tmp/s".into())))
        );
        for l in [
            Listen::Tcp(5),
            Listen::Udp(6),
            Listen::Unix("/tmp/t.sock".into()),
        ] {
            assert_eq!(server_args_from([], l.to_args()), Ok(([], l.clone())));
        }
        assert!(server_args_from([], v(&["--lines"])).is_err());
        assert!(server_args_from([], v(&["1", "2"])).is_err());
        assert!(server_args_from([], v(&["x"])).is_err());
        assert!(server_args_from([], v(&["--unix"])).is_err());
        assert!(server_args_from([], v(&["--unix", "/tmp/s", "1"])).is_err());
        assert!(server_args_from([], v(&["--unix", "/tmp/s", "--udp"])).is_err());
    }
}
