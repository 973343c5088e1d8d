//! A self-contained HTML page of a transactional check: the verdict, the models ruled out,
//! and each anomaly with its explanation; every cycle drawn as an SVG ring of transactions
//! whose arrows are labelled with their kind and, on hover, their reason.

use std::fmt::Write as _;

use super::anomaly::{Anomaly, EdgeKind};
use super::history::TxnHistory;
use super::{TxnOutcome, TxnVerdict};
use crate::check::html::escape;

fn colour(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::WriteWrite => "#c0392b",
        EdgeKind::WriteRead => "#2471a3",
        EdgeKind::ReadWrite => "#d68910",
        EdgeKind::Process => "#1e8449",
        EdgeKind::Realtime => "#7f8c8d",
    }
}

/// The cycle as a ring of transactions, arrows in cycle order.
pub fn cycle_svg(history: &TxnHistory, anomaly: &Anomaly) -> String {
    let n = anomaly.cycle.len().max(1);
    let radius = (40.0 * n as f64).clamp(70.0, 260.0);
    let size = 2.0 * radius + 160.0;
    let centre = size / 2.0;
    let at = |i: usize| {
        let angle = std::f64::consts::TAU * i as f64 / n as f64 - std::f64::consts::FRAC_PI_2;
        (centre + radius * angle.cos(), centre + radius * angle.sin())
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{size:.0}" height="{size:.0}" viewBox="0 0 {size:.0} {size:.0}" font-family="sans-serif" font-size="12">"#
    );
    svg.push_str(r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>"#);
    for (i, edge) in anomaly.cycle.iter().enumerate() {
        let (x1, y1) = at(i);
        let (x2, y2) = at((i + 1) % n);
        // Stop short of the node circles.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        let (sx, sy, ex, ey) = (
            x1 + ux * 26.0,
            y1 + uy * 26.0,
            x2 - ux * 26.0,
            y2 - uy * 26.0,
        );
        let dash = if edge.kind == EdgeKind::ReadWrite {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let c = colour(edge.kind);
        let _ = write!(
            svg,
            r#"<g><title>{}</title><line x1="{sx:.1}" y1="{sy:.1}" x2="{ex:.1}" y2="{ey:.1}" stroke="{c}" stroke-width="2"{dash} marker-end="url(#arrow)"/><text x="{:.1}" y="{:.1}" fill="{c}" text-anchor="middle">{}</text></g>"#,
            escape(&edge.reason),
            (sx + ex) / 2.0 - uy * 12.0,
            (sy + ey) / 2.0 + ux * 12.0,
            edge.kind.name()
        );
    }
    for (i, edge) in anomaly.cycle.iter().enumerate() {
        let (x, y) = at(i);
        let _ = write!(
            svg,
            r##"<g><title>{}</title><circle cx="{x:.1}" cy="{y:.1}" r="24" fill="#fdfefe" stroke="#34495e" stroke-width="1.5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">T{}</text></g>"##,
            escape(&history.describe(edge.from)),
            y + 4.0,
            edge.from
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the page; `title` is the heading (usually the file name).
pub fn render(history: &TxnHistory, outcome: &TxnOutcome, title: &str) -> String {
    let verdict = match outcome.verdict {
        TxnVerdict::Satisfied => format!("{} holds", outcome.consistency),
        TxnVerdict::Violated => format!("not {}", outcome.consistency),
        TxnVerdict::Unknown => format!(
            "unknown: {}",
            outcome.unknown_reason.as_deref().unwrap_or("no verdict")
        ),
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:2em;max-width:70em}}pre{{background:#f4f6f6;padding:1em;white-space:pre-wrap}}.bad{{color:#c0392b}}.good{{color:#1e8449}}</style></head><body>",
        escape(title)
    );
    let class = if outcome.verdict == TxnVerdict::Satisfied {
        "good"
    } else {
        "bad"
    };
    let _ = write!(
        page,
        "<h1>{}</h1><p class=\"{class}\"><b>{}</b> — {}, {} transactions ({} of unknown outcome), checked in {:.1} ms</p>",
        escape(title),
        escape(&verdict),
        outcome.model,
        outcome.transactions,
        outcome.indeterminate,
        outcome.elapsed.as_secs_f64() * 1e3
    );
    if !outcome.ruled_out.is_empty() {
        let names: Vec<&str> = outcome.ruled_out.iter().map(|m| m.name()).collect();
        let _ = write!(page, "<p>Ruled out: {}</p>", escape(&names.join(", ")));
    }
    for anomaly in &outcome.anomalies {
        let _ = write!(page, "<h2>{}</h2>", escape(&anomaly.summary()));
        if !anomaly.cycle.is_empty() {
            page.push_str(&cycle_svg(history, anomaly));
        }
        let _ = write!(page, "<pre>{}</pre>", escape(&anomaly.explanation));
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::txn::{Consistency, TxnModel, TxnOptions, check, formats};

    const SKEW: &str = r#"{"process":0,"type":"ok","f":"txn","value":[["r","x",[]],["r","y",[]],["append","x",1]],"invoke":0,"complete":10}
{"process":1,"type":"ok","f":"txn","value":[["r","x",[]],["r","y",[]],["append","y",2]],"invoke":1,"complete":11}
{"process":2,"type":"ok","f":"txn","value":[["r","x",[1]],["r","y",[2]]],"invoke":20,"complete":30}"#;

    #[test]
    fn the_page_draws_each_cycle_with_its_transactions_and_reasons() {
        let history = formats::read_str(SKEW).unwrap();
        let outcome = check(
            &history,
            &TxnOptions::new(TxnModel::ListAppend, Consistency::Serializable),
        )
        .unwrap();
        let page = render(&history, &outcome, "skew <1>.jsonl");
        assert!(
            page.contains("<h1>skew &lt;1&gt;.jsonl</h1>"),
            "the title is escaped"
        );
        assert!(page.contains("not serializable"));
        assert!(page.contains("Ruled out: repeatable-read, serializable"));
        assert_eq!(page.matches("<svg").count(), 1, "one cycle, one drawing");
        assert_eq!(
            page.matches("<circle").count(),
            2,
            "write skew has two transactions"
        );
        assert_eq!(
            page.matches(">rw</text>").count(),
            2,
            "both edges are anti-dependencies"
        );
        // Reasons are hover titles, escaped.
        assert!(page.contains("<title>T0 read key y without T1&#39;s append of 2"));
        assert!(page.contains("G2-item: write skew between T"));
    }

    #[test]
    fn a_satisfied_model_still_shows_the_anomalies_that_rule_out_stronger_ones() {
        let history = formats::read_str(SKEW).unwrap();
        let outcome = check(
            &history,
            &TxnOptions::new(TxnModel::ListAppend, Consistency::SnapshotIsolation),
        )
        .unwrap();
        let page = render(&history, &outcome, "skew");
        assert!(page.contains("snapshot-isolation holds"));
        // The write skew is still shown: it rules out the stronger models.
        assert_eq!(page.matches("<svg").count(), 1);
    }
}
