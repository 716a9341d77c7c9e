//! The suite's rows, tables, chart and document, on made-up figures.

use super::machine::Machine;
use super::markdown::{document, RunInfo};
use super::*;
use crate::syscalls::Count;

fn sample(rate: f64, server_us: f64) -> Sample {
    Sample {
        rate: Some(rate),
        server_us,
        user_us: Some(server_us / 10.0),
        p50_us: Some(100.0),
        p99_us: Some(200.0),
        server_cpu_pct: Some(99.0),
        loadgen_us: Some(server_us * 2.0),
        warnings: Vec::new(),
    }
}

/// Two CPU workloads with tokio and the floor, a memory one, one with no
/// tokio row (not drawn), and `http` against hyper (with the floor, no
/// tokio).
fn rows() -> Vec<Row> {
    let cpu = |w: &str, p: &str, us: [f64; 3]| {
        let s: Vec<Sample> = us.iter().map(|&u| sample(1000.0 / u, u)).collect();
        let unit = if w.starts_with("http") {
            "request"
        } else {
            "round trip"
        };
        Row::from_samples(w, p, unit, &s)
    };
    let mem = |p: &str, kb: [f64; 3]| {
        Row::from_samples("idle c5000", p, "connection", &kb.map(Sample::memory))
    };
    vec![
        cpu("echo64 c50", "asyncnet", [4.6, 4.7, 4.8]),
        cpu("echo64 c50", "tokio", [4.5, 4.6, 4.7]),
        cpu("echo64 c50", "nim", [9.0, 9.2, 9.4]),
        cpu("echo64 c50", "c-floor", [4.4, 4.5, 4.6]),
        cpu("ping P16", "asyncnet", [4.9, 5.0, 5.1]),
        cpu("ping P16", "tokio", [4.8, 4.8, 4.8]),
        cpu("ping P16", "tokio-tuned", [0.41, 0.41, 0.41]),
        // Far beyond the axis: cut.
        cpu("ping P16", "nim & <co>", [30.0, 31.0, 32.0]),
        mem("asyncnet", [6.2, 6.3, 6.25]),
        mem("tokio", [4.75, 4.75, 4.76]),
        mem("c-floor", [0.0, 0.01, 0.0]),
        cpu("unix64 c50", "asyncnet", [5.0, 5.1, 5.2]),
        cpu("http c50", "asyncnet", [5.4, 5.5, 5.6]).against("hyper"),
        cpu("http c50", "hyper", [10.0, 11.0, 12.0]).against("hyper"),
        cpu("http c50", "c-floor", [2.2, 2.2, 2.2]).against("hyper"),
    ]
}

/// Index into [`rows`].
const HTTP_ASYNCNET: usize = 12;

#[test]
fn spreads_rows_and_ratios() {
    let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!(
        (s.median, s.min, s.max, s.scaled(2.0).max),
        (2.0, 1.0, 3.0, 1.5)
    );
    assert!(Spread::of(&[]).is_none());
    assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    let m = Sample::measured(1.0, 2.0, 2.0, (0.5, 1.5));
    assert_eq!(
        (m.rate, m.server_us, m.user_us, m.server_cpu_pct),
        (Some(1.0), 1e6, Some(250_000.0), Some(100.0))
    );
    // The load generator's CPU per op, by the same formula; the server's figures unchanged.
    let l = m.clone().with_loadgen((1.0, 0.5), 3.0);
    assert_eq!((l.loadgen_us, l.server_us), (Some(500_000.0), m.server_us));
    let mut warned = sample(10.0, 1.0);
    warned.warnings.push("slow".into());
    let no_p = Sample {
        p50_us: None,
        ..sample(30.0, 3.0)
    };
    let r = Row::from_samples("w", "p", "request", &[sample(20.0, 2.0), warned, no_p]);
    assert_eq!(
        (r.rounds, r.rate.unwrap().median, r.warned_rounds),
        (3, 20.0, 1)
    );
    assert_eq!((r.cost.min, r.cost.median, r.cost.max), (1.0, 2.0, 3.0));
    // A figure missing in one round has no spread.
    assert!(r.p50_us.is_none() && r.p99_us.unwrap().median == 200.0);
    let rows = rows();
    assert!(!r.memory() && rows[8].memory() && rows[8].rate.is_none());
    // The table's cells (below) show the medians; here the rest.
    let vs_tokio = ratio_to_reference(&rows, &rows[0]).unwrap();
    assert!((vs_tokio.min - 4.6 / 4.6).abs() < 1e-12);
    // The floor's memory per connection is about zero: no ratio to it.
    assert!(ratio_to(&rows, &rows[8], "c-floor").is_none());
    let http = &rows[HTTP_ASYNCNET];
    assert!(ratio_to(&rows, http, BASELINE).is_none());
    assert!((ratio_to_reference(&rows, http).unwrap().min - 5.4 / 11.0).abs() < 1e-12);
    // A part's rows all take its reference.
    let part = Part {
        rows: rows[..4].to_vec(),
        ..Part::default()
    }
    .against("hyper");
    assert!(part.rows.iter().all(|r| r.reference == "hyper"));
}

