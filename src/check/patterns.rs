//! Violations proved from patterns, in near-linear time, before any search: for register
//! histories whose written values are unique (detected here, never assumed).
//!
//! With unique values a value, once replaced, never comes back, and each value's *lifetime*
//! — from its writer's linearization point to the point of whatever installs the next value —
//! is one interval of real time. Lifetimes of different values follow one another, so their
//! interiors are disjoint. An operation that *needs* value v (a read of v, a successful CAS
//! expecting v) takes effect inside v's lifetime, and v's writer at its start. Every rule below
//! derives bounds on lifetimes from operations that certainly took effect, and reports a
//! violation only when the bounds contradict each other; each rule's argument is at its code.
//! Whatever an operation with an unknown outcome did, it cannot undo these facts: it can only
//! install a value of its own, once. So the rules are sound with any number of unknown
//! outcomes. They are not complete: what they miss, the search decides.
//!
//! Real times here are the search's: `ret` is `u64::MAX` for an unknown outcome.

use super::models::KeyStep;
use super::search::SearchOp;

/// A proved violation. Operation and value ids are the partition's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `op` needs `value`, which no operation writes.
    Unwritten { op: u32, value: u32 },
    /// `first` and `second` both swapped `value` out: it can be replaced only once.
    ConsumedTwice { first: u32, second: u32, value: u32 },
    /// CASes whose expected and new values form a cycle: no version order has them all.
    VersionCycle { cases: Vec<u32> },
    /// `op` needs `value` but completed before `value` could have been installed: `chain` is
    /// the writer of `value` (and the CASes before it in the version order, down to the one
    /// whose start bounds it), the last of them invoked at `at`.
    BeforeInstalled {
        op: u32,
        value: u32,
        chain: Vec<u32>,
        at: u64,
    },
    /// `op` needs `value` but began after `value` was certainly replaced: `chain` is the CAS
    /// that replaced it and the operations after it in the version order, the last of which
    /// completed at `at`.
    AfterReplaced {
        op: u32,
        value: u32,
        chain: Vec<u32>,
        at: u64,
    },
    /// `op` needs `value`, but ran entirely while `other` was certainly the value: `opens`
    /// completed before `op` began and `closes` began after it completed, both needing
    /// `other`.
    DuringOther {
        op: u32,
        value: u32,
        other: u32,
        opens: u32,
        closes: u32,
    },
    /// `op` needs `value` and began after `writer` installed `written`, which it did entirely
    /// after `opens` (needing or writing `value`) completed: `value` was certainly the value
    /// from `opens` to `op`, so nothing can have replaced it in between.
    OverwrittenBetween {
        op: u32,
        value: u32,
        writer: u32,
        written: u32,
        opens: u32,
    },
    /// Both `a` and `b` were certainly the value between two moments: `a_opens` (needing `a`)
    /// completed and `a_closes` began later, and so did `b_opens` and `b_closes` for `b`, with
    /// the two spans overlapping.
    Overlap {
        a: u32,
        a_opens: u32,
        a_closes: u32,
        b: u32,
        b_opens: u32,
        b_closes: u32,
    },
    /// A CAS expecting `value` reported that the comparison failed, but ran entirely while
    /// `value` was certainly the value: `opens` installed or needed it before the CAS began,
    /// `closes` needed it (or came after it in the version order) after the CAS completed.
    FailedCompare {
        op: u32,
        value: u32,
        opens: u32,
        closes: u32,
    },
}

impl Pattern {
    /// The operation that cannot be linearized.
    pub(crate) fn blocked(&self) -> u32 {
        match self {
            Pattern::Unwritten { op, .. }
            | Pattern::BeforeInstalled { op, .. }
            | Pattern::AfterReplaced { op, .. }
            | Pattern::DuringOther { op, .. }
            | Pattern::OverwrittenBetween { op, .. }
            | Pattern::FailedCompare { op, .. } => *op,
            Pattern::ConsumedTwice { second, .. } => *second,
            Pattern::VersionCycle { cases } => cases[0],
            Pattern::Overlap {
                a_opens, b_opens, ..
            } => {
                if *b_opens != NONE {
                    *b_opens
                } else {
                    *a_opens
                }
            }
        }
    }

