//! An accept loop whose process runs out of file descriptors keeps running, and serves again
//! once descriptors are free.
//!
//! The test re-runs its own binary as a child process (so that lowering `RLIMIT_NOFILE`
//! cannot disturb other tests): the child runs a server with a plain
//! `loop { let c = server.accept().await?; ... }`, and this process connects clients to it
//! until the child's accept meets `EMFILE`. The child then closes the connections it has
//! served, and every client, pending or new, must be served.
// Unix only: RLIMIT_NOFILE and EMFILE; skipped on Windows (not compiled there).
#![cfg(unix)]

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn, AsyncSocket};
use support::{listener, port, run, Family, HANG_GUARD};

const TEST_NAME: &str = "an_accept_loop_survives_running_out_of_descriptors";
/// Set in the child's environment: act as the server.
const CHILD_ENV: &str = "ASYNCNET_TEST_EMFILE_CHILD";
/// Clients connected while the child is out of descriptors, then clients connected after.
const FIRST_WAVE: usize = 12;
const SECOND_WAVE: usize = 4;
/// Descriptors the child leaves itself for accepted connections.
const SLOTS: libc::rlim_t = 4;
const MARK: &str = "EMFILE-CHILD";

#[test]
fn an_accept_loop_survives_running_out_of_descriptors() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    } else {
        parent();
    }
}

/// Kills the child on every exit path.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut child = ChildGuard(child);
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = io::Read::read_to_string(&mut BufReader::new(stderr), &mut all);
        all
    });
    let deadline = Instant::now() + HANG_GUARD;
    let mut seen = Vec::new();
    let next_mark = |seen: &mut Vec<String>| -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains(MARK) => {
                    seen.push(l.clone());
                    // The harness may print the test's name on the same line.
                    return l[l.find(MARK).unwrap_or(0)..].to_owned();
                }
                Ok(l) => seen.push(l),
                Err(e) => panic!("child went quiet ({e}); its output: {seen:#?}"),
            }
        }
    };
    let first = next_mark(&mut seen);
    let port: u16 = first
        .strip_prefix(&format!("{MARK} PORT "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected the port, got {first:?}"));

    let connect = || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the child");
        c.set_read_timeout(Some(HANG_GUARD)).unwrap();
        c.write_all(b"hello\n").expect("write hello");
        BufReader::new(c)
    };
    let served = |c: &mut BufReader<TcpStream>, which: &str| {
        let mut line = String::new();
        c.read_line(&mut line)
            .unwrap_or_else(|e| panic!("{which} was not served: {e}"));
        assert_eq!(line, "ok\n", "{which}");
    };
    // More clients than the child has descriptors for: its accept runs out.
    let mut first_wave: Vec<_> = (0..FIRST_WAVE).map(|_| connect()).collect();
    for (i, c) in first_wave.iter_mut().enumerate() {
        served(c, &format!("pending client {i}"));
    }
    // And it keeps serving new clients.
    for i in 0..SECOND_WAVE {
        served(&mut connect(), &format!("new client {i}"));
    }
    let last = next_mark(&mut seen);
    assert_eq!(last, format!("{MARK} EMFILE"), "output: {seen:#?}");
    let done = next_mark(&mut seen);
    assert_eq!(done, format!("{MARK} DONE"), "output: {seen:#?}");
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "child failed: {status}\n{errors}");
}

/// Lower `RLIMIT_NOFILE` so that only `slots` more descriptors can be opened; returns how
/// many can really be opened (open descriptors above the lowest free one take slots too).
fn limit_descriptors(slots: libc::rlim_t) -> usize {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").expect("open /dev/null");
    let lowest = libc::rlim_t::try_from(probe.as_raw_fd()).expect("a valid descriptor");
    drop(probe);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lowest + slots;
    // SAFETY: `lim` is a valid rlimit that setrlimit only reads.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(r, 0, "setrlimit: {}", io::Error::last_os_error());
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return files.len();
            }
        }
    }
}

/// Serve one connection: answer its line, then keep it open (holding a descriptor).
async fn serve(
    conn: AsyncSocket,
    held: Rc<RefCell<Vec<AsyncSocket>>>,
    served: Rc<Cell<usize>>,
) -> io::Result<()> {
    let line = conn.recv_line().await?;
    assert_eq!(line.as_deref(), Some("hello"));
    conn.send("ok\n").await?;
    served.set(served.get() + 1);
    held.borrow_mut().push(conn);
    Ok(())
}

fn child() {
    run(async {
        let server = listener(Family::V4)?;
        let free = limit_descriptors(SLOTS);
        assert!(
            (1..FIRST_WAVE).contains(&free),
            "{free} free descriptors: the first wave must exhaust them"
        );
        println!("{MARK} PORT {}", port(&server));
        io::stdout().flush()?;

        let held = Rc::new(RefCell::new(Vec::new()));
        let served = Rc::new(Cell::new(0));
        // The plain accept loop under test, detached: if accept ever fails, the loop reports
        // the failure and this wait fails.
        let (h, s, acceptor) = (held.clone(), served.clone(), server.clone());
        drop(spawn(async move {
            loop {
                let c = acceptor.accept().await?;
                drop(spawn(serve(c, h.clone(), s.clone())));
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        }));

        let mut emfile_seen = false;
        while served.get() < FIRST_WAVE + SECOND_WAVE {
            sleep_async(Duration::from_millis(5)).await;
            if let Some(e) = server.take_accept_error() {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                if !emfile_seen {
                    println!("{MARK} EMFILE");
                    emfile_seen = true;
                }
            }
            if emfile_seen {
                // Free descriptors: close the connections already served.
                for c in held.borrow_mut().drain(..) {
                    c.close()?;
                }
            }
        }
        assert!(emfile_seen, "accept never ran out of descriptors");
        println!("{MARK} DONE");
        io::stdout().flush()?;
        Ok(())
    })
}
