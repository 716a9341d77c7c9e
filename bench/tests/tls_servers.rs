//! Both TLS servers keep the contract with the TLS load generator: ready line, handshake with
//! the given certificate, byte echo, close after close_notify.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use asyncnet_bench::child::Spawned;
use asyncnet_bench::parse_ready_line;
use asyncnet_bench::tls::certs::{self, IdentityFiles};
use asyncnet_bench::tls::loadgen::{self, Mode, Settings};

fn drive(bin: &str, extra: &[&str]) {
    let files = IdentityFiles::write(&certs::generate().unwrap()).unwrap();
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--cert".to_string(),
        files.cert.display().to_string(),
        "--key".to_string(),
        files.key.display().to_string(),
        "0".to_string(),
    ]);
    let server = Spawned::start(bin, Path::new(bin), &args, None).unwrap();
    let port = server
        .wait_for_line(Instant::now() + Duration::from_secs(10), parse_ready_line)
        .unwrap();
    for (mode, conns) in [(Mode::Echo { size: 1024 }, 8), (Mode::Handshake, 4)] {
        let s = Settings {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            config: certs::client_config(certs::read_cert(&files.cert).unwrap()).unwrap(),
            server_name: certs::server_name(),
            mode,
            conns,
            warmup: Duration::from_millis(100),
            secs: Duration::from_millis(300),
        };
        let mut phases = Vec::new();
        let r = loadgen::run(&s, |p| phases.push(p)).unwrap();
        assert_eq!(phases.len(), 2, "{bin} {mode:?}");
        assert!(r.ops > 0, "{bin} {mode:?}");
        assert_eq!(r.errors, 0, "{bin} {mode:?}: {:?}", r.first_error);
        assert_eq!(r.idle_conns(), 0, "{bin} {mode:?}");
    }
}

#[test]
fn asyncnet_serves_tls() {
    drive(env!("CARGO_BIN_EXE_tls_echo_asyncnet"), &[]);
}

#[test]
fn asyncnet_serves_tls_with_a_wrapped_listener() {
    drive(env!("CARGO_BIN_EXE_tls_echo_asyncnet"), &["--accept-tls"]);
}

#[test]
fn tokio_serves_tls() {
    drive(env!("CARGO_BIN_EXE_tls_echo_tokio"), &[]);
}

#[test]
fn a_wrong_certificate_is_refused() {
    let served = IdentityFiles::write(&certs::generate().unwrap()).unwrap();
    let other = certs::generate().unwrap();
    let bin = env!("CARGO_BIN_EXE_tls_echo_asyncnet");
    let args = [
        "--cert".to_string(),
        served.cert.display().to_string(),
        "--key".to_string(),
        served.key.display().to_string(),
        "0".to_string(),
    ];
    let server = Spawned::start(bin, Path::new(bin), &args, None).unwrap();
    let port = server
        .wait_for_line(Instant::now() + Duration::from_secs(10), parse_ready_line)
        .unwrap();
    let other_files = IdentityFiles::write(&other).unwrap();
    let pinned = certs::read_cert(&other_files.cert).unwrap();
    let s = Settings {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        config: certs::client_config(pinned).unwrap(),
        server_name: certs::server_name(),
        mode: Mode::Echo { size: 16 },
        conns: 1,
        warmup: Duration::ZERO,
        secs: Duration::from_millis(100),
    };
    let e = loadgen::run(&s, |_| {}).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
}