#[test]
fn interleaves_rounds_each_starting_one_peer_further_on_and_keeps_going_after_an_error() {
    let ctx = Ctx {
        rounds: 3,
        cfg: RoundConfig {
            bin_dir: ".".into(),
            secs: 1.0,
            warmup: 0.0,
            server_cpu: None,
            loadgen_cpu: None,
        },
        peers: crate::peers::named(&["asyncnet", "tokio", "nim"]),
        only_peers: Some(vec!["tokio".into(), "nim".into(), "hyper".into()]),
        http_peers: Vec::new(),
        echo_conns: vec![1],
        echo_burst: false,
        idle_conns: 1,
        trace: None,
        verbose: false,
    };
    // Wanted, and among the peers: in the order asked for.
    let picked: Vec<String> = ctx
        .pick(&["nim", "asyncnet", "tokio", "tokio-mt"], &ctx.peers)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(picked, ["nim", "tokio"]);
    assert!(ctx.wants("hyper") && !ctx.wants("asyncnet"));

    let mut order = Vec::new();
    let peers = [Peer::sibling("a", "x"), Peer::sibling("b", "x")];
    let part = ctx.interleave("w", "request", &peers, |p| {
        order.push(p.name.clone());
        if p.name == "b" && order.len() > 2 {
            return Err(io::Error::other("boom"));
        }
        Ok(sample(order.len() as f64, 1.0))
    });
    // Each round starts one peer further on: A B, B(fails) A, A: b runs no third round.
    assert_eq!(order, ["a", "b", "b", "a", "a"]);
    assert_eq!(part.errors, 1);
    assert!(
        part.notes[0].contains("w, b, round 2: error: boom"),
        "{:?}",
        part.notes
    );
    assert_eq!(part.rows.len(), 2);
    assert_eq!(
        (part.rows[0].peer.as_str(), part.rows[1].peer.as_str()),
        ("a", "b")
    );
    assert_eq!((part.rows[0].rounds, part.rows[1].rounds), (3, 1));

    // Three peers, three rounds: each runs once in each place.
    let mut order = Vec::new();
    let peers = [
        Peer::sibling("a", "x"),
        Peer::sibling("b", "x"),
        Peer::sibling("c", "x"),
    ];
    ctx.interleave("w", "request", &peers, |p| {
        order.push(p.name.clone());
        Ok(sample(1.0, 1.0))
    });
    assert_eq!(order, ["a", "b", "c", "b", "c", "a", "c", "a", "b"]);
}

#[test]
fn markdown_table_has_every_row() {
    let rows = rows();
    let md = table::table(&rows);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), rows.len() + 2, "{md}");
    assert!(lines[0].starts_with("| workload | peer | throughput |"));
    for (r, line) in rows.iter().zip(&lines[2..]) {
        assert!(
            line.starts_with(&format!("| {} | {} | ", r.workload, r.peer)),
            "{line}"
        );
        assert_eq!(
            line.matches(" | ").count(),
            table::HEADERS.len() - 1,
            "{line}"
        );
    }
    // Cells: median (min–max), units, ratios.
    assert!(md.contains("| echo64 c50 | asyncnet | 213 rt/s (208–217) | 4.70 µs/rt (4.60–4.80) | 1.022x | 1.044x |"), "{md}");
    // User time, then the load generator's (made up as a tenth and twice the cost).
    assert!(md.contains("| 1.044x | 0.470 | 9.40 | 100 | 200 |"), "{md}");
    // A memory row has no load generator figure.
    assert!(
        md.contains(
            "| idle c5000 | asyncnet | – | 6.25 KB/conn (6.20–6.30) | 1.316x | – | – | – | – | – |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| idle c5000 | asyncnet | – | 6.25 KB/conn (6.20–6.30) | 1.316x | – |"),
        "{md}"
    );
    // No tokio row: no ratio.
    assert!(
        md.contains(
            "| unix64 c50 | asyncnet | 196 rt/s (192–200) | 5.10 µs/rt (5.00–5.20) | – | – |"
        ),
        "{md}"
    );
    // http: x tokio against hyper, named; x C floor as everywhere.
    assert!(
        md.contains("| http c50 | asyncnet | 182 req/s (179–185) | 5.50 µs/req (5.40–5.60) | 0.500x (hyper) | 2.500x |"),
        "{md}"
    );
    let line = table::reference_line(&rows).unwrap();
    assert_eq!(
        line,
        "x tokio of http c50 is against hyper: that workload's own server on tokio (named in the cell), as the tokio echo servers do not serve it."
    );
    assert!(table::reference_line(&rows[..11]).is_none());
    assert_eq!(table::num(211_848.4), "211848");
    assert_eq!(table::num(0.4123), "0.412");
    assert_eq!(table::num(f64::NAN), "–");
}

