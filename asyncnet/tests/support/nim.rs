//! Builds the Nim programs in `tests/support/nim/` and runs them as child
//! processes that are killed on every exit path and never waited on without a
//! deadline.

use std::env;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long compiling one Nim program may take before it counts as hung.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The compiled Nim programs.
pub struct Programs {
    /// `echo_client.nim`: Nim's asyncnet as a client, `echo_client PORT`.
    pub echo_client: PathBuf,
    /// `echo_server.nim`: Nim's asyncnet as a server, prints `PORT <n>` first.
    pub echo_server: PathBuf,
}

/// The Nim programs, compiled once per test binary run.
///
/// Returns `None` after printing a skip notice when `nim` is not installed,
/// except under CI (`CI=true`), where a missing `nim` fails the test.
pub fn programs() -> Option<&'static Programs> {
    static PROGRAMS: OnceLock<Result<Option<Programs>, String>> = OnceLock::new();
    match PROGRAMS.get_or_init(build_programs) {
        Ok(Some(programs)) => Some(programs),
        Ok(None) if env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "nim is not installed but CI=true: .ci/run must install it (apt-get install nim)"
            )
        }
        Ok(None) => {
            eprintln!("skipped: nim not installed (apt-get install nim)");
            None
        }
        Err(message) => panic!("{message}"),
    }
}

fn build_programs() -> Result<Option<Programs>, String> {
    let mut version = Command::new("nim");
    version.arg("--version");
    match Process::spawn("nim --version", version) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot run nim: {error}")),
        Ok(process) => {
            process
                .finish(COMPILE_TIMEOUT)
                .map_err(|error| error.to_string())?
                .check_success()?;
        }
    }

    let out_dir = crate::nim_cache::out_dir("nim-interop");
    const FLAGS: &[&str] = &["-d:release", "--hints:off"];
    let names = ["echo_client", "echo_server"];
    let mut binaries = Vec::new();
    for name in names {
        binaries.push(crate::nim_cache::program_path(&out_dir, name, FLAGS)?);
    }
    if binaries.iter().any(|b| !b.exists()) {
        compile(&out_dir, &names, FLAGS, &binaries)?;
    }
    let [echo_client, echo_server] = <[PathBuf; 2]>::try_from(binaries).expect("two programs");
    Ok(Some(Programs {
        echo_client,
        echo_server,
    }))
}

/// Compile `names` with `flags` at once, each renamed into place as `binaries`.
fn compile(
    out_dir: &Path,
    names: &[&str],
    flags: &[&str],
    binaries: &[PathBuf],
) -> Result<(), String> {
    // Several test processes may build at once (nextest runs one per test):
    // each compiles in a directory of its own, then renames the binaries into
    // place, so no process ever executes a file that another one is writing.
    let build_dir = out_dir.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&build_dir);
    std::fs::create_dir_all(&build_dir)
        .map_err(|error| format!("cannot create {}: {error}", build_dir.display()))?;

    // The compilers run at once; each is waited on with a deadline.
    let compiling: Vec<_> = names
        .iter()
        .map(|name| {
            let command = crate::nim_cache::compile_command(&build_dir, name, flags);
            (name, Process::spawn(&format!("nim c {name}.nim"), command))
        })
        .collect();
    for ((name, process), binary) in compiling.into_iter().zip(binaries) {
        process
            .and_then(|process| process.finish(COMPILE_TIMEOUT))
            .map_err(|error| error.to_string())?
            .check_success()?;
        std::fs::rename(build_dir.join(name), binary)
            .map_err(|error| format!("cannot move {name} into {}: {error}", out_dir.display()))?;
    }
    let _ = std::fs::remove_dir_all(&build_dir);
    Ok(())
}

/// A child process whose stdout and stderr are read by helper threads.
/// Dropping it kills the child.
pub struct Process {
    label: String,
    child: Child,
    stdout_lines: Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Receiver<String>,
}

impl Process {
    /// Starts `command` with no stdin and piped stdout and stderr.
    pub fn spawn(label: &str, mut command: Command) -> io::Result<Process> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut stderr = child.stderr.take().expect("piped stderr");

        let (line_tx, stdout_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            let _ = stderr_tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });

        Ok(Process {
            label: label.to_owned(),
            child,
            stdout_lines,
            stdout_seen: Vec::new(),
            stderr: stderr_rx,
        })
    }

    /// The next line the child prints on stdout, waiting at most `timeout`.
    pub fn stdout_line(&mut self, timeout: Duration) -> io::Result<String> {
        match self.stdout_lines.recv_timeout(timeout) {
            Ok(line) => {
                self.stdout_seen.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{}: no stdout line within {timeout:?}", self.label),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: stdout closed", self.label),
            )),
        }
    }

    /// Waits at most `timeout` for the child to exit (killing it when the
    /// time is up) and collects what it printed.
    pub fn finish(mut self, timeout: Duration) -> io::Result<Finished> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.stdout_seen.extend(self.stdout_lines.try_iter());
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not exit within {timeout:?} and was killed; its stdout: {:?}",
                        self.label, self.stdout_seen
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        };

        // The pipes close when the child exits; the deadline still bounds the wait.
        let mut stdout = std::mem::take(&mut self.stdout_seen);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => stdout.push(line),
                Err(_) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let stderr = self.stderr.recv_timeout(left).unwrap_or_default();
        Ok(Finished {
            label: self.label.clone(),
            status,
            stdout: stdout.join("\n"),
            stderr,
        })
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

/// An exited child process and what it printed.
pub struct Finished {
    label: String,
    pub status: ExitStatus,
    pub stdout: String,
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
            "{} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.label, self.status, self.stdout, self.stderr
        )
    }
}
