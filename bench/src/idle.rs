//! The `idle` workload: how much memory a server spends per idle
//! connection. Start the server, read its resident memory (`VmRSS` of
//! `/proc/PID/status`), have `loadgen` open `conns` connections that each
//! exchange one echo and then stay open, read the server's memory again:
//! `(with - before) / conns` is the cost of one connection (its socket
//! object, task or closure, buffers) in the server's own memory. The
//! kernel's socket memory is not in it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use crate::loadgen::idle_conns;
use crate::peers::Peer;
use crate::procstat::vm_rss_kb;
use crate::workload::{self, RoundConfig};
use crate::Listen;

/// How long each step of opening a connection may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before each memory reading, for the server to finish what the
/// last event gave it.
pub const SETTLE: Duration = Duration::from_millis(300);
/// Message size of the one echo per connection.
pub const SIZE: usize = 64;

/// Runs one `idle` round against `peer`: server memory per connection, in
/// KiB. Every process started here is killed before this returns, on
/// success, error or panic.
pub fn run_round(peer: &Peer, conns: usize, cfg: &RoundConfig) -> io::Result<f64> {
    let mut server = workload::start_server(peer, &Listen::Tcp(0), cfg, &[])?;
    let pid = server.process.pid();
    thread::sleep(SETTLE);
    let before = vm_rss_kb(pid)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
    let held = idle_conns(addr, conns, SIZE, STEP_TIMEOUT)?;
    thread::sleep(SETTLE);
    let with = vm_rss_kb(pid);
    drop(held);
    server.process.stop()?;
    let with = with?;
    Ok((with as f64 - before as f64) / conns as f64)
}
