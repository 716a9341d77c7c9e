//! The front door under a hostile client: the README's server (its code, checked against the
//! README's text) and the example servers keep serving a normal client after clients that
//! send a line that is not UTF-8, a 2 MB line, a reset in the middle of a line, and 10,000
//! random bytes.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asyncnet::{spawn, wait_for, AsyncSocket, SoBool};

/// The README's server, token for token (the test below compares the two), with the port
/// made a parameter so that tests do not clash.
macro_rules! readme_server {
    ($port:expr) => {
        wait_for(async {
            let server = AsyncSocket::new()?;
            server.set_sock_opt(SoBool::ReuseAddr, true)?;
            server.bind_addr($port, "127.0.0.1")?;
            server.listen()?;
            loop {
                let client = server.accept().await?;
                spawn(async move {
                    while let Some(line) = client.recv_line().await? {
                        client.send(format!("{line}\r\n")).await?;
                    }
                    Ok::<(), std::io::Error>(())
                });
            }
        })
    };
}

fn no_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn the_readme_server_here_is_the_readmes_text() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let start = readme
        .find("wait_for(async {")
        .expect("the README's server");
    let end = start + readme[start..].find("\n    })\n").expect("its end") + "\n    })".len();
    // The macro's body as written in this file, with the port put back.
    let this_file = include_str!("front_door.rs");
    let body_start = this_file
        .find("        wait_for(async {")
        .expect("macro body");
    let body_end = body_start
        + this_file[body_start..].find("\n        })\n").expect("end")
        + "\n        })".len();
    let body = this_file[body_start..body_end].replace("$port", "7777");
    assert_eq!(
        no_space(&readme[start..end]),
        no_space(&body),
        "README and test differ"
    );
}

fn connect(addr: impl ToSocketAddrs + Copy) -> TcpStream {
    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(support::HANG_GUARD))
                    .expect("timeout");
                return s;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the server never listened: {e}"),
        }
    }
}

/// Bytes of a xorshift generator: "random" input that is the same on every run.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The hostile clients, one after another, each against a fresh connection made by `open`;
/// then a normal client must get its line back with `terminator`.
fn attack_then_serve<S: Read + Write>(
    mut open: impl FnMut() -> S,
    terminator: &str,
    reset: impl Fn(&S),
) {
    // A line that is not UTF-8.
    let mut s = open();
    s.write_all(b"bad \xff\n").expect("write");
    drop(s);
    // A 2 MB line (past the 1 MB limit).
    let mut s = open();
    let long = vec![b'x'; 2 << 20];
    // The server may give up on the line and close before taking it all.
    let _ = s.write_all(&long).and_then(|()| s.write_all(b"\n"));
    drop(s);
    // A reset in the middle of a line.
    let mut s = open();
    s.write_all(b"half a li").expect("write");
    reset(&s);
    drop(s);
    // 10,000 random bytes.
    let mut s = open();
    let _ = s.write_all(&garbage(10_000));
    drop(s);
    // The server still serves.
    let mut s = open();
    s.write_all(b"hello\r\n").expect("write");
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).expect("the echo");
    assert_eq!(line, format!("hello{terminator}"));
}

