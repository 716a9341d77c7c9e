//! The suite's table in Markdown (`BENCHMARKS.md` and the terminal),
//! and the system call table likewise. Both come from the same cells.

use std::fmt::Write as _;

use crate::peers::{ASYNCNET_URING, FLOOR, URING_FLOOR};
use crate::suite::{ratio_to, ratio_to_reference, Row, Spread, SyscallRow, BASELINE};

/// The column headers of the main table.
pub const HEADERS: [&str; 10] = [
    "workload",
    "peer",
    "throughput",
    "server cost per op",
    "x tokio",
    "x C floor",
    "user µs/op",
    "load gen µs/op",
    "p50 µs",
    "p99 µs",
];

/// A short form of a unit for `/s` and `/op`: `round trip` -> `rt`.
pub fn short_unit(unit: &str) -> &str {
    match unit {
        "round trip" => "rt",
        "request" => "req",
        "handshake" => "hs",
        "connection" => "conn",
        u => u,
    }
}

/// A number with about three significant digits (whole numbers from 100).
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".to_string()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `median (min–max)`, or the median alone for one round.
pub fn spread(s: &Spread, rounds: usize, suffix: &str) -> String {
    if rounds > 1 {
        format!("{}{suffix} ({}–{})", num(s.median), num(s.min), num(s.max))
    } else {
        format!("{}{suffix}", num(s.median))
    }
}

fn ratio(r: Option<Spread>) -> String {
    r.map(|r| format!("{:.3}x", r.median))
        .unwrap_or_else(|| "–".to_string())
}

/// The `x tokio` cell: the ratio to the row's reference, which is named
/// beside it when it is not tokio (`0.912x (hyper)`).
fn reference_ratio(rows: &[Row], row: &Row) -> String {
    let r = ratio(ratio_to_reference(rows, row));
    if row.reference == BASELINE || r == "–" {
        r
    } else {
        format!("{r} ({})", row.reference)
    }
}

fn opt(s: &Option<Spread>) -> String {
    s.as_ref()
        .map(|s| num(s.median))
        .unwrap_or_else(|| "–".to_string())
}

/// The cells of `row` (in the order of [`HEADERS`]); `rows` is every row,
/// for the ratios.
pub fn cells(rows: &[Row], row: &Row) -> [String; 10] {
    let unit = short_unit(&row.unit);
    let per = if row.memory() {
        " KB/conn".into()
    } else {
        format!(" µs/{unit}")
    };
    let rate = row
        .rate
        .map(|r| spread(&r, row.rounds, &format!(" {unit}/s")));
    let (workload, peer) = (row.workload.clone(), row.peer.clone());
    [
        workload,
        peer,
        rate.unwrap_or_else(|| "–".to_string()),
        spread(&row.cost, row.rounds, &per),
        reference_ratio(rows, row),
        ratio(ratio_to(rows, row, FLOOR)),
        opt(&row.user_us),
        opt(&row.loadgen_us),
        opt(&row.p50_us),
        opt(&row.p99_us),
    ]
}

