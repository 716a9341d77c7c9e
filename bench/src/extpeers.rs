//! Peers built at run time from the sources under `peers/`: the Nim
//! std/asyncnet server and Nim's asynchttpserver (`nim c -d:release`), the
//! C epoll floors of the echo and http workloads and the C io_uring floor of
//! the echo workloads (`cc -O2`). Cargo never compiles them (CI builds the crate without nim or
//! a C compiler): the sources are embedded in the runner, written to a
//! private directory under `$TMPDIR` (a `TempDir`), compiled there when the peer is
//! selected, and removed with the directory at the end of the run. A
//! missing compiler skips the peer with a note, and so does a failed
//! [`CHECKS`] run (the io_uring floor where io_uring may not be used).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::peers::{Peer, Program};

/// The sources under `peers/`, embedded: file name and text.
pub const SOURCES: [(&str, &str); 5] = [
    ("echo_nim.nim", include_str!("../peers/echo_nim.nim")),
    ("echo_floor.c", include_str!("../peers/echo_floor.c")),
    ("http_nim.nim", include_str!("../peers/http_nim.nim")),
    ("http_floor.c", include_str!("../peers/http_floor.c")),
    ("echo_uring.c", include_str!("../peers/echo_uring.c")),
];

/// Headers that sources of [`SOURCES`] include, embedded: written next to every source
/// before it is built.
pub const HEADERS: [(&str, &str); 1] = [("listen.h", include_str!("../peers/listen.h"))];

/// Sources whose program must pass a check once built, or the peer is
/// skipped: the program and this argument must exit 0. `echo_uring
/// --check` sets up its ring and says why not where io_uring is missing or
/// forbidden (`ENOSYS`, `EPERM`: Docker's default seccomp profile, or
/// `kernel.io_uring_disabled`).
pub const CHECKS: [(&str, &str); 1] = [("echo_uring.c", "--check")];

/// How long a compiler may run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `TOOL --version` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A child killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd` with stdin closed and stdout and stderr into `log`, waiting
/// at most `timeout` (then it is killed). `Ok(true)` if it succeeded.
pub(crate) fn run_bounded(cmd: &mut Command, log: &Path, timeout: Duration) -> io::Result<bool> {
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let mut child = Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?,
    );
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait()? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} took over {} s", timeout.as_secs()),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `tool args` (at most 10 s): whether it succeeded and what it printed
/// (stdout and stderr); none if it could not be run.
pub fn probe(tool: &str, args: &[&str]) -> Option<(bool, String)> {
    let log = tempfile::NamedTempFile::new().ok()?;
    let ok = run_bounded(Command::new(tool).args(args), log.path(), PROBE_TIMEOUT).ok()?;
    Some((ok, std::fs::read_to_string(log.path()).unwrap_or_default()))
}

/// The compiler and the command that builds `file` (of [`SOURCES`]) into `dir`.
fn build_command(file: &str, dir: &Path) -> io::Result<(&'static str, Command, PathBuf)> {
    let text = SOURCES.iter().find(|s| s.0 == file).map(|s| s.1);
    let text = text.ok_or_else(|| io::Error::other(format!("no source {file}")))?;
    let (stem, ext) = file.split_once('.').unwrap_or((file, ""));
    let (exe, src) = (dir.join(stem), dir.join(file));
    std::fs::write(&src, text)?;
    for (header, text) in HEADERS {
        std::fs::write(dir.join(header), text)?;
    }
    let tool = if ext == "nim" { "nim" } else { "cc" };
    let mut c = Command::new(tool);
    if ext == "nim" {
        let cache = format!(
            "--nimcache:{}",
            dir.join(format!("nimcache-{stem}")).display()
        );
        let out = format!("-o:{}", exe.display());
        c.args(["c", "-d:release", "--hints:off", &cache, &out]);
    } else {
        c.arg("-O2").arg("-o").arg(&exe);
    }
    c.arg(&src);
    Ok((tool, c, exe))
}

/// Runs `exe arg` (at most 10 s): `Err` with what it printed (or why it
/// could not run) unless it exits 0.
pub fn check(exe: &Path, arg: &str) -> Result<(), String> {
    let what = format!("`{} {arg}`", exe.display());
    match probe(&exe.display().to_string(), &[arg]) {
        Some((true, _)) => Ok(()),
        Some((false, said)) => Err(format!("{what} failed: {}", said.trim())),
        None => Err(format!("{what} could not be run")),
    }
}

