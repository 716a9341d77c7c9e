//! The servers under comparison ("peers").
//!
//! A peer is any program that follows the server contract of this crate
//! (what to listen on as last arguments, see [`Listen`]; ready line on
//! stdout; byte echo): one of our own
//! binaries next to the runner, or a program the runner builds at run time
//! from a source under `peers/` (the Nim std/asyncnet server, the C epoll
//! and io_uring floors; see [`crate::extpeers`]), or any other executable
//! given by path.

use std::io;
use std::path::{Path, PathBuf};

use crate::Listen;

/// Where a peer's program comes from.
#[derive(Clone, Debug)]
pub enum Program {
    /// A binary of this crate, in the same directory as the runner.
    Sibling(&'static str),
    /// Any other executable.
    External(PathBuf),
    /// Built at run time from this file of `peers/` (`.nim`: with nim, `.c`:
    /// with cc) by [`crate::extpeers::prepare`], which turns it into
    /// `External` (or drops the peer if the compiler is missing).
    Source(&'static str),
}

/// The flag that puts every peer in its Redis inline PING mode (`ping`
/// workload): a `+PONG\r\n` per line received.
pub const PONG_FLAG: &str = "--pong";

/// The peer whose figures are also printed as multiples ("x the C floor").
pub const FLOOR: &str = "c-floor";

/// The C io_uring floor (`peers/echo_uring.c`): the io_uring table's
/// reference (see [`crate::suite::table::uring_table`]).
pub const URING_FLOOR: &str = "c-uring";

/// Our echo server with the io_uring driver asked for (the environment
/// variable below; the library falls back to epoll where io_uring is
/// missing or forbidden, or before it has that driver).
pub const ASYNCNET_URING: &str = "asyncnet-uring";

/// The environment variable, and its value, that asks asyncnet for its
/// io_uring driver.
pub const URING_ENV: (&str, &str) = ("ASYNCNET_DRIVER", "io_uring");

/// The A/A controls: each C floor a second time, under its own name, and
/// the floor it repeats. The same program in the same rounds, so its
/// ratio to the floor is what this machine's drift alone does to a
/// same-run ratio (1.00 on a quiet machine): the yardstick for how close to
/// a floor a run can tell a server is.
pub const CONTROLS: [(&str, &str); 2] = [("c-floor-again", FLOOR), ("c-uring-again", URING_FLOOR)];

/// The byte echoes that hold no buffer per connection (`asyncnet-recv`: Nim's `recv(size)`)
/// and the C floor that holds one (`c-floor-buffers`): with `asyncnet` and the floor, they
/// tell what a 4 KiB buffer per connection costs at thousands of connections, apart from
/// what the runtime costs.
pub const BUFFER_PEERS: [&str; 2] = ["asyncnet-recv", "c-floor-buffers"];

/// The peers that run only when `--peers` names them: the controls, the TLS server that
/// does its handshakes in `accept`, and [`BUFFER_PEERS`].
pub const OPT_IN: [&str; 5] = [
    CONTROLS[0].0,
    CONTROLS[1].0,
    "asyncnet-accept",
    BUFFER_PEERS[0],
    BUFFER_PEERS[1],
];

/// True if `--peers` (`only`; none: every peer but [`OPT_IN`]'s) lets the
/// peer `name` run.
pub fn wanted(only: Option<&[String]>, name: &str) -> bool {
    match only {
        Some(only) => only.iter().any(|p| p == name),
        None => !OPT_IN.contains(&name),
    }
}

#[derive(Clone, Debug)]
pub struct Peer {
    /// Short name used in `--peers` and in the report.
    pub name: String,
    pub program: Program,
    /// Arguments before the port.
    pub args: Vec<String>,
    /// Started under `taskset` on the server CPU (false: never pinned, e.g.
    /// a multi-threaded runtime that should use every CPU it likes).
    pub pinned: bool,
    /// Environment variables set for it (`NAME`, value), on top of ours.
    pub env: Vec<(String, String)>,
}

impl Peer {
    /// A binary of this crate, next to the runner.
    pub fn sibling(name: &str, bin: &'static str) -> Peer {
        Peer {
            name: name.to_string(),
            program: Program::Sibling(bin),
            args: Vec::new(),
            pinned: true,
            env: Vec::new(),
        }
    }

    /// A peer built from `source` at run time.
    pub fn source(name: &str, source: &'static str) -> Peer {
        Peer {
            name: name.to_string(),
            program: Program::Source(source),
            args: Vec::new(),
            pinned: true,
            env: Vec::new(),
        }
    }

    /// The program to start and its arguments, for running the executable
    /// at `path` with `args`: itself, or `env NAME=VALUE... path args...`
    /// when the peer sets environment variables (`env` execs it: the
    /// process, its pid and its CPU time are the server's).
    pub fn command(&self, path: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>) {
        if self.env.is_empty() {
            return (path, args);
        }
        let mut all: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        all.push(path.display().to_string());
        all.extend(args);
        (PathBuf::from("env"), all)
    }

    /// The executable's path, checked to exist.
    pub fn path(&self, bin_dir: &Path) -> io::Result<PathBuf> {
        let path = match &self.program {
            Program::Sibling(bin) => sibling(bin_dir, bin),
            Program::External(p) => p.clone(),
            Program::Source(s) => {
                return Err(io::Error::other(format!(
                    "peer {}: not built yet (from {s})",
                    self.name
                )))
            }
        };
        if path.is_file() {
            Ok(path)
        } else {
            let hint = match self.program {
                Program::Sibling(_) => " (run `cargo build --release -p asyncnet-bench` first)",
                Program::External(_) | Program::Source(_) => "",
            };
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("peer {}: {} not found{hint}", self.name, path.display()),
            ))
        }
    }

