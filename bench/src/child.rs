//! Child processes for the runner: optionally pinned to one CPU with
//! `taskset`, stdout read line by line with deadlines, killed on drop (so on
//! every exit path of the runner, panics included).

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// True if `taskset -c 0 true` works here.
pub fn taskset_available() -> bool {
    crate::extpeers::probe("taskset", &["-c", "0", "true"]).is_some_and(|(ok, _)| ok)
}

/// A running child process. Dropping it kills it (SIGKILL) and reaps it.
pub struct Spawned {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// The child's stdin if piped ([`Spawned::start_with`]).
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `program args...`, under `taskset -c CPU` when `cpu` is given
    /// (taskset execs the program, so the pid is the program's). Stdout is
    /// captured line by line; stderr goes to ours; stdin is closed.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        cpu: Option<usize>,
    ) -> io::Result<Self> {
        Self::start_with(name, program, args, cpu, Stdio::null(), Stdio::inherit())
    }

    /// [`Spawned::start`] with the child's stdin and stderr as given: `Stdio::piped()` stdin
    /// for [`Spawned::send_line`] (closed when the `Spawned` drops), `Stdio::null()` stderr
    /// for a tool's harmless warnings.
    pub fn start_with(
        name: &str,
        program: &Path,
        args: &[String],
        cpu: Option<usize>,
        stdin: Stdio,
        stderr: Stdio,
    ) -> io::Result<Self> {
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("starting {}: {e}", program.display()))
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        // Detached: it ends when the child's stdout closes (at the latest
        // when the child is killed). Never joined, so a grandchild holding
        // the pipe open cannot hang the runner.
        thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Spawned {
            name: name.to_string(),
            child,
            lines,
            stdin,
            status: None,
        })
    }

    /// Writes `line` and a newline to the child's stdin and flushes it
    /// (only for a child started with a piped stdin).
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("{}: stdin is not a pipe", self.name)))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of the child's stdout, waiting until `deadline`.
    pub fn next_line(&self, deadline: Instant) -> io::Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{}: timed out waiting for output", self.name),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: stdout closed (process exited?)", self.name),
            )),
        }
    }

    /// Skips lines until `pick` accepts one, waiting until `deadline`.
    pub fn wait_for_line<T>(
        &self,
        deadline: Instant,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> io::Result<T> {
        loop {
            let line = self.next_line(deadline)?;
            if let Some(v) = pick(&line) {
                return Ok(v);
            }
        }
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits until `deadline` for the child to exit; an error if it does not, or fails (the
    /// message ends with `detail`, e.g. what it said).
    pub fn finish(&mut self, deadline: Instant, detail: &str) -> io::Result<()> {
        while self.try_wait()?.is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        match self.status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(io::Error::other(format!(
                "{} failed: {s}{detail}",
                self.name
            ))),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not exit", self.name),
            )),
        }
    }

    /// Kills a server that must still be running: an error if it has exited
    /// (it died during the run).
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(s) = self.try_wait()? {
            let name = &self.name;
            return Err(io::Error::other(format!(
                "server {name} exited during the run: {s}"
            )));
        }
        self.kill()
    }

    /// Kills the child (if still running) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.try_wait()?.is_none() {
            // An error here means it exited in between: reaping settles it.
            let _ = self.child.kill();
            self.status = Some(self.child.wait()?);
        }
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!(
                "warning: could not kill {} (pid {}): {e}",
                self.name,
                self.pid()
            );
        }
    }
}
