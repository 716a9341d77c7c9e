//! Loopback benchmarks for `asyncnet`.
//!
//! The crate is a handful of binaries (see `src/bin/`) plus the small modules
//! they share:
//!
//! * [`args`]: a tiny `--key value` parser (no clap).
//! * [`stats`]: latency histogram, medians.
//! * [`procstat`]: CPU time of a process from `/proc/PID/stat`.
//! * [`loadgen`]: the load generator's workloads (plain mio).
//! * [`child`]: child processes pinned with `taskset`, killed on drop, read
//!   line by line with timeouts.
//! * [`peers`]: the servers under comparison.
//! * [`workload`]: what the load generator does, and one measured round of it.
//! * [`report`]: the table printed at the end.
//!
//! Every server ("peer") follows the same contract: it takes the port to bind
//! on 127.0.0.1 as its last argument (0 = any free port), prints exactly
//! `listening on 127.0.0.1:PORT` on stdout once it accepts connections, and
//! echoes every byte it receives on every connection until end of stream.

#![forbid(unsafe_code)]

pub mod args;
pub mod child;
pub mod loadgen;
pub mod peers;
pub mod procstat;
pub mod report;
pub mod stats;
pub mod workload;

/// The line every server prints on stdout once it is ready, followed by
/// `127.0.0.1:PORT`.
pub const READY_PREFIX: &str = "listening on ";

/// Parses the port out of a ready line such as `listening on 127.0.0.1:4242`.
pub fn parse_ready_line(line: &str) -> Option<u16> {
    let addr = line.trim().strip_prefix(READY_PREFIX)?;
    let port = addr.strip_prefix("127.0.0.1:")?;
    port.parse().ok()
}

/// The arguments of a server binary: the flags it knows (each `--NAME`,
/// returned in the order of `flags`, true if given) then an optional port
/// (0, any free port, when absent).
pub fn server_args<const N: usize>(flags: [&str; N]) -> Result<([bool; N], u16), String> {
    server_args_from(flags, std::env::args().skip(1))
}

fn server_args_from<const N: usize>(
    flags: [&str; N],
    items: impl IntoIterator<Item = String>,
) -> Result<([bool; N], u16), String> {
    let mut args = args::Args::new(items);
    let set = flags.map(|f| args.take_flag(f));
    let usage = || {
        let f: String = flags.iter().map(|f| format!("[--{f}] ")).collect();
        format!("usage: SERVER {f}[PORT] (0 = any free port)")
    };
    let mut rest = args.into_vec();
    let port = match rest.len() {
        0 => 0,
        1 => {
            let p = rest.remove(0);
            p.parse()
                .map_err(|_| format!("invalid port {p:?}; {}", usage()))?
        }
        _ => return Err(usage()),
    };
    Ok((set, port))
}

/// The port argument of a server binary that takes no flags.
pub fn server_port_arg() -> Result<u16, String> {
    server_args([]).map(|(_, port)| port)
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
    fn server_arguments() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(server_args_from(["lines"], v(&[])), Ok(([false], 0)));
        assert_eq!(
            server_args_from(["lines"], v(&["--lines", "80"])),
            Ok(([true], 80))
        );
        assert_eq!(server_args_from([], v(&["80"])), Ok(([], 80)));
        assert!(server_args_from([], v(&["--lines"])).is_err());
        assert!(server_args_from([], v(&["1", "2"])).is_err());
        assert!(server_args_from([], v(&["x"])).is_err());
    }
}