    /// The full argument list for listening on `listen`.
    pub fn args_for(&self, listen: &Listen) -> Vec<String> {
        let mut a = self.args.clone();
        a.extend(listen.to_args());
        a
    }

    /// The CPU to pin this peer's server to: `cpu` unless the peer is never
    /// pinned.
    pub fn cpu(&self, cpu: Option<usize>) -> Option<usize> {
        cpu.filter(|_| self.pinned)
    }
}

/// Every echo peer; `nim`, `c-floor` and `c-uring` (and their
/// [`CONTROLS`]) are built by the runner (`bench`) when selected (`c-uring`
/// only where io_uring may be used).
pub fn all() -> Vec<Peer> {
    let mut lines = Peer::sibling("asyncnet-lines", "echo_asyncnet");
    lines.args.push("--lines".into());
    let mut tuned = Peer::sibling("tokio-tuned", "echo_tokio");
    tuned.args.push("--tuned".into());
    let mut mt = Peer::sibling("tokio-mt", "echo_tokio");
    mt.args.push("--multi-thread".into());
    mt.pinned = false;
    let mut uring = Peer::sibling(ASYNCNET_URING, "echo_asyncnet");
    uring.env.push((URING_ENV.0.into(), URING_ENV.1.into()));
    let mut lines_uring = Peer::sibling("asyncnet-lines-uring", "echo_asyncnet");
    lines_uring.args.push("--lines".into());
    lines_uring
        .env
        .push((URING_ENV.0.into(), URING_ENV.1.into()));
    // Thread per core on as many threads as tokio-mt has workers, unpinned as it is.
    let mut tpc = Peer::sibling("asyncnet-tpc", "echo_asyncnet");
    tpc.args.extend(["--threads".into(), "2".into()]);
    tpc.pinned = false;
    let mut recv = Peer::sibling(BUFFER_PEERS[0], "echo_asyncnet");
    recv.args.push("--recv".into());
    let mut floor_buffers = Peer::source(BUFFER_PEERS[1], "echo_floor.c");
    floor_buffers.args.push("--own-buffers".into());
    vec![
        Peer::sibling("asyncnet", "echo_asyncnet"),
        Peer::sibling("tokio", "echo_tokio"),
        lines,
        tuned,
        mt,
        tpc,
        Peer::source("nim", "echo_nim.nim"),
        Peer::source(FLOOR, "echo_floor.c"),
        Peer::source(CONTROLS[0].0, "echo_floor.c"),
        recv,
        floor_buffers,
        uring,
        lines_uring,
        Peer::source(URING_FLOOR, "echo_uring.c"),
        Peer::source(CONTROLS[1].0, "echo_uring.c"),
    ]
}

