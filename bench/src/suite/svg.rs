//! The bar chart beside `BENCHMARKS.md`, hand-written SVG: for each
//! workload a group of horizontal bars, one per peer, each the peer's cost
//! per operation relative to tokio's in the same workload (tokio = 1.0,
//! lower is better): server CPU per operation, and for `idle` memory per
//! connection. A workload the tokio echo servers do not serve is drawn
//! against its own server on tokio (its [`Row::reference`], e.g. `hyper`
//! for `http`), and its heading says so (`http c50 (x hyper)`). A bar
//! longer than the axis is cut at its end and marked.
//!
//! ```text
//!  echo64 c50   asyncnet    ██████████████▏ 1.01x
//!               tokio       ██████████████  1.00x
//!               nim         ████████████████████████████ 1.91x
//! ```

use std::fmt::Write as _;

use crate::suite::{ratio_to_reference, Row, BASELINE};

/// Chart width, px.
const WIDTH: f64 = 960.0;
/// Where the bars start and the axis ends.
const PLOT_X0: f64 = 260.0;
const PLOT_X1: f64 = 860.0;
const TOP: f64 = 56.0;
const BAR_H: f64 = 14.0;
const BAR_GAP: f64 = 4.0;
const GROUP_HEAD: f64 = 18.0;
const GROUP_GAP: f64 = 10.0;
/// The axis never goes beyond this ratio (longer bars are cut).
pub const MAX_AXIS: f64 = 4.0;

