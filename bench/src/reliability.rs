//! Load and soak (`bench --c10k N`, `bench --soak MINUTES`; figures in `RELIABILITY.md`).
//!
//! The servers are the suite's own asyncnet peers: the README's line server (`echo_asyncnet
//! --lines`, one loop thread) and the TLS echo server (`tls_echo_asyncnet`). The clients run
//! here, on an asyncnet loop of this process, and check every byte that comes back.
//!
//! * **C10K**: `conns` connections opened and held at once, then every one of them exchanges
//!   `lines` lines at the same time; the server's resident memory (`VmRSS`) and descriptors
//!   (`/proc/PID/fd`) are read before and with them all open.
//! * **Soak**: for `minutes`, a mix of lines on held connections, 512 KiB lines, TLS
//!   connections, connect/disconnect churn (half of it half-closing first), resets (a line and
//!   a partial one, then a close with the echo unread, which the kernel turns into RST) and
//!   slow readers (1 MiB of lines sent while reading nothing for 3 s); both servers' memory
//!   and descriptors printed every 10 s, summed up at the end (first and last 5 minutes, max).
//!
//! Both run on the driver `ASYNCNET_DRIVER` asks for (`io_uring`, or the default `poll`):
//! the servers inherit the environment, and the client's loop reads it too; the first line
//! printed says which driver the client's loop runs on (a loop falls back to `poll` where
//! io_uring cannot serve, and says why).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn, wait_for, wrap_connected_socket, AsyncSocket, HandshakeAs};
use asyncnet::{SocketBuilder, TlsContext};

use crate::idle::SETTLE;
use crate::peers::Peer;
use crate::procstat::vm_rss_kb;
use crate::tls::certs::{IdentityFiles, SERVER_NAME};
use crate::workload::{start_server, RoundConfig, Server};
use crate::Listen;

/// Resident memory (KiB) and open descriptors of process `pid`.
pub fn usage(pid: u32) -> io::Result<(u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok((vm_rss_kb(pid)?, fds))
}

/// Prints the driver this thread's loop runs on, and the servers' environment for it.
fn say_driver() {
    let asked = std::env::var("ASYNCNET_DRIVER").unwrap_or_else(|_| "unset".into());
    let why = match asyncnet::io_uring_support() {
        Ok(()) => String::new(),
        Err(e) => format!(" (io_uring cannot serve here: {e})"),
    };
    println!(
        "driver: the client's loop runs on {:?}{why}; ASYNCNET_DRIVER={asked} for the servers too",
        wait_for(async { asyncnet::driver_kind() })
    );
}

/// Starts sibling `bin` with `args` on a free port, unpinned.
fn server(bin: &'static str, args: &[&str], bin_dir: PathBuf) -> io::Result<Server> {
    let mut peer = Peer::sibling(bin, bin);
    peer.args = args.iter().map(|a| a.to_string()).collect();
    let cfg = RoundConfig {
        bin_dir,
        ..RoundConfig::default()
    };
    start_server(&peer, &Listen::Tcp(0), &cfg, &[])
}

/// A client connection to the server on `port`, a socket from `builder`.
async fn connect(port: u16, builder: SocketBuilder) -> io::Result<AsyncSocket> {
    let s = builder.build()?;
    s.connect_addr((Ipv4Addr::LOCALHOST, port).into()).await?;
    Ok(s)
}

/// Sends `line` and checks that it comes back.
async fn round_trip(s: &AsyncSocket, line: &str) -> io::Result<()> {
    s.send(format!("{line}\n")).await?;
    match s.recv_line().await? {
        Some(got) if got == line => Ok(()),
        _ => Err(io::Error::other("the echo differs from the line")),
    }
}

/// `n` round trips of lines tagged `tag` on `s`.
async fn round_trips(s: AsyncSocket, tag: String, n: usize) -> io::Result<()> {
    for j in 0..n {
        round_trip(&s, &format!("{tag} line {j}")).await?;
    }
    Ok(())
}

