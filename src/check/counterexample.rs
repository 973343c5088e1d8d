//! What a violation looks like: the longest linearizable prefix the search found, the
//! operation that could not follow it, and, where the history shows a well-known pattern,
//! a name for the anomaly.
//!
//! An anomaly is only named when the pattern alone proves the violation from real-time order
//! (e.g. every write of the value read finished before another write began, which finished
//! before the read began). Otherwise it says "no linearization".

use std::fmt::Write as _;

use super::history::{Call, History, Operation, Outcome, Value, describe_op};
use super::models::ModelKind;
use super::partition::Part;
use super::patterns::Pattern;
use super::search::Failure;

/// Why a history is not linearizable. Operation ids index [`History::ops`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counterexample {
    /// The key whose sub-history is not linearizable; `None` for an unpartitioned check or a
    /// single register.
    pub key: Option<String>,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<usize>,
    /// The model state after `prefix`, rendered.
    pub state: String,
    /// The operation that cannot be linearized: it completed, and no order of the pending
    /// operations lets it (or anything else) come next.
    pub blocked: usize,
    /// Operations pending when `blocked` completed (including it); none could be linearized.
    pub pending: Vec<usize>,
    /// A short classification, e.g. `stale read: …`, `lost write: …`, or `no linearization: …`.
    pub anomaly: String,
    /// True when a pattern proved the violation before any search: `pending` then holds the
    /// operations the anomaly's argument cites, and there is no prefix.
    pub pattern: bool,
}

pub(crate) fn build(
    history: &History,
    model: ModelKind,
    part: &Part,
    f: &Failure,
) -> Counterexample {
    let id = |i: u32| part.ids[i as usize];
    let blocked = id(f.blocked);
    let pending: Vec<usize> = f.pending.iter().map(|&i| id(i)).collect();
    let anomaly = pending
        .iter()
        .chain(std::iter::once(&blocked))
        .find_map(|&o| classify(history, model, o))
        .unwrap_or_else(|| {
            let op = &history.ops[blocked];
            format!(
                "no linearization: #{blocked} (process {}, {}) cannot take effect before it \
                 completed, after a linearizable prefix of {} operations ending in state {}",
                op.process,
                op.call.name(),
                f.prefix.len(),
                part.machine.render(f.state)
            )
        });
    Counterexample {
        key: part.key.clone(),
        prefix: f.prefix.iter().map(|&i| id(i)).collect(),
        state: part.machine.render(f.state),
        blocked,
        pending,
        anomaly,
        pattern: false,
    }
}

/// A short name for operation `i` of the part, for an argument in words.
fn who(history: &History, part: &Part, i: u32) -> String {
    let id = part.ids[i as usize];
    format!("#{id} (process {})", history.ops[id].process)
}

