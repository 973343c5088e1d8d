//! A self-contained HTML page showing a history per client on a time axis, as inline SVG,
//! with the operations of a counterexample highlighted. Hovering an operation shows its
//! details (SVG `<title>`; no script needed).

use std::fmt::Write as _;

use super::counterexample::render_text;
use super::history::{History, Outcome, TimeUnit, describe_op};
use super::{CheckOutcome, Verdict};

/// At most this many operations are drawn; around a counterexample, the ones nearest to it.
const MAX_OPS: usize = 3000;
const LANE: f64 = 26.0;
const BAR: f64 = 18.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 30.0;

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Linearized,
    Pending,
    Blocked,
}

/// Renders the page. `title` is shown as the heading (usually the file name).
pub fn render(history: &History, outcome: &CheckOutcome, title: &str) -> String {
    let cx = outcome.counterexample.as_ref();
    let mut role = vec![Role::Plain; history.ops.len()];
    if let Some(cx) = cx {
        for &p in &cx.prefix {
            role[p] = Role::Linearized;
        }
        for &p in &cx.pending {
            role[p] = Role::Pending;
        }
        role[cx.blocked] = Role::Blocked;
    }

    // Which operations to draw: the failing key's, or all; then a window if too many.
    let mut shown: Vec<usize> = (0..history.ops.len())
        .filter(|&i| match cx {
            Some(cx) if cx.key.is_some() => history.ops[i].key == cx.key,
            _ => true,
        })
        .collect();
    shown.sort_by_key(|&i| (history.ops[i].invoke, i));
    let total = shown.len();
    if shown.len() > MAX_OPS {
        let focus = cx
            .and_then(|cx| shown.iter().position(|&i| i == cx.blocked))
            .unwrap_or(0);
        let start = focus
            .saturating_sub(MAX_OPS * 4 / 5)
            .min(shown.len() - MAX_OPS);
        shown = shown[start..start + MAX_OPS].to_vec();
    }

    let t_min = shown
        .iter()
        .map(|&i| history.ops[i].invoke)
        .min()
        .unwrap_or(0);
    let t_max = shown
        .iter()
        .map(|&i| {
            let op = &history.ops[i];
            op.complete.unwrap_or(op.invoke)
        })
        .max()
        .unwrap_or(1)
        .max(t_min + 1);
    // Unknown outcomes run to the right edge: they may take effect any time later.
    let span = (t_max - t_min) as f64 * 1.03;
    let mut processes: Vec<u64> = shown.iter().map(|&i| history.ops[i].process).collect();
    processes.sort_unstable();
    processes.dedup();
    let lane_of = |p: u64| processes.binary_search(&p).unwrap_or(0);

    let width = (shown.len() as f64 * 6.0).clamp(1000.0, 30000.0);
    let height = TOP + processes.len() as f64 * LANE + 30.0;
    let x = |t: u64| LEFT + (t.saturating_sub(t_min)) as f64 / span * width;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="monospace" font-size="11">"#,
        w = LEFT + width + 20.0
    );
    // Time axis with ten ticks.
    for k in 0..=10 {
        let t = t_min + ((t_max - t_min) as f64 * k as f64 / 10.0) as u64;
        let xt = x(t);
        let label = match history.time_unit {
            TimeUnit::Nanoseconds => format!("{:.3} ms", t as f64 / 1e6),
            TimeUnit::Lines => format!("line {t}"),
        };
        let _ = write!(
            svg,
            r##"<line x1="{xt:.1}" y1="{y1}" x2="{xt:.1}" y2="{height}" stroke="#ddd"/><text x="{xt:.1}" y="{ty}" fill="#555">{}</text>"##,
            escape(&label),
            y1 = TOP - 8.0,
            ty = TOP - 12.0
        );
    }
    for (lane, p) in processes.iter().enumerate() {
        let y = TOP + lane as f64 * LANE;
        let _ = write!(
            svg,
            r##"<text x="4" y="{:.1}" fill="#333">process {p}</text>"##,
            y + BAR * 0.75
        );
    }
    for &i in &shown {
        let op = &history.ops[i];
        let y = TOP + lane_of(op.process) as f64 * LANE;
        let x0 = x(op.invoke);
        let end = match op.outcome {
            Outcome::Info => LEFT + width,
            _ => x(op.complete.unwrap_or(t_max)),
        };
        let w = (end - x0).max(2.0);
        let (fill, stroke) = match (role[i], op.outcome) {
            (Role::Blocked, _) => ("#f8b4b4", "#c00"),
            (Role::Pending, _) => ("#fde2b8", "#d97706"),
            (Role::Linearized, _) => ("#c6f0c6", "#2a7a2a"),
            (_, Outcome::Fail) => ("#eeeeee", "#999"),
            (_, Outcome::Info) => ("#fff4d6", "#c9a227"),
            _ => ("#dbe8fb", "#4a78c2"),
        };
        let dash = if op.outcome == Outcome::Info {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let sw = if matches!(role[i], Role::Blocked | Role::Pending) {
            2.5
        } else {
            1.0
        };
        let _ = write!(
            svg,
            r#"<g class="op"><title>{tip}</title><rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/>"#,
            tip = escape(&describe_op(i, op)),
        );
        let label = short_label(op);
        // Only label bars wide enough to hold it (about 7 px per character).
        if w > label.chars().count() as f64 * 7.0 + 4.0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#222">{}</text>"##,
                x0 + 3.0,
                y + BAR * 0.72,
                escape(&label)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");

    let verdict_color = match outcome.verdict {
        Verdict::Linearizable => "#2a7a2a",
        Verdict::NotLinearizable => "#c00",
        Verdict::Unknown => "#b45309",
    };
    let mut page = String::new();
    let _ = write!(
        page,
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t} — schism check</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}
.scroll {{ overflow-x: auto; border: 1px solid #ddd; }}
.legend span {{ display: inline-block; padding: 0 0.6em; margin-right: 0.5em; border: 1px solid #999; border-radius: 3px; font-size: 0.85em; }}
g.op:hover rect {{ stroke-width: 3; }}
</style></head><body>
<h1>{t}</h1>
<p><strong style="color:{verdict_color}">{verdict}</strong> — model {model}, {ops} operations ({ind} with unknown outcome), {parts} partition(s), checked in {ms:.3} ms</p>
"##,
        t = escape(title),
        verdict = escape(outcome.verdict.name()),
        model = escape(outcome.model.name()),
        ops = outcome.operations,
        ind = outcome.indeterminate,
        parts = outcome.partitions,
        ms = outcome.elapsed.as_secs_f64() * 1e3,
    );
    if let Some(why) = &outcome.unknown_reason {
        let _ = writeln!(page, "<p>{}</p>", escape(why));
    }
    if let Some(cx) = cx {
        let _ = writeln!(
            page,
            "<h2>Counterexample</h2><pre>{}</pre>",
            escape(&render_text(history, cx, 20))
        );
    }
    let _ = writeln!(
        page,
        r##"<p class="legend"><span style="background:#c6f0c6">linearized prefix</span><span style="background:#f8b4b4">cannot be linearized</span><span style="background:#fde2b8">pending, none fits</span><span style="background:#dbe8fb">ok</span><span style="background:#fff4d6">unknown outcome (runs on)</span><span style="background:#eee">failed</span></p>"##
    );
    if shown.len() < total {
        let _ = writeln!(
            page,
            "<p>Showing {} of {total} operations, around the counterexample.</p>",
            shown.len()
        );
    }
    if let Some(k) = cx.and_then(|c| c.key.as_ref()) {
        let _ = writeln!(page, "<p>Key {} only.</p>", escape(k));
    }
    let _ = writeln!(page, "<div class=\"scroll\">{svg}</div>\n</body></html>");
    page
}

fn short_label(op: &super::history::Operation) -> String {
    use super::history::Call;
    match &op.call {
        Call::Read { value } | Call::Get { value } => match value {
            Some(v) => format!("{} {v}", op.call.name()),
            None => format!("{} ?", op.call.name()),
        },
        Call::Write { value } | Call::Put { value } | Call::Append { value } => {
            format!("{} {value}", op.call.name())
        }
        Call::Cas { from, to, .. } => format!("cas {from}→{to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
