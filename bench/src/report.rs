//! The runner's output: one row per round as it finishes, then medians per
//! peer and the ratios against a baseline peer.

use std::fmt::Write;

use crate::peers::FLOOR;
use crate::stats::median;
use crate::workload::RoundResult;

pub fn round_header() -> String {
    format!(
        "{:>5}  {:<14} {:>13} {:>8} {:>8} {:>8} {:>10} {:>10} {:>7} {:>7}",
        "round",
        "peer",
        "round trips/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "srv µs/rt",
        "(user)",
        "srv CPU",
        "lg CPU"
    )
}

pub fn round_row(round: usize, r: &RoundResult) -> String {
    format!(
        "{round:>5}  {:<14} {:>13.0} {:>8.1} {:>8.1} {:>8.0} {:>10.2} {:>10.2} {:>6.1}% {:>6.1}%",
        r.peer,
        r.rps,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.server_us_per_rt(),
        r.server_user_us_per_rt(),
        r.server_cpu_pct(),
        r.loadgen_cpu_pct(),
    )
}

/// Medians over the rounds of one peer.
#[derive(Clone, Debug)]
pub struct Summary {
    pub peer: String,
    pub rounds: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_us_per_rt: f64,
    pub server_user_us_per_rt: f64,
    pub server_cpu_pct: f64,
    pub loadgen_cpu_pct: f64,
}

/// One summary per peer named in `peers` (in that order) that has results.
pub fn summarize(results: &[RoundResult], peers: &[String]) -> Vec<Summary> {
    peers
        .iter()
        .filter_map(|name| {
            let rs: Vec<&RoundResult> = results.iter().filter(|r| &r.peer == name).collect();
            if rs.is_empty() {
                return None;
            }
            let med =
                |f: fn(&RoundResult) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            Some(Summary {
                peer: name.clone(),
                rounds: rs.len(),
                rps: med(|r| r.rps),
                p50_us: med(|r| r.p50_us),
                p99_us: med(|r| r.p99_us),
                server_us_per_rt: med(RoundResult::server_us_per_rt),
                server_user_us_per_rt: med(RoundResult::server_user_us_per_rt),
                server_cpu_pct: med(RoundResult::server_cpu_pct),
                loadgen_cpu_pct: med(RoundResult::loadgen_cpu_pct),
            })
        })
        .collect()
}

/// The medians table, then each peer's ratios against `baseline` (if it
/// is among the summaries).
pub fn summary_table(summaries: &[Summary], baseline: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>13} {:>8} {:>8} {:>10} {:>10} {:>7} {:>7}",
        "peer",
        "rounds",
        "round trips/s",
        "p50 µs",
        "p99 µs",
        "srv µs/rt",
        "(user)",
        "srv CPU",
        "lg CPU"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<14} {:>6} {:>13.0} {:>8.1} {:>8.1} {:>10.2} {:>10.2} {:>6.1}% {:>6.1}%",
            s.peer,
            s.rounds,
            s.rps,
            s.p50_us,
            s.p99_us,
            s.server_us_per_rt,
            s.server_user_us_per_rt,
            s.server_cpu_pct,
            s.loadgen_cpu_pct
        );
    }
    out.push_str(&ratio_lines(summaries, baseline, None));
    out
}

