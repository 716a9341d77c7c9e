//! Helpers for the TLS interop tests (`interop_openssl.rs`, `interop_nim_tls.rs`): a
//! throw-away PKI made with rcgen and written to a temporary directory, external tools that
//! are skipped when missing (failed under `CI=true`), child processes whose stdin is fed and
//! whose stdout is collected as bytes by helper threads, killed on every exit path and never
//! waited on without a deadline, and Nim programs compiled with `-d:ssl`.
//!
//! Each test file compiles this module on its own, so not every helper is used everywhere.
#![allow(dead_code)]

use std::env;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long compiling one Nim program, or `openssl version`, may take before it counts as
/// hung.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether we run under CI (`CI=true`), where a missing tool fails instead of skipping.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(())` when `program --version`-like `probe` runs; `None` after a skip notice when the
/// program is not installed, a panic under CI.
pub fn require_tool(program: &str, probe: &[&str], install_hint: &str) -> Option<()> {
    let mut command = Command::new(program);
    command.args(probe);
    match Process::spawn(program, command) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if in_ci() {
                panic!("{program} is not installed but CI=true: .ci/run must install it ({install_hint})");
            }
            eprintln!("skipped: {program} not installed ({install_hint})");
            None
        }
        Err(e) => panic!("cannot run {program}: {e}"),
        Ok(process) => {
            process
                .finish(TOOL_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"))
                .check_success()
                .unwrap_or_else(|report| panic!("{program} {probe:?} failed:\n{report}"));
            Some(())
        }
    }
}

/// `Some(())` if `openssl` is installed (see [`require_tool`]).
pub fn openssl() -> Option<()> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND
        .get_or_init(|| require_tool("openssl", &["version"], "apt-get install openssl").is_some());
    found.then_some(())
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it, as PEM text
/// and as files in a temporary directory that is removed on drop.
pub struct Pki {
    dir: PathBuf,
    /// The CA certificate.
    pub ca_pem: String,
    /// The server's certificate (leaf only; the CA signed it directly).
    pub cert_pem: String,
    /// The server's certificate, DER.
    pub cert_der: Vec<u8>,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    /// A fresh CA named `ca_name` and a server certificate signed by it.
    pub fn new(ca_name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = env::temp_dir().join(format!(
            "asyncnet-tls-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the PKI directory");
        let pki = Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            dir,
        };
        fs::write(&pki.ca_file, &pki.ca_pem).expect("write ca.pem");
        fs::write(&pki.cert_file, &pki.cert_pem).expect("write server.pem");
        fs::write(&pki.key_file, &pki.key_pem).expect("write server.key");
        pki
    }

    /// Our client context trusting this CA only.
    pub fn client_context(&self) -> asyncnet::TlsContext {
        asyncnet::TlsContext::client_builder()
            .add_root_pem(self.ca_pem.as_bytes())
            .build()
            .expect("client context")
    }

    /// Our server context presenting this certificate.
    pub fn server_context(&self) -> asyncnet::TlsContext {
        asyncnet::TlsContext::server_builder(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .build()
            .expect("server context")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Bytes a helper thread collects from a pipe, and whether the pipe has closed.
#[derive(Default)]
struct Collected {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default, Clone)]
struct Collector(Arc<(Mutex<Collected>, Condvar)>);

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let collector = Collector::default();
        let shared = collector.clone();
        thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let (lock, cond) = &*shared.0;
                let mut c = lock.lock().unwrap();
                if n == 0 {
                    c.closed = true;
                } else {
                    c.bytes.extend_from_slice(&buf[..n]);
                }
                cond.notify_all();
                if c.closed {
                    return;
                }
            }
        });
        collector
    }

    /// Wait until `done(bytes)` holds, the pipe closes or `deadline` passes; returns whether
    /// `done` held.
    fn wait_until(&self, deadline: Instant, mut done: impl FnMut(&[u8]) -> bool) -> bool {
        let (lock, cond) = &*self.0;
        let mut c = lock.lock().unwrap();
        loop {
            if done(&c.bytes) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if c.closed || left.is_zero() {
                return false;
            }
            c = cond.wait_timeout(c, left).unwrap().0;
        }
    }

    /// Everything collected so far.
    fn snapshot(&self) -> Vec<u8> {
        self.0 .0.lock().unwrap().bytes.clone()
    }

    /// Everything, once the pipe closed or the deadline passed.
    fn take_at_close(&self, deadline: Instant) -> Vec<u8> {
        let (lock, cond) = &*self.0;
        let mut c = lock.lock().unwrap();
        while !c.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            c = cond.wait_timeout(c, left).unwrap().0;
        }
        std::mem::take(&mut c.bytes)
    }
}

/// A child process with a piped stdin fed by a helper thread, and stdout and stderr
/// collected by helper threads. Its stdin stays open until [`close_stdin`](Self::close_stdin),
/// exit or drop. Dropping it kills the child.
pub struct Process {
    label: String,
    child: Child,
    stdin: Option<Sender<Vec<u8>>>,
    stdout: Collector,
    stderr: Collector,
}