/// The bars of `svg`, parsed as XML (so it must be well-formed, under one `svg` root, with
/// every geometric attribute a finite number of at least 0): per bar, its attributes.
fn chart_bars(svg: &str) -> Vec<std::collections::HashMap<String, String>> {
    const NUMERIC: [&str; 9] = [
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "width",
        "height",
        "data-ratio",
    ];
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut bars = Vec::new();
    for e in doc.descendants().filter(|n| n.is_element()) {
        for a in e.attributes().filter(|a| NUMERIC.contains(&a.name())) {
            let v: f64 = a
                .value()
                .parse()
                .unwrap_or_else(|_| panic!("{}={:?}", a.name(), a.value()));
            assert!(v.is_finite() && v >= 0.0, "{}={v}", a.name());
        }
        if e.tag_name().name() == "rect" && e.attribute("class") == Some("bar") {
            bars.push(
                e.attributes()
                    .map(|a| (a.name().to_string(), a.value().to_string()))
                    .collect(),
            );
        }
    }
    bars
}

#[test]
fn chart_is_well_formed_with_proportional_bars() {
    let rows = rows();
    let svg = svg::chart(&rows);
    let bars = chart_bars(&svg);
    let num = |b: &std::collections::HashMap<String, String>, k: &str| b[k].parse::<f64>().unwrap();
    // Every row with a row of its reference in its workload has a bar
    // (http's against hyper); unix (no tokio row) has none.
    let drawn: Vec<&Row> = rows.iter().filter(|r| r.workload != "unix64 c50").collect();
    assert_eq!(bars.len(), drawn.len());
    for (r, b) in drawn.iter().zip(&bars) {
        assert_eq!(
            (&b["data-workload"], &b["data-peer"]),
            (&r.workload, &r.peer)
        );
        let want = ratio_to_reference(&rows, r).unwrap().median;
        assert!(
            (num(b, "data-ratio") - want).abs() < 1e-6,
            "{b:?} vs {want}"
        );
    }
    // Lengths proportional to the ratios (tiny bars only to the rounding of their
    // attributes), up to the axis end.
    let px_per_unit: Vec<f64> = bars
        .iter()
        .map(|b| (num(b, "width"), num(b, "data-ratio")))
        .filter(|&(_, r)| (0.05..=svg::MAX_AXIS).contains(&r))
        .map(|(w, r)| w / r)
        .collect();
    assert!(px_per_unit.len() >= 8);
    for k in &px_per_unit {
        assert!((k / px_per_unit[0] - 1.0).abs() < 1e-3, "{px_per_unit:?}");
    }
    let longest = bars.iter().map(|b| num(b, "width")).fold(0.0, f64::max);
    assert!((longest - svg::MAX_AXIS * px_per_unit[0]).abs() < 0.01);
    for want in [
        "(cut)",
        "not drawn: unix64 c50 (no tokio row)",
        ">http c50 (x hyper)</text>",
        "http c50 asyncnet: 0.500x hyper</title>",
        "(x hyper): relative to hyper, on tokio;",
        ">echo64 c50</text>",
        "nim &amp; &lt;co&gt;",
        "idle c5000 (memory)",
    ] {
        assert!(svg.contains(want), "no {want:?} in\n{svg}");
    }
    // Without an http row the chart names no other reference.
    assert!(!svg::chart(&rows[..11]).contains("(x "));
    assert_eq!(svg::axis_end(1.02), 1.5);
    assert_eq!(svg::axis_end(2.2), 2.5);
    assert_eq!(svg::axis_end(40.0), svg::MAX_AXIS);
    // No rows at all: still a well-formed (empty) chart.
    assert!(chart_bars(&svg::chart(&[])).is_empty());
}