/// Builds the peers that come from source into `dir`, turning them into
/// `External` peers; a peer whose compiler is missing is left out, with a
/// note on stdout. A failed build is an error (with the compiler's output).
pub fn prepare(
    peers: Vec<Peer>,
    dir: &tempfile::TempDir,
    notes: &mut Vec<String>,
) -> Result<Vec<Peer>, String> {
    let mut out = Vec::with_capacity(peers.len());
    for mut peer in peers {
        let Program::Source(source) = peer.program else {
            out.push(peer);
            continue;
        };
        let (tool, mut cmd, exe) = build_command(source, dir.path())
            .map_err(|e| format!("peer {}: writing its source: {e}", peer.name))?;
        if !probe(tool, &["--version"]).is_some_and(|(ok, _)| ok) {
            let note = format!(
                "{}: not built (`{tool}` not found or not working): skipped",
                peer.name
            );
            println!("note: {note}");
            notes.push(note);
            continue;
        }
        let log = dir.path().join(format!("build-{}.log", peer.name));
        let started = Instant::now();
        match run_bounded(&mut cmd, &log, BUILD_TIMEOUT) {
            Ok(true) if exe.is_file() => {}
            Ok(_) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("peer {}: {cmd:?} failed:\n{text}", peer.name));
            }
            Err(e) => return Err(format!("peer {}: {e}", peer.name)),
        }
        println!(
            "built peer {} with `{tool}` in {:.1} s",
            peer.name,
            started.elapsed().as_secs_f64()
        );
        if let Some(&(_, arg)) = CHECKS.iter().find(|c| c.0 == source) {
            if let Err(said) = check(&exe, arg) {
                let note = format!("{}: skipped: {said}", peer.name);
                println!("note: {note}");
                notes.push(note);
                continue;
            }
        }
        peer.program = Program::External(exe);
        out.push(peer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_embedded() {
        for (file, text) in SOURCES {
            let want = if file.ends_with("_uring.c") {
                "IORING_RECV_MULTISHOT"
            } else if file.ends_with(".c") {
                "EPOLLET"
            } else {
                "import std/[asyncdispatch, async"
            };
            assert!(text.contains(want), "{file}");
        }
        // Every header is included by some source, and every source's include is embedded.
        for (header, _) in HEADERS {
            let include = format!("#include \"{header}\"");
            assert!(
                SOURCES.iter().any(|(_, text)| text.contains(&include)),
                "{header}"
            );
        }
        for (file, text) in SOURCES {
            for line in text.lines().filter(|l| l.starts_with("#include \"")) {
                let name = line.trim_start_matches("#include \"").trim_end_matches('"');
                assert!(HEADERS.iter().any(|h| h.0 == name), "{file}: {name}");
            }
        }
    }

    #[test]
    fn bounded_runs_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let log = path.join("x.log");
        assert!(run_bounded(Command::new("true").arg("x"), &log, PROBE_TIMEOUT).unwrap());
        assert!(!run_bounded(&mut Command::new("false"), &log, PROBE_TIMEOUT).unwrap());
        let slow = run_bounded(
            Command::new("sleep").arg("10"),
            &log,
            Duration::from_millis(100),
        );
        assert_eq!(slow.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(probe("no-such-tool-asyncnet-bench", &["--version"]).is_none());
        assert_eq!(probe("false", &["x"]).map(|p| p.0), Some(false));
        // A check passes only if the program exits 0, and says what it printed.
        assert_eq!(check(Path::new("true"), "x"), Ok(()));
        let said = check(Path::new("sh"), "-c").unwrap_err();
        assert!(said.starts_with("`sh -c` failed: "), "{said}");
        assert!(check(Path::new("no-such-tool-asyncnet-bench"), "x").is_err());
        assert!(CHECKS.iter().all(|c| SOURCES.iter().any(|s| s.0 == c.0)));
        // Peers not built from source pass through untouched.
        let peers = crate::peers::named(&["tokio"]);
        assert_eq!(prepare(peers, &dir, &mut Vec::new()).unwrap().len(), 1);
    }
}
