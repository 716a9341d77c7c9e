//! Ratios across separate runs of the suite (`--runs N`).
//!
//! This machine drifts 10–20 % between runs, and within a run from one 5 s window to the
//! next, so one run's ratio can land on either side of a bar. A bar stated as "the median of
//! three separate suite runs" needs each run's ratio, then their median. This table gives
//! both, so a run does not have to be added up by hand.

use crate::peers::{ASYNCNET_URING, CONTROLS, FLOOR, URING_FLOOR};
use crate::suite::table::{md, num};
use crate::suite::{ratio_to, Row, Spread};

/// The columns of the across-runs table.
pub const RUNS_HEADERS: [&str; 9] = [
    "workload",
    "peer",
    "throughput",
    "x C floor",
    "x tokio",
    "x asyncnet",
    "x C io_uring floor",
    "user µs/op",
    "load gen µs/op",
];

/// `median (run 1, run 2, ...)` of per-run figures, `–` for a run without one; `–` alone
/// if no run has one.
fn across(values: &[Option<f64>], fmt: impl Fn(f64) -> String) -> String {
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let Some(spread) = Spread::of(&known) else {
        return "–".to_string();
    };
    let each: Vec<String> = values
        .iter()
        .map(|v| v.map_or_else(|| "–".to_string(), &fmt))
        .collect();
    format!("{} ({})", fmt(spread.median), each.join(", "))
}

fn ratio(v: f64) -> String {
    format!("{v:.2}")
}

/// Every (workload, peer) of any run, in the order they first appear.
fn keys(runs: &[Vec<Row>]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in runs.iter().flatten() {
        let key = (row.workload.clone(), row.peer.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The ratio of one run's row of `key` to that run's row of peer `base` (`None`: the row's
/// reference, tokio or hyper). `None` for a row over itself, a row or base missing from
/// the run, or a memory row.
fn run_ratio(rows: &[Row], key: &(String, String), base: Option<&str>) -> Option<f64> {
    let row = rows
        .iter()
        .find(|r| r.workload == key.0 && r.peer == key.1 && !r.memory())?;
    let base = base.unwrap_or(&row.reference);
    if base == row.peer {
        return None;
    }
    ratio_to(rows, row, base).map(|r| r.median)
}

/// The across-runs table (Markdown): per row of any run, each run's throughput, `x C floor`,
/// `x tokio`, for our other servers (`asyncnet-uring`, `asyncnet-tpc`) the ratio over
/// `asyncnet` (its epoll driver; one thread), for `asyncnet-uring` (and the io_uring floor's
/// A/A control, `c-uring-again`) the ratio over the C io_uring floor, user CPU µs per op and
/// the load generator's CPU µs per op, each with their median. Nothing for fewer than two
/// runs or no CPU rows.
pub fn runs_table(runs: &[Vec<Row>]) -> Option<String> {
    if runs.len() < 2 {
        return None;
    }
    let body: Vec<[String; 9]> = keys(runs)
        .into_iter()
        .filter(|k| {
            runs.iter()
                .flatten()
                .any(|r| r.workload == k.0 && r.peer == k.1 && !r.memory())
        })
        .map(|key| {
            let ratios = |base: Option<&str>| -> String {
                let per: Vec<Option<f64>> = runs
                    .iter()
                    .map(|rows| run_ratio(rows, &key, base))
                    .collect();
                across(&per, ratio)
            };
            let figure = |pick: fn(&Row) -> Option<Spread>| -> String {
                let per: Vec<Option<f64>> = runs
                    .iter()
                    .map(|rows| {
                        rows.iter()
                            .find(|r| r.workload == key.0 && r.peer == key.1)
                            .and_then(|r| pick(r).map(|s| s.median))
                    })
                    .collect();
                across(&per, num)
            };
            let ours = key.1.starts_with("asyncnet-");
            [
                key.0.clone(),
                key.1.clone(),
                figure(|r| r.rate),
                ratios(Some(FLOOR)),
                ratios(None),
                if ours {
                    ratios(Some("asyncnet"))
                } else {
                    "–".into()
                },
                if key.1 == ASYNCNET_URING || key.1 == CONTROLS[1].0 {
                    ratios(Some(URING_FLOOR))
                } else {
                    "–".into()
                },
                figure(|r| r.user_us),
                figure(|r| r.loadgen_us),
            ]
        })
        .collect();
    (!body.is_empty()).then(|| md(RUNS_HEADERS, &body, false))
}

/// The connection counts of a plain echo row (`echo64 c500` -> 500; not the burst row).
fn echo_conns(workload: &str) -> Option<usize> {
    workload.strip_prefix("echo64 c")?.parse().ok()
}

/// How each peer's user CPU per round trip grows with connections: per run, the user µs
/// per round trip of the plain echo row with the most connections over that of the row with
/// the fewest from 50 up (a single connection measures wake-up latency, not many
/// connections), then the median. One line per peer with both rows; nothing if none has.
pub fn growth_lines(runs: &[Vec<Row>]) -> Vec<String> {
    let counts: Vec<usize> = runs
        .iter()
        .flatten()
        .filter_map(|r| echo_conns(&r.workload))
        .filter(|&c| c >= 50)
        .collect();
    let (Some(&low), Some(&high)) = (counts.iter().min(), counts.iter().max()) else {
        return Vec::new();
    };
    if low == high {
        return Vec::new();
    }
    let mut peers: Vec<&str> = Vec::new();
    for r in runs.iter().flatten() {
        if echo_conns(&r.workload) == Some(high) && !peers.contains(&r.peer.as_str()) {
            peers.push(&r.peer);
        }
    }
    let user = |rows: &[Row], peer: &str, conns: usize| {
        rows.iter()
            .find(|r| r.peer == peer && echo_conns(&r.workload) == Some(conns))
            .and_then(|r| r.user_us.map(|u| u.median))
    };
    peers
        .into_iter()
        .filter_map(|peer| {
            let per: Vec<Option<f64>> = runs
                .iter()
                .map(|rows| {
                    let (lo, hi) = (user(rows, peer, low)?, user(rows, peer, high)?);
                    (lo > 0.0).then(|| hi / lo)
                })
                .collect();
            per.iter().any(Option::is_some).then(|| {
                format!(
                    "- {peer}: user µs per round trip, c{high} over c{low}: {}",
                    across(&per, ratio)
                )
            })
        })
        .collect()
}