/// The fill of `peer`'s bars: fixed for the known peers, derived from the
/// name for others (so a new peer gets a steady colour too).
pub fn color(peer: &str) -> String {
    match peer {
        "asyncnet" => "#1f77b4".into(),
        "asyncnet-lines" => "#6baed6".into(),
        "asyncnet-accept" => "#3182bd".into(),
        "tokio" => "#ff7f0e".into(),
        "tokio-tuned" => "#fdae6b".into(),
        "tokio-mt" => "#e6550d".into(),
        "hyper" => "#9467bd".into(),
        "nim" => "#2ca02c".into(),
        "c-floor" => "#7f7f7f".into(),
        other => {
            let h = other
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            format!("hsl({}, 55%, 50%)", h % 360)
        }
    }
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The end of the axis for a largest ratio of `max`: the next half step,
/// at least 1.5, at most [`MAX_AXIS`].
pub fn axis_end(max: f64) -> f64 {
    ((max * 2.0).ceil() / 2.0).clamp(1.5, MAX_AXIS)
}

/// One workload's bars: its label, what its cost is, the peer its bars are
/// relative to, each row with its ratio to that peer.
struct Group<'a> {
    workload: String,
    memory: bool,
    reference: String,
    bars: Vec<(&'a Row, f64)>,
}

/// Rows grouped by workload, in order, each with its bars' ratios; and the
/// workloads left out for want of a row of their reference peer, as
/// `http c50 (no hyper row)`.
fn groups(rows: &[Row]) -> (Vec<Group<'_>>, Vec<String>) {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    let mut notes = Vec::new();
    for row in rows {
        if out.last().is_none_or(|g| g.workload != row.workload) {
            if skipped.last() == Some(&row.workload.as_str()) {
                continue;
            }
            out.push(Group {
                workload: row.workload.clone(),
                memory: row.memory(),
                reference: row.reference.clone(),
                bars: Vec::new(),
            });
        }
        match ratio_to_reference(rows, row) {
            Some(r) => out.last_mut().expect("pushed").bars.push((row, r.median)),
            None => {
                out.pop();
                skipped.push(&row.workload);
                notes.push(format!("{} (no {} row)", row.workload, row.reference));
            }
        }
    }
    (out, notes)
}

/// The chart of `rows` (as [`crate::suite::table`] lists them).
pub fn chart(rows: &[Row]) -> String {
    let (groups, skipped) = groups(rows);
    let max = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.1))
        .fold(1.0, f64::max);
    let axis = axis_end(max);
    let scale = (PLOT_X1 - PLOT_X0) / axis;
    let bars: usize = groups.iter().map(|g| g.bars.len()).sum();
    let body_h = groups.len() as f64 * (GROUP_HEAD + GROUP_GAP) + bars as f64 * (BAR_H + BAR_GAP);
    let peers: Vec<&str> = {
        let mut p: Vec<&str> = Vec::new();
        for g in &groups {
            for (r, _) in &g.bars {
                if !p.contains(&r.peer.as_str()) {
                    p.push(&r.peer);
                }
            }
        }
        p
    };
    let legend_y = TOP + body_h + 16.0;
    let height = legend_y + 24.0 + if skipped.is_empty() { 0.0 } else { 18.0 };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{PLOT_X0}" y="18" font-size="14" font-weight="bold">Server CPU per operation relative to tokio (tokio = 1.0, lower is better)</text>"#
    );
    // Groups against another server on tokio (http: hyper) say so.
    let mut others: Vec<&str> = Vec::new();
    for g in groups.iter().filter(|g| g.reference != BASELINE) {
        if !others.contains(&g.reference.as_str()) {
            others.push(&g.reference);
        }
    }
    let others: String = others
        .iter()
        .map(|p| format!("(x {p}): relative to {p}, on tokio; ", p = escape(p)))
        .collect();
    let _ = writeln!(
        s,
        r##"<text x="{PLOT_X0}" y="34" fill="#555555">idle rows: server memory per idle connection; {others}medians of the rounds</text>"##
    );
    // Grid and axis labels, every half step; tokio's 1.0 stronger.
    let mut tick = 0.0;
    while tick <= axis + 1e-9 {
        let x = PLOT_X0 + tick * scale;
        let (stroke, w) = if (tick - 1.0).abs() < 1e-9 {
            ("#333333", 1.5)
        } else {
            ("#dddddd", 1.0)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{w}"/>"#,
            TOP - 6.0,
            TOP + body_h
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{tick:.1}x</text>"##,
            TOP - 10.0
        );
        tick += 0.5;
    }
    let mut y = TOP;
    for Group {
        workload,
        memory,
        reference,
        bars,
    } in &groups
    {
        let mut head = escape(workload);
        if *memory {
            head.push_str(" (memory)");
        }
        if reference != BASELINE {
            let _ = write!(head, " (x {})", escape(reference));
        }
        let _ = writeln!(
            s,
            r#"<text x="8" y="{:.1}" font-weight="bold">{head}</text>"#,
            y + 13.0
        );
        y += GROUP_HEAD;
        for (row, r) in bars {
            let cut = *r > axis;
            let w = r.min(axis) * scale;
            let peer = escape(&row.peer);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{peer}</text>"#,
                PLOT_X0 - 6.0,
                y + BAR_H - 3.0
            );
            let _ = writeln!(
                s,
                r#"<rect class="bar" data-workload="{}" data-peer="{peer}" data-ratio="{r:.6}" x="{PLOT_X0}" y="{y:.1}" width="{w:.3}" height="{BAR_H}" fill="{}"><title>{} {peer}: {r:.3}x {}</title></rect>"#,
                escape(workload),
                color(&row.peer),
                escape(workload),
                escape(reference)
            );
            let label = if cut {
                format!("{r:.2}x (cut)")
            } else {
                format!("{r:.2}x")
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{label}</text>"#,
                PLOT_X0 + w + 4.0,
                y + BAR_H - 3.0
            );
            y += BAR_H + BAR_GAP;
        }
        y += GROUP_GAP;
    }
    let mut x = PLOT_X0;
    for p in &peers {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{legend_y:.1}" width="12" height="12" fill="{}"/>"#,
            color(p)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 16.0,
            legend_y + 10.0,
            escape(p)
        );
        x += 24.0 + 7.0 * p.chars().count() as f64;
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="8" y="{:.1}" fill="#555555">not drawn: {}</text>"##,
            legend_y + 34.0,
            escape(&skipped.join(", "))
        );
    }
    s.push_str("</svg>\n");
    s
}
