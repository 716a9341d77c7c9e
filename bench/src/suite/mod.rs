//! The suite (the `bench` front end): every workload against every peer that
//! serves it, one table, written to `BENCHMARKS.md` with an SVG bar chart.
//!
//! Every workload comes down to rows of one generic type, [`Row`]: a
//! workload label, a peer, and the medians (with min–max) over the rounds
//! of a rate, a cost per operation (server CPU µs, or for `idle` KB per
//! connection), and what else the workload measures. A workload is one
//! function `fn(&Ctx) -> Result<Part, String>` listed in [`WORKLOADS`]
//! (see [`workloads`]); it usually runs [`Ctx::interleave`], which does the
//! rounds (A B C, B C A, ...) and turns each peer's per-round [`Sample`]s into a
//! row.
//!
//! * [`workloads`]: the workload functions.
//! * [`table`]: the table as text (terminal) and as Markdown.
//! * [`svg`]: the bar chart.
//! * [`markdown`]: the `BENCHMARKS.md` document.
//! * [`machine`]: what the document says about the machine.

use std::io;

use crate::peers::Peer;
use crate::syscalls::{Profile, TraceConfig};
use crate::workload::RoundConfig;

pub mod machine;
pub mod markdown;
pub mod runs;
pub mod svg;
pub mod table;
pub mod workloads;

pub use workloads::WORKLOADS;

/// The peer the `x tokio` ratios and the chart are against, unless a
/// workload names another (see [`Row::reference`]).
pub const BASELINE: &str = "tokio";

/// The median and the range of one figure over the rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; none if there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let (n, min, max) = (v.len(), *v.first()?, *v.last()?);
        // The mean of the two middle ones for an even count.
        let median = (v[(n - 1) / 2] + v[n / 2]) / 2.0;
        Some(Spread { median, min, max })
    }

    /// Every figure divided by `by` (a ratio's spread, for a baseline's median).
    pub fn scaled(self, by: f64) -> Spread {
        Spread {
            median: self.median / by,
            min: self.min / by,
            max: self.max / by,
        }
    }
}

/// What one round gave one peer, in the suite's generic terms. An
/// operation is whatever the workload counts: a round trip, a request, a
/// handshake, a MB.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Operations per second (none for `idle`).
    pub rate: Option<f64>,
    /// Server CPU time (user + system) per operation, µs.
    pub server_us: f64,
    /// Its user-mode part, if measured.
    pub user_us: Option<f64>,
    /// Latency percentiles, if the workload has them.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Server CPU use over the window, % of one CPU, if measured.
    pub server_cpu_pct: Option<f64>,
    /// The load generator's CPU time (user + system) per operation, µs, where it is measured
    /// (our `loadgen`: over the window; `redis-benchmark`: over its whole run). On loopback
    /// the kernel's work for a message is shared between the two ends, and which end does
    /// more of it turns on which one is behind (`bench/README.md`, "Reading a cell"): this
    /// column shows that shift.
    pub loadgen_us: Option<f64>,
    /// What makes the round doubtful (shown in the report's notes).
    pub warnings: Vec<String>,
}

impl Sample {
    /// `ops` operations at `rate` per second, in a window of `secs` in which the server spent
    /// `user` and `sys` seconds of CPU (no latencies, no warnings yet).
    pub fn measured(rate: f64, ops: f64, secs: f64, (user, sys): (f64, f64)) -> Sample {
        Sample {
            rate: Some(rate),
            server_us: per_op_us((user, sys), ops),
            user_us: Some(user * 1e6 / ops),
            server_cpu_pct: Some(100.0 * (user + sys) / secs),
            ..Sample::default()
        }
    }

    /// The same sample with the load generator's `user` and `sys` seconds of CPU over its
    /// `ops` operations.
    pub fn with_loadgen(self, cpu: (f64, f64), ops: f64) -> Sample {
        Sample {
            loadgen_us: Some(per_op_us(cpu, ops)),
            ..self
        }
    }

    /// An `idle` round: `kb` of server memory per connection (as the cost; no rate).
    pub fn memory(kb: f64) -> Sample {
        Sample {
            server_us: kb,
            ..Sample::default()
        }
    }
}

/// CPU µs per operation: `user` + `sys` seconds over `ops` operations.
fn per_op_us((user, sys): (f64, f64), ops: f64) -> f64 {
    (user + sys) * 1e6 / ops
}

