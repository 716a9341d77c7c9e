//! The suite's workloads: one function each, returning its rows (and, when
//! the system call pass is on, its system call rows).
//!
//! To add one: write `fn NAME(ctx: &Ctx) -> Part` (usually a call to
//! [`Ctx::interleave`] with a closure that runs one round against one peer
//! and returns a [`Sample`]) and list it in [`WORKLOADS`].

use std::collections::HashMap;
use std::io;
use std::path::Path;

use crate::peers::{Peer, PONG_FLAG};
use crate::suite::table;
use crate::suite::{Ctx, Part, Sample, SyscallRow};
use crate::syscalls::{self, Profile};
use crate::tls;
use crate::tls::certs::IdentityFiles;
use crate::workload::{self, Workload};
use crate::{extpeers, http, idle, loadgen, ping, rlimit};

/// A workload function.
pub type Run = fn(&Ctx) -> Part;

/// Every workload, in the order of the table: the name `--only` takes, what
/// it is (for the progress output), and its function.
pub const WORKLOADS: &[(&str, &str, Run)] = &[
    (
        "echo",
        "TCP echo ping-pong, 64-byte messages, at each connection count",
        echo,
    ),
    (
        "bulk",
        "TCP bulk stream through an echo server, one connection",
        bulk_stream,
    ),
    (
        "ping",
        "Redis inline PING, redis-benchmark -c 50, pipelining 1 and 16",
        ping_inline,
    ),
    ("udp", "UDP echo, 64-byte datagrams, 32 sockets", udp),
    (
        "unix",
        "Unix stream echo ping-pong, 64-byte messages, 50 connections",
        unix,
    ),
    (
        "http",
        "HTTP/1.1 keep-alive hello world, wrk -t1 -c50",
        http_hello,
    ),
    (
        "tls",
        "TLS echo (1 KiB, 50 connections) and TLS handshakes",
        tls,
    ),
    ("idle", "server memory per idle TCP connection", idle_memory),
];

/// Every peer name some workload runs, for checking `--peers`.
pub fn known_peers() -> Vec<String> {
    let tls = tls::peers(Path::new(""), Path::new(""));
    let mut names = Vec::new();
    for p in crate::peers::all()
        .into_iter()
        .chain(tls)
        .chain(http::peers())
    {
        if !names.contains(&p.name) {
            names.push(p.name);
        }
    }
    names
}

/// The byte-echo servers over TCP (`asyncnet-uring` and `c-uring`: the io_uring ones; the
/// `-again` ones: the A/A controls, [`crate::peers::CONTROLS`], and the
/// [`crate::peers::BUFFER_PEERS`] run only if named).
const STREAM_PEERS: [&str; 13] = [
    "asyncnet",
    "tokio",
    "tokio-tuned",
    "tokio-mt",
    "asyncnet-tpc",
    "nim",
    "c-floor",
    "c-floor-again",
    "asyncnet-recv",
    "c-floor-buffers",
    "asyncnet-uring",
    "c-uring",
    "c-uring-again",
];
/// Those that also serve Unix stream sockets (all but the multi-threaded ones' `SO_REUSEPORT`
/// server, `asyncnet-tpc`, which is TCP only, and Nim's).
const UNIX_PEERS: [&str; 11] = [
    "asyncnet",
    "tokio",
    "tokio-tuned",
    "tokio-mt",
    "c-floor",
    "c-floor-again",
    "asyncnet-recv",
    "c-floor-buffers",
    "asyncnet-uring",
    "c-uring",
    "c-uring-again",
];
/// Those that serve UDP (`tokio-tuned` serves it as `tokio` does).
const UDP_PEERS: [&str; 4] = ["asyncnet", "tokio", "tokio-mt", "asyncnet-uring"];
/// Memory per idle connection: the byte echoes and the line server. Not
/// `c-uring`: its resident memory is its shared pool of provided buffers
/// (32 MiB, handed out in ring order, so every message received touches
/// the next page until the ring wraps), which grows with messages, not
/// connections: `idle c1000` would show about 4 KB per connection that no
/// connection holds.
const IDLE_PEERS: [&str; 9] = [
    "asyncnet",
    "asyncnet-lines",
    "tokio",
    "tokio-tuned",
    "tokio-mt",
    "nim",
    "c-floor",
    "asyncnet-uring",
    "asyncnet-lines-uring",
];

