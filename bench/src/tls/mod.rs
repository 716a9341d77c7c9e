//! The TLS workloads (`tls` in the suite): TLS echo ping-pong and handshakes per second, asyncnet
//! against tokio + tokio-rustls, both on one thread.
//!
//! * [`certs`]: the certificate both servers present (made at start by the suite, passed to
//!   the servers as files), the servers' rustls configuration, the load generator's.
//! * [`loadgen`]: the TLS load generator (`loadgen --workload tls-echo|tls-handshake`), on
//!   plain mio + rustls (neither asyncnet nor tokio).
//!
//! Here: the TLS peers and workloads (run through `loadgen` as every other workload).
//!
//! Servers follow the crate's contract (ready line `listening on 127.0.0.1:PORT`, byte echo
//! until end of stream) with `--cert FILE --key FILE` before the port, and close with
//! close_notify when the client does.

pub mod certs;
pub mod loadgen;

use std::path::Path;

use crate::peers::Peer;
use crate::workload::Workload;

/// Every TLS peer, its server presenting `cert` and `key`: `asyncnet`, `tokio`
/// (tokio-rustls), and `asyncnet-accept` (the listener wrapped, so `accept` does the
/// handshakes; the suite runs it only if `--peers` names it).
pub fn peers(cert: &Path, key: &Path) -> Vec<Peer> {
    let files = [
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]
    .map(String::from);
    let peer = |name, bin, flags: &[&str]| {
        let mut p = Peer::sibling(name, bin);
        p.args = flags
            .iter()
            .map(|f| f.to_string())
            .chain(files.clone())
            .collect();
        p
    };
    vec![
        peer("asyncnet", "tls_echo_asyncnet", &[]),
        peer("tokio", "tls_echo_tokio", &[]),
        peer("asyncnet-accept", "tls_echo_asyncnet", &["--accept-tls"]),
    ]
}

/// The load generator's workload: `tls-echo` of `size`-byte messages on `conns` connections,
/// or (`size` none) `tls-handshake` on `conns` slots; the server's certificate is `cert`.
pub fn workload(size: Option<usize>, conns: usize, cert: &Path) -> Workload {
    let mut w = match size {
        Some(size) => Workload::new("tls-echo", &[("size", size), ("conns", conns)]),
        None => Workload::new("tls-handshake", &[("conns", conns)]),
    };
    w.loadgen_args
        .extend(["--cert".into(), cert.display().to_string()]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_workloads() {
        let (cert, key) = (Path::new("/c.pem"), Path::new("/k.pem"));
        let p = peers(cert, key);
        let tail = ["--cert", "/c.pem", "--key", "/k.pem", "0"];
        assert_eq!(p[1].args_for(&crate::Listen::Tcp(0)), tail);
        assert_eq!(p[2].args_for(&crate::Listen::Tcp(0))[0], "--accept-tls");
        assert_eq!(
            workload(Some(1024), 50, cert).loadgen_args.join(" "),
            "--workload tls-echo --size 1024 --conns 50 --cert /c.pem"
        );
        assert_eq!(
            workload(None, 8, cert).loadgen_args.join(" "),
            "--workload tls-handshake --conns 8 --cert /c.pem"
        );
    }
}
