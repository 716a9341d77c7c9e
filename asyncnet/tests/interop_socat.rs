//! Interop with socat, a program nobody here wrote, as the peer: a UDP echo server and a UDP
//! client, a Unix stream echo server and a Unix stream client.
//!
//! Needs `socat`: the tests skip without it, except under CI (`CI=true`), where they fail.
//! Every socat process is killed when its guard drops (on every exit path, panics
//! included), and every wait for one is bounded.
// Unix only: socat, a Unix program; skipped on Windows (not compiled there).
#![cfg(unix)]

#[macro_use]
mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn, with_timeout, AsyncSocket, SockType};
use support::{
    in_ci, oneshot, port, run, udp_bound, unix_socket, Family, TempSocketPath, HANG_GUARD,
};

/// How often to retry while socat starts; decides speed only, never the outcome.
const RETRY: Duration = Duration::from_millis(20);

/// Whether socat can be run. Without it: fail under CI, else skip with a notice.
fn have_socat() -> bool {
    let found = Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if in_ci() {
            panic!(
                "socat is required under CI (CI=true) but is not installed: apt-get install socat"
            );
        }
        eprintln!("skipped: socat not installed (apt-get install socat)");
    }
    found
}

/// A running socat, killed and reaped when dropped.
struct Socat {
    child: Child,
    args: Vec<String>,
}

impl Socat {
    /// Start `socat ARGS`; stdin and stdout piped when `piped`, else closed. Stderr is
    /// inherited, so its complaints show in the test's output.
    fn start(args: &[String], piped: bool) -> Socat {
        let io = || if piped { Stdio::piped() } else { Stdio::null() };
        let child = Command::new("socat")
            .args(args)
            .stdin(io())
            .stdout(io())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat {args:?}: {e}"));
        Socat {
            child,
            args: args.to_vec(),
        }
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on socat")
    }

    /// Wait for it to exit on its own, at most [`HANG_GUARD`].
    fn wait_bounded(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "socat {:?} did not exit within {HANG_GUARD:?}",
                self.args
            );
            std::thread::sleep(RETRY);
        }
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            // SIGKILL cannot be ignored: the wait ends at once.
            let _ = self.child.wait();
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bound, then released).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    s.local_addr().expect("local_addr").port()
}

/// Datagram `i` of the UDP exchanges: a text header, then binary bytes, of lengths up to
/// socat's default buffer (8192 bytes) so that socat passes each on whole.
fn udp_payload(i: usize) -> Vec<u8> {
    let len = [1, 17, 512, 1400, 4096, 8000][i % 6];
    let mut p = format!("data {i}:").into_bytes();
    p.extend((0..len).map(|j| ((j * 13 + i * 101) % 256) as u8));
    p
}

/// Send pings to socat's UDP echo at `port` until one comes back. `false` if socat exited
/// first (e.g. the port was taken meanwhile).
async fn udp_echo_answers(sock: &AsyncSocket, port: u16, socat: &mut Socat) -> io::Result<bool> {
    for k in 0.. {
        if socat.exited().is_some() {
            return Ok(false);
        }
        sock.send_to("127.0.0.1", port, format!("ping {k}")).await?;
        if let Ok(r) = with_timeout(sock.recv_from(64), RETRY).await {
            let (data, _, from) = r?;
            if data.starts_with(b"ping ") && from == port {
                return Ok(true);
            }
        }
    }
    unreachable!()
}

