//! The HTML report: the verdict and its reasons, the figures, and one time axis on which the
//! fault windows, every probe of every node, probe latency and workload throughput line up.
//! Built with maud (escaped by construction); the plot is inline SVG, so the page is one
//! self-contained file.

use std::time::Duration;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::api::{AssertionResult, Verdict, duration};
use crate::check::Outcome;
use crate::check::txn::{TxnHistory, TxnOutcome};
use crate::engine::experiment::ExperimentOutcome;
use crate::engine::recorded::Recorded;
use crate::engine::verdict::AssertionState;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 16.0;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1080px;color:#222}
h1{font-size:1.5em;margin:0 0 .2em} h2{font-size:1.15em;margin-top:1.6em}
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;color:#fff;font-weight:600}
.Pass{background:#2e7d32}.Fail{background:#c62828}.Inconclusive{background:#ef6c00}
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}
th{background:#f5f5f5} .muted{color:#777} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:12px}
svg text{font:11px system-ui,sans-serif} .held{color:#2e7d32}.failed{color:#c62828}.undecided{color:#ef6c00}
";

/// Renders the whole report page.
pub fn render(name: &str, outcome: &ExperimentOutcome) -> String {
    let status = &outcome.status;
    let verdict = status.verdict.unwrap_or(Verdict::Inconclusive);
    let verdict_name = format!("{verdict:?}");
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Schism: " (name) " — " (verdict_name) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Schism experiment " code { (name) } }
                p {
                    span class={"verdict " (verdict_name)} { (verdict_name) }
                    " seed " code { (status.seed.unwrap_or_default()) }
                    " · window " (duration::format(outcome.timeline.window))
                    " · " (outcome.nodes.len()) " nodes"
                    " · " (format!("{:.0}", outcome.ops_per_second)) " ops/s"
                }
                @if !status.reasons.is_empty() {
                    h2 { "Why" }
                    ul { @for reason in &status.reasons { li { (reason) } } }
                }
                h2 { "Assertions" }
                table {
                    tr { th { "assertion" } th { "outcome" } }
                    @for check in &outcome.checks {
                        tr {
                            td { (check.name) }
                            @match &check.state {
                                AssertionState::Held => td.held { "held" },
                                AssertionState::Failed(m) => td.failed { "failed: " (m) },
                                AssertionState::Undecided(m) => td.undecided { "undecided: " (m) },
                            }
                        }
                    }
                }
                h2 { "Timeline" }
                (timeline_svg(outcome))
                p.muted { "Shaded bands are fault windows. Probe rows: green answered, red did not. Throughput: green ok, orange unknown outcome, grey failed." }
                (figures(outcome))
                (prometheus_table(outcome))
                (faults_table(outcome))
                @if let Recorded::Transactions { history, check: Some(check) } = &outcome.recorded {
                    (anomalies(history, check))
                } @else if let Some(c) = &status.consistency {
                    @if let Some(cx) = &c.counterexample {
                        h2 { "Counterexample" }
                        p { (c.anomaly.clone().unwrap_or_default()) }
                        pre { (cx) }
                        p { a href="check.html" { "Every operation on a time axis, offending ones highlighted" } }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// Most anomalies drawn in full; every kind is counted.
const ANOMALIES_DRAWN: usize = 6;

/// The transactional anomalies: what was found and counted, what it rules out, and each
/// example with its explanation and its cycle drawn.
fn anomalies(history: &TxnHistory, check: &TxnOutcome) -> Markup {
    let counts: Vec<String> = check
        .counts
        .iter()
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect();
    let ruled_out: Vec<&str> = check.ruled_out.iter().map(|m| m.name()).collect();
    let mut shown: Vec<_> = check.anomalies.iter().collect();
    shown.sort_by_key(|a| !a.kind.forbidden_by(check.consistency));
    html! {
        h2 { "Anomalies" }
        @if check.anomalies.is_empty() && check.unclassified.is_empty() {
            p.held { "None found: " (check.transactions) " transactions satisfy " (check.consistency) "." }
        } @else {
            p { "Found: " (counts.join(", ")) }
            @if !ruled_out.is_empty() { p { "Ruled out: " (ruled_out.join(", ")) } }
            @for u in &check.unclassified {
                p.undecided { "A dependency cycle of unknown class among " (u.size) " transactions (" (format!("{:?}", u.variant).to_lowercase()) " edges)." }
            }
            @for anomaly in shown.iter().take(ANOMALIES_DRAWN) {
                h3 class=(if anomaly.kind.forbidden_by(check.consistency) { "failed" } else { "muted" }) { (anomaly.summary()) }
                pre { (anomaly.explanation) }
                @if !anomaly.cycle.is_empty() { (PreEscaped(crate::check::txn::html::cycle_svg(history, anomaly))) }
            }
            p { a href="check.html" { "The checker's page: every anomaly found, with its transactions" } }
        }
    }
}

/// Every Prometheus assertion: how it came out, and its samples over the window.
fn prometheus_table(outcome: &ExperimentOutcome) -> Markup {
    if outcome.prometheus.is_empty() {
        return html! {};
    }
    let window = outcome.timeline.window.as_secs_f64().max(1e-3);
    html! {
        h2 { "Prometheus assertions" }
        table {
            tr { th { "name" } th { "when" } th { "query" } th { "expect" } th { "samples" } th { "worst" } th { "outcome" } th { "over the window" } }
            @for sampled in &outcome.prometheus {
                @let record = sampled.record();
                tr {
                    td { (record.name) } td { (record.when.name()) } td { code { (record.query) } } td { (record.expect) }
                    td { (record.samples) } td { (record.worst.map(|w| format!("{w}")).unwrap_or_else(|| "–".into())) }
                    @match record.result {
                        AssertionResult::Held => td.held { "held" },
                        AssertionResult::Failed => td.failed { (record.reason.clone().unwrap_or_default()) },
                        AssertionResult::Undecided => td.undecided { (record.reason.clone().unwrap_or_default()) },
                    }
                    td { (samples_svg(&sampled.samples, window)) }
                }
            }
        }
    }
}

/// A small plot of samples over the window: a dot each, red where the expectation failed,
/// grey where no value could be had.
fn samples_svg(samples: &[crate::engine::prometheus::Sample], window: f64) -> Markup {
    let values: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.value.clone().ok())
        .collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if high > low { high - low } else { 1.0 };
    let (width, height) = (220.0, 36.0);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" {
            rect x="0" y="0" width=(width) height=(height) fill="#fafafa" {}
            @for s in samples {
                @let x = 4.0 + (width - 8.0) * (s.at.as_secs_f64() / window).min(1.0);
                @match &s.value {
                    Ok(v) => {
                        @let y = height - 4.0 - (height - 8.0) * ((v - low) / span).clamp(0.0, 1.0);
                        circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" fill=(if s.held { "#43a047" } else { "#e53935" }) {
                            title { (format!("{:.1}s: {v}", s.at.as_secs_f64())) }
                        }
                    }
                    Err(e) => {
                        rect x=(format!("{:.1}", x - 2.0)) y=(height / 2.0 - 2.0) width="4" height="4" fill="#9e9e9e" { title { (e) } }
                    }
                }
            }
        }
    }
}