    /// Every operation the argument cites, the blocked one first.
    pub(crate) fn cited(&self) -> Vec<u32> {
        let mut out = vec![self.blocked()];
        let more: Vec<u32> = match self {
            Pattern::Unwritten { .. } => vec![],
            Pattern::ConsumedTwice { first, .. } => vec![*first],
            Pattern::VersionCycle { cases } => cases.clone(),
            Pattern::BeforeInstalled { chain, .. } | Pattern::AfterReplaced { chain, .. } => {
                chain.clone()
            }
            Pattern::DuringOther { opens, closes, .. }
            | Pattern::FailedCompare { opens, closes, .. } => vec![*opens, *closes],
            Pattern::OverwrittenBetween { writer, opens, .. } => vec![*writer, *opens],
            Pattern::Overlap {
                a_opens,
                a_closes,
                b_closes,
                ..
            } => vec![*a_opens, *a_closes, *b_closes],
        };
        for op in more {
            if op != NONE && !out.contains(&op) {
                out.push(op);
            }
        }
        out
    }
}

const NONE: u32 = u32::MAX;

/// The value `step` installs if it takes effect with a swap, and whether it needs a value
/// first.
fn writes(step: KeyStep) -> Option<u32> {
    match step {
        KeyStep::Write(v) => Some(v),
        KeyStep::Cas { to, swapped, .. } if swapped != Some(false) => Some(to),
        _ => None,
    }
}

/// The value an acknowledged `step` needs to be current when it takes effect.
fn needs(step: KeyStep) -> Option<u32> {
    match step {
        KeyStep::Read(v) => Some(v),
        KeyStep::Cas {
            from,
            swapped: Some(true),
            ..
        } => Some(from),
        _ => None,
    }
}

/// A bound on a moment of a value's lifetime: `witness` (an operation) shows it, and it
/// reaches the value through the version order from `origin`. The operations in between are
/// rebuilt only for a violation, so the bounds cost O(1) per value.
#[derive(Debug, Clone, Copy)]
struct Bound {
    at: u64,
    witness: u32,
    origin: u32,
}

