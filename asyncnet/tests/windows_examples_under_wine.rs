//! The example servers built for Windows (`x86_64-pc-windows-gnu`) and started under Wine
//! answer a Linux client over loopback: `echo_server` (TCP lines), `udp_echo` (datagrams) and
//! `tls_echo_server` (TLS 1.3, the client verifying the server's certificate).
//!
//! Needs `wine` and the Windows examples, which `cargo test --target x86_64-pc-windows-gnu`
//! builds (`.ci/run` does so before the Linux tests). Skips with a message when either is
//! missing; fails instead under `CI=true`. `ASYNCNET_WINDOWS_EXAMPLES` may name the directory
//! of the `.exe` files (default: `target/x86_64-pc-windows-gnu/debug/examples`).
#![cfg(not(windows))]
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::{in_ci, run};
use tls_support::{tls_connect, Pki};

/// Generous: the first program started in a fresh Wine prefix waits for `wineboot`.
const START_GUARD: Duration = Duration::from_secs(120);

/// The directory of the Windows examples and the Wine runner, or why they are missing.
fn windows_setup() -> Result<(PathBuf, PathBuf), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runner = manifest.join("../.ci/wine/runner");
    let dir = match std::env::var_os("ASYNCNET_WINDOWS_EXAMPLES") {
        Some(dir) => PathBuf::from(dir),
        // Test binaries live in target/debug/deps (target/TRIPLE/debug/deps when built for
        // another target, such as i686 Linux); the Windows build is in target/TRIPLE too.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.ancestors()
                    .find(|dir| dir.join("x86_64-pc-windows-gnu").is_dir())
                    .or_else(|| exe.ancestors().nth(3))
                    .map(Path::to_path_buf)
            })
            .ok_or("no target directory")?
            .join("x86_64-pc-windows-gnu/debug/examples"),
    };
    let wine = Command::new("wine")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !wine.is_ok_and(|s| s.success()) {
        return Err("wine is not installed (apt-get install wine wine64)".into());
    }
    for name in ["echo_server", "udp_echo", "tls_echo_server"] {
        let exe = dir.join(format!("{name}.exe"));
        if !exe.exists() {
            return Err(format!(
                "{} is missing: build it with `cargo test -p asyncnet --target \
                 x86_64-pc-windows-gnu --no-run` (after `rustup target add \
                 x86_64-pc-windows-gnu` and installing mingw-w64)",
                exe.display()
            ));
        }
    }
    Ok((dir, runner))
}

