//! The TLS benchmark runner: TLS echo (1 KiB messages, 50 connections) and handshakes per
//! second, asyncnet against tokio + tokio-rustls on `current_thread`, in the same run.
//! Builds nothing: it runs the binaries next to its own executable
//! (`cargo build --release -p asyncnet-bench` first).
//!
//! It makes one self-signed certificate at start (files in a private temporary directory,
//! removed at the end), which every server presents and the load generator pins. Then, for
//! each workload, for each round, for each peer in turn (A B A B ...): start the server pinned
//! to one CPU, run `tls_loadgen` pinned to another, sample both processes' CPU time over the
//! measured window, kill the server. Medians per peer and the ratios against the baseline
//! follow each workload; the ratios of all workloads are repeated at the end.

use std::process::ExitCode;

use asyncnet_bench::args::Args;
use asyncnet_bench::child::taskset_available;
use asyncnet_bench::peers;
use asyncnet_bench::procstat::clock_ticks_per_sec;
use asyncnet_bench::tls::certs::{self, IdentityFiles};
use asyncnet_bench::tls::runner::{self, RoundConfig, TlsWorkload};

const USAGE: &str = "\
usage: tls_bench [options]
  --workload W      echo, handshake, or all (default all: echo then handshake)
  --rounds N        interleaved rounds per peer (default 3)
  --secs S          measured window per round, seconds (default 5)
  --warmup S        warm-up before each window, seconds (default 1)
  --conns N         echo connections (default 50)
  --size N          echo message size, bytes (default 1024)
  --hs-conns N      handshake slots in parallel (default 16)
  --peers A,B       servers to compare, in order (default asyncnet,tokio; also asyncnet-accept)
  --baseline NAME   peer the ratios are against (default tokio)
  --server-cpu L    CPU list for the servers, as taskset -c takes it (default 0)
  --loadgen-cpu L   CPU list for the load generator (default 1)
  --no-pin          do not use taskset";

fn run() -> Result<(), String> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("{USAGE}");
        return Ok(());
    }
    let workload = args.take("workload", "all".to_string())?;
    let rounds: usize = args.take("rounds", 3)?;
    let secs: f64 = args.take("secs", 5.0)?;
    let warmup: f64 = args.take("warmup", 1.0)?;
    let conns: usize = args.take("conns", 50)?;
    let size: usize = args.take("size", 1024)?;
    let hs_conns: usize = args.take("hs-conns", 16)?;
    let peer_list = args.take("peers", "asyncnet,tokio".to_string())?;
    let baseline = args.take("baseline", "tokio".to_string())?;
    let server_cpu = args.take("server-cpu", "0".to_string())?;
    let loadgen_cpu = args.take("loadgen-cpu", "1".to_string())?;
    let no_pin = args.take_flag("no-pin");
    args.finish()?;
    if rounds == 0 || conns == 0 || size == 0 || hs_conns == 0 {
        return Err("--rounds, --conns, --size and --hs-conns must be at least 1".into());
    }
    if !(secs > 0.0 && secs <= 3600.0 && (0.0..=3600.0).contains(&warmup)) {
        return Err("--secs must be in (0, 3600] and --warmup in [0, 3600]".into());
    }
    let echo = TlsWorkload::Echo { size, conns };
    let handshake = TlsWorkload::Handshake { conns: hs_conns };
    let works = match workload.as_str() {
        "all" => vec![echo, handshake],
        "echo" => vec![echo],
        "handshake" => vec![handshake],
        w => {
            return Err(format!(
                "unknown workload {w:?} (known: echo, handshake, all)"
            ))
        }
    };
    let peers = runner::select(&peer_list)?;
    let bin_dir = peers::bin_dir().map_err(|e| e.to_string())?;
    runner::check_binaries(&bin_dir, &peers).map_err(|e| e.to_string())?;

    let pinned = !no_pin && taskset_available();
    if !no_pin && !pinned {
        println!("note: taskset not found or not working: running unpinned");
    }
    let identity = certs::generate().map_err(|e| format!("making the certificate: {e}"))?;
    let files = IdentityFiles::write(&identity).map_err(|e| format!("writing it: {e}"))?;
    let cfg = RoundConfig {
        bin_dir,
        cert: files.cert.clone(),
        key: files.key.clone(),
        secs,
        warmup,
        server_cpus: pinned.then(|| server_cpu.clone()),
        loadgen_cpus: pinned.then(|| loadgen_cpu.clone()),
    };
    let pin_note = if pinned {
        format!("server on CPU {server_cpu}, loadgen on CPU {loadgen_cpu}")
    } else {
        "unpinned".to_string()
    };
    let names: Vec<&str> = peers.iter().map(|p| p.name).collect();
    println!(
        "certificate: self-signed ECDSA P-256 for {} (pinned by the load generator)",
        certs::SERVER_NAME
    );
    let mut ratios = String::new();
    for (i, work) in works.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{} on 127.0.0.1", work.describe());
        println!(
            "{rounds} interleaved rounds of {} ({secs} s measured after {warmup} s warm-up); {pin_note}",
            names.join(", ")
        );
        println!(
            "CPU times from /proc/PID/stat ({} ticks/s) over the measured window",
            clock_ticks_per_sec()
        );
        println!();
        println!("{}", runner::round_header(work));
        let mut results = Vec::new();
        for round in 1..=rounds {
            for peer in &peers {
                let r = runner::run_round(peer, work, &cfg).map_err(|e| {
                    format!("{} round {round}, peer {}: {e}", work.name(), peer.name)
                })?;
                println!("{}", runner::round_row(round, &r));
                for w in r.warnings() {
                    println!("       warning ({}): {w}", r.peer);
                }
                results.push(r);
            }
        }
        println!();
        println!("medians over {rounds} rounds ({}):", work.name());
        let summaries = runner::summarize(&results, &peers);
        print!("{}", runner::summary_table(work, &summaries));
        let lines = runner::ratio_lines(work, &summaries, &baseline);
        print!("{lines}");
        ratios.push_str(&lines);
    }
    if works.len() > 1 && !ratios.is_empty() {
        println!();
        println!("ratios against {baseline} (rate: higher is better; server CPU per op: lower is better):");
        print!("{ratios}");
    }
    drop(files);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