/// One line of the table: one workload, one peer, figures over the rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The workload as the table shows it, e.g. `echo64 c50`.
    pub workload: String,
    pub peer: String,
    /// What one operation is, singular: `round trip`, `request`, `MB`,
    /// `handshake`, `connection`.
    pub unit: String,
    pub rounds: usize,
    /// Operations per second (none for `idle`).
    pub rate: Option<Spread>,
    /// What the chart compares: server CPU µs per operation, or (unit
    /// `connection`: `idle`) server memory per connection, KB.
    pub cost: Spread,
    pub user_us: Option<Spread>,
    pub p50_us: Option<Spread>,
    pub p99_us: Option<Spread>,
    pub server_cpu_pct: Option<Spread>,
    pub loadgen_us: Option<Spread>,
    /// Rounds that had warnings.
    pub warned_rounds: usize,
    /// The peer whose cost `x tokio` and the chart divide by: [`BASELINE`],
    /// or for a workload the tokio echo servers do not serve, its own
    /// server on tokio (`http`: `hyper`). See [`Row::against`].
    pub reference: String,
}

impl Row {
    /// The row of `peer` in `workload` from its rounds' samples (at least one).
    pub fn from_samples(workload: &str, peer: &str, unit: &str, samples: &[Sample]) -> Row {
        assert!(!samples.is_empty(), "a row needs at least one sample");
        let all = |f: fn(&Sample) -> f64| Spread::of(&samples.iter().map(f).collect::<Vec<_>>());
        let some = |f: fn(&Sample) -> Option<f64>| {
            let v: Option<Vec<f64>> = samples.iter().map(f).collect();
            v.and_then(|v| Spread::of(&v))
        };
        Row {
            workload: workload.to_string(),
            peer: peer.to_string(),
            unit: unit.to_string(),
            rounds: samples.len(),
            rate: some(|s| s.rate),
            cost: all(|s| s.server_us).expect("not empty"),
            user_us: some(|s| s.user_us),
            p50_us: some(|s| s.p50_us),
            p99_us: some(|s| s.p99_us),
            server_cpu_pct: some(|s| s.server_cpu_pct),
            loadgen_us: some(|s| s.loadgen_us),
            warned_rounds: samples.iter().filter(|s| !s.warnings.is_empty()).count(),
            reference: BASELINE.to_string(),
        }
    }

    /// This row with `peer` as its reference (instead of [`BASELINE`]).
    pub fn against(mut self, peer: &str) -> Row {
        self.reference = peer.to_string();
        self
    }

    /// True for a memory row (`idle`): its cost is KB per connection.
    pub fn memory(&self) -> bool {
        self.unit == "connection"
    }
}

/// The cost of `row` relative to the row of `peer` in the same workload
/// (each figure of the spread over that peer's median); none if that peer
/// has no row there or its cost is too close to zero for a ratio to mean
/// anything (the C floor's memory per connection).
pub fn ratio_to(rows: &[Row], row: &Row, peer: &str) -> Option<Spread> {
    let base = rows
        .iter()
        .find(|r| r.workload == row.workload && r.peer == peer)?;
    let meaningful = base.cost.median
        >= if base.memory() {
            0.1
        } else {
            f64::MIN_POSITIVE
        };
    meaningful.then(|| row.cost.scaled(base.cost.median))
}

/// The cost of `row` relative to its reference peer's (see
/// [`Row::reference`]) in the same workload: the `x tokio` column and the
/// chart's bars.
pub fn ratio_to_reference(rows: &[Row], row: &Row) -> Option<Spread> {
    ratio_to(rows, row, &row.reference)
}

/// The system calls of one peer in one workload, per operation.
#[derive(Clone, Debug, PartialEq)]
pub struct SyscallRow {
    pub workload: String,
    pub peer: String,
    /// What one operation is (as in [`Row::unit`]).
    pub unit: String,
    pub profile: Profile,
}

/// What a workload function returns.
#[derive(Clone, Debug, Default)]
pub struct Part {
    pub rows: Vec<Row>,
    pub syscalls: Vec<SyscallRow>,
    /// Peers or passes skipped and why, warnings, errors: one line each.
    pub notes: Vec<String>,
    /// Errors (a failed round): the suite exits with failure if any.
    pub errors: usize,
}

impl Part {
    /// A part of one error, noted (and printed).
    pub fn error(note: String) -> Part {
        println!("  {note}");
        Part {
            notes: vec![note],
            errors: 1,
            ..Part::default()
        }
    }

    /// Appends `other` to this part.
    pub fn extend(&mut self, other: Part) {
        self.rows.extend(other.rows);
        self.syscalls.extend(other.syscalls);
        self.notes.extend(other.notes);
        self.errors += other.errors;
    }

    /// This part with `peer` as the reference of every row (see
    /// [`Row::against`]).
    pub fn against(mut self, peer: &str) -> Part {
        self.rows = self.rows.into_iter().map(|r| r.against(peer)).collect();
        self
    }
}

