//! Compiled Nim programs kept across test runs: compiling one takes seconds (Nim, then C), and
//! CI runs the interop tests in three suites (epoll, io_uring, 32-bit), each a new process.
//!
//! A program's file name carries a hash of everything that goes into it: the compiler's
//! version, the flags, and every source in `tests/support/nim/`. A change to any of them
//! names a new file, so a stale program is never run; an unchanged one is compiled once.
//! Programs are renamed into place whole, so a process never runs a file another one writes.
//! They are kept in the build directory's own `tmp`, also for a test built for another target
//! (the 32-bit suite): the programs are native either way.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sources of the Nim programs.
pub fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/nim")
}

/// The directory for compiled programs of the kind `what`: under the `tmp` of the build
/// directory's root (the outermost ancestor of `CARGO_TARGET_TMPDIR` that Cargo tagged with
/// `CACHEDIR.TAG`; a build for another target has its own `tmp` below it), else under
/// `CARGO_TARGET_TMPDIR` itself.
pub fn out_dir(what: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp
        .ancestors()
        .filter(|dir| dir.join("CACHEDIR.TAG").is_file())
        .last();
    root.map_or_else(|| tmp.to_path_buf(), |root| root.join("tmp"))
        .join(what)
}

/// Where `name` compiled with `flags` is kept under `out_dir` (it may not exist yet).
///
/// # Errors
///
/// `nim --version` or reading the sources failed.
pub fn program_path(out_dir: &Path, name: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let mut hash = DefaultHasher::new();
    let version = Command::new("nim")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run nim --version: {e}"))?;
    hash.write(&version.stdout);
    for flag in flags {
        hash.write(flag.as_bytes());
        hash.write_u8(0);
    }
    let dir = sources();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for file in files {
        let text = fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        hash.write(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.write_u64(text.len() as u64);
        hash.write(&text);
    }
    Ok(out_dir.join(format!("{name}-{:016x}", hash.finish())))
}

/// `nim c` of `name` with `flags`, its output and its C files in `build_dir`.
pub fn compile_command(build_dir: &Path, name: &str, flags: &[&str]) -> Command {
    let mut command = Command::new("nim");
    command
        .arg("c")
        .args(flags)
        .arg(format!(
            "--nimcache:{}",
            build_dir.join(format!("cache-{name}")).display()
        ))
        .arg(format!("-o:{}", build_dir.join(name).display()))
        .arg(sources().join(format!("{name}.nim")));
    command
}
