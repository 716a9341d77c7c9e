//! The TLS workloads (`tls` in the suite): TLS echo ping-pong and handshakes per second, asyncnet
//! against tokio + tokio-rustls, both on one thread.
//!
//! * [`certs`]: the certificate both servers present (made at start by the suite, passed to
//!   the servers as files), the servers' rustls configuration, the load generator's.
//! * [`loadgen`]: the TLS load generator, on plain mio + rustls (neither asyncnet nor tokio).
//! * [`runner`]: one measured round.
//!
//! Servers follow the crate's contract (ready line `listening on 127.0.0.1:PORT`, byte echo
//! until end of stream) with `--cert FILE --key FILE` before the port, and close with
//! close_notify when the client does.

pub mod certs;
pub mod loadgen;
pub mod runner;