fn info(rounds: usize, secs: f64) -> RunInfo {
    RunInfo {
        machine: Machine(
            [
                ("CPUs (`nproc`)", "2"),
                ("CPU", "Test CPU"),
                ("load average when the run started", "0.10 0.20 0.30"),
                ("date", "2025-01-01 00:00 UTC"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
        ),
        command: format!("target/release/bench --rounds {rounds} --secs {secs}"),
        rounds,
        secs,
        warmup: 1.0,
        pinning: "servers on CPU 0".into(),
        syscalls: "Counted with strace.".into(),
        workloads: vec!["echo".into(), "ping".into()],
    }
}

#[test]
fn document_has_every_section_and_row() {
    let count = |name: &str| Count {
        name: name.into(),
        calls: 100,
        errors: 0,
    };
    let counts = [count("read"), count("write")];
    let mut warned = rows();
    warned[2].warned_rounds = 1;
    let part = Part {
        rows: warned,
        syscalls: vec![SyscallRow {
            workload: "echo64 c50".into(),
            peer: "asyncnet".into(),
            unit: "round trip".into(),
            profile: Profile::new(&counts, 100.0),
        }],
        notes: vec!["udp: nim and c-floor serve TCP only".into()],
        errors: 0,
    };
    let smoke = document(&info(1, 1.0), &part, &[]);
    assert!(smoke.starts_with("# Benchmarks\n\n> **Smoke run, not a measurement.**"));
    for s in [
        "## Machine",
        "- CPUs (`nproc`): 2",
        "- CPU: Test CPU",
        "- date: 2025-01-01 00:00 UTC",
        "cargo build --release -p asyncnet-bench && target/release/bench --rounds 1 --secs 1",
        "![Server CPU per operation relative to tokio](bench/chart.svg)",
        "## System calls per operation",
        "| echo64 c50 | asyncnet | rt | 1.000 | 0.000 | 1.000 | 0.000 | 0.000 | 0.000 | 2.000 |  |",
        "- udp: nim and c-floor serve TCP only",
        "Rows with a round that had a warning (see the notes): echo64 c50 nim.",
        &table::table(&part.rows),
        "x tokio of http c50 is against hyper: that workload's own server on tokio",
        "`http` against hyper",
    ] {
        assert!(smoke.contains(s), "missing {s:?} in\n{smoke}");
    }
    assert!(!smoke.contains("machine was busy"));
    // No io_uring row: no io_uring section.
    assert!(!smoke.contains("### io_uring"));
    let mut busy = info(3, 5.0);
    busy.machine.0[2].1 = "2.69 2.06 1.46".into();
    let doc = document(&busy, &part, &[]);
    assert!(!doc.contains("Smoke run"));
    assert!(
        doc.contains("> **The machine was busy:** its load average was 2.69 when"),
        "{doc}"
    );
    assert!(table::warned_line(&rows()).is_none());
    let empty = document(&info(3, 5.0), &Part::default(), &[]);
    assert!(empty.contains("No rows"));
    assert!(!empty.contains("## Notes"));
}

#[test]
fn uring_table_divides_by_both_floors_and_the_epoll_driver() {
    let cpu = |w: &str, p: &str, us: f64| Row::from_samples(w, p, "round trip", &[sample(1.0, us)]);
    let mut rows = rows();
    assert!(table::uring_table(&rows).is_none());
    rows.extend([
        cpu("echo64 c50", "c-uring", 4.0),
        cpu("echo64 c50", "asyncnet-uring", 5.0),
        // No floor in this workload: only the ratio to asyncnet.
        cpu("unix64 c50", "asyncnet-uring", 10.2),
    ]);
    let md = table::uring_table(&rows).unwrap();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| workload | c-uring x C floor | asyncnet-uring x C uring floor | asyncnet-uring x asyncnet |"
    );
    assert_eq!(lines[1], "| --- | ---: | ---: | ---: |");
    // c-floor 4.5, asyncnet 4.7 (medians).
    assert_eq!(lines[2], "| echo64 c50 | 0.889x | 1.250x | 1.064x |");
    assert_eq!(lines[3], "| unix64 c50 | – | – | 2.000x |");
    assert_eq!(lines.len(), 4, "{md}");
    let part = Part {
        rows,
        ..Part::default()
    };
    let doc = document(&info(3, 5.0), &part, &[]);
    assert!(doc.contains(&format!("### io_uring\n\n{}\n\n{md}", markdown::URING_TEXT)));
}

/// Three runs of the same rows, each with its own costs: every run's ratio in order, their
/// median first; a row a run lacks is a dash in that run's place.
#[test]
fn across_runs_gives_each_runs_ratio_and_their_median() {
    let cpu = |w: &str, p: &str, us: f64| Row::from_samples(w, p, "round trip", &[sample(1.0, us)]);
    let run = |asyncnet: f64, floor: f64, uring: Option<f64>, c5000: f64, tpc: f64| {
        let mut rows = vec![
            cpu("echo64 c50", "asyncnet", asyncnet),
            cpu("echo64 c50", "tokio", 10.0),
            cpu("echo64 c50", "c-floor", floor),
            cpu("echo64 c50", "c-uring", 8.0),
            cpu("echo64 c50", "c-uring-again", 8.4),
            cpu("echo64 c50", "asyncnet-tpc", asyncnet * tpc),
            cpu("echo64 c5000", "asyncnet", c5000),
            cpu("echo64 burst8 c1000", "asyncnet", 100.0),
            Row::from_samples(
                "idle c5000",
                "asyncnet",
                "connection",
                &[Sample::memory(1.0)],
            ),
        ];
        if let Some(u) = uring {
            rows.push(cpu("echo64 c50", "asyncnet-uring", u));
        }
        rows
    };
    assert!(runs::runs_table(&[run(11.0, 10.0, None, 11.0, 1.0)]).is_none());
    let runs = [
        run(11.0, 10.0, Some(8.8), 22.0, 1.2),
        run(9.0, 10.0, None, 13.5, 1.0),
        run(10.5, 10.0, Some(8.0), 10.5, 1.05),
    ];
    let md = runs::runs_table(&runs).unwrap();
    let line = |workload: &str, peer: &str| {
        let start = format!("| {workload} | {peer} |");
        md.lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no row {start} in\n{md}"))
            .to_string()
    };
    // Throughput (every sample's rate is 1.0), each ratio, user time (a tenth of the cost),
    // the load generator's time (twice the cost).
    assert_eq!(
        line("echo64 c50", "asyncnet"),
        "| echo64 c50 | asyncnet | 1.00 (1.00, 1.00, 1.00) | 1.05 (1.10, 0.90, 1.05) | 1.05 (1.10, 0.90, 1.05) | – | – | 1.05 (1.10, 0.900, 1.05) | 21.0 (22.0, 18.0, 21.0) |"
    );
    // Not a ratio to itself.
    let floor = line("echo64 c50", "c-floor");
    assert!(
        floor.contains("| – | 1.00 (1.00, 1.00, 1.00) | – | – |"),
        "{floor}"
    );
    let tokio = line("echo64 c50", "tokio");
    assert!(
        tokio.contains("| 1.00 (1.00, 1.00, 1.00) | – | – | – |"),
        "{tokio}"
    );
    // Over asyncnet, then over c-uring (8.0); the run without it is a dash.
    assert_eq!(
        line("echo64 c50", "asyncnet-uring"),
        "| echo64 c50 | asyncnet-uring | 1.00 (1.00, –, 1.00) | 0.84 (0.88, –, 0.80) | 0.84 (0.88, –, 0.80) | 0.78 (0.80, –, 0.76) | 1.05 (1.10, –, 1.00) | 0.840 (0.880, –, 0.800) | 16.8 (17.6, –, 16.0) |"
    );
    // The io_uring floor's A/A control: over it too, not over asyncnet.
    let control = line("echo64 c50", "c-uring-again");
    assert!(
        control.contains("| – | 1.05 (1.05, 1.05, 1.05) |"),
        "{control}"
    );
    // Thread per core: over one thread, and no io_uring floor.
    let tpc = line("echo64 c50", "asyncnet-tpc");
    assert!(tpc.contains("| 1.05 (1.20, 1.00, 1.05) | – |"), "{tpc}");
    // A workload without a floor or tokio: only throughput and user time.
    assert!(line("echo64 c5000", "asyncnet").contains("| – | – | – | – |"));
    // No memory rows.
    assert!(!md.contains("idle"));
    // User time at c5000 over c50 (the burst row is not a connection count): 2.00, 1.50, 1.00.
    assert_eq!(
        runs::growth_lines(&runs),
        vec!["- asyncnet: user µs per round trip, c5000 over c50: 1.50 (2.00, 1.50, 1.00)"]
    );
    let part = Part {
        rows: runs[0].clone(),
        ..Part::default()
    };
    let doc = document(&info(3, 5.0), &part, &runs);
    assert!(doc.contains(&format!(
        "## Across 3 runs\n\n{}\n\n{md}",
        markdown::RUNS_TEXT
    )));
    assert!(doc.contains("c5000 over c50: 1.50"));
    assert!(!document(&info(3, 5.0), &part, &runs[..1]).contains("Across"));
}
