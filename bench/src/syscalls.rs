//! System calls per operation, by name: the optional pass that runs each
//! peer once more under `strace -c -f` (whenever `strace` is installed and
//! may attach, unless `bench --no-syscalls`).
//!
//! `strace` is attached to the server (`strace -c -f -q -o FILE -p PID`:
//! all its threads, and any it starts) only once the server is ready and
//! the load generator has done its warm-up, and the counting ends when the
//! server is killed, before the load generator closes anything:
//!
//! ```text
//! server:   start, ready ........ traced ......................... killed
//! loadgen:       connect, warm-up | measure-start | N ops | measure-end | exit
//! strace:                  attach ^   (go)                    summary ^
//! ```
//!
//! With `loadgen --count N --pause` every connection is quiet at both
//! edges, so the counts are those of exactly N round trips (bulk: N bytes).
//! `redis-benchmark` has no such pause: for `ping` the counts also hold the
//! 50 connections' accept, setup and close (a few calls each, amortized
//! over the requests). `strace` slows the server by an order of magnitude:
//! only the counts are used, never the times.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::Spawned;
use crate::peers::Peer;
use crate::procstat::status_field;
use crate::workload::{self, field, loadgen_path, parse_kv, RoundConfig, Workload};
use crate::Listen;

/// The tracer.
pub const TOOL: &str = "strace";
/// How long attaching may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a traced run may take (the server runs many times slower).
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(300);

/// System calls that read from a socket.
pub const READS: [&str; 5] = ["read", "recvfrom", "recvmsg", "readv", "recvmmsg"];
/// System calls that write to a socket.
pub const WRITES: [&str; 5] = ["write", "sendto", "sendmsg", "writev", "sendmmsg"];
/// Waiting for readiness.
pub const WAITS: [&str; 3] = ["epoll_wait", "epoll_pwait", "epoll_pwait2"];
/// Changing the interest set.
pub const CTLS: [&str; 1] = ["epoll_ctl"];
/// Submitting to and waiting on an io_uring: the io_uring servers' kernel
/// entries (their reads and writes are requests on the ring, not calls).
pub const ENTERS: [&str; 1] = ["io_uring_enter"];

/// One line of the `strace -c` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
}

/// Parses the table that `strace -c` writes:
///
/// ```text
/// % time     seconds  usecs/call     calls    errors syscall
/// ------ ----------- ----------- --------- --------- ----------------
///  51.98    0.064675          23      2795           sendto
///   8.47    0.010536          23       442        96 futex
/// ------ ----------- ----------- --------- --------- ----------------
/// 100.00    0.124418          18      6730        97 total
/// ```
///
/// The `errors` column is blank when there were none. Returns the rows
/// without the `total` line, which must be there and must match their sum
/// (a truncated file is an error, not a smaller count). `strace` writes
/// nothing at all when it counted no call: an empty text is no rows.
pub fn parse_summary(text: &str) -> Result<Vec<Count>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let mut total = None;
    let table = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("% time"));
    for line in table.skip(1) {
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let (name, numbers) = words.split_last().ok_or("empty line")?;
        let parse = |w: &str| {
            w.parse::<u64>()
                .map_err(|_| format!("unexpected strace -c line {line:?}"))
        };
        // % time, seconds, usecs/call, calls [, errors].
        let (calls, errors) = match numbers {
            [_, _, _, calls] => (parse(calls)?, 0),
            [_, _, _, calls, errors] => (parse(calls)?, parse(errors)?),
            _ => return Err(format!("unexpected strace -c line {line:?}")),
        };
        let name = name.to_string();
        match name.as_str() {
            "total" => total = Some(calls),
            _ => rows.push(Count {
                name,
                calls,
                errors,
            }),
        }
    }
    let total = total.ok_or("no `total` line in the strace -c output")?;
    let sum: u64 = rows.iter().map(|c| c.calls).sum();
    if sum != total {
        return Err(format!(
            "strace -c rows add up to {sum} calls, its total says {total}"
        ));
    }
    Ok(rows)
}

/// System calls per operation of one traced run.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Operations the counts are divided by.
    pub ops: f64,
    /// Reads (`read`, `recvfrom`, ...) per op, and those of them that
    /// failed (`EAGAIN`: a read that found nothing).
    pub read: f64,
    pub read_errors: f64,
    /// Writes (`write`, `sendto`, `sendmsg`, `writev`, ...) per op.
    pub write: f64,
    pub epoll_wait: f64,
    pub epoll_ctl: f64,
    /// `io_uring_enter` per op.
    pub uring_enter: f64,
    /// Every system call per op.
    pub total: f64,
    /// The most frequent calls outside the four groups, per op, most first
    /// (e.g. `futex` of a multi-threaded runtime).
    pub others: Vec<(String, f64)>,
}