/// The `http` row's servers (of [`http::peers`], the same names as the echo
/// servers but HTTP programs), and its reference: its server on tokio.
const HTTP_PEERS: [&str; 4] = ["asyncnet", "hyper", "nim", "c-floor"];
const HTTP_REFERENCE: &str = "hyper";

/// Message size of the echo, UDP and Unix rows.
const SIZE: usize = 64;
/// Connections of the Unix row, clients of the ping rows.
const CONNS: usize = 50;
/// The bursty echo row (`loadgen --workload burst`): connections, messages per burst, mean
/// think time in ms. 1,000 clients each sending 8 messages about every 100 ms ask for about
/// 80,000 messages a second, about half of what a server and the load generator sustain
/// together here: each connection is quiet most of the time, and the server sleeps between
/// bursts.
const BURST: (usize, usize, usize) = (1000, 8, 100);
/// Sockets of the UDP row.
const UDP_SOCKS: usize = 32;
/// `redis-benchmark` requests per second of window: about what the slower
/// servers do without pipelining, and with `-P 16` when they write once per
/// reply.
const PING_RATE: [f64; 2] = [80_000.0, 200_000.0];

/// The system call pass of one workload: `trace` once per peer (a
/// failure is a note and an error).
pub fn trace_each(
    ctx: &Ctx,
    workload: &str,
    unit: &str,
    peers: &[Peer],
    mut trace: impl FnMut(&Peer) -> io::Result<Profile>,
) -> Part {
    let mut part = Part::default();
    for p in peers {
        match trace(p) {
            Ok(profile) => {
                let row = SyscallRow {
                    workload: workload.to_string(),
                    peer: p.name.clone(),
                    unit: unit.to_string(),
                    profile,
                };
                ctx.say(&format!(
                    "  syscalls {}",
                    table::syscall_cells(&row).join(" ")
                ));
                part.syscalls.push(row);
            }
            Err(e) => {
                let note = format!("{workload}, {}: system call pass: error: {e}", p.name);
                part.extend(Part::error(note));
            }
        }
    }
    part
}

/// A `loadgen` workload as one row per peer, then its system call pass if
/// it is on and the workload has a fixed-size mode (`fixed`: stream echo
/// and bulk).
fn rows(ctx: &Ctx, label: &str, unit: &str, work: &Workload, peers: &[Peer], fixed: bool) -> Part {
    let mut part = ctx.interleave(label, unit, peers, |p| {
        workload::run_round(p, work, &ctx.cfg)
    });
    match &ctx.trace {
        Some(_) if !fixed => part.notes.push(format!(
            "{label}: no system call pass (its load generator has no fixed-size mode)"
        )),
        Some(t) => part.extend(trace_each(ctx, label, unit, peers, |p| {
            let count = if work.bulk { t.bulk_bytes } else { t.requests };
            syscalls::trace_loadgen(p, work, count, &ctx.cfg)
        })),
        None => {}
    }
    part
}

/// `echo64 c1` ... `c5000`: TCP ping-pong, 64-byte messages; then `echo64 burst8 c1000`:
/// the same servers under connections that send bursts and think in between
/// (`loadgen --workload burst`).
fn echo(ctx: &Ctx) -> Part {
    let peers = ctx.pick(&STREAM_PEERS, &ctx.peers);
    let mut part = Part::default();
    for &conns in &ctx.echo_conns {
        let label = format!("echo{SIZE} c{conns}");
        if let Err(e) = rlimit::ensure_nofile(conns) {
            part.extend(Part::error(format!("{label}: skipped: {e}")));
            continue;
        }
        let work = Workload::new("echo", &[("size", SIZE), ("conns", conns)]);
        part.extend(rows(ctx, &label, "round trip", &work, &peers, true));
    }
    if ctx.echo_burst {
        let (conns, burst, think_ms) = BURST;
        let label = format!("echo{SIZE} burst{burst} c{conns}");
        match rlimit::ensure_nofile(conns) {
            Err(e) => part.extend(Part::error(format!("{label}: skipped: {e}"))),
            Ok(_) => {
                let work = Workload::new(
                    "burst",
                    &[
                        ("size", SIZE),
                        ("conns", conns),
                        ("burst", burst),
                        ("think-ms", think_ms),
                    ],
                );
                part.extend(rows(ctx, &label, "round trip", &work, &peers, true));
            }
        }
    }
    part
}