fn reset_tcp(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

#[test]
fn the_readme_server_survives_hostile_clients() {
    let port = support::free_port_for(false);
    std::thread::spawn(move || -> io::Result<()> { readme_server!(port) });
    attack_then_serve(|| connect(("127.0.0.1", port)), "\r\n", reset_tcp);
}

/// A built example program, killed when dropped.
struct Example(Child);

impl Example {
    /// Start example `name` and wait until it says it listens (its first line of output).
    ///
    /// Under Wine, a start that ended with status 1, having written nothing, is Wine's own
    /// start-up failure (its loader could not map the shared user data page; about once in
    /// 500 to 1,000 starts of any program: `RELIABILITY.md`, "Wine's own failures"; Wine's
    /// words go to the Unix standard error, not to this pipe): the example is started
    /// again, [`support::WINE_STARTS`] times in all. Any other exit before listening fails the
    /// test, with what the example wrote.
    fn start(name: &str, args: &[&str]) -> Option<Example> {
        // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
        let exe = std::env::current_exe().ok()?;
        let path: PathBuf = exe
            .parent()?
            .parent()?
            .join("examples")
            .join(name)
            .with_extension(std::env::consts::EXE_EXTENSION);
        if !path.exists() {
            let msg = format!(
                "{name} is not built ({}): run `cargo test` (it builds examples)",
                path.display()
            );
            assert!(!support::in_ci(), "{msg}");
            eprintln!("skipped: {msg}");
            return None;
        }
        for start in 1..=support::WINE_STARTS {
            let mut child = Command::new(&path)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the example");
            let stdout = child.stdout.take().expect("stdout");
            let stderr = child.stderr.take().expect("stderr");
            // Read on threads of their own: the example must never block on a full pipe
            // (`udp_echo` prints a line per datagram).
            let (said, first_line) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = said.send(lines.next().and_then(Result::ok));
                lines.for_each(drop);
            });
            let errors = std::thread::spawn(move || {
                let mut all = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut all);
                all
            });
            // Killed when dropped: on a panic below, too.
            let mut example = Example(child);
            match first_line.recv_timeout(support::HANG_GUARD) {
                Ok(Some(_)) => return Some(example),
                Err(_) => panic!("{name} said nothing in {:?}", support::HANG_GUARD),
                // Its output ended: it exited (or is about to).
                Ok(None) => {}
            }
            let status = example.0.wait().expect("wait for the example");
            let errors = errors.join().unwrap_or_default();
            if support::under_wine() && status.code() == Some(1) && errors.is_empty() {
                eprintln!(
                    "note: Wine could not start {name} (start {start} of {})",
                    support::WINE_STARTS
                );
                continue;
            }
            panic!("{name} exited before it listened ({status}); it wrote:\n{errors}");
        }
        panic!(
            "Wine could not start {name} in {} starts",
            support::WINE_STARTS
        );
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_echo_server_example_survives_hostile_clients() {
    let port = support::free_port_for(false);
    let Some(_server) = Example::start("echo_server", &[&port.to_string()]) else {
        return;
    };
    attack_then_serve(|| connect(("127.0.0.1", port)), "\r\n", reset_tcp);
}

#[test]
#[cfg(unix)] // Unix-domain sockets: not on Windows
fn the_unix_echo_example_survives_hostile_clients() {
    let dir = std::env::temp_dir().join(format!("asyncnet-front-door-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("echo.sock");
    let text = path.to_str().expect("UTF-8 path").to_owned();
    let Some(_server) = Example::start("unix_echo", &[&text]) else {
        return;
    };
    let open = || {
        let deadline = Instant::now() + support::HANG_GUARD;
        loop {
            match UnixStream::connect(&path) {
                Ok(s) => {
                    s.set_read_timeout(Some(support::HANG_GUARD))
                        .expect("timeout");
                    return s;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("the server never listened: {e}"),
            }
        }
    };
    // A Unix stream has no reset: the closest is closing with unread bytes both ways.
    attack_then_serve(open, "\n", |s: &UnixStream| {
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_udp_echo_example_survives_hostile_datagrams() {
    let port = support::free_port_for(true);
    let Some(_server) = Example::start("udp_echo", &[&port.to_string()]) else {
        return;
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // Empty, garbage and the largest datagrams, then a normal one must come back.
    let _ = sock.send(b"");
    let _ = sock.send(&garbage(10_000));
    let _ = sock.send(&garbage(65_507));
    let deadline = Instant::now() + support::HANG_GUARD;
    let mut buf = [0u8; 65_536];
    loop {
        // Refused (ICMP) until the server is up.
        let sent = sock.send(b"hello");
        match sent.and_then(|_| sock.recv(&mut buf)) {
            Ok(5) if &buf[..5] == b"hello" => return,
            // An echo of the hostile datagrams, or the server not up yet.
            Ok(_) | Err(_) if Instant::now() < deadline => {}
            other => panic!("no echo: {other:?}"),
        }
    }
}