fn figures(outcome: &ExperimentOutcome) -> Markup {
    let status = &outcome.status;
    html! {
        h2 { "Figures" }
        table {
            @if let Some(a) = &status.availability {
                tr { th colspan="2" { "availability" } }
                tr { td { "probes answered" } td { (a.successes) " of " (a.probes) " (" (format!("{:.3}", a.ratio)) ")" } }
                tr { td { "latency p50 / p99" } td { (ms(a.p50_ms)) " / " (ms(a.p99_ms)) } }
                tr { td { "longest outage" } td { (a.longest_outage_ms) " ms" } }
                tr { td { "recovery after last heal" } td { @match a.recovery_ms { Some(r) => { (r) " ms" }, None => "never" } } }
            }
            @if let Some(c) = &status.consistency {
                tr { th colspan="2" { "consistency" } }
                tr { td { "result" } td { (format!("{:?}", c.result)) } }
                tr { td { "model" } td { (c.model) @if let Some(checked) = &c.checked { ", checked for " (checked) } } }
                tr { td { "operations (unknown outcome)" } td { (c.operations) " (" (c.indeterminate) ")" } }
                tr { td { "check time" } td { (c.check_millis) " ms" } }
            }
        }
    }
}

fn ms(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "–".into())
}

fn faults_table(outcome: &ExperimentOutcome) -> Markup {
    let at = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    html! {
        h2 { "Faults" }
        @if outcome.spans.is_empty() { p.muted { "No faults were scheduled." } }
        @else {
            table {
                tr { th { "fault" } th { "kind" } th { "targets" } th { "how" } th { "injected" } th { "healed" } th { "error" } }
                @for span in &outcome.spans {
                    tr {
                        td { (span.name) } td { (span.kind) } td { (span.targets.join(", ")) } td { (span.detail.clone().unwrap_or_default()) }
                        td { (at(span.injected)) } td { (span.healed.map(at).unwrap_or_default()) }
                        td.failed { (span.error.clone().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn timeline_svg(outcome: &ExperimentOutcome) -> Markup {
    let end = outcome
        .probes
        .iter()
        .map(|p| p.at + p.latency)
        .chain(
            outcome
                .recorded
                .times()
                .map(|o| Duration::from_nanos(o.complete.unwrap_or(o.invoke))),
        )
        .max()
        .unwrap_or_default()
        .max(outcome.timeline.window);
    let span = end.as_secs_f64().max(1e-3);
    let x = |d: Duration| LEFT + (WIDTH - LEFT - RIGHT) * (d.as_secs_f64() / span).min(1.0);
    let nodes = outcome.nodes.len();
    let fault_rows = outcome.spans.len();
    let probe_top = 24.0 + fault_rows as f64 * ROW + 22.0;
    // Without an availability probe the probe and latency lanes are left out.
    let probed = !outcome.probes.is_empty();
    let latency_top = if probed {
        probe_top + nodes as f64 * ROW + 16.0
    } else {
        probe_top - 16.0
    };
    let latency_height = if probed { 80.0 } else { 0.0 };
    let throughput_top = latency_top + latency_height + 16.0;
    let throughput_height = 70.0;
    let height = throughput_top + throughput_height + 24.0;

    let max_latency = outcome
        .probes
        .iter()
        .filter(|p| p.ok)
        .map(|p| p.latency.as_secs_f64() * 1000.0)
        .fold(1.0, f64::max);
    let latency_points: String = outcome
        .probes
        .iter()
        .filter(|p| p.ok)
        .map(|p| {
            let y = latency_top
                + latency_height * (1.0 - (p.latency.as_secs_f64() * 1000.0 / max_latency));
            format!("{:.1},{:.1} ", x(p.at), y)
        })
        .collect();

    // Throughput per second, split by outcome.
    let seconds = end.as_secs() as usize + 1;
    let mut buckets = vec![[0u32; 3]; seconds];
    for op in outcome.recorded.times() {
        let second = (op.invoke / 1_000_000_000) as usize;
        if let Some(bucket) = buckets.get_mut(second) {
            bucket[match op.outcome {
                Outcome::Ok => 0,
                Outcome::Info => 1,
                Outcome::Fail => 2,
            }] += 1;
        }
    }
    let max_bucket = buckets
        .iter()
        .map(|b| b.iter().sum::<u32>())
        .max()
        .unwrap_or(1)
        .max(1);
    let bar_width = ((WIDTH - LEFT - RIGHT) / span).max(1.0) - 1.0;
    let tick_step = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]
        .into_iter()
        .find(|s| span / *s as f64 <= 12.0)
        .unwrap_or(3600);
    let colors = ["#43a047", "#fb8c00", "#9e9e9e"];
    // Stacked bars: ok at the bottom, then unknown, then failed.
    let mut bars = Vec::new();
    for (second, bucket) in buckets.iter().enumerate() {
        let mut base = throughput_top + throughput_height;
        for (kind, count) in bucket.iter().enumerate().filter(|(_, c)| **c > 0) {
            let h = throughput_height * f64::from(*count) / f64::from(max_bucket);
            bars.push((
                x(Duration::from_secs(second as u64)),
                base - h,
                h,
                colors[kind],
            ));
            base -= h;
        }
    }
    let violation = outcome.recorded.violation_mark();

    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height) viewBox={"0 0 " (WIDTH) " " (height)} role="img" {
            // Fault windows shaded over every lane.
            @for span in &outcome.spans {
                @let heal = span.healed.unwrap_or(span.injected);
                rect x=(x(span.injected)) y="18" width=((x(heal) - x(span.injected)).max(1.5)) height=(height - 36.0) fill="#e53935" fill-opacity="0.08" {}
            }
            text x="4" y="14" font-weight="600" { "faults" }
            @for (row, span) in outcome.spans.iter().enumerate() {
                @let y = 24.0 + row as f64 * ROW;
                @let heal = span.healed.unwrap_or(span.injected);
                text x="4" y=(y + 11.0) { (span.name) }
                rect x=(x(span.injected)) y=(y) width=((x(heal) - x(span.injected)).max(2.0)) height=(ROW - 4.0) fill=(if span.error.is_some() { "#9e9e9e" } else { "#e53935" }) {
                    title { (span.kind) " on " (span.targets.join(", ")) @if let Some(e) = &span.error { " — " (e) } }
                }
            }
            @if probed {
                text x="4" y=(probe_top - 4.0) font-weight="600" { "probes" }
                @for (index, node) in outcome.nodes.iter().enumerate() {
                    text x="4" y=(probe_top + index as f64 * ROW + 11.0) { (node.name) }
                }
                @for probe in &outcome.probes {
                    rect x=(x(probe.at)) y=(probe_top + probe.node as f64 * ROW) width="2" height=(ROW - 4.0) fill=(if probe.ok { "#43a047" } else { "#e53935" }) {
                        @if let Some(e) = &probe.error { title { (e) } }
                    }
                }
                text x="4" y=(latency_top + 10.0) font-weight="600" { "probe latency" }
                text x="4" y=(latency_top + 24.0) { (format!("max {max_latency:.1} ms")) }
                polyline points=(latency_points) fill="none" stroke="#1e88e5" stroke-width="1" {}
            }
            // The end of the chaos window, and the operation the checker could not place.
            line x1=(x(outcome.timeline.window)) y1="18" x2=(x(outcome.timeline.window)) y2=(height - 22.0) stroke="#555" stroke-dasharray="4 3" {}
            text x=(x(outcome.timeline.window) - 4.0) y="12" text-anchor="end" { "window end" }
            @if let Some((op, label)) = &violation {
                line x1=(x(*op)) y1="18" x2=(x(*op)) y2=(height - 22.0) stroke="#6a1b9a" stroke-width="1.5" {}
                text x=(x(*op) + 4.0) y=(throughput_top - 4.0) fill="#6a1b9a" { (label) }
            }
            text x="4" y=(throughput_top + 10.0) font-weight="600" { "ops / s" }
            text x="4" y=(throughput_top + 24.0) { "max " (max_bucket) }
            @for (bar_x, y, h, color) in &bars {
                rect x=(bar_x) y=(y) width=(bar_width) height=(h) fill=(color) {}
            }
            line x1=(LEFT) y1=(height - 22.0) x2=(WIDTH - RIGHT) y2=(height - 22.0) stroke="#999" {}
            @for tick in (0..=end.as_secs()).step_by(tick_step as usize) {
                @let tx = x(Duration::from_secs(tick));
                line x1=(tx) y1=(height - 22.0) x2=(tx) y2=(height - 18.0) stroke="#999" {}
                text x=(tx) y=(height - 6.0) text-anchor="middle" { (tick) "s" }
            }
        }
    }
}