/// Tries to prove that the register history `steps` (times in `ops`, initial value `init`,
/// value ids below `values`, `unobserved` the merged state of values nobody reads) has no
/// linearization. `None` when no rule applies, or when
/// written values are not unique (the rules would not be sound).
pub(crate) fn prove(
    ops: &[SearchOp],
    steps: &[KeyStep],
    init: u32,
    values: u32,
    unobserved: Option<u32>,
) -> Option<Pattern> {
    let n = ops.len();
    let nv = values as usize;
    // The writer of each value; give up unless there is at most one, and none of the
    // initial value (which would then have two lifetimes).
    let mut writer = vec![NONE; nv];
    for (i, &s) in steps.iter().enumerate() {
        if let KeyStep::Append(_) = s {
            return None;
        }
        if let KeyStep::Cas { from, to, .. } = s
            && from == to
        {
            return None;
        }
        if let Some(v) = writes(s) {
            // The merged state of values nobody reads has many writers: no operation needs
            // it, so it takes no part in the rules (except as "some other value", below).
            if Some(v) == unobserved {
                continue;
            }
            if v == init || writer[v as usize] != NONE {
                return None;
            }
            writer[v as usize] = i as u32;
        }
    }
    let acknowledged = |i: usize| !ops[i].info;

    // Installed values: certainly current at some point. The initial value; a value whose
    // writer was acknowledged (an acknowledged write, or a CAS that reported a swap); a value
    // an acknowledged operation needs. A CAS that must have happened needed its expected value.
    let mut installed = vec![false; nv];
    let mut work = vec![init];
    for (i, &s) in steps.iter().enumerate() {
        if acknowledged(i) {
            if let Some(v) = writes(s).filter(|&v| Some(v) != unobserved) {
                work.push(v);
            }
            if let Some(v) = needs(s) {
                if v != init && writer[v as usize] == NONE {
                    return Some(Pattern::Unwritten {
                        op: i as u32,
                        value: v,
                    });
                }
                work.push(v);
            }
        }
    }
    while let Some(v) = work.pop() {
        if std::mem::replace(&mut installed[v as usize], true) {
            continue;
        }
        let w = writer[v as usize];
        if w != NONE
            && let KeyStep::Cas { from, .. } = steps[w as usize]
        {
            if from != init && writer[from as usize] == NONE {
                return Some(Pattern::Unwritten { op: w, value: from });
            }
            work.push(from);
        }
    }

    // The version order the CASes fix: a CAS e→v that happened makes v follow e directly.
    let mut succ = vec![NONE; nv];
    let mut succ_by = vec![NONE; nv];
    let mut pred = vec![NONE; nv];
    for v in 0..nv {
        if !installed[v] || writer[v] == NONE {
            continue;
        }
        let w = writer[v];
        if let KeyStep::Cas { from, .. } = steps[w as usize] {
            let e = from as usize;
            if succ_by[e] != NONE {
                // Both took effect, each while e was the value, and each ended e's lifetime:
                // e would have to be the value again, and only its one writer installs it.
                let (first, second) = if ops[succ_by[e] as usize].invoke <= ops[w as usize].invoke {
                    (succ_by[e], w)
                } else {
                    (w, succ_by[e])
                };
                return Some(Pattern::ConsumedTwice {
                    first,
                    second,
                    value: from,
                });
            }
            succ[e] = v as u32;
            succ_by[e] = w;
            pred[v] = from;
        }
    }
    // Chains are paths, or cycles: a value follows its predecessor strictly in the order.
    // Each value has at most one successor (above), so walking back from a value either ends
    // at a value with no predecessor, reaches a chain already walked (a path), or comes back.
    let mut visited = vec![false; nv];
    for start in 0..nv {
        if !installed[start] || visited[start] {
            continue;
        }
        visited[start] = true;
        let mut head = start;
        let mut cases = Vec::new();
        while pred[head] != NONE {
            cases.push(writer[head]);
            head = pred[head] as usize;
            if head == start {
                cases.reverse();
                return Some(Pattern::VersionCycle { cases });
            }
            if visited[head] {
                break;
            }
            visited[head] = true;
        }
        let mut v = start;
        while succ[v] != NONE && !visited[succ[v] as usize] {
            v = succ[v] as usize;
            visited[v] = true;
        }
    }

    // Each installed value's cluster: the operations that take effect while it is current
    // (its acknowledged readers and the CAS that swaps it out) or that start it (its writer).
    // `lo` is the earliest completion among them and `hi` the latest invocation: every point
    // of the cluster lies in the lifetime, so when lo < hi, the whole span (lo, hi) does.
    let mut lo = vec![(u64::MAX, NONE); nv];
    let mut hi = vec![(0u64, NONE); nv];
    let mut cluster_of = vec![NONE; n];
    let touch = |v: usize, i: usize, lo: &mut [(u64, u32)], hi: &mut [(u64, u32)]| {
        if ops[i].ret < lo[v].0 {
            lo[v] = (ops[i].ret, i as u32);
        }
        if ops[i].invoke >= hi[v].0 {
            hi[v] = (ops[i].invoke, i as u32);
        }
    };
    for (i, &s) in steps.iter().enumerate() {
        if acknowledged(i)
            && let Some(v) = needs(s)
        {
            touch(v as usize, i, &mut lo, &mut hi);
            cluster_of[i] = v;
        }
    }
    for v in 0..nv {
        if installed[v] && writer[v] != NONE {
            touch(v, writer[v] as usize, &mut lo, &mut hi);
        }
    }
    // The initial value is current from the beginning of time.
    if hi[init as usize].1 != NONE {
        lo[init as usize] = (0, NONE);
    }

    // Bounds along each chain of the version order. The start of v is no earlier than its
    // writer's invocation, nor than any invocation in its predecessor's cluster (those took
    // effect before the predecessor ended, which is when v began), nor than its predecessor's
    // start. The end of v (its successor's start) is no later than any completion in the
    // successor's cluster, nor than the successor's end.
    let mut start_after: Vec<Option<Bound>> = vec![None; nv];
    let mut end_by: Vec<Option<Bound>> = vec![None; nv];
    for head in 0..nv {
        if !installed[head] || pred[head] != NONE {
            continue;
        }
        // Forward along the chain.
        let mut v = head;
        let mut bound: Option<Bound> = None;
        loop {
            let w = writer[v];
            if w != NONE && bound.is_none_or(|b| ops[w as usize].invoke > b.at) {
                bound = Some(Bound {
                    at: ops[w as usize].invoke,
                    witness: w,
                    origin: v as u32,
                });
            }
            start_after[v] = bound;
            if succ[v] == NONE {
                break;
            }
            // For the successor: what took effect while v was current.
            let (h, by) = hi[v];
            if by != NONE && bound.is_none_or(|b| h > b.at) {
                bound = Some(Bound {
                    at: h,
                    witness: by,
                    origin: succ[v],
                });
            }
            v = succ[v] as usize;
        }
        // Backward along the same chain.
        let mut bound: Option<Bound> = None;
        loop {
            end_by[v] = bound;
            // v's start is no later than any completion in its cluster.
            let (l, by) = lo[v];
            if by != NONE && bound.is_none_or(|b| l < b.at) {
                bound = Some(Bound {
                    at: l,
                    witness: by,
                    origin: v as u32,
                });
            }
            if pred[v] == NONE {
                break;
            }
            // The predecessor ends where v starts, at its writer (the CAS).
            let w = writer[v];
            if ops[w as usize].ret != u64::MAX && bound.is_none_or(|b| ops[w as usize].ret < b.at) {
                bound = Some(Bound {
                    at: ops[w as usize].ret,
                    witness: w,
                    origin: v as u32,
                });
            }
            v = pred[v] as usize;
        }
    }
    // The operations behind a bound, in the order of the argument. A start bound: the witness,
    // then the writers from its origin on to v. An end bound of v: the writers from v's
    // successor on to the origin, then the witness.
    let start_chain = |b: Bound, v: usize| -> Vec<u32> {
        let mut writers = Vec::new();
        let mut x = v;
        loop {
            if writer[x] != NONE && writer[x] != b.witness {
                writers.push(writer[x]);
            }
            if x == b.origin as usize || pred[x] == NONE {
                break;
            }
            x = pred[x] as usize;
        }
        writers.push(b.witness);
        writers.reverse();
        writers
    };
    let end_chain = |b: Bound, v: usize| -> Vec<u32> {
        let mut chain = Vec::new();
        let mut x = v;
        while succ[x] != NONE {
            x = succ[x] as usize;
            chain.push(writer[x]);
            if x == b.origin as usize {
                break;
            }
        }
        if !chain.contains(&b.witness) {
            chain.push(b.witness);
        }
        chain
    };

    // An operation that needs v cannot begin after v has certainly ended, nor complete before
    // v may start. Both sides of one contradiction often show; the first reads as the stale
    // operation it usually is, so it is looked for first.
    for i in 0..n {
        let v = cluster_of[i];
        if v == NONE {
            continue;
        }
        let v = v as usize;
        if let Some(b) = end_by[v]
            && ops[i].invoke > b.at
            && b.witness != i as u32
        {
            return Some(Pattern::AfterReplaced {
                op: i as u32,
                value: v as u32,
                chain: end_chain(b, v),
                at: b.at,
            });
        }
    }
    for i in 0..n {
        let v = cluster_of[i];
        if v == NONE {
            continue;
        }
        let v = v as usize;
        if let Some(b) = start_after[v]
            && ops[i].ret < b.at
            && writer[v] != i as u32
        {
            return Some(Pattern::BeforeInstalled {
                op: i as u32,
                value: v as u32,
                chain: start_chain(b, v),
                at: b.at,
            });
        }
    }

    // Spans where a value is certainly current: (lo, hi) of its cluster. Two of them cannot
    // overlap, and nothing that needs another value (or installs one) can lie inside one.
    let mut spans: Vec<(u64, u64, u32)> = (0..nv)
        .filter(|&v| installed[v] && hi[v].1 != NONE && lo[v].0 < hi[v].0)
        .map(|v| (lo[v].0, hi[v].0, v as u32))
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.0 < a.1 {
            let (a, b) = (a.2 as usize, b.2 as usize);
            return Some(Pattern::Overlap {
                a: a as u32,
                a_opens: lo[a].1,
                a_closes: hi[a].1,
                b: b as u32,
                b_opens: lo[b].1,
                b_closes: hi[b].1,
            });
        }
    }
    // The span, if any, strictly containing [from, to].
    let inside = |from: u64, to: u64| -> Option<u32> {
        let k = spans.partition_point(|s| s.0 < from);
        let s = spans[..k].last()?;
        (to < s.1).then_some(s.2)
    };
    for i in 0..n {
        // What i needs, or the value it certainly installed (an acknowledged write of a value
        // nobody reads installs some value other than every span's).
        let mine = if cluster_of[i] != NONE {
            Some(cluster_of[i])
        } else {
            writes(steps[i])
                .filter(|&v| installed[v as usize] || (Some(v) == unobserved && acknowledged(i)))
        };
        let Some(v) = mine else { continue };
        if let Some(u) = inside(ops[i].invoke, ops[i].ret)
            && u != v
        {
            let u = u as usize;
            if cluster_of[i] == NONE {
                // A write inside u's span: told from the side of the operation that needed
                // u after it, which is what a person reads as stale.
                return Some(Pattern::OverwrittenBetween {
                    op: hi[u].1,
                    value: u as u32,
                    writer: i as u32,
                    written: v,
                    opens: lo[u].1,
                });
            }
            return Some(Pattern::DuringOther {
                op: i as u32,
                value: v,
                other: u as u32,
                opens: lo[u].1,
                closes: hi[u].1,
            });
        }
    }

    // A CAS whose comparison with e failed took effect while e was not the value: not inside
    // e's lifetime. e certainly started by the earliest completion in its cluster (or the
    // beginning, for the initial value), and certainly lasted until the latest invocation in
    // its cluster and until its successor's earliest possible start.
    for i in 0..n {
        let KeyStep::Cas {
            from,
            swapped: Some(false),
            ..
        } = steps[i]
        else {
            continue;
        };
        if !acknowledged(i) || !installed[from as usize] {
            continue;
        }
        let e = from as usize;
        let (started, opens) = if e == init as usize { (0, NONE) } else { lo[e] };
        let mut lasted = hi[e];
        if succ[e] != NONE
            && let Some(b) = start_after[succ[e] as usize]
            && b.at > lasted.0
        {
            lasted = (b.at, b.witness);
        }
        let begun = opens != NONE || e == init as usize;
        if begun && lasted.1 != NONE && started < ops[i].invoke && ops[i].ret < lasted.0 {
            return Some(Pattern::FailedCompare {
                op: i as u32,
                value: from,
                opens,
                closes: lasted.1,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoke: u64, ret: u64) -> SearchOp {
        SearchOp {
            invoke,
            ret,
            info: ret == u64::MAX,
            twin: crate::check::search::NO_TWIN,
            unknown_write: false,
            blank: false,
        }
    }

    // Value ids: 0 is the initial nil, then 1, 2, 3 ...
    fn prove_ops(list: &[(u64, u64, KeyStep)]) -> Option<Pattern> {
        let ops: Vec<SearchOp> = list.iter().map(|&(a, b, _)| op(a, b)).collect();
        let steps: Vec<KeyStep> = list.iter().map(|o| o.2).collect();
        prove(&ops, &steps, 0, 8, None)
    }

    fn cas(from: u32, to: u32, swapped: Option<bool>) -> KeyStep {
        KeyStep::Cas { from, to, swapped }
    }

    #[test]
    fn a_read_after_the_value_was_swapped_out_is_stale() {
        let p = prove_ops(&[
            (0, 10, KeyStep::Write(1)),
            (20, 30, cas(1, 2, Some(true))),
            (40, 50, KeyStep::Read(1)),
        ]);
        assert!(
            matches!(
                p,
                Some(Pattern::AfterReplaced {
                    op: 2,
                    value: 1,
                    ..
                })
            ),
            "{p:?}"
        );
    }

    #[test]
    fn the_version_chain_shows_what_no_single_cas_does() {
        // CAS 1→2 is still running when the read of 1 begins; CAS 2→3 completed before.
        let p = prove_ops(&[
            (0, 5, KeyStep::Write(1)),
            (10, 100, cas(1, 2, Some(true))),
            (10, 30, cas(2, 3, Some(true))),
            (40, 50, KeyStep::Read(1)),
        ]);
        // Either side of the same argument: the read of 1 began after 3 was installed, or
        // CAS 2→3 completed before 1 (still read) could have been replaced.
        match &p {
            Some(Pattern::AfterReplaced { op: 3, chain, .. }) => assert!(chain.contains(&2)),
            Some(Pattern::BeforeInstalled { op: 2, chain, .. }) => assert!(chain.contains(&3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_swaps_of_one_value_cannot_both_happen() {
        let p = prove_ops(&[
            (0, 5, KeyStep::Write(1)),
            (10, 20, cas(1, 2, Some(true))),
            (10, 20, cas(1, 3, Some(true))),
        ]);
        assert!(
            matches!(p, Some(Pattern::ConsumedTwice { value: 1, .. })),
            "{p:?}"
        );
    }

    #[test]
    fn a_failed_compare_during_the_value_is_impossible_but_an_unknown_write_may_explain_it() {
        let during = [
            (0, 5, KeyStep::Write(1)),
            (10, 20, cas(1, 2, Some(false))),
            (30, 40, KeyStep::Read(1)),
        ];
        assert!(matches!(
            prove_ops(&during),
            Some(Pattern::FailedCompare { op: 1, .. })
        ));
        // Without the later read, an unknown write of 3 may have replaced 1 first.
        let explained = [
            (0, 5, KeyStep::Write(1)),
            (6, u64::MAX, KeyStep::Write(3)),
            (10, 20, cas(1, 2, Some(false))),
        ];
        assert_eq!(prove_ops(&explained), None);
    }

    #[test]
    fn unknown_outcomes_never_make_a_proof() {
        // The unknown CAS 1→2 may have happened before the read of nil began, or never.
        let p = prove_ops(&[
            (0, u64::MAX, KeyStep::Write(1)),
            (10, u64::MAX, cas(1, 2, None)),
            (20, 30, KeyStep::Read(0)),
        ]);
        assert_eq!(p, None);
    }

    #[test]
    fn duplicate_values_are_left_to_the_search() {
        let p = prove_ops(&[
            (0, 10, KeyStep::Write(1)),
            (20, 30, KeyStep::Write(1)),
            (40, 50, KeyStep::Read(2)),
        ]);
        assert_eq!(p, None);
    }
}