/// A Markdown table: the first two columns left-aligned, figures right, `last_left` the last
/// column left too.
pub fn md<const N: usize>(headers: [&str; N], body: &[[String; N]], last_left: bool) -> String {
    let mut out = format!("| {} |\n| --- | --- |", headers.join(" | "));
    out.push_str(&" ---: |".repeat(N - 2 - usize::from(last_left)));
    out.push_str(if last_left { " --- |\n" } else { "\n" });
    for c in body {
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out
}

/// The main table (Markdown, for the terminal too).
pub fn table(rows: &[Row]) -> String {
    md(
        HEADERS,
        &rows.iter().map(|r| cells(rows, r)).collect::<Vec<_>>(),
        false,
    )
}

/// The columns of the io_uring table.
pub const URING_HEADERS: [&str; 4] = [
    "workload",
    "c-uring x C floor",
    "asyncnet-uring x C uring floor",
    "asyncnet-uring x asyncnet",
];

/// The io_uring table (Markdown): per workload with a `c-uring` or an
/// `asyncnet-uring` row, in the order of the rows, the C io_uring floor's
/// cost over the C epoll floor's, and `asyncnet-uring`'s over the C
/// io_uring floor's and over `asyncnet`'s (its epoll driver); medians, as
/// in the main table. Nothing if no workload has either row.
pub fn uring_table(rows: &[Row]) -> Option<String> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        let uring = r.peer == URING_FLOOR || r.peer == ASYNCNET_URING;
        if uring && !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let cell = |workload: &str, peer: &str, base: &str| {
        let row = rows
            .iter()
            .find(|r| r.workload == workload && r.peer == peer);
        ratio(row.and_then(|row| ratio_to(rows, row, base)))
    };
    let body: Vec<[String; 4]> = workloads
        .iter()
        .map(|&w| {
            [
                w.to_string(),
                cell(w, URING_FLOOR, FLOOR),
                cell(w, ASYNCNET_URING, URING_FLOOR),
                cell(w, ASYNCNET_URING, "asyncnet"),
            ]
        })
        .collect();
    // Every column but the workload is a figure: right-aligned.
    let table = md(URING_HEADERS, &body, false).replacen("| --- | --- |", "| --- | ---: |", 1);
    (!body.is_empty()).then_some(table)
}

/// `Rows with a round that had a warning (see the notes): echo64 c50
/// nim, ...`, or nothing if none had.
pub fn warned_line(rows: &[Row]) -> Option<String> {
    let warned: Vec<String> = rows
        .iter()
        .filter(|r| r.warned_rounds > 0)
        .map(|r| format!("{} {}", r.workload, r.peer))
        .collect();
    (!warned.is_empty()).then(|| {
        format!(
            "Rows with a round that had a warning (see the notes): {}.",
            warned.join(", ")
        )
    })
}

/// `x tokio of http c50 is against hyper: ...`: the workloads whose `x
/// tokio` (and chart bars) are against another peer than tokio, or nothing
/// if there are none.
pub fn reference_line(rows: &[Row]) -> Option<String> {
    let mut others: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.reference != BASELINE) {
        let item = format!("{} is against {}", r.workload, r.reference);
        if !others.contains(&item) {
            others.push(item);
        }
    }
    let whose = if others.len() > 1 { "each" } else { "that" };
    (!others.is_empty()).then(|| {
        format!(
            "x tokio of {}: {whose} workload's own server on tokio (named in the cell), as the tokio echo servers do not serve it.",
            others.join(", of ")
        )
    })
}

/// The columns of the system call table.
pub const SYSCALL_HEADERS: [&str; 11] = [
    "workload",
    "peer",
    "per",
    "read",
    "(EAGAIN)",
    "write",
    "epoll_wait",
    "epoll_ctl",
    "io_uring_enter",
    "total",
    "largest others",
];

/// The cells of a system call row: calls per operation.
pub fn syscall_cells(r: &SyscallRow) -> [String; 11] {
    let p = &r.profile;
    let figures = [
        p.read,
        p.read_errors,
        p.write,
        p.epoll_wait,
        p.epoll_ctl,
        p.uring_enter,
        p.total,
    ];
    let [a, b, c, d, e, u, f] = figures.map(|v| format!("{v:.3}"));
    let (workload, peer, unit) = (r.workload.clone(), r.peer.clone(), short_unit(&r.unit));
    [
        workload,
        peer,
        unit.into(),
        a,
        b,
        c,
        d,
        e,
        u,
        f,
        p.others_text(3),
    ]
}

/// The system call table (Markdown).
pub fn syscalls(rows: &[SyscallRow]) -> String {
    md(
        SYSCALL_HEADERS,
        &rows.iter().map(syscall_cells).collect::<Vec<_>>(),
        true,
    )
}
