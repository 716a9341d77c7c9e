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
        "c-uring" => "#4d4d4d".into(),
        "asyncnet-uring" => "#08519c".into(),
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
    let pairs = [
        ('&', "&amp;"),
        ('<', "&lt;"),
        ('>', "&gt;"),
        ('"', "&quot;"),
        ('\'', "&apos;"),
    ];
    pairs
        .iter()
        .fold(s.to_string(), |t, (c, e)| t.replace(*c, e))
}

/// The end of the axis for a largest ratio of `max`: the next half step,
/// at least 1.5, at most [`MAX_AXIS`].
pub fn axis_end(max: f64) -> f64 {
    ((max * 2.0).ceil() / 2.0).clamp(1.5, MAX_AXIS)
}

/// One workload's bars: its first row (label, unit, reference), and each
/// row with its ratio to the reference.
type Group<'a> = (&'a Row, Vec<(&'a Row, f64)>);

/// Rows grouped by workload, in order, each with its bars' ratios; and the
/// workloads left out for want of a row of their reference peer, as
/// `http c50 (no hyper row)`.
fn groups(rows: &[Row]) -> (Vec<Group<'_>>, Vec<String>) {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    let mut notes = Vec::new();
    for row in rows {
        if out.last().is_none_or(|g| g.0.workload != row.workload) {
            if skipped.last() == Some(&row.workload.as_str()) {
                continue;
            }
            out.push((row, Vec::new()));
        }
        match ratio_to_reference(rows, row) {
            Some(r) => out.last_mut().expect("pushed").1.push((row, r.median)),
            None => {
                out.pop();
                skipped.push(&row.workload);
                notes.push(format!("{} (no {} row)", row.workload, row.reference));
            }
        }
    }
    (out, notes)
}

/// The distinct items, in order of first appearance.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Appends a `<text>` at (`x`, `y`) with `attrs` and `content` (escaped by the caller).
fn text(s: &mut String, x: f64, y: f64, attrs: &str, content: &str) {
    let _ = writeln!(s, r#"<text x="{x:.1}" y="{y:.1}"{attrs}>{content}</text>"#);
}

/// The chart of `rows` (as [`crate::suite::table`] lists them).
pub fn chart(rows: &[Row]) -> String {
    let (groups, skipped) = groups(rows);
    let bars = groups.iter().flat_map(|g| g.1.iter());
    let axis = axis_end(bars.clone().map(|b| b.1).fold(1.0, f64::max));
    let scale = (PLOT_X1 - PLOT_X0) / axis;
    let body_h = groups.len() as f64 * (GROUP_HEAD + GROUP_GAP)
        + bars.clone().count() as f64 * (BAR_H + BAR_GAP);
    let peers = distinct(bars.map(|(r, _)| r.peer.as_str()));
    let legend_y = TOP + body_h + 16.0;
    let height = legend_y + 24.0 + if skipped.is_empty() { 0.0 } else { 18.0 };
    let grey = r##" fill="#555555""##;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let title = "Server CPU per operation relative to tokio (tokio = 1.0, lower is better)";
    text(
        &mut s,
        PLOT_X0,
        18.0,
        r#" font-size="14" font-weight="bold""#,
        title,
    );
    // Groups against another server on tokio (http: hyper) say so.
    let others = distinct(groups.iter().map(|g| g.0.reference.as_str()));
    let others: String = (others.iter().filter(|p| **p != BASELINE))
        .map(|p| format!("(x {p}): relative to {p}, on tokio; ", p = escape(p)))
        .collect();
    let sub =
        format!("idle rows: server memory per idle connection; {others}medians of the rounds");
    text(&mut s, PLOT_X0, 34.0, grey, &sub);
    // Grid and axis labels, every half step; tokio's 1.0 stronger.
    let mut tick = 0.0;
    while tick <= axis + 1e-9 {
        let x = PLOT_X0 + tick * scale;
        let (stroke, w) = if (tick - 1.0).abs() < 1e-9 {
            ("#333333", 1.5)
        } else {
            ("#dddddd", 1.0)
        };
        let (y1, y2) = (TOP - 6.0, TOP + body_h);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{w}"/>"#
        );
        let attrs = format!(r#" text-anchor="middle"{grey}"#);
        text(&mut s, x, TOP - 10.0, &attrs, &format!("{tick:.1}x"));
        tick += 0.5;
    }
    let mut y = TOP;
    for (first, bars) in &groups {
        let (workload, reference) = (escape(&first.workload), escape(&first.reference));
        let mut head = workload.clone();
        if first.memory() {
            head.push_str(" (memory)");
        }
        if first.reference != BASELINE {
            let _ = write!(head, " (x {reference})");
        }
        text(&mut s, 8.0, y + 13.0, r#" font-weight="bold""#, &head);
        y += GROUP_HEAD;
        for (row, r) in bars {
            let w = r.min(axis) * scale;
            let peer = escape(&row.peer);
            text(
                &mut s,
                PLOT_X0 - 6.0,
                y + BAR_H - 3.0,
                r#" text-anchor="end""#,
                &peer,
            );
            let _ = writeln!(
                s,
                r#"<rect class="bar" data-workload="{workload}" data-peer="{peer}" data-ratio="{r:.6}" x="{PLOT_X0}" y="{y:.1}" width="{w:.3}" height="{BAR_H}" fill="{}"><title>{workload} {peer}: {r:.3}x {reference}</title></rect>"#,
                color(&row.peer),
            );
            let cut = if *r > axis { " (cut)" } else { "" };
            text(
                &mut s,
                PLOT_X0 + w + 4.0,
                y + BAR_H - 3.0,
                "",
                &format!("{r:.2}x{cut}"),
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
        text(&mut s, x + 16.0, legend_y + 10.0, "", &escape(p));
        x += 24.0 + 7.0 * p.chars().count() as f64;
    }
    if !skipped.is_empty() {
        let note = format!("not drawn: {}", escape(&skipped.join(", ")));
        text(&mut s, 8.0, legend_y + 34.0, grey, &note);
    }
    s.push_str("</svg>\n");
    s
}