/// Lines each C10K connection exchanges.
pub const C10K_LINES: usize = 10;

/// Runs C10K against the line server and prints its figures.
pub fn c10k(conns: usize, bin_dir: PathBuf) -> io::Result<()> {
    say_driver();
    let server = server("echo_asyncnet", &["--lines"], bin_dir)?;
    let (pid, port) = (server.process.pid(), server.port);
    thread::sleep(SETTLE);
    let before = usage(pid)?;
    let start = Instant::now();
    let held = wait_for(async move {
        let mut held = Vec::with_capacity(conns);
        for _ in 0..conns {
            held.push(connect(port, AsyncSocket::builder()).await?);
        }
        let tasks = held.iter().cloned().enumerate();
        let tasks: Vec<_> = tasks
            .map(|(i, s)| spawn(round_trips(s, format!("connection {i}"), C10K_LINES)))
            .collect();
        for t in tasks {
            t.await?;
        }
        io::Result::Ok(held)
    })?;
    let secs = start.elapsed().as_secs_f64();
    thread::sleep(SETTLE);
    let with = usage(pid)?;
    drop(held);
    let per_conn = (with.0 as f64 - before.0 as f64) / conns as f64;
    let all = conns * C10K_LINES;
    println!("c10k: {conns} connections held at once: all {all} lines echoed in {secs:.2} s");
    println!(
        "c10k: server (VmRSS KiB, fds) {before:?} -> {with:?}: {per_conn:.2} KiB a connection"
    );
    Ok(())
}

/// Outcomes of the soak's operations by kind: (succeeded, failed).
type Tally = Rc<RefCell<BTreeMap<&'static str, (u64, u64)>>>;

/// The soak's clock and outcomes.
struct Soak {
    end: Instant,
    tally: Tally,
}