/// `unix`: the same ping-pong over a Unix stream socket, 50 connections.
fn unix(ctx: &Ctx) -> Part {
    let work = Workload::new("unix", &[("size", SIZE), ("conns", CONNS)]);
    let label = format!("unix{SIZE} c{CONNS}");
    let mut part = rows(
        ctx,
        &label,
        "round trip",
        &work,
        &ctx.pick(&UNIX_PEERS, &ctx.peers),
        true,
    );
    part.notes
        .push("unix: nim and asyncnet-tpc serve TCP only".to_string());
    part
}

/// `udp`: 32 sockets, one 64-byte datagram in flight each.
fn udp(ctx: &Ctx) -> Part {
    let work = Workload::new("udp", &[("size", SIZE), ("conns", UDP_SOCKS)]);
    let label = format!("udp{SIZE} s{UDP_SOCKS}");
    let mut part = rows(
        ctx,
        &label,
        "round trip",
        &work,
        &ctx.pick(&UDP_PEERS, &ctx.peers),
        false,
    );
    part.notes.push(
        "udp: nim, c-floor and c-uring serve no UDP; tokio-tuned serves UDP as tokio does".into(),
    );
    part
}

/// `bulk`: one connection streaming through each byte-echo peer.
fn bulk_stream(ctx: &Ctx) -> Part {
    let args = [("chunk", loadgen::CHUNK), ("in-flight", loadgen::IN_FLIGHT)];
    let work = Workload::new("bulk", &args);
    rows(
        ctx,
        "bulk",
        "MB",
        &work,
        &ctx.pick(&STREAM_PEERS, &ctx.peers),
        true,
    )
}

/// Requests of a `redis-benchmark` run at pipeline depth index `i` for a
/// window of `secs`: from `rate`, the peer's requests per second in its
/// last round, where there was one. `redis-benchmark` runs for a count, not
/// a time, and the fast servers do several times `PING_RATE` at `-P 16`:
/// sized by it alone, their windows lasted a second or two, and a window
/// that short reads few CPU clock ticks (`user µs` often read 0). Never
/// fewer than `PING_RATE` gives, so a slow server's window stays as long.
pub fn ping_requests(i: usize, secs: f64, rate: Option<f64>) -> u64 {
    let rate = rate.map_or(PING_RATE[i], |r| r.max(PING_RATE[i]));
    ((rate * secs) as u64).max(1000)
}

/// `ping P1`, `ping P16`: Redis inline PING with `redis-benchmark`.
fn ping_inline(ctx: &Ctx) -> Part {
    let mut part = Part::default();
    if !extpeers::probe(ping::TOOL, &["--version"]).is_some_and(|(ok, _)| ok) {
        part.notes.push(format!(
            "ping: skipped: `{}` not found or not working (package redis-tools)",
            ping::TOOL
        ));
        return part;
    }
    let peers = ctx.pick(&STREAM_PEERS, &ctx.peers);
    for (i, pipeline) in ping::PIPELINES.into_iter().enumerate() {
        let label = format!("ping P{pipeline}");
        // Each peer's requests per second in its last round.
        let mut rates: HashMap<String, f64> = HashMap::new();
        part.extend(ctx.interleave(&label, "request", &peers, |p| {
            let requests = ping_requests(i, ctx.cfg.secs, rates.get(&p.name).copied());
            let s = ping::run_round(p, pipeline, requests, CONNS, &ctx.cfg)?;
            if let Some(r) = s.rate {
                rates.insert(p.name.clone(), r);
            }
            Ok(s)
        }));
        if let Some(t) = &ctx.trace {
            // Its 50 connections' setup is counted too: more requests make that
            // negligible where the server makes few calls per request.
            let n = t.requests * if pipeline > 1 { 10 } else { 2 };
            part.extend(trace_each(ctx, &label, "request", &peers, |p| {
                syscalls::traced(p, &[PONG_FLAG], &ctx.cfg, |port| {
                    ping::run_bench(port, CONNS, n, pipeline, &ctx.cfg)?;
                    Ok(n as f64)
                })
            }));
        }
    }
    part
}