#[test]
fn socat_udp_echo_server_echoes_every_datagram_our_client_sends() {
    if !have_socat() {
        return;
    }
    run(async {
        for _attempt in 0..5 {
            let port = free_udp_port();
            // No `fork`: socat answers the first sender, and passes datagrams on whole.
            let mut socat = Socat::start(
                &[
                    "-T30".into(),
                    format!("UDP4-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
                    "PIPE".into(),
                ],
                false,
            );
            let sock = udp_bound(Family::V4)?;
            if !udp_echo_answers(&sock, port, &mut socat).await? {
                eprintln!("socat exited (port {port} taken?); trying another port");
                continue;
            }
            for i in 0..30 {
                let sent = udp_payload(i);
                sock.send_to("127.0.0.1", port, &sent).await?;
                let (data, address, from) = loop {
                    let (data, address, from) = sock.recv_from(65_536).await?;
                    // Echoes of pings sent while socat was starting may still come.
                    if !data.starts_with(b"ping ") {
                        break (data, address, from);
                    }
                };
                assert_eq!(
                    (address.as_str(), from),
                    ("127.0.0.1", port),
                    "the echo came from socat"
                );
                assert!(data == sent, "datagram {i} came back whole and unchanged");
            }
            return Ok(());
        }
        panic!("socat could not bind a UDP port in 5 attempts");
    })
}

#[test]
fn our_udp_echo_server_answers_socat_as_the_client() {
    if !have_socat() {
        return;
    }
    run(async {
        let server = udp_bound(Family::V4)?;
        let server_port = port(&server);
        let echo_socket = server.clone();
        let echo = spawn(async move {
            let mut senders = Vec::new();
            loop {
                let (data, address, from) = echo_socket.recv_from(65_536).await?;
                senders.push((address.clone(), from));
                echo_socket.send_to(&address, from, &data).await?;
                if data == b"last\n" {
                    return Ok::<_, io::Error>(senders);
                }
            }
        });

        let mut socat = Socat::start(
            &[
                "-T30".into(),
                "-".into(),
                format!("UDP4:127.0.0.1:{server_port}"),
            ],
            true,
        );
        let mut stdin = socat.child.stdin.take().expect("piped stdin");
        let stdout = socat.child.stdout.take().expect("piped stdout");
        let lines: Vec<String> = (0..10)
            .map(|i| format!("hello {i} from socat"))
            .chain(["last".to_owned()])
            .collect();
        let (tx, rx) = oneshot();
        let to_send = lines.clone();
        // socat's pipes block: talk to it from a thread. One line at a time, each answered
        // before the next, so that each is a datagram of its own.
        let talker = std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut echoed = Vec::new();
            for l in &to_send {
                // One write per line (`writeln!` may make two, and socat two datagrams).
                if stdin.write_all(format!("{l}\n").as_bytes()).is_err() {
                    break;
                }
                let mut got = String::new();
                match out.read_line(&mut got) {
                    Ok(n) if n > 0 => echoed.push(got.trim_end_matches('\n').to_owned()),
                    _ => break,
                }
            }
            drop(stdin); // socat ends at end of input
            tx.send(echoed);
        });
        let echoed = rx.recv().await;
        assert_eq!(echoed, lines, "socat printed every echo, in order");
        let senders = echo.await?;
        assert_eq!(senders.len(), lines.len(), "one datagram per line");
        let (address, socat_port) = senders[0].clone();
        assert_eq!(address, "127.0.0.1");
        assert_ne!(socat_port, 0);
        assert!(
            senders.iter().all(|s| *s == (address.clone(), socat_port)),
            "every datagram came from socat's one port: {senders:?}"
        );
        talker.join().expect("talker thread");
        let status = socat.wait_bounded();
        assert!(status.success(), "socat failed: {status}");
        Ok(())
    })
}