/// The counterexample of a violation a pattern proved (see `patterns`).
pub(crate) fn from_pattern(
    history: &History,
    model: ModelKind,
    part: &Part,
    pattern: &Pattern,
) -> Counterexample {
    let ops = &history.ops;
    let id = |i: u32| part.ids[i as usize];
    let who = |i: u32| who(history, part, i);
    let value = |v: u32| part.machine.render(v);
    let inv = |i: u32| at(history, ops[id(i)].invoke);
    let ret = |i: u32| {
        ops[id(i)]
            .complete
            .map_or("never".into(), |c| at(history, c))
    };
    let needing = |i: u32| match &ops[id(i)].call {
        Call::Read { value: Some(v) } | Call::Get { value: Some(v) } => format!("read {v}"),
        Call::Cas { from, to, .. } => format!("swapped {from} for {to}"),
        Call::Write { value } | Call::Put { value } => format!("wrote {value}"),
        other => other.name().to_string(),
    };
    let name = |i: u32| {
        if ops[id(i)].call.is_read() {
            "stale read"
        } else {
            "consumed-value CAS"
        }
    };
    let chain_words = |chain: &[u32]| {
        chain
            .iter()
            .map(|&c| format!("{} {}", who(c), needing(c)))
            .collect::<Vec<_>>()
            .join(", then ")
    };
    // The operation that certainly took effect at a value's start, or the initial value.
    let opened = |o: u32| {
        if o == u32::MAX {
            "it was the initial value".to_string()
        } else {
            format!("{} {} and completed at {}", who(o), needing(o), ret(o))
        }
    };
    let closed = |c: u32| format!("{} {} and began at {}", who(c), needing(c), inv(c));
    let anomaly = match pattern {
        Pattern::Unwritten { op, value: v } => format!(
            "impossible read: {} {}, but no operation wrote {}",
            who(*op),
            needing(*op),
            value(*v)
        ),
        Pattern::ConsumedTwice {
            first,
            second,
            value: v,
        } => format!(
            "consumed-value CAS: {} {} and {} {}; every value is written once, so {} was the \
             value once and only one CAS can have swapped it out",
            who(*first),
            needing(*first),
            who(*second),
            needing(*second),
            value(*v)
        ),
        Pattern::VersionCycle { cases } => format!(
            "version cycle: each of these CASes expects the value the one before it wrote, in \
             a circle: {}",
            chain_words(cases)
        ),
        Pattern::BeforeInstalled {
            op,
            value: v,
            chain,
            at: t,
        } => format!(
            "read before write: {} {} and completed at {}, but {} could not be the value before \
             {}: {} ({} comes after these in the version order)",
            who(*op),
            needing(*op),
            ret(*op),
            value(*v),
            at(history, *t),
            chain_words(chain),
            value(*v)
        ),
        Pattern::AfterReplaced {
            op,
            value: v,
            chain,
            at: t,
        } => format!(
            "{}: {} {} and began at {}, but {} was certainly replaced by {}: {}",
            name(*op),
            who(*op),
            needing(*op),
            inv(*op),
            value(*v),
            at(history, *t),
            chain_words(chain)
        ),
        Pattern::DuringOther {
            op,
            value: _,
            other,
            opens,
            closes,
        } => format!(
            "{}: {} {} from {} to {}, while {} was certainly the value all along: {}; {}",
            name(*op),
            who(*op),
            needing(*op),
            inv(*op),
            ret(*op),
            value(*other),
            opened(*opens),
            closed(*closes)
        ),
        Pattern::OverwrittenBetween {
            op,
            value: v,
            writer,
            written: _,
            opens,
        } => format!(
            "{}: {} {} and began at {}, but {} {} from {} to {}, after {} was certainly the \
             value ({}), and every value is written once",
            name(*op),
            who(*op),
            needing(*op),
            inv(*op),
            who(*writer),
            needing(*writer),
            inv(*writer),
            ret(*writer),
            value(*v),
            opened(*opens)
        ),
        // Two values at once is often a stale read that real time alone shows: then it
        // is named as one, the name people look for.
        Pattern::Overlap { .. }
            if let Some(stale) = pattern
                .cited()
                .into_iter()
                .filter(|&o| o != u32::MAX)
                .find_map(|o| classify(history, model, id(o))) =>
        {
            stale
        }
        Pattern::Overlap {
            a,
            a_opens,
            a_closes,
            b,
            b_opens,
            b_closes,
        } => format!(
            "two values at once: {} was certainly the value ({}; {}), and so was {} ({}; {}), \
             at overlapping times",
            value(*a),
            opened(*a_opens),
            closed(*a_closes),
            value(*b),
            opened(*b_opens),
            closed(*b_closes)
        ),
        Pattern::FailedCompare {
            op,
            value: v,
            opens,
            closes,
        } => format!(
            "failed CAS during its value: {} found the value was not {} (from {} to {}), but {} \
             was certainly the value all along: {}; {}",
            who(*op),
            value(*v),
            inv(*op),
            ret(*op),
            value(*v),
            opened(*opens),
            closed(*closes)
        ),
    };
    let cited: Vec<usize> = pattern.cited().into_iter().map(id).collect();
    let blocked = id(pattern.blocked());
    Counterexample {
        key: part.key.clone(),
        prefix: Vec::new(),
        state: String::new(),
        blocked,
        pending: cited,
        anomaly,
        pattern: true,
    }
}

fn same_key(a: &Operation, b: &Operation) -> bool {
    a.key == b.key
}

/// When the operation may have taken effect at the latest.
fn latest(op: &Operation) -> u64 {
    match op.outcome {
        Outcome::Info => u64::MAX,
        _ => op.complete.unwrap_or(u64::MAX),
    }
}

/// The value `op` may leave in its key, if it writes one.
fn written(op: &Operation) -> Option<&Value> {
    if op.outcome == Outcome::Fail {
        return None;
    }
    match &op.call {
        Call::Write { value } | Call::Put { value } => Some(value),
        Call::Cas { to, swapped, .. } if *swapped != Some(false) => Some(to),
        _ => None,
    }
}

fn norm(model: ModelKind, v: &Value) -> Value {
    match v {
        Value::Nil if model == ModelKind::Kv => Value::Str(String::new()),
        other => other.clone(),
    }
}