/// `http c50`: HTTP/1.1 keep-alive hello world driven by `wrk`, against
/// hyper (the HTTP server on tokio) rather than tokio; skipped with a note
/// without `wrk`. Its system call pass is a short fixed-length wrk run per
/// peer, divided by wrk's request count ([`http::trace_round`]).
fn http_hello(ctx: &Ctx) -> Part {
    let conns = http::CONNS;
    let label = format!("http c{conns}");
    let peers = ctx.pick(&HTTP_PEERS, &ctx.http_peers);
    let tool = http::tool_available();
    if !tool || peers.is_empty() {
        // Its servers are built only where `wrk` was there when the run started: one that
        // came in later finds none (nor does a `--peers` naming none of them).
        let why = if tool {
            format!(
                "none of its servers ({}) was selected and built for this run (`--peers` \
                 names none of them, or `{}` was missing when the run started)",
                HTTP_PEERS.join(", "),
                http::TOOL
            )
        } else {
            format!("`{}` not found or not working (package wrk)", http::TOOL)
        };
        return Part {
            notes: vec![format!("http: skipped: {why}")],
            ..Part::default()
        };
    }
    let mut part = ctx.interleave(&label, "request", &peers, |p| {
        http::run_round(p, conns, &ctx.cfg)
    });
    part = part.against(HTTP_REFERENCE);
    if ctx.trace.is_some() {
        part.extend(trace_each(ctx, &label, "request", &peers, |p| {
            http::trace_round(p, conns, http::TRACE_SECS, &ctx.cfg)
        }));
    }
    part
}

/// `tls echo` and `tls handshake`: TLS echo ping-pong and handshakes, asyncnet against tokio
/// (tokio-rustls); `asyncnet-accept` only if `--peers` names it.
fn tls(ctx: &Ctx) -> Part {
    let files = match IdentityFiles::generate() {
        Ok(files) => files,
        Err(e) => return Part::error(format!("tls: skipped: {e}")),
    };
    let peers: Vec<Peer> = tls::peers(&files.cert, &files.key)
        .into_iter()
        .filter(|p| ctx.wants(&p.name))
        .collect();
    let echo = tls::workload(Some(1024), CONNS, &files.cert);
    let mut part = rows(ctx, "tls echo 1K c50", "round trip", &echo, &peers, false);
    let handshake = tls::workload(None, 16, &files.cert);
    part.extend(rows(
        ctx,
        "tls handshake",
        "handshake",
        &handshake,
        &peers,
        false,
    ));
    part
}

/// `idle`: KB of server memory per idle connection.
fn idle_memory(ctx: &Ctx) -> Part {
    let conns = ctx.idle_conns;
    let label = format!("idle c{conns}");
    if let Err(e) = rlimit::ensure_nofile(conns) {
        return Part::error(format!("{label}: skipped: {e}"));
    }
    let peers = ctx.pick(&IDLE_PEERS, &ctx.peers);
    ctx.interleave(&label, "connection", &peers, |p| {
        Ok(Sample::memory(idle::run_round(p, conns, &ctx.cfg)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_are_unique_and_peers_known() {
        let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKLOADS.len());
        for p in [&STREAM_PEERS[..], &UNIX_PEERS, &UDP_PEERS, &IDLE_PEERS].concat() {
            assert_eq!(crate::peers::named(&[p]).len(), 1, "{p}");
        }
        // The http row's peers are the http workload's, its reference among
        // them, and `--peers` knows them all, once each.
        let http_peers: Vec<String> = http::peers().into_iter().map(|p| p.name).collect();
        assert!(http_peers == HTTP_PEERS && HTTP_PEERS.contains(&HTTP_REFERENCE));
        let mut known = known_peers();
        let all = HTTP_PEERS
            .iter()
            .chain(&IDLE_PEERS)
            .chain(&["asyncnet-accept"]);
        assert!(
            all.clone().all(|p| known.contains(&p.to_string())),
            "{known:?}"
        );
        let n = known.len();
        known.sort();
        known.dedup();
        assert_eq!(known.len(), n);
    }

    #[test]
    fn ping_requests_scale_with_the_window() {
        assert_eq!(ping_requests(0, 5.0, None), 400_000);
        assert_eq!(ping_requests(1, 5.0, None), 1_000_000);
        assert_eq!(ping_requests(0, 0.001, None), 1000);
    }

    #[test]
    fn ping_requests_follow_a_fast_peers_last_round_and_never_shrink() {
        assert_eq!(ping_requests(1, 5.0, Some(800_000.0)), 4_000_000);
        // Slower than the default rate: the default count, not a shorter window.
        assert_eq!(ping_requests(1, 5.0, Some(100_000.0)), 1_000_000);
        assert_eq!(ping_requests(0, 5.0, Some(30_000.0)), 400_000);
    }
}