/// Connect to the Unix stream socket socat is starting to listen on at `path`.
async fn connect_when_listening(path: &Path, socat: &mut Socat) -> io::Result<AsyncSocket> {
    loop {
        if let Some(status) = socat.exited() {
            panic!("socat exited before accepting: {status}");
        }
        let sock = unix_socket(SockType::STREAM)?;
        match sock.connect_unix(path).await {
            Ok(()) => return Ok(sock),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::ConnectionRefused =>
            {
                sleep_async(RETRY).await
            }
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn socat_unix_echo_server_exchanges_lines_and_a_megabyte_with_our_client() {
    const LEN: usize = 1024 * 1024;
    if !have_socat() {
        return;
    }
    run(async {
        let path = TempSocketPath::new("socat-echo");
        // No `fork`: one connection, then socat exits (and removes the socket file).
        // `-b4096`: socat writes into its own PIPE with blocking writes of up to `-b` bytes
        // once the pipe has room for one page; with the default 8192 a write can block on
        // the pipe that only socat itself drains, and socat deadlocks mid-megabyte. Writes
        // of one page always fit.
        let mut socat = Socat::start(
            &[
                "-b4096".into(),
                format!("UNIX-LISTEN:{}", path.path().display()),
                "PIPE".into(),
            ],
            false,
        );
        let sock = connect_when_listening(path.path(), &mut socat).await?;
        assert_eq!(sock.peer_addr()?, (path.text(), 0));

        let lines = [
            ("crlf line", "\r\n"),
            ("lf line", "\n"),
            ("", "\n"),
            ("utf-8: grüße ✓", "\r\n"),
        ];
        for (l, end) in lines {
            sock.send(format!("{l}{end}")).await?;
            assert_eq!(sock.recv_line().await?.as_deref(), Some(l));
        }
        let long = "w".repeat(100_000);
        sock.send(format!("{long}\n")).await?;
        assert_eq!(sock.recv_line().await?, Some(long));

        // A binary megabyte, sent while it comes back (socat's pipe holds far less).
        let payload: Vec<u8> = (0..LEN).map(|i| (i * 131 % 256) as u8).collect();
        let writer = spawn({
            let (sock, payload) = (sock.clone(), payload.clone());
            async move {
                sock.send(&payload).await?;
                sock.shutdown_write()?;
                Ok::<_, io::Error>(())
            }
        });
        let got = sock.recv(LEN).await?;
        writer.await?;
        assert_eq!(got.len(), LEN);
        assert!(got == payload, "the megabyte came back unchanged");
        assert!(sock.recv(1).await?.is_empty(), "socat closed after our end");
        let status = socat.wait_bounded();
        assert!(status.success(), "socat failed: {status}");
        Ok(())
    })
}

#[test]
fn our_unix_echo_server_answers_socat_as_the_client() {
    if !have_socat() {
        return;
    }
    run(async {
        let path = TempSocketPath::new("our-echo");
        let server = unix_socket(SockType::STREAM)?;
        server.bind_unix(path.path())?;
        server.listen()?;
        let echo = spawn(async move {
            let (peer, conn) = server.accept_addr().await?;
            let mut count = 0;
            while let Some(l) = conn.recv_line().await? {
                conn.send(format!("{l}\n")).await?;
                count += 1;
            }
            conn.close()?;
            Ok::<_, io::Error>((peer, count))
        });

        // `-t`: after its input ends, socat waits (that long at most) for our end of stream.
        let mut socat = Socat::start(
            &[
                "-t30".into(),
                "-".into(),
                format!("UNIX-CONNECT:{}", path.path().display()),
            ],
            true,
        );
        let mut stdin = socat.child.stdin.take().expect("piped stdin");
        let mut stdout = socat.child.stdout.take().expect("piped stdout");
        let long = "z".repeat(100_000);
        let input =
            format!("hello from socat\ncrlf\r\n\nutf-8: grüße ✓\n{long}\nno newline at the end");
        let expected =
            format!("hello from socat\ncrlf\n\nutf-8: grüße ✓\n{long}\nno newline at the end\n");
        let (tx, rx) = oneshot();
        let talker = std::thread::spawn(move || {
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(input.as_bytes());
                // Dropping stdin ends socat's input.
            });
            let mut out = Vec::new();
            let r = stdout.read_to_end(&mut out);
            let _ = writer.join();
            tx.send(r.map(|_| out));
        });
        let out = rx.recv().await?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            expected,
            "socat printed every echo"
        );
        let (peer, count) = echo.await?;
        assert_eq!(peer, "", "socat's client socket is unnamed");
        assert_eq!(count, 6);
        talker.join().expect("talker thread");
        let status = socat.wait_bounded();
        assert!(status.success(), "socat failed: {status}");
        Ok(())
    })
}