/// Names the anomaly that read `r` shows, if real-time order alone proves one.
fn classify(history: &History, model: ModelKind, r: usize) -> Option<String> {
    let read = &history.ops[r];
    if read.outcome != Outcome::Ok {
        return None;
    }
    let (Call::Read { value: Some(v) } | Call::Get { value: Some(v) }) = &read.call else {
        return None;
    };
    let v = norm(model, v);
    let ops = &history.ops;
    let has_append = ops.iter().any(|o| {
        same_key(o, read) && matches!(o.call, Call::Append { .. }) && o.outcome != Outcome::Fail
    });

    if has_append {
        // Appends only grow a value until a put replaces it: an append that finished before
        // the read began, with no put that could come between the two, must show in the read.
        let Value::Str(seen) = &v else { return None };
        for (a, op) in ops.iter().enumerate() {
            let Call::Append {
                value: Value::Str(x),
            } = &op.call
            else {
                continue;
            };
            if op.outcome != Outcome::Ok || !same_key(op, read) || latest(op) >= read.invoke {
                continue;
            }
            let overwritable = ops.iter().any(|p| {
                same_key(p, read)
                    && p.outcome != Outcome::Fail
                    && matches!(p.call, Call::Put { .. } | Call::Write { .. })
                    && latest(p) >= op.invoke
                    && p.invoke <= latest(read)
            });
            if !overwritable && !seen.contains(x.as_str()) {
                return Some(format!(
                    "lost write: #{r} (process {}) read {} which lacks {x:?}, appended by #{a} \
                     (process {}) that completed at {} before the read began at {}",
                    read.process,
                    v,
                    op.process,
                    at(history, latest(op)),
                    at(history, read.invoke)
                ));
            }
        }
        return None;
    }

    // Who could have left `v` in the key: its writers, and the initial state.
    let writers: Vec<usize> = (0..ops.len())
        .filter(|&w| {
            same_key(&ops[w], read) && written(&ops[w]).is_some_and(|x| norm(model, x) == v)
        })
        .collect();
    if writers.is_empty() && v != model.init() {
        return Some(format!(
            "impossible read: #{r} (process {}) read {v}, which no operation wrote",
            read.process
        ));
    }
    // A later write that certainly replaced it before the read began.
    let overwrite = (0..ops.len())
        .filter(|&w| {
            let o = &ops[w];
            o.outcome == Outcome::Ok
                && same_key(o, read)
                && matches!(
                    o.call,
                    Call::Write { .. }
                        | Call::Put { .. }
                        | Call::Cas {
                            swapped: Some(true),
                            ..
                        }
                )
                && written(o).is_some_and(|x| norm(model, x) != v)
                && latest(o) < read.invoke
                && writers.iter().all(|&x| latest(&ops[x]) < o.invoke)
        })
        .max_by_key(|&w| latest(&ops[w]))?;
    let w = &ops[overwrite];
    Some(format!(
        "stale read: #{r} (process {}) read {v} after #{overwrite} (process {}) wrote {} and \
         completed at {}, before the read began at {}",
        read.process,
        w.process,
        written(w).map(|x| norm(model, x)).unwrap_or(Value::Nil),
        at(history, latest(w)),
        at(history, read.invoke)
    ))
}

/// A moment of the history as people read it: seconds into the run for recorded clocks
/// (`4.050335s`), the line for formats that order events by line.
fn at(history: &History, time: u64) -> String {
    match history.time_unit {
        crate::check::history::TimeUnit::Nanoseconds => format!("{:.6}s", time as f64 / 1e9),
        crate::check::history::TimeUnit::Lines => format!("line {time}"),
    }
}

/// A plain-text rendering: anomaly, the operation(s) that cannot be linearized, and the tail
/// of the longest linearizable prefix (`prefix_lines` operations at most).
pub fn render_text(history: &History, cx: &Counterexample, prefix_lines: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  anomaly: {}", cx.anomaly);
    if let Some(k) = &cx.key {
        let _ = writeln!(out, "  key: {k}");
    }
    let _ = writeln!(out, "  cannot be linearized:");
    let _ = writeln!(
        out,
        "    {}",
        describe_op(cx.blocked, &history.ops[cx.blocked])
    );
    let others: Vec<usize> = cx
        .pending
        .iter()
        .copied()
        .filter(|&p| p != cx.blocked)
        .collect();
    if cx.pattern {
        // Proved before any search: the operations the argument cites, and no prefix.
        if !others.is_empty() {
            let _ = writeln!(out, "  the operations the argument cites:");
            for &p in &others {
                let _ = writeln!(out, "    {}", describe_op(p, &history.ops[p]));
            }
        }
        return out;
    }
    if !others.is_empty() {
        let _ = writeln!(out, "  also pending then, none of which could go next:");
        for &p in &others {
            let _ = writeln!(out, "    {}", describe_op(p, &history.ops[p]));
        }
    }
    let n = cx.prefix.len();
    let _ = writeln!(
        out,
        "  longest linearizable prefix: {n} operations, ending in state {}",
        cx.state
    );
    let skip = n.saturating_sub(prefix_lines);
    if skip > 0 {
        let _ = writeln!(out, "    … {skip} earlier operations");
    }
    for &p in &cx.prefix[skip..] {
        let _ = writeln!(out, "    {}", describe_op(p, &history.ops[p]));
    }
    out
}