impl Process {
    pub fn spawn(label: &str, mut command: Command) -> io::Result<Process> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || feed(stdin, rx));
        let stdout = Collector::start(child.stdout.take().expect("piped stdout"));
        let stderr = Collector::start(child.stderr.take().expect("piped stderr"));
        Ok(Process {
            label: label.to_owned(),
            child,
            stdin: Some(tx),
            stdout,
            stderr,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Queue `bytes` for the child's stdin (written in order by the feeder thread, as fast as
    /// the child reads).
    pub fn write_stdin(&self, bytes: impl Into<Vec<u8>>) {
        if let Some(tx) = &self.stdin {
            let _ = tx.send(bytes.into());
        }
    }

    /// Close the child's stdin once what was queued is written.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether the child has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait (at most until `deadline`) until the child's stdout satisfies `done`; returns
    /// whether it did.
    pub fn wait_stdout(&self, deadline: Instant, done: impl FnMut(&[u8]) -> bool) -> bool {
        self.stdout.wait_until(deadline, done)
    }

    /// What the child printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }

    /// A report of the child's output so far, for failure messages.
    pub fn report_so_far(&self) -> String {
        let stdout = self.stdout.snapshot();
        format!(
            "{} (still running or not yet reaped)\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}",
            self.label,
            stdout.len(),
            preview(&stdout),
            self.stderr_so_far()
        )
    }

    /// Waits at most `timeout` for the child to exit (killing it when the time is up), its
    /// stdin still open, and collects what it printed.
    pub fn finish(mut self, timeout: Duration) -> io::Result<Finished> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not exit within {timeout:?} and was killed\n{}",
                        self.label,
                        self.report_so_far()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.stdin = None;
        // The pipes close when the child exits; the deadline still bounds the wait.
        let stdout = self.stdout.take_at_close(deadline);
        let stderr = self.stderr.take_at_close(deadline);
        Ok(Finished {
            label: self.label.clone(),
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

fn feed(mut stdin: ChildStdin, rx: Receiver<Vec<u8>>) {
    // Ends when the sender is dropped (stdin closes with `stdin`) or the child is gone.
    for bytes in rx {
        if stdin
            .write_all(&bytes)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already reaped when `finish` ran; otherwise the child must not outlive the test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The start of `bytes` as text, for reports.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 2000;
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{shown}... ({} more bytes)", bytes.len() - MAX)
    } else {
        shown
    }
}

/// An exited child process and what it printed.
pub struct Finished {
    label: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    /// `Err` with the full report unless the process exited with status 0.
    pub fn check_success(self) -> Result<Finished, String> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(self.to_string())
        }
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.status,
            self.stdout.len(),
            preview(&self.stdout),
            self.stderr
        )
    }
}

/// The TCP port that process `pid` listens on, found in `/proc` (Linux) so that the process
/// can bind port 0 itself: no port is reserved and released, so none can be stolen. Waits
/// until `deadline` for the listening socket to appear; fails early if the process exits.
#[cfg(target_os = "linux")]
pub fn listening_port(process: &mut Process, deadline: Instant) -> io::Result<u16> {
    let pid = process.id();
    loop {
        if let Some(port) = find_listening_port(pid) {
            return Ok(port);
        }
        if process.has_exited() {
            return Err(io::Error::other(format!(
                "{} exited before listening\n{}",
                process.label(),
                process.report_so_far()
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not listen in time\n{}",
                    process.label(),
                    process.report_so_far()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(target_os = "linux")]
fn find_listening_port(pid: u32) -> Option<u16> {
    // The socket inodes among the process's descriptors...
    let mut inodes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    // ... and the TCP socket among them in state LISTEN (0A).
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// A Nim program from `tests/support/nim/` compiled with `-d:ssl -d:release`, once per test
/// binary run. `None` after a skip notice when `nim` is not installed (a panic under CI).
pub fn nim_ssl_program(name: &'static str) -> Option<PathBuf> {
    static BUILT: OnceLock<Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    require_tool("nim", &["--version"], "apt-get install nim")?;
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| *n == name) {
        return Some(path.clone());
    }
    let path = compile_nim(name).unwrap_or_else(|e| panic!("{e}"));
    built.push((name, path.clone()));
    Some(path)
}

/// `name` compiled, or taken as compiled before (see `nim_cache.rs`).
fn compile_nim(name: &str) -> Result<PathBuf, String> {
    const FLAGS: &[&str] = &["-d:ssl", "-d:release", "--hints:off"];
    let out_dir = crate::nim_cache::out_dir("nim-tls-interop");
    let binary = crate::nim_cache::program_path(&out_dir, name, FLAGS)?;
    if binary.exists() {
        return Ok(binary);
    }
    // Several test processes may build at once: each compiles in a directory of its own,
    // then renames the binary into place, so no process runs a file another one writes.
    let build_dir = out_dir.join(format!("build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build_dir);
    fs::create_dir_all(&build_dir)
        .map_err(|e| format!("cannot create {}: {e}", build_dir.display()))?;
    let command = crate::nim_cache::compile_command(&build_dir, name, FLAGS);
    Process::spawn(&format!("nim c -d:ssl {name}.nim"), command)
        .and_then(|p| p.finish(TOOL_TIMEOUT))
        .map_err(|e| e.to_string())?
        .check_success()?;
    fs::rename(build_dir.join(name), &binary)
        .map_err(|e| format!("cannot move {name} into {}: {e}", out_dir.display()))?;
    let _ = fs::remove_dir_all(&build_dir);
    Ok(binary)
}
