//! The `ping` workload: the Redis inline PING line protocol, driven by
//! `redis-benchmark` (package `redis-tools`), not by our load generator.
//!
//! Per round, peer and pipeline depth: start the peer in its `--pong` mode
//! (every line received gets a `+PONG\r\n`), read its CPU time from
//! `/proc/PID/stat`, run `redis-benchmark -h 127.0.0.1 -p PORT -t ping_inline
//! -c CONNS -n N -P DEPTH -q` to completion, read the server's CPU time again,
//! kill the server. Requests/s is what `redis-benchmark` prints
//! (`PING_INLINE: N requests per second`); server CPU per request is the CPU
//! time between the two readings over N (it includes connecting the clients,
//! a negligible part).

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::{Peer, PONG_FLAG};
use crate::procstat::CpuTicks;
use crate::suite::Sample;
use crate::workload::{self, RoundConfig};
use crate::Listen;

/// The load generator of this workload.
pub const TOOL: &str = "redis-benchmark";
/// Pipeline depths run, in this order, per round and peer.
pub const PIPELINES: [usize; 2] = [1, 16];
/// Longest a `redis-benchmark` run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The requests per second of `redis-benchmark -q` output such as
/// `PING_INLINE: rps=0.0 (overall: nan) avg_msec=nan\rPING_INLINE: 100857.28
/// requests per second, p50=0.255 msec` (progress lines end in `\r`).
pub fn parse_rps(line: &str) -> Option<f64> {
    let last = line.rsplit('\r').find(|s| !s.trim().is_empty())?;
    let rest = last.trim().strip_prefix("PING_INLINE: ")?;
    let (n, _) = rest.split_once(" requests per second")?;
    n.trim().parse().ok()
}

/// The `redis-benchmark` arguments of one run against 127.0.0.1:`port`:
/// `conns` clients, `requests` requests in all, `pipeline` in flight per
/// client, quiet output.
pub fn bench_args(port: &str, conns: usize, requests: u64, pipeline: usize) -> Vec<String> {
    let args =
        format!("-h 127.0.0.1 -p {port} -t ping_inline -c {conns} -n {requests} -P {pipeline} -q");
    args.split(' ').map(String::from).collect()
}

/// One run against `peer`: every process started here is killed before this
/// returns, on success, error or panic.
pub fn run_round(
    peer: &Peer,
    pipeline: usize,
    requests: u64,
    conns: usize,
    cfg: &RoundConfig,
) -> io::Result<Sample> {
    let workload::Server {
        process: mut server,
        port,
        ..
    } = workload::start_server(peer, &Listen::Tcp(0), cfg, &[PONG_FLAG])?;
    let (s0, t0) = (CpuTicks::of(server.pid())?, Instant::now());
    let (rps, tool_cpu) = run_bench(port, conns, requests, pipeline, cfg)?;
    let (s1, t1) = (CpuTicks::of(server.pid())?, Instant::now());
    server.stop()?;
    let s = Sample::measured(
        rps,
        requests as f64,
        (t1 - t0).as_secs_f64(),
        s1.secs_since(s0),
    );
    Ok(match tool_cpu {
        Some(cpu) => s.with_loadgen(cpu, requests as f64),
        None => s,
    })
}

/// One `redis-benchmark` run (see [`bench_args`]) to its end: its requests per second, and
/// its CPU time (user, system) over its life, read as it prints its result (none if it
/// was gone by then).
pub fn run_bench(
    port: u16,
    conns: usize,
    requests: u64,
    pipeline: usize,
    cfg: &RoundConfig,
) -> io::Result<(f64, Option<(f64, f64)>)> {
    let args = bench_args(&port.to_string(), conns, requests, pipeline);
    // Its stderr only says it could not fetch the server's CONFIG: dropped.
    let (stdin, stderr) = (Stdio::null(), Stdio::null());
    let mut bench =
        Spawned::start_with(TOOL, Path::new(TOOL), &args, cfg.loadgen_cpu, stdin, stderr)?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let rps = bench.wait_for_line(deadline, parse_rps)?;
    let cpu = CpuTicks::of(bench.pid())
        .ok()
        .map(|t| t.secs_since(CpuTicks::default()));
    bench.finish(deadline, "")?;
    Ok((rps, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quiet_output() {
        let line = "PING_INLINE: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                    PING_INLINE: 100857.28 requests per second, p50=0.255 msec";
        assert_eq!(parse_rps(line), Some(100857.28));
        assert_eq!(
            parse_rps("PING_INLINE: 64516.13 requests per second\r  "),
            Some(64516.13)
        );
        assert_eq!(parse_rps("PING_INLINE: rps=12.0 (overall: 3.0)"), None);
        assert_eq!(parse_rps("WARNING: Could not fetch server CONFIG"), None);
    }

    #[test]
    fn arguments() {
        assert_eq!(
            bench_args("7", 50, 1000, 16).join(" "),
            "-h 127.0.0.1 -p 7 -t ping_inline -c 50 -n 1000 -P 16 -q"
        );
    }
}
