//! `buffered_reads` keeps its contract: every mode, plain and over TLS, reads every byte and
//! prints its one result line (its figures are for people; the test checks only the shape).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_buffered_reads");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("buffered_reads runs");
    assert!(
        out.status.success(),
        "buffered_reads {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn every_mode_reads_every_byte_and_reports_a_rate() {
    for tls in [false, true] {
        for mode in ["recv", "recv-into", "loop"] {
            let mut args = vec!["--reps", "3", mode, "300000"];
            if tls {
                args.insert(0, "--tls");
            }
            let line = run(&args);
            assert!(
                line.contains("300000 bytes x3") && line.trim_end().ends_with("MB/s"),
                "{args:?}: {line:?}"
            );
        }
        let mut args = vec!["pingpong", "200"];
        if tls {
            args.insert(0, "--tls");
        }
        let line = run(&args);
        assert!(
            line.starts_with("pingpong 200: ") && line.contains("per round trip"),
            "{args:?}: {line:?}"
        );
    }
}