/// Each peer's ratios against `baseline` (if it is among the summaries),
/// one line each, prefixed with `label: ` if given; then, if the C floor
/// ran, each other peer's figures as multiples of the floor's.
pub fn ratio_lines(summaries: &[Summary], baseline: &str, label: Option<&str>) -> String {
    let mut out = String::new();
    let prefix = label.map(|l| format!("{l}: ")).unwrap_or_default();
    if let Some(base) = summaries.iter().find(|s| s.peer == baseline) {
        for s in summaries.iter().filter(|s| s.peer != baseline) {
            let _ = writeln!(
                out,
                "{prefix}ratio {}/{}: round trips/s {:.3}x (higher is better); server CPU per round trip {:.3}x, user part {:.3}x (lower is better)",
                s.peer,
                base.peer,
                s.rps / base.rps,
                s.server_us_per_rt / base.server_us_per_rt,
                s.server_user_us_per_rt / base.server_user_us_per_rt,
            );
        }
    }
    if let Some(floor) = summaries.iter().find(|s| s.peer == FLOOR) {
        for s in summaries.iter().filter(|s| s.peer != FLOOR) {
            let _ = writeln!(
                out,
                "{prefix}{}: server CPU per round trip {:.2}x the C floor, user part {:.2}x; round trips/s {:.3}x the C floor",
                s.peer,
                s.server_us_per_rt / floor.server_us_per_rt,
                s.server_user_us_per_rt / floor.server_user_us_per_rt,
                s.rps / floor.rps,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(peer: &str, rps: f64, cpu: f64) -> RoundResult {
        RoundResult {
            peer: peer.into(),
            conns: 50,
            round_trips: (rps * 2.0) as u64,
            window_secs: 2.0,
            rps,
            p50_us: 10.0,
            p99_us: 20.0,
            max_us: 30.0,
            mean_us: 12.0,
            idle_conns: 0,
            conn_min: 10,
            conn_max: 11,
            lost: 0,
            sampled_secs: 2.0,
            server_user_secs: cpu / 2.0,
            server_sys_secs: cpu / 2.0,
            loadgen_user_secs: 1.0,
            loadgen_sys_secs: 1.0,
        }
    }

    #[test]
    fn medians_and_ratio() {
        let rs = [
            result("a", 100.0, 2.0),
            result("b", 200.0, 2.0),
            result("a", 300.0, 2.0),
            result("b", 400.0, 2.0),
            result("a", 200.0, 2.0),
        ];
        let s = summarize(&rs, &["a".into(), "b".into(), "c".into()]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].rounds, s[0].rps), (3, 200.0));
        assert_eq!((s[1].rounds, s[1].rps), (2, 300.0));
        assert_eq!(s[0].server_cpu_pct, 100.0);
        let table = summary_table(&s, "b");
        assert!(table.contains("ratio a/b: round trips/s 0.667x"), "{table}");
        assert!(
            ratio_lines(&s, "b", Some("udp")).starts_with("udp: ratio a/b: round trips/s 0.667x")
        );
        assert!(ratio_lines(&s, "c", None).is_empty());
        let mut f = s.clone();
        f[0].peer = FLOOR.into();
        let lines = ratio_lines(&f, "b", None);
        assert!(
            lines.contains("b: server CPU per round trip 0.75x the C floor"),
            "{lines}"
        );
        assert!(
            lines.contains("round trips/s 1.500x the C floor"),
            "{lines}"
        );
        assert!(!round_row(1, &rs[0]).is_empty());
        assert!(rs[0].warnings().is_empty());
        let mut starved = rs[0].clone();
        starved.idle_conns = 3;
        assert!(starved.warnings()[0].contains("3 connection"));
        starved.idle_conns = 0;
        starved.conn_min = 1;
        assert!(starved.warnings()[0].contains("unfair"));
        starved.sampled_secs = 4.0;
        assert!(starved.warnings()[1].contains("both under"));
        // One connection: the two sides take turns, never both busy.
        starved.conns = 1;
        assert_eq!(starved.warnings().len(), 1);
        let mut lossy = rs[0].clone();
        lossy.lost = 2;
        assert!(lossy.warnings()[0].contains("2 datagram"));
    }
}

/// One peer's medians in a request workload (`ping`, `http`), for [`request_ratio_lines`].
#[derive(Clone, Copy, Debug)]
pub struct RequestFigures<'a> {
    pub peer: &'a str,
    pub rps: f64,
    pub server_us_per_req: f64,
    pub server_user_us_per_req: f64,
}

/// The ratio lines of a request workload: each peer against `reference` (if it ran), then,
/// if `with_floor`, each peer as a multiple of the C floor. Every line starts with `prefix`
/// (e.g. `-P 16: `).
pub fn request_ratio_lines(
    out: &mut String,
    prefix: &str,
    rows: &[RequestFigures<'_>],
    reference: &str,
    with_floor: bool,
) {
    if let Some(base) = rows.iter().find(|r| r.peer == reference) {
        for r in rows.iter().filter(|r| r.peer != reference) {
            let _ = writeln!(
                out,
                "{prefix}ratio {}/{}: requests/s {:.3}x (higher is better); server CPU per request {:.3}x, user part {:.3}x (lower is better)",
                r.peer,
                base.peer,
                r.rps / base.rps,
                r.server_us_per_req / base.server_us_per_req,
                r.server_user_us_per_req / base.server_user_us_per_req,
            );
        }
    }
    if !with_floor {
        return;
    }
    if let Some(floor) = rows.iter().find(|r| r.peer == FLOOR) {
        for r in rows.iter().filter(|r| r.peer != FLOOR) {
            let _ = writeln!(
                out,
                "{prefix}{}: requests/s {:.3}x the C floor; server CPU per request {:.2}x the C floor, user part {:.2}x",
                r.peer,
                r.rps / floor.rps,
                r.server_us_per_req / floor.server_us_per_req,
                r.server_user_us_per_req / floor.server_user_us_per_req,
            );
        }
    }
}