impl Profile {
    /// The profile of `counts` over `ops` operations.
    pub fn new(counts: &[Count], ops: f64) -> Profile {
        let per = |names: &[&str], f: fn(&Count) -> u64| {
            counts
                .iter()
                .filter(|c| names.contains(&c.name.as_str()))
                .map(f)
                .sum::<u64>() as f64
                / ops
        };
        let grouped = [&READS[..], &WRITES, &WAITS, &CTLS, &ENTERS].concat();
        let mut others: Vec<(String, f64)> = counts
            .iter()
            .filter(|c| !grouped.contains(&c.name.as_str()))
            .map(|c| (c.name.clone(), c.calls as f64 / ops))
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Profile {
            ops,
            read: per(&READS, |c| c.calls),
            read_errors: per(&READS, |c| c.errors),
            write: per(&WRITES, |c| c.calls),
            epoll_wait: per(&WAITS, |c| c.calls),
            epoll_ctl: per(&CTLS, |c| c.calls),
            uring_enter: per(&ENTERS, |c| c.calls),
            total: counts.iter().map(|c| c.calls).sum::<u64>() as f64 / ops,
            others,
        }
    }

    /// The largest of `others` (at most `n`), as `futex 0.07, close 0.01`.
    pub fn others_text(&self, n: usize) -> String {
        let top = self.others.iter().take(n);
        top.map(|(name, per)| format!("{name} {per:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Settings of the pass (`bench --syscall-requests`, `--syscall-mb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// Round trips (or requests) per traced run.
    pub requests: u64,
    /// Bytes per traced bulk run.
    pub bulk_bytes: u64,
}

/// `strace -c -f` attached to a running process.
pub struct Tracer {
    strace: Spawned,
    /// Its summary (`-o`) and its stderr, removed when dropped.
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

impl Tracer {
    /// Attaches to every thread of process `pid` and returns once all are
    /// traced (the `TracerPid` of each in `/proc`). Fails if `strace` may
    /// not attach (e.g. `kernel.yama.ptrace_scope` 1 or more, for a user
    /// who is not root), with what `strace` said.
    pub fn attach(pid: u32) -> io::Result<Tracer> {
        let out = tempfile::NamedTempFile::new()?;
        let err = tempfile::NamedTempFile::new()?;
        let (o, p) = (out.path().display().to_string(), pid.to_string());
        let args = ["-c", "-f", "-q", "-o", &o, "-p", &p].map(String::from);
        let strace = Spawned::start_with(
            TOOL,
            Path::new(TOOL),
            &args,
            None,
            Stdio::null(),
            Stdio::from(err.reopen()?),
        )?;
        let mut t = Tracer { strace, out, err };
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            if let Some(s) = t.strace.try_wait()? {
                return Err(io::Error::other(format!(
                    "{TOOL} -p {pid} exited ({s}): {}",
                    t.stderr()
                )));
            }
            if all_traced_by(pid, t.strace.pid())? {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{TOOL} did not attach to {pid} in time: {}", t.stderr()),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.err.path())
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Once the traced process is gone (killed by the caller): waits for
    /// `strace` to write its summary and exit, and parses it.
    pub fn finish(mut self, deadline: Instant) -> io::Result<Vec<Count>> {
        let said = format!(": {}", self.stderr());
        self.strace.finish(deadline, &said)?;
        let text = std::fs::read_to_string(self.out.path())?;
        parse_summary(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// True if every thread of `pid` is traced by `tracer`.
fn all_traced_by(pid: u32, tracer: u32) -> io::Result<bool> {
    let mut any = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = match std::fs::read_to_string(task?.path().join("status")) {
            Ok(s) => s,
            // A thread that just ended.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if status_field(&status, "TracerPid:") != Some(u64::from(tracer)) {
            return Ok(false);
        }
        any = true;
    }
    Ok(any)
}

/// One traced fixed-size run of a `loadgen` workload (`echo`, `unix` or
/// `bulk`) against `peer`: `count` round trips (bulk: bytes, the counts then
/// per MB).
pub fn trace_loadgen(
    peer: &Peer,
    work: &Workload,
    count: u64,
    cfg: &RoundConfig,
) -> io::Result<Profile> {
    let loadgen = loadgen_path(cfg)?;
    let mut server = workload::start_server(peer, &work.listen, cfg, &[])?;
    let mut args = work.loadgen_args.clone();
    args.extend(server.target.iter().cloned());
    args.extend(["--count".into(), count.to_string(), "--pause".into()]);
    let mut lg = Spawned::start_with(
        "loadgen",
        &loadgen,
        &args,
        cfg.loadgen_cpu,
        Stdio::piped(),
        Stdio::inherit(),
    )?;
    let deadline = Instant::now() + TRACE_TIMEOUT;
    let line = |want: &'static str| move |l: &str| (l.trim() == want).then_some(());
    lg.wait_for_line(deadline, line("measure-start"))?;
    let tracer = Tracer::attach(server.process.pid())?;
    lg.send_line("go")?;
    lg.wait_for_line(deadline, line("measure-end"))?;
    server.process.stop()?;
    let counts = tracer.finish(deadline)?;
    lg.send_line("go")?;
    let result = lg.wait_for_line(deadline, |l| {
        l.starts_with("result ").then(|| l.to_string())
    })?;
    let kv = parse_kv(&result);
    // Bulk counts bytes, the others round trips.
    let done: u64 = field(&kv, "ops")?;
    if done != count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("loadgen did {done} operations, not {count}"),
        ));
    }
    let ops = if work.bulk {
        count as f64 / 1e6
    } else {
        count as f64
    };
    Ok(Profile::new(&counts, ops))
}

/// One traced run of a tool against `peer`'s TCP server (started with `flags`):
/// `strace` attached once the server is ready, then `run(port)`, which returns the
/// operations it did; the counts are divided by them.
pub fn traced(
    peer: &Peer,
    flags: &[&str],
    cfg: &RoundConfig,
    run: impl FnOnce(u16) -> io::Result<f64>,
) -> io::Result<Profile> {
    let mut server = workload::start_server(peer, &Listen::Tcp(0), cfg, flags)?;
    let tracer = Tracer::attach(server.process.pid())?;
    let ops = run(server.port)?;
    server.process.stop()?;
    let counts = tracer.finish(Instant::now() + TRACE_TIMEOUT)?;
    Ok(Profile::new(&counts, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `strace -c -f -q -o FILE -p PID` attached to `echo_tokio
    /// --multi-thread` (three threads) during a short `loadgen` run of 5
    /// connections, the server then killed.
    const SAMPLE: &str = include_str!("../testdata/strace-c-tokio-mt.txt");

    #[test]
    fn parses_a_real_summary() {
        let counts = parse_summary(SAMPLE).unwrap();
        assert_eq!(counts.len(), 9);
        let get = |n: &str| counts.iter().find(|c| c.name == n).unwrap();
        assert_eq!((get("sendto").calls, get("sendto").errors), (2795, 0));
        assert_eq!((get("futex").calls, get("futex").errors), (442, 96));
        assert_eq!(get("accept4").errors, 1);
        assert_eq!(counts.iter().map(|c| c.calls).sum::<u64>(), 6730);

        let p = Profile::new(&counts, 2795.0);
        assert!((p.read - 2797.0 / 2795.0).abs() < 1e-12);
        assert_eq!(p.read_errors, 0.0);
        // sendto and the two eventfd writes.
        assert!((p.write - 2797.0 / 2795.0).abs() < 1e-12);
        assert!((p.epoll_wait - 676.0 / 2795.0).abs() < 1e-12);
        assert!((p.epoll_ctl - 6.0 / 2795.0).abs() < 1e-12);
        assert!((p.total - 6730.0 / 2795.0).abs() < 1e-12);
        let other: f64 = p.others.iter().map(|o| o.1).sum();
        let sum = p.read + p.write + p.epoll_wait + p.epoll_ctl + p.uring_enter + other;
        assert!((sum - p.total).abs() < 1e-12);
        assert_eq!(p.uring_enter, 0.0);
        assert_eq!(p.others[0].0, "futex");
        assert!(p.others_text(2).starts_with("futex 0.158, accept4 0.002"));
    }

    /// `strace -c -f -q -o FILE -p PID` attached to the C io_uring floor
    /// (`peers/echo_uring.c`) during 2000 round trips of `loadgen --workload echo
    /// --conns 50 --count 2000 --pause`.
    const URING_SAMPLE: &str = include_str!("../testdata/strace-c-uring.txt");

    #[test]
    fn counts_io_uring_enter_as_its_own_column() {
        let counts = parse_summary(URING_SAMPLE).unwrap();
        let enters = counts.iter().find(|c| c.name == "io_uring_enter").unwrap();
        let p = Profile::new(&counts, 2000.0);
        assert_eq!(p.uring_enter, enters.calls as f64 / 2000.0);
        assert!(p.uring_enter > 0.0);
        // Its reads and writes are requests on the ring, not system calls.
        assert_eq!((p.read, p.write, p.epoll_wait), (0.0, 0.0, 0.0));
        assert!(p.others.iter().all(|o| o.0 != "io_uring_enter"));
        let other: f64 = p.others.iter().map(|o| o.1).sum();
        assert!((p.uring_enter + p.epoll_ctl + other - p.total).abs() < 1e-12);
    }

    #[test]
    fn rejects_truncated_or_foreign_text() {
        // What strace writes when the process made no call while traced.
        assert_eq!(parse_summary(""), Ok(Vec::new()));
        assert!(
            parse_summary("% time     seconds  usecs/call     calls    errors syscall\n").is_err()
        );
        assert!(parse_summary(
            "strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n"
        )
        .is_err());
        // The rows without their total line.
        let cut: String = SAMPLE
            .lines()
            .filter(|l| !l.ends_with("total"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_summary(&cut).is_err());
        // A total that does not match the rows.
        let wrong = SAMPLE.replace(" 6730 ", " 6731 ");
        assert!(parse_summary(&wrong).unwrap_err().contains("6731"));
        let garbled = SAMPLE.replace("2795", "27x5");
        assert!(parse_summary(&garbled).is_err());
    }
}