impl Soak {
    /// Spawns `workers` loops doing `op` every `ms` milliseconds until the end, each outcome
    /// counted and the first three failures of a kind printed.
    fn every<F, Fut>(&self, (name, workers, ms): (&'static str, u64, u64), op: F)
    where
        F: Fn(u64) -> Fut + Clone + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        for w in 0..workers {
            let (tally, op, end) = (self.tally.clone(), op.clone(), self.end);
            drop(spawn(async move {
                for i in (w << 32).. {
                    if let Some(e) = count(&tally, name, op(i).await) {
                        println!("{name}: {e}");
                    }
                    sleep_async(Duration::from_millis(ms)).await;
                    if Instant::now() >= end {
                        break;
                    }
                }
            }));
        }
    }
}

/// Counts an outcome of operation `name`; returns the failure if it is one of the first three
/// of its kind (to be printed).
fn count(tally: &Tally, name: &'static str, result: io::Result<()>) -> Option<io::Error> {
    let mut t = tally.borrow_mut();
    let (ok, failed) = t.entry(name).or_default();
    let Err(e) = result else {
        *ok += 1;
        return None;
    };
    *failed += 1;
    (*failed <= 3).then_some(e)
}

/// Mean and max of a series of samples.
fn mean_max(s: &[u64]) -> (f64, u64) {
    let mean = s.iter().sum::<u64>() as f64 / s.len().max(1) as f64;
    (mean, s.iter().copied().max().unwrap_or(0))
}

/// Runs the soak for `minutes` and prints samples and the summary; false if any operation
/// failed.
pub fn soak(minutes: f64, bin_dir: PathBuf) -> io::Result<bool> {
    say_driver();
    let id = IdentityFiles::generate()?;
    let (cert, key) = (id.cert.display().to_string(), id.key.display().to_string());
    let lines = server("echo_asyncnet", &["--lines"], bin_dir.clone())?;
    let tls_args = ["--cert", &cert, "--key", &key];
    let tls = server("tls_echo_asyncnet", &tls_args, bin_dir)?;
    let pids = [lines.process.pid(), tls.process.pid()];
    let (port, tls_port) = (lines.port, tls.port);
    let ctx = TlsContext::client_builder()
        .add_root_file(&id.cert)
        .build()?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let soak = Soak {
        end,
        tally: Rc::default(),
    };
    let samples = wait_for(async {
        soak.every(("held lines (200 each)", 20, 100), move |i| async move {
            let s = connect(port, AsyncSocket::builder()).await?;
            round_trips(s.clone(), format!("held {i}"), 200).await?;
            s.close()
        });
        soak.every(("512 KiB lines", 1, 1000), move |i| async move {
            let s = connect(port, AsyncSocket::builder()).await?;
            round_trip(&s, &(i.to_string() + &".".repeat(1 << 19))).await?;
            s.close()
        });
        soak.every(("TLS connections", 2, 100), move |i| {
            let ctx = ctx.clone();
            async move {
                let s = connect(tls_port, AsyncSocket::builder()).await?;
                wrap_connected_socket(&ctx, &s, HandshakeAs::Client, SERVER_NAME).await?;
                let msg = format!("{i:>1024}");
                s.send(&msg).await?;
                match s.recv(1024).await? == msg.as_bytes() {
                    true => s.close(),
                    false => Err(io::Error::other("TLS echo differs")),
                }
            }
        });
        soak.every(("churn (line, close)", 1, 5), move |i| async move {
            let s = connect(port, AsyncSocket::builder()).await?;
            round_trip(&s, &format!("churn {i}")).await?;
            // Half of them half-close first: the server answers with its end of stream.
            if i % 2 == 0 {
                s.shutdown_write()?;
                if let Some(l) = s.recv_line().await? {
                    return Err(io::Error::other(format!("after half-close: {l:?}")));
                }
            }
            s.close()
        });
        soak.every(("resets (echo unread)", 1, 50), move |i| async move {
            let s = connect(port, AsyncSocket::builder().buffered(false)).await?;
            s.send(format!("reset {i}\npartial")).await?;
            s.flush().await?;
            sleep_async(Duration::from_millis(20)).await;
            s.close()
        });
        soak.every(("slow readers (1 MiB)", 1, 5000), move |i| async move {
            let s = connect(port, AsyncSocket::builder()).await?;
            let line = move |j: usize| format!("slow {i:>16} line {j:>36}");
            let writer = s.clone();
            let write = spawn(async move {
                for j in 0..16384 {
                    writer.send(format!("{}\n", line(j))).await?;
                }
                io::Result::Ok(())
            });
            sleep_async(Duration::from_secs(3)).await;
            for j in 0..16384 {
                if s.recv_line().await?.as_deref() != Some(&line(j)) {
                    return Err(io::Error::other(format!("slow reader: line {j} differs")));
                }
            }
            write.await?;
            s.close()
        });
        let mut samples: Vec<[u64; 4]> = Vec::new();
        while Instant::now() < end {
            sleep_async(Duration::from_secs(10)).await;
            let (l, t) = (usage(pids[0])?, usage(pids[1])?);
            let secs = start.elapsed().as_secs();
            println!("t={secs}s (KiB, fds): lines server {l:?}, TLS server {t:?}");
            samples.push([l.0, l.1, t.0, t.1]);
        }
        io::Result::Ok(samples)
    })?;
    let n = samples.len();
    let window = 30.min(n / 3).max(1); // 5 minutes of samples
    println!("soak: {minutes} min, {n} samples; first and last {window} samples: (mean, max)");
    let names = ["lines KiB", "lines fds", "TLS KiB", "TLS fds"];
    for (k, name) in names.iter().enumerate() {
        let series: Vec<u64> = samples.iter().map(|s| s[k]).collect();
        let (first, last) = (mean_max(&series[..window]), mean_max(&series[n - window..]));
        let max = mean_max(&series).1;
        println!("soak: {name}: first {first:.0?}, last {last:.0?}, max {max}");
    }
    let tally = soak.tally.borrow();
    for (name, (ok, failed)) in tally.iter() {
        println!("soak: {name}: {ok} ok, {failed} failed");
    }
    drop((lines, tls));
    Ok(tally.values().all(|(_, failed)| *failed == 0))
}
