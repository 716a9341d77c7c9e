//! The suite (`bench`) end to end, briefly. No figure is checked, only that
//! each part runs and reports.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn suite_writes_the_document_and_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let args = "--only echo,unix,bulk,tls --echo-conns 2 --peers asyncnet,tokio --rounds 1 \
                --secs 0.3 --warmup 0.1 --syscall-requests 200 --no-pin --out";
    let mut args: Vec<&str> = args.split_whitespace().collect();
    args.push(dir.path().to_str().unwrap());
    let (ok, out, err) = run(env!("CARGO_BIN_EXE_bench"), &args);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let md = std::fs::read_to_string(dir.path().join("BENCHMARKS.md")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("bench/chart.svg")).unwrap();
    assert!(md.starts_with("# Benchmarks\n\n> **Smoke run, not a measurement.**"));
    assert!(
        md.contains("target/release/bench --only echo,unix,bulk,tls"),
        "{md}"
    );
    assert!(md.contains("![Server CPU per operation relative to tokio](bench/chart.svg)"));
    for workload in [
        "echo64 c2",
        "unix64 c50",
        "bulk",
        "tls echo 1K c50",
        "tls handshake",
    ] {
        for peer in ["asyncnet", "tokio"] {
            let row = format!("| {workload} | {peer} | ");
            assert!(md.contains(&row), "no {row:?} in\n{md}");
            // A bar needs tokio's cost above 0: a 0.3 s window of a busy machine may give
            // a short row no CPU tick at all. Ping-pong rows always have some.
            if !workload.contains("64") {
                continue;
            }
            assert!(
                svg.contains(&format!(r#"data-workload="{workload}" data-peer="{peer}""#)),
                "no bar for {workload} {peer}"
            );
        }
    }
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    // Latencies are measured (a loopback round trip takes microseconds).
    let row = md
        .lines()
        .find(|l| l.starts_with("| echo64 c2 | asyncnet | "))
        .unwrap();
    let p50: f64 = row.split(" | ").nth(7).unwrap().parse().unwrap();
    assert!(p50 > 1.0, "{row}");
    // The system call pass ran, or says why not (no strace, or no ptrace).
    assert!(
        md.contains("| echo64 c2 | asyncnet | rt | ") || md.contains("Skipped: strace"),
        "{md}"
    );
}

#[test]
fn suite_rejects_unknown_workloads_and_peers() {
    for (args, said) in [
        (
            &["--only", "echo,nope", "--no-write"][..],
            "unknown workload \"nope\"",
        ),
        (
            &["--peers", "tokio,nope", "--no-write"],
            "unknown peer \"nope\"",
        ),
        (&["--rounds", "0"], "invalid value '0' for '--rounds"),
    ] {
        let (ok, _, err) = run(env!("CARGO_BIN_EXE_bench"), args);
        assert!(!ok && err.contains(said), "{args:?}: {err}");
    }
}

/// Where io_uring_setup fails (here made to, by a seccomp filter as Docker's
/// default profile does), the suite skips the C io_uring floor with the
/// reason and runs the rest.
#[test]
fn suite_skips_the_io_uring_floor_where_io_uring_is_forbidden() {
    let dir = tempfile::tempdir().unwrap();
    let noring = dir.path().join("noring");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/noring.c");
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&noring)
        .arg(src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "cc missing or failing under CI");
        eprintln!("skipped: cc could not build {src}");
        return;
    }
    let args = "1 BENCH --only echo --echo-conns 1 --peers c-floor,c-uring --rounds 1 \
                --secs 0.2 --warmup 0.05 --no-syscalls --no-write";
    let args: Vec<&str> = args
        .split_whitespace()
        .map(|a| {
            if a == "BENCH" {
                env!("CARGO_BIN_EXE_bench")
            } else {
                a
            }
        })
        .collect();
    let (ok, out, err) = run(noring.to_str().unwrap(), &args);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("note: c-uring: skipped: `")
            && out.contains("--check` failed: echo_uring: io_uring_setup: Operation not permitted"),
        "{out}"
    );
    assert!(out.contains("| echo64 c1 | c-floor | "), "{out}");
    assert!(!out.contains("| echo64 c1 | c-uring | "), "{out}");
}
