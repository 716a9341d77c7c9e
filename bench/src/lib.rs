//! Loopback benchmarks for `asyncnet`.
//!
//! The crate is a handful of binaries (see `src/bin/`) plus the small modules
//! they share:
//!
//! * [`procstat`]: CPU time of a process from `/proc/PID/stat`.
//! * [`loadgen`]: the load generator's workloads (plain mio).
//! * [`child`]: child processes pinned with `taskset`, killed on drop, read
//!   line by line with timeouts.
//! * [`peers`]: the servers under comparison.
//! * [`extpeers`]: the peers built at run time from `peers/` (Nim, C).
//! * [`idle`]: the `idle` workload (server memory per idle connection).
//! * [`ping`]: the `ping` workload (Redis inline PING, `redis-benchmark`).
//! * [`http`]: the `http` workload (HTTP/1.1 keep-alive hello world, `wrk`).
//! * [`rlimit`]: raising `RLIMIT_NOFILE`.
//! * [`reliability`]: load and soak (`bench --c10k`, `bench --soak`).
//! * [`workload`]: what the load generator does, and one measured round of it.
//! * [`syscalls`]: system calls per operation, by name (`strace -c -f`).
//! * [`suite`]: the suite (the `bench` front end): every workload, one table,
//!   `BENCHMARKS.md` and its SVG chart.
//! * [`tls`]: the TLS workloads: certificates, their load generator
//!   (mio + rustls) and one round.
//!
//! Every server ("peer") follows the same contract: it takes what to listen
//! on as its last arguments ([`Listen`]: `PORT` for TCP on 127.0.0.1,
//! `--udp PORT`, `--unix PATH`; port 0 = any free one), prints exactly
//! `listening on 127.0.0.1:PORT` (or `listening on PATH`) on stdout once it
//! is ready, and echoes every byte it receives on every connection until
//! end of stream (UDP: every datagram back to its sender). The `http`
//! workload's peers serve HTTP instead of echoing (see [`http`]).

#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod child;
pub mod extpeers;
pub mod http;
pub mod idle;
pub mod loadgen;
pub mod peers;
pub mod ping;
pub mod procstat;
pub mod reliability;
pub mod rlimit;
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
    /// The server arguments that select this (what [`ListenArgs`] parses).
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

/// Errors a UDP socket may report for an earlier datagram (an ICMP error
/// from a client that went away): not the server's problem.
pub fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionReset)
}

/// What a server listens on, as its command line says it (clap: flatten it
/// into the server's own arguments): `[PORT] | --udp [PORT] | --unix PATH`.
#[derive(clap::Args, Clone, Debug)]
pub struct ListenArgs {
    /// TCP (or with --udp, UDP) port on 127.0.0.1; 0 or none: any free one
    #[arg(default_value_t = 0)]
    port: u16,
    /// Serve UDP instead of TCP
    #[arg(long, conflicts_with = "unix")]
    udp: bool,
    /// Serve a Unix stream socket at PATH
    #[arg(long, value_name = "PATH", conflicts_with = "port")]
    unix: Option<PathBuf>,
}

impl ListenArgs {
    pub fn listen(&self) -> Listen {
        match (&self.unix, self.udp) {
            (Some(path), _) => Listen::Unix(path.clone()),
            (None, true) => Listen::Udp(self.port),
            (None, false) => Listen::Tcp(self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Server {
        #[arg(long)]
        lines: bool,
        #[command(flatten)]
        listen: ListenArgs,
    }

    #[test]
    fn ready_lines_and_listen_arguments_round_trip() {
        assert_eq!(
            parse_ready_line("listening on 127.0.0.1:4242\n"),
            Some(4242)
        );
        for bad in [
            "listening on 0.0.0.0:4242",
            "hello",
            "listening on 127.0.0.1:x",
        ] {
            assert_eq!(parse_ready_line(bad), None, "{bad:?}");
        }
        let parse =
            |a: &[&str]| Server::try_parse_from(std::iter::once("s").chain(a.iter().copied()));
        for l in [
            Listen::Tcp(5),
            Listen::Udp(6),
            Listen::Unix("/tmp/a b.sock".into()),
        ] {
            let args = l.to_args();
            let got = parse(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
            assert_eq!(got.listen.listen(), l);
            let port = parse_ready_line(&l.ready_line(7));
            assert_eq!(port, (!matches!(l, Listen::Unix(_))).then_some(7));
        }
        let s = parse(&["--lines"]).unwrap();
        assert!(s.lines && s.listen.listen() == Listen::Tcp(0));
        assert_eq!(parse(&["--udp"]).unwrap().listen.listen(), Listen::Udp(0));
        for bad in [
            &["1", "2"][..],
            &["x"],
            &["--unix"],
            &["--unix", "/tmp/s", "1"],
            &["--unix", "/tmp/s", "--udp"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