/// Everything a workload function needs.
#[derive(Debug)]
pub struct Ctx {
    pub rounds: usize,
    /// Binaries, window, warm-up, CPUs.
    pub cfg: RoundConfig,
    /// The servers of [`crate::peers`] this run has (the built-at-run-time
    /// ones only if built).
    pub peers: Vec<Peer>,
    /// `--peers`: the only peers to run, by name, in any workload (none: every peer but the
    /// opt-in ones, [`crate::peers::OPT_IN`]). Workloads with peers of their own (TLS,
    /// http) filter by it too.
    pub only_peers: Option<Vec<String>>,
    /// The `http` workload's servers ([`crate::http::peers`]) this run has,
    /// in that order (its `nim` and `c-floor` only if built); empty unless
    /// `http` is selected and `wrk` is there.
    pub http_peers: Vec<Peer>,
    /// Connection counts of the `echo64` rows.
    pub echo_conns: Vec<usize>,
    /// Run the bursty echo row (`echo64 burst8 c1000`) too.
    pub echo_burst: bool,
    /// Connections of the `idle` row.
    pub idle_conns: usize,
    /// The system call pass, if on.
    pub trace: Option<TraceConfig>,
    /// Print progress lines.
    pub verbose: bool,
}

impl Ctx {
    /// True if `--peers` lets `peer` run (see [`crate::peers::wanted`]).
    pub fn wants(&self, peer: &str) -> bool {
        crate::peers::wanted(self.only_peers.as_deref(), peer)
    }

    /// The peers among `names` (in that order) that this run has in `pool`
    /// ([`Ctx::peers`] or [`Ctx::http_peers`]) and wants (peers not selected
    /// with `--peers`, or not built, are left out; the suite notes the
    /// unbuilt ones once).
    pub fn pick(&self, names: &[&str], pool: &[Peer]) -> Vec<Peer> {
        names
            .iter()
            .filter(|n| self.wants(n))
            .filter_map(|n| pool.iter().find(|p| p.name == *n).cloned())
            .collect()
    }

    /// Prints a progress line (if verbose).
    pub fn say(&self, line: &str) {
        if self.verbose {
            println!("{line}");
        }
    }

    /// Runs `self.rounds` interleaved rounds of `run` over `peers` and
    /// returns a row per peer, in the order of `peers`. Each round starts one
    /// peer further on (A B C, B C A, C A B, ...), so that no peer always runs
    /// first after the last round's load, or after another workload's. A
    /// round that fails becomes a note and an error, and that peer runs no
    /// further rounds of this workload (a peer without any good round gets no
    /// row).
    pub fn interleave(
        &self,
        workload: &str,
        unit: &str,
        peers: &[Peer],
        mut run: impl FnMut(&Peer) -> io::Result<Sample>,
    ) -> Part {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); peers.len()];
        let mut failed = vec![false; peers.len()];
        let mut part = Part::default();
        for round in 1..=self.rounds {
            for k in 0..peers.len() {
                let i = (round - 1 + k) % peers.len();
                let p = &peers[i];
                let peer = &p.name;
                if failed[i] {
                    continue;
                }
                match run(p) {
                    Ok(s) => {
                        let u = table::short_unit(unit);
                        let what = match s.rate {
                            Some(r) => {
                                let lg = s
                                    .loadgen_us
                                    .map(|l| format!("  load gen µs/{u} {l:.3}"))
                                    .unwrap_or_default();
                                format!(
                                    "{r:>10.0} {u}/s  {:>9.3} srv µs/{u}  srv CPU {:.0}%{lg}",
                                    s.server_us,
                                    s.server_cpu_pct.unwrap_or(f64::NAN)
                                )
                            }
                            None => format!("{:>8.2} KB/connection", s.server_us),
                        };
                        let n = self.rounds;
                        self.say(&format!(
                            "  {workload:<16} round {round}/{n}  {peer:<20} {what}"
                        ));
                        for w in &s.warnings {
                            self.say(&format!("      warning ({peer}): {w}"));
                            part.notes
                                .push(format!("{workload}, {peer}, round {round}: {w}"));
                        }
                        samples[i].push(s);
                    }
                    Err(e) => {
                        part.extend(Part::error(format!(
                            "{workload}, {peer}, round {round}: error: {e}"
                        )));
                        failed[i] = true;
                    }
                }
            }
        }
        for (peer, s) in peers.iter().zip(&samples) {
            if !s.is_empty() {
                part.rows
                    .push(Row::from_samples(workload, &peer.name, unit, s));
            }
        }
        part
    }
}

#[cfg(test)]
mod tests;
