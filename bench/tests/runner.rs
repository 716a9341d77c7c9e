//! The runner end to end, briefly, against the peers that exist.

use std::process::Command;

fn echo_bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_echo_bench"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn short_run_prints_the_table() {
    let (ok, out, err) = echo_bench(&[
        "--peers", "tokio", "--rounds", "2", "--secs", "0.3", "--warmup", "0.1", "--conns", "4",
        "--no-pin",
    ]);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("medians over 2 rounds"), "{out}");
    let rows = out
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|n| n.parse::<u32>().is_ok()) && w.next() == Some("tokio")
        })
        .count();
    assert_eq!(rows, 2, "{out}");
}

#[test]
fn all_workloads_run() {
    let (ok, out, err) = echo_bench(&[
        "--workload",
        "all",
        "--rounds",
        "1",
        "--secs",
        "0.3",
        "--warmup",
        "0.1",
        "--no-pin",
    ]);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    for w in ["echo", "udp", "unix"] {
        assert!(
            out.contains(&format!("medians over 1 rounds ({w})")),
            "{out}"
        );
        assert!(out.contains(&format!("{w}: ratio asyncnet/tokio")), "{out}");
    }
    assert!(out.contains("32 sockets"), "{out}");
}

#[test]
fn bad_arguments_fail() {
    let (ok, _, err) = echo_bench(&["--peers", "nope"]);
    assert!(!ok);
    assert!(err.contains("unknown peer"), "{err}");
    let (ok, _, err) = echo_bench(&["--bogus"]);
    assert!(!ok);
    assert!(err.contains("unexpected argument"), "{err}");
    let (ok, _, err) = echo_bench(&["--workload", "tcp"]);
    assert!(!ok);
    assert!(err.contains("unknown workload"), "{err}");
}

/// `--workload http` runs (or, without wrk, says it is skipped); either way
/// it never needs nim (peers asyncnet and hyper only).
#[test]
fn http_workload_runs_or_skips() {
    // Peers are checked before wrk is looked for.
    let (ok, _, err) = echo_bench(&["--workload", "http", "--peers", "tokio"]);
    assert!(!ok);
    assert!(err.contains("unknown peer"), "{err}");
    let (ok, out, err) = echo_bench(&[
        "--workload",
        "http",
        "--peers",
        "asyncnet,hyper",
        "--rounds",
        "1",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--conns",
        "4",
        "--no-pin",
    ]);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    if out.contains("skipping workload http") {
        return;
    }
    assert!(out.contains("medians over 1 rounds (http)"), "{out}");
    assert!(out.contains("ratio asyncnet/hyper: requests/s"), "{out}");
}