/// The peers of [`all`] with these names, in this order (for tests).
#[cfg(test)]
pub(crate) fn named(names: &[&str]) -> Vec<Peer> {
    let all = all();
    names
        .iter()
        .filter_map(|n| all.iter().find(|p| p.name == *n).cloned())
        .collect()
}

/// The directory holding the running executable (and its siblings).
pub fn bin_dir() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| io::Error::other("executable has no parent directory"))
}

/// The path of binary `name` in `dir`.
pub fn sibling(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_pinning() {
        let p = named(&[
            "tokio",
            "asyncnet-lines",
            "tokio-tuned",
            "tokio-mt",
            "nim",
            "asyncnet-tpc",
        ]);
        assert_eq!(p[0].args_for(&Listen::Udp(0)), ["--udp", "0"]);
        let unix = Listen::Unix("/tmp/s".into());
        assert_eq!(p[1].args_for(&unix), ["--lines", "--unix", "/tmp/s"]);
        assert_eq!(p[2].args_for(&Listen::Tcp(1)), ["--tuned", "1"]);
        assert_eq!(p[3].args_for(&Listen::Tcp(1)), ["--multi-thread", "1"]);
        assert_eq!((p[2].cpu(Some(0)), p[3].cpu(Some(0))), (Some(0), None));
        assert!(p[4].path(Path::new("/")).is_err());
        assert_eq!(p[5].args_for(&Listen::Tcp(1)), ["--threads", "2", "1"]);
        assert_eq!(p[5].cpu(Some(0)), None);
    }

    #[test]
    fn the_uring_peer_runs_our_server_with_the_driver_variable() {
        let p = named(&["asyncnet-uring", "asyncnet"]);
        let args = p[0].args_for(&Listen::Tcp(7));
        let (program, args) = p[0].command(PathBuf::from("/b/echo_asyncnet"), args);
        assert_eq!(program, Path::new("env"));
        assert_eq!(args, ["ASYNCNET_DRIVER=io_uring", "/b/echo_asyncnet", "7"]);
        // Without variables: the executable itself.
        let (program, args) = p[1].command(PathBuf::from("/b/x"), vec!["7".into()]);
        assert_eq!(
            (program, args),
            (PathBuf::from("/b/x"), vec!["7".to_string()])
        );
        assert!(matches!(p[0].program, Program::Sibling("echo_asyncnet")));
    }

    #[test]
    fn controls_run_their_floors_program_and_only_when_named() {
        for (control, floor) in CONTROLS {
            let p = named(&[control, floor]);
            assert_eq!(p.len(), 2, "{control}");
            let program = |p: &Peer| match p.program {
                Program::Source(s) => s,
                _ => panic!("{} is not built from a source", p.name),
            };
            assert_eq!(program(&p[0]), program(&p[1]));
            assert_eq!((&p[0].args, p[0].pinned), (&p[1].args, p[1].pinned));
            assert!(!wanted(None, control) && wanted(None, floor));
            let only = [control.to_string()];
            assert!(wanted(Some(&only), control) && !wanted(Some(&only), floor));
        }
        assert!(!wanted(None, "asyncnet-accept") && wanted(None, "asyncnet"));
    }

    #[test]
    fn the_buffer_peers_run_only_when_named_with_their_flags() {
        let p = named(&BUFFER_PEERS);
        assert_eq!(p[0].args_for(&Listen::Tcp(1)), ["--recv", "1"]);
        assert!(matches!(p[0].program, Program::Sibling("echo_asyncnet")));
        let unix = Listen::Unix("/tmp/s".into());
        assert_eq!(p[1].args_for(&unix), ["--own-buffers", "--unix", "/tmp/s"]);
        assert!(matches!(p[1].program, Program::Source("echo_floor.c")));
        for name in BUFFER_PEERS {
            assert!(!wanted(None, name) && wanted(Some(&[name.to_string()]), name));
        }
    }
}