/// Skip (print why) or, under CI, fail.
fn setup_or_skip() -> Option<(PathBuf, PathBuf)> {
    match windows_setup() {
        Ok(found) => Some(found),
        Err(why) => {
            assert!(!in_ci(), "{why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// One test at a time: the end of a test kills its example, and Wine 8's server now and then
/// dies of that (`server/sock.c: sock_get_poll_events: Assertion ... failed`, a few times in
/// 1,500 runs of this file, `RELIABILITY.md`), taking down every program under it: an example
/// another test is talking to would be cut off mid-conversation. Alone, a test meets at most
/// a server that died before (or as) its example started, which it then starts again
/// ([`UnderWine::check_alive`]).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What Wine 8 prints (on its `err:virtual` channel, which the runner leaves on) when its
/// loader cannot map the shared user data page at its fixed address
/// (`STATUS_CONFLICTING_ADDRESSES`): the program then exits with status 1 before any of its
/// code runs. It happens about once in 500 to 1,000 starts of any program, a two-line "hello"
/// as well (`RELIABILITY.md`, "Wine's own failures"); `.ci/wine/runner` knows the same
/// words.
const WINE_START_FAILURE: &str = "failed to map the shared user data";

/// A Windows example running under Wine, killed when dropped. Its standard error is passed
/// on, and watched for [`WINE_START_FAILURE`].
struct UnderWine {
    child: Child,
    /// Wine said it could not start the program.
    start_failed: Arc<AtomicBool>,
    /// The runner's command line: the example, its arguments.
    command: (PathBuf, Vec<String>),
    starts: u32,
    /// [`wine_server`] when the example was started.
    server: Vec<u32>,
}

/// The process IDs of the Wine servers running (`pgrep`; none if it fails).
fn wine_server() -> Vec<u32> {
    Command::new("pgrep")
        .args(["-f", "wineserver"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl UnderWine {
    fn start(setup: &(PathBuf, PathBuf), name: &str, args: &[&str]) -> UnderWine {
        let (dir, runner) = setup;
        let mut command = vec![dir.join(format!("{name}.exe")).display().to_string()];
        command.extend(args.iter().map(|a| a.to_string()));
        let server = wine_server();
        let (child, start_failed) = UnderWine::spawn(runner, &command);
        UnderWine {
            child,
            start_failed,
            command: (runner.clone(), command),
            starts: 1,
            server,
        }
    }

    fn spawn(runner: &Path, command: &[String]) -> (Child, Arc<AtomicBool>) {
        let mut child = Command::new(runner)
            .args(command)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the runner");
        let start_failed = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("piped");
        let seen = start_failed.clone();
        // Until the program's end (or, if this start launched a Wine server, the server's).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(WINE_START_FAILURE) {
                    seen.store(true, Ordering::SeqCst);
                }
                eprintln!("{line}");
            }
        });
        (child, start_failed)
    }

    /// Fail at once if the program has already exited (it could not start or listen), unless
    /// Wine failed to start it ([`WINE_START_FAILURE`]) or the Wine server it started under
    /// has died (its programs linger, cut off: see [`one_at_a_time`]): then start it again,
    /// up to [`support::WINE_STARTS`] times in all.
    fn check_alive(&mut self, name: &str) {
        let why = match self.child.try_wait().ok().flatten() {
            Some(status) if status.code() == Some(1) && self.wine_failed_to_start() => {
                format!("Wine could not start {name} ({WINE_START_FAILURE})")
            }
            // The examples serve until an error, which they report with status 1: status 0 is
            // a program that noticed its Wine server was gone.
            Some(status) if status.code() == Some(0) => {
                format!("Wine's server died while {name} started (it exited)")
            }
            Some(status) => panic!("{name} under Wine exited: {status}"),
            None if self.server_died() => format!("Wine's server died while {name} started"),
            None => return,
        };
        assert!(
            self.starts < support::WINE_STARTS,
            "{why}, {} times",
            support::WINE_STARTS
        );
        eprintln!("note: {why}; starting it again");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server = wine_server();
        let (runner, command) = &self.command;
        (self.child, self.start_failed) = UnderWine::spawn(runner, command);
        self.starts += 1;
    }

    /// Whether every Wine server that ran when the example was started has gone. If none ran
    /// (the example's start starts one), the servers running at the first call are taken.
    fn server_died(&mut self) -> bool {
        let running = wine_server();
        if self.server.is_empty() {
            self.server = running;
            return false;
        }
        self.server.iter().all(|pid| !running.contains(pid))
    }

    /// Whether Wine said it could not start the program (its words may come a moment after
    /// the exit that was seen).
    fn wine_failed_to_start(&self) -> bool {
        let until = Instant::now() + Duration::from_secs(2);
        while !self.start_failed.load(Ordering::SeqCst) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// For a failed client's message: whether the program still runs, or how it ended. An
    /// example that fails prints why before it exits; one that vanishes without a word was
    /// killed or crashed (Wine passes on the low byte of a Windows exit code: 5 for an access
    /// violation, 9 for a fail-fast abort).
    fn state(&mut self, name: &str) -> String {
        // Time for an end that the client met first to be seen here.
        std::thread::sleep(Duration::from_millis(300));
        let example = match self.child.try_wait() {
            Ok(Some(status)) => format!("{name} under Wine had exited: {status}"),
            Ok(None) => format!("{name} under Wine still runs"),
            Err(e) => format!("{name} under Wine: its state is unknown ({e})"),
        };
        // A program whose Wine server died lingers, cut off: the server's process ID says
        // whether it is the one the program started under.
        format!(
            "{example}; Wine's server: {:?} at the example's start, {:?} now",
            self.server,
            wine_server()
        )
    }
}

impl Drop for UnderWine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect to `port` once the program listens.
fn connect_when_up(server: &mut UnderWine, name: &str, port: u16) -> TcpStream {
    let deadline = Instant::now() + START_GUARD;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("{name} never listened: {e}"),
            Err(_) => {
                server.check_alive(name);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn the_windows_echo_server_answers_a_linux_client() {
    let _alone = one_at_a_time();
    let Some(setup) = setup_or_skip() else { return };
    let port = support::free_port_for(false);
    let mut server = UnderWine::start(&setup, "echo_server", &[&port.to_string()]);
    let stream = connect_when_up(&mut server, "echo_server", port);
    if let Err(e) = talk_to_echo_server(&stream) {
        panic!("{e}; {}", server.state("echo_server"));
    }
}

/// Lines to the echo server, each echoed, then a burst of 2,000: every byte comes back, in
/// order (an early end of the stream is an `UnexpectedEof` error).
fn talk_to_echo_server(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(support::HANG_GUARD))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut echo_of = |sent: &str| -> io::Result<()> {
        let mut back = String::new();
        while back.len() < sent.len() {
            if reader.read_line(&mut back)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of stream after {} bytes of an echo", back.len()),
                ));
            }
        }
        assert_eq!(back, sent);
        Ok(())
    };
    for line in ["hello from Linux", "", "a second line, after an empty one"] {
        let sent = format!("{line}\r\n");
        (&*stream).write_all(sent.as_bytes())?;
        echo_of(&sent)?;
    }
    // A bigger burst, in many segments.
    let burst: String = (0..2000).map(|i| format!("line {i}\r\n")).collect();
    (&*stream).write_all(burst.as_bytes())?;
    echo_of(&burst)
}

#[test]
fn the_windows_udp_echo_answers_a_linux_client() {
    let _alone = one_at_a_time();
    let Some(setup) = setup_or_skip() else { return };
    let port = support::free_port_for(true);
    let mut server = UnderWine::start(&setup, "udp_echo", &[&port.to_string()]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + START_GUARD;
    let mut buf = [0u8; 2048];
    // Datagrams sent before the server binds are lost: send until one comes back.
    loop {
        client
            .send_to(b"ping from Linux", ("127.0.0.1", port))
            .expect("send");
        match client.recv_from(&mut buf) {
            Ok((n, _)) => {
                assert_eq!(&buf[..n], b"ping from Linux");
                break;
            }
            Err(e) if Instant::now() > deadline => panic!("udp_echo never answered: {e}"),
            Err(_) => server.check_alive("udp_echo"),
        }
    }
    client
        .set_read_timeout(Some(support::HANG_GUARD))
        .expect("timeout");
    for size in [1, 100, 1400] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let echo = client
            .send_to(&data, ("127.0.0.1", port))
            .and_then(|_| client.recv_from(&mut buf));
        match echo {
            Ok((n, _)) => assert_eq!(&buf[..n], &data[..], "a datagram of {size} bytes"),
            Err(e) => panic!(
                "a datagram of {size} bytes: {e}; {}",
                server.state("udp_echo")
            ),
        }
    }
}

/// A path as the Windows program under Wine sees it (Wine's `Z:` drive is `/`).
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

#[test]
fn the_windows_tls_echo_server_answers_a_verifying_linux_client() {
    let _alone = one_at_a_time();
    let Some(setup) = setup_or_skip() else { return };
    let pki = Pki::new();
    let dir = std::env::temp_dir().join(format!("asyncnet-wine-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.server.cert_pem).expect("write the certificate");
    std::fs::write(&key, &pki.server.key_pem).expect("write the key");
    let port = support::free_port_for(false);
    let mut server = UnderWine::start(
        &setup,
        "tls_echo_server",
        &[
            &port.to_string(),
            "--cert",
            &wine_path(&cert),
            "--key",
            &wine_path(&key),
        ],
    );
    // The outcome, kept to say how the program ended if the client failed.
    let talked = run(async {
        // The client checks the chain and the name "localhost", as any client does. Until
        // the server listens, connecting fails (no plain probe connection: Wine 8's
        // wineserver has been seen to abort on a handshake its peer cut short).
        let deadline = Instant::now() + START_GUARD;
        let client = loop {
            match tls_connect(&pki.client_ctx(), "localhost", port).await {
                Ok(client) => break client,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    assert!(Instant::now() < deadline, "tls_echo_server never listened");
                    server.check_alive("tls_echo_server");
                    asyncnet::sleep_async(Duration::from_millis(100)).await;
                }
                Err(e) => return Ok(Err(e)),
            }
        };
        let talk = async {
            for line in ["hello over TLS", "and a second line"] {
                client.send(format!("{line}\n")).await?;
                assert_eq!(client.recv_line().await?.as_deref(), Some(line));
            }
            let big = "x".repeat(100_000);
            client.send(format!("{big}\n")).await?;
            assert_eq!(client.recv_line().await?.as_deref(), Some(big.as_str()));
            client.close()
        };
        Ok::<_, io::Error>(talk.await)
    });
    if let Err(e) = talked {
        panic!("{e} ({:?}); {}", e.kind(), server.state("tls_echo_server"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
