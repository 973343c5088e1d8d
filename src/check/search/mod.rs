//! The linearizability search for one partition: Wing & Gong's algorithm with Lowe's
//! memoisation of (linearized set, state) pairs, as in Porcupine and Horn & Kroening.
//!
//! The completed operations are a doubly linked list of call and return entries in time
//! order. The search walks it from the head: at a call it tries to linearize that operation
//! now (its model step succeeds and the resulting (set, state) was not seen before), then
//! "lifts" the call and its return out of the list and starts again from the head; at a
//! return it has run out of candidates that could precede that operation's completion and
//! backtracks. Operations with unknown outcomes are not in the list: each node asks
//! [`unknowns`] for the few worth trying there, and tries them in time order among the
//! list's calls.
//!
//! Engineering, all of it to keep a step free of allocation and cheap:
//! * states are `u32` ids ([`Machine`]); the linearized set is a bitset with Zobrist hashes
//!   kept up to date by XOR;
//! * the memo stores each bitset compressed: the words after its run of leading all-ones words,
//!   up to its last non-zero word. In a long history that is a few words, not n/64.
//!
//! Pruning, each rule sound and complete (it never loses a linearization), each argued where
//! it is applied and all cross-checked against an exhaustive search by the property tests:
//! * **forced reads**: a read-only operation that fits the current state is linearized at
//!   once, as the only child of its node;
//! * **dead nodes**: an operation that needs a state only some class of operations can
//!   produce (a register read of 3 needs a write of 3), when every such operation still to
//!   come was invoked after that operation returned, fails the node at once;
//! * **unknown outcomes** (`info`) return at +infinity, so placing one last is the same as it
//!   never happening: the search succeeds once every *completed* operation is linearized, and
//!   places an unknown operation only right before an operation that needs it there (one
//!   that would otherwise fail, or end in another state). Otherwise every unknown write that
//!   never took effect would multiply the search space;
//! * **subsumption**: if a node with the same completed operations and state but a subset of
//!   these unknown operations failed, this one fails too (any completion σ of the bigger node
//!   is one of the smaller node, the extra unknown operations going last).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod lists;
mod memo;
mod unknowns;

use super::memory::MemoryGauge;
use super::models::{Machine, Want};
use lists::Lists;
use memo::{Bits, Memo, node_hash, splitmix};
use unknowns::{ANY, Unknowns, Wanted};

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchOp {
    /// Invocation time.
    pub invoke: u64,
    /// Completion time; `u64::MAX` for an unknown outcome.
    pub ret: u64,
    /// True when the outcome is unknown: its return is at +infinity and its result matches
    /// anything, so linearizing it last is the same as it never having happened.
    pub info: bool,
    /// For an unknown operation: its class of twins, unknown operations with the very same
    /// step (`NONE` if it has none). Twins differ only in when they were invoked.
    pub twin: u32,
    /// An unknown write, of any value.
    pub unknown_write: bool,
    /// An unknown write of the one state standing for values nobody reads or compares with
    /// (a *blank* write: see `KeyMachine::merge_unobserved`).
    pub blank: bool,
}

/// No twin class.
pub(crate) const NO_TWIN: u32 = u32::MAX;

/// Why a search stopped without a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The time budget ran out.
    Timeout,
    /// Another partition already found a violation.
    Cancelled,
    /// The search would outgrow its memory budget.
    Memory,
    /// The caller asked the check to stop.
    Requested,
    /// The search took more steps than `Limits::max_steps` allowed: a first, short try
    /// (never the answer of a check).
    Steps,
}

/// Where the search got furthest before failing.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The longest linearizable prefix found, in linearization order (partition op indices).
    pub prefix: Vec<u32>,
    /// The state after `prefix`.
    pub state: u32,
    /// The operation whose completion was reached with no way to linearize it.
    pub blocked: u32,
    /// Operations pending at that point (invoked before `blocked` completed, not in
    /// `prefix`), `blocked` included: none of them could be linearized next.
    pub pending: Vec<u32>,
}

/// The result of one search.
#[derive(Debug, Clone)]
pub(crate) enum SearchResult {
    Linearizable,
    NotLinearizable(Failure),
    Unknown(StopReason),
}

/// Budgets shared by the searches of one check.
pub(crate) struct Limits<'a> {
    pub deadline: Option<Instant>,
    /// Set when another search of the check found a violation.
    pub cancel: &'a AtomicBool,
    /// Set by the caller to stop the check.
    pub requested: Option<&'a AtomicBool>,
    /// The memory budget of the whole check.
    pub memory: &'a MemoryGauge,
    /// Searches running at once; without the counting allocator each one estimates its own
    /// use, and they share the budget equally.
    pub concurrent: usize,
    /// Stop with `StopReason::Steps` after about this many steps of the search loop.
    pub max_steps: Option<u64>,
}

impl Limits<'_> {
    /// Why the check must stop now, if it must: for work done outside the search (the
    /// pattern proofs), looked at before and after it.
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        if self.cancel.load(Ordering::Relaxed) {
            Some(StopReason::Cancelled)
        } else if self.requested.is_some_and(|r| r.load(Ordering::Relaxed)) {
            Some(StopReason::Requested)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(StopReason::Timeout)
        } else if self.memory.exceeds(0, 0) {
            Some(StopReason::Memory)
        } else {
            None
        }
    }

    /// Would `extra` more bytes take the check past its memory budget? `memo` is this search's
    /// own estimate, for when the allocator does not count.
    #[inline]
    fn memory_exceeded(&self, extra: usize, memo: &Memo) -> bool {
        self.memory
            .exceeds(extra, memo.bytes().saturating_mul(self.concurrent))
    }
}

const NONE: u32 = u32::MAX;

struct Frame {
    /// The call entry of the operation linearized.
    entry: u32,
    /// The state before it.
    state: u32,
    node: u32,
    /// A read forced as the only child worth trying.
    forced: bool,
    /// The operation has an unknown outcome.
    info: bool,
    /// Where the parent's candidates go on when this child fails: the next list entry and
    /// the next of the parent's unknown candidates.
    resume_entry: u32,
    resume_unknown: u32,
}

/// Searches for a linearization of `ops` under `machine`.
pub(crate) fn search<M: Machine>(
    ops: &[SearchOp],
    machine: &mut M,
    limits: &Limits,
) -> SearchResult {
    let n = ops.len();
    if n == 0 {
        return SearchResult::Linearizable;
    }

    // Entries sorted by time; at equal times calls come first, so that operations that merely
    // touch are concurrent (the permissive reading: it never invents a violation).
    let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, 0, i as u32));
        events.push((op.ret, 1, i as u32));
    }
    events.sort_unstable();

    // Entry 0 is the head sentinel, 2n+1 the tail sentinel. Entries are numbered in time
    // order, and only completed operations are linked into the list: unknown ones are reached
    // through `Unknowns` (see there why).
    let tail = (2 * n + 1) as u32;
    let mut next = vec![NONE; 2 * n + 2];
    let mut prev = vec![NONE; 2 * n + 2];
    let mut entry_op = vec![NONE; 2 * n + 2];
    // For a call entry, its return entry; NONE for returns.
    let mut partner = vec![NONE; 2 * n + 2];
    let mut call_entry = vec![0u32; n];
    let mut last = 0u32;
    for (k, &(_, kind, op)) in events.iter().enumerate() {
        let e = (k + 1) as u32;
        entry_op[e as usize] = op;
        if kind == 0 {
            call_entry[op as usize] = e;
        } else {
            partner[call_entry[op as usize] as usize] = e;
        }
        if !ops[op as usize].info {
            next[last as usize] = e;
            prev[e as usize] = last;
            last = e;
        }
    }
    next[last as usize] = tail;
    prev[tail as usize] = last;

    // Bit positions: completed operations in order of return, which keeps the linearized set
    // a run of ones plus a short window; unknown operations in their own set, by invocation.
    let mut bit = vec![0u32; n];
    let mut n_ok = 0u32;
    let mut n_info = 0u32;
    for &(_, kind, op) in &events {
        let o = &ops[op as usize];
        if o.info && kind == 0 {
            bit[op as usize] = n_info;
            n_info += 1;
        } else if !o.info && kind == 1 {
            bit[op as usize] = n_ok;
            n_ok += 1;
        }
    }
    let mut seed = 0x5EED_u64 ^ n as u64;
    let zobrist: Vec<u64> = (0..n).map(|_| splitmix(&mut seed)).collect();

    let read_only: Vec<bool> = (0..n as u32)
        .map(|op| !ops[op as usize].info && machine.is_read_only(op))
        .collect();

    // Producer classes, each with its operations in order of invocation and a cursor at the
    // first one not linearized: "can anything of class c still come before time t?" is then
    // one comparison.
    let by_call: Vec<u32> = events
        .iter()
        .filter(|e| e.1 == 0)
        .map(|&(_, _, op)| op)
        .collect();
    let n_classes = machine.classes() as usize;
    let class_of: Vec<u32> = (0..n as u32)
        .map(|op| machine.producer_class(op).unwrap_or(NONE))
        .collect();
    let mut producers = Lists::new(
        n,
        n_classes,
        by_call
            .iter()
            .filter(|&&op| class_of[op as usize] != NONE)
            .map(|&op| (op, class_of[op as usize])),
    );
    // With no unknown operation nothing is ever wanted from one: the scan skips the wants
    // and nothing per class or key is kept for them.
    let has_unknowns = n_info > 0;
    let n_groups = if has_unknowns {
        (0..n as u32)
            .map(|op| machine.group(op))
            .max()
            .map_or(0, |g| g as usize + 1)
    } else {
        0
    };
    let mut unknowns = Unknowns::new(ops, machine, &by_call, n_groups);
    let mut linearized = vec![false; n];

    let mut ok_bits = Bits::new(n_ok as usize);
    let mut info_bits = Bits::new(n_info as usize);
    let mut z_ok = 0u64;
    let mut z_all = 0u64;
    let use_subsumption = n_info > 0;
    let mut memo = Memo::new(n);
    let mut frames: Vec<Frame> = Vec::with_capacity(n);
    // The deepest failure so far, and the entry its pending operations were taken up to.
    let mut best: Option<(Failure, u32)> = None;

    // What a node's window wants from an unknown operation (scratch, rebuilt per node), and
    // per node on the current path (index: depth) its range of `candidates`: the unknown
    // operations worth trying there.
    let mut wanted = Wanted::new(if has_unknowns { n_classes } else { 0 }, n_groups);
    let mut candidates: Vec<u32> = Vec::new();
    let mut candidates_at: Vec<(u32, u32)> = Vec::new();

    let urgent_first = machine.urgent_first();
    let mut state = machine.init();
    let mut remaining_ok = n_ok;
    if remaining_ok == 0 {
        return SearchResult::Linearizable;
    }
    let mut entry = next[0];
    let mut next_unknown = 0u32;
    // True when the search has just entered a node and not yet scanned it.
    let mut fresh = true;
    let mut ticks: u64 = 0;

    loop {
        ticks = ticks.wrapping_add(1);
        if ticks & 0x3FF == 0 {
            if limits.max_steps.is_some_and(|m| ticks > m) {
                return SearchResult::Unknown(StopReason::Steps);
            }
            if limits.cancel.load(Ordering::Relaxed) {
                return SearchResult::Unknown(StopReason::Cancelled);
            }
            if limits.requested.is_some_and(|r| r.load(Ordering::Relaxed)) {
                return SearchResult::Unknown(StopReason::Requested);
            }
            if limits.deadline.is_some_and(|d| Instant::now() >= d) {
                return SearchResult::Unknown(StopReason::Timeout);
            }
            if limits.memory_exceeded(0, &memo) {
                return SearchResult::Unknown(StopReason::Memory);
            }
        }

        // Right after an operation with an unknown outcome (w), only an operation that needs
        // w right before it may come next (see `needs_unknown`).
        let after_unknown = frames
            .last()
            .filter(|f| f.info)
            .map(|f| (f.state, entry_op[f.entry as usize]));

        // The candidate to try: a forced read, the next of the list's call entries and the
        // node's unknown candidates (in time order), or none (backtrack).
        let mut candidate = None;
        let mut forced = false;
        // Where this node's candidates go on if the one tried fails.
        let mut resume = (entry, next_unknown);
        if fresh {
            fresh = false;
            // A read-only operation that fits the current state can go first: any completion
            // that places it later can be reordered to place it now (it changes no state, and
            // nothing pending must precede it, or it would not be a candidate). So the node's
            // fate is that child's fate, and no other candidate needs trying.
            //
            // The same scan prunes dead nodes: an operation that cannot succeed until some
            // class of operations runs, when no operation of that class that is still to be
            // linearized was invoked before the operation returned.
            let depth = frames.len();
            candidates_at.truncate(depth);
            let start = candidates_at.last().map_or(0, |r| r.1);
            candidates.truncate(start as usize);
            wanted.clear();
            let mut e = next[0];
            let mut dead = None;
            while partner[e as usize] != NONE {
                let op = entry_op[e as usize];
                if has_unknowns {
                    match machine.wants(state, op) {
                        Want::Nothing => {}
                        Want::Class(c) => wanted.add(c),
                        Want::Any => wanted.add(ANY | machine.group(op)),
                    }
                }
                if let Some(c) = machine.needs(state, op) {
                    let next_producer = producers
                        .next(c)
                        .map_or(u64::MAX, |p| ops[p as usize].invoke);
                    if next_producer > ops[op as usize].ret {
                        dead = Some(op);
                        break;
                    }
                } else if candidate.is_none()
                    && read_only[op as usize]
                    && machine.step(state, op).is_some()
                    && after_unknown.is_none_or(|(before, w)| {
                        needs_unknown(machine, before, state, w, op).is_some()
                    })
                {
                    candidate = Some((e, state));
                    forced = true;
                }
                e = next[e as usize];
            }
            if dead.is_none() && !forced {
                let node = unknowns::Node {
                    state,
                    window_end: e,
                    call_entry: &call_entry,
                    linearized: &linearized,
                    producers: &producers,
                };
                match after_unknown {
                    None => {
                        unknowns.worth_trying(ops, machine, &node, &mut wanted, &mut candidates)
                    }
                    Some((_, w)) => unknowns.after_unknown(ops, machine, &node, w, &mut candidates),
                }
            }
            candidates_at.push((start, candidates.len() as u32));
            entry = next[0];
            next_unknown = start;
            resume = (entry, next_unknown);
            if let Some(op) = dead {
                if best
                    .as_ref()
                    .is_none_or(|f| frames.len() > f.0.prefix.len())
                {
                    let mut r = e;
                    while partner[r as usize] != NONE {
                        r = next[r as usize];
                    }
                    best = Some((
                        failure_at(&frames, &entry_op, &partner, &next, r, op, state),
                        r,
                    ));
                }
                candidate = None;
                forced = true;
            } else if urgent_first
                && candidate.is_none()
                && after_unknown.is_none()
                && entry_op[e as usize] != NONE
            {
                // No forced read: try first what the most urgent operation (the one that
                // returns first) asks for: the next producer of the value it needs, or itself.
                // Only an order of trying, so soundness and completeness are untouched; it
                // is what the linearization of a real history nearly always does next.
                let urgent = entry_op[e as usize];
                let pick = match machine.needs(state, urgent) {
                    Some(c) => producers.next(c).filter(|&p| call_entry[p as usize] < e),
                    None => (!read_only[urgent as usize]).then_some(urgent),
                };
                if let Some(p) = pick.filter(|&p| !ops[p as usize].info)
                    && let Some(s) = machine.step(state, p)
                {
                    candidate = Some((call_entry[p as usize], s));
                }
            }
        }
        if candidate.is_none() && !forced {
            let end = candidates_at[frames.len()].1;
            let list_call = (partner[entry as usize] != NONE).then_some(entry);
            let unknown_call = (next_unknown < end)
                .then(|| call_entry[candidates[next_unknown as usize] as usize]);
            match (list_call, unknown_call) {
                (Some(e), u) if u.is_none_or(|u| e < u) => {
                    let op = entry_op[e as usize];
                    resume = (next[e as usize], next_unknown);
                    candidate = match after_unknown {
                        None => machine.step(state, op),
                        Some((before, w)) => needs_unknown(machine, before, state, w, op),
                    }
                    .map(|s| (e, s));
                    if candidate.is_none() {
                        entry = resume.0;
                        continue;
                    }
                }
                (_, Some(e)) => {
                    let op = candidates[next_unknown as usize];
                    next_unknown += 1;
                    resume = (entry, next_unknown);
                    candidate = match after_unknown {
                        None => machine.step(state, op),
                        Some((before, w)) => needs_unknown(machine, before, state, w, op),
                    }
                    // An unknown operation that would change nothing here (a CAS whose compare
                    // fails) may as well come later or never: [w, x] with w a no-op is [x].
                    .filter(|&s| s != state)
                    .map(|s| (e, s));
                    if candidate.is_none() {
                        continue;
                    }
                }
                // At a return, with no unknown candidate left.
                _ => {}
            }
        }

        if let Some((e, new_state)) = candidate {
            let op = entry_op[e as usize];
            let info = ops[op as usize].info;
            let b = bit[op as usize];
            let z_new = if info {
                info_bits.set(b);
                z_ok
            } else {
                ok_bits.set(b);
                z_ok ^ zobrist[op as usize]
            };
            let z_all_new = z_all ^ zobrist[op as usize];
            // The node right after an unknown operation is not memoised: what may follow
            // depends on the state before it too, and it is reached at most once per parent.
            let node = if info {
                Some(NONE)
            } else {
                let hash = node_hash(z_all_new, new_state);
                let sub_hash = node_hash(z_new, new_state);
                let seen = memo.contains(hash, new_state, &ok_bits, &info_bits)
                    || (use_subsumption
                        && memo.subsumed(sub_hash, new_state, &ok_bits, &info_bits));
                if !seen {
                    // The memo grows by doubling: one insert can ask for as much again as it
                    // holds, far more than the periodic check above would notice in time.
                    let growth = memo.growth_of_insert(&ok_bits, &info_bits);
                    if growth > 0 && limits.memory_exceeded(growth, &memo) {
                        return SearchResult::Unknown(StopReason::Memory);
                    }
                }
                (!seen).then(|| memo.insert(hash, sub_hash, new_state, &ok_bits, &info_bits))
            };
            if let Some(node) = node {
                frames.push(Frame {
                    entry: e,
                    state,
                    node,
                    forced,
                    info,
                    resume_entry: resume.0,
                    resume_unknown: resume.1,
                });
                state = new_state;
                z_ok = z_new;
                z_all = z_all_new;
                linearized[op as usize] = true;
                producers.linearized(op, &linearized);
                if info {
                    unknowns.linearized(ops, op, &linearized);
                } else {
                    remaining_ok -= 1;
                    // Lift the call and its return out of the list.
                    for x in [e, partner[e as usize]] {
                        let (p, q) = (prev[x as usize], next[x as usize]);
                        next[p as usize] = q;
                        prev[q as usize] = p;
                    }
                }
                // Operations with unknown outcomes still pending may all go last, which is
                // the same as never.
                if remaining_ok == 0 {
                    return SearchResult::Linearizable;
                }
                fresh = true;
                continue;
            }
            if info {
                info_bits.clear(b);
            } else {
                ok_bits.clear(b);
            }
            if !forced {
                (entry, next_unknown) = resume;
                continue;
            }
            // A forced read leads to a node known to fail: so does this one.
        } else if forced {
            // A dead node: backtrack.
        } else {
            // At a return: nothing pending can be linearized before this operation completes.
            if best
                .as_ref()
                .is_none_or(|f| frames.len() > f.0.prefix.len())
            {
                let blocked = entry_op[entry as usize];
                best = Some((
                    failure_at(&frames, &entry_op, &partner, &next, entry, blocked, state),
                    entry,
                ));
            }
        }

        // Backtrack: undo linearizations until one leaves alternatives to try. Undoing a
        // forced read means its parent failed too.
        loop {
            let Some(frame) = frames.pop() else {
                let (mut failure, stop) = best.unwrap_or_else(|| {
                    let mut r = next[0];
                    while partner[r as usize] != NONE {
                        r = next[r as usize];
                    }
                    let blocked = entry_op[r as usize];
                    (
                        failure_at(&frames, &entry_op, &partner, &next, r, blocked, state),
                        r,
                    )
                });
                // The list holds completed operations only: add the unknown ones pending.
                failure
                    .pending
                    .extend(unknowns.pending(&call_entry, stop, &failure.prefix));
                failure
                    .pending
                    .sort_unstable_by_key(|&op| call_entry[op as usize]);
                return SearchResult::NotLinearizable(failure);
            };
            if use_subsumption && frame.node != NONE {
                memo.finish(frame.node);
            }
            let e = frame.entry;
            let op = entry_op[e as usize];
            z_all ^= zobrist[op as usize];
            state = frame.state;
            linearized[op as usize] = false;
            producers.undone(op);
            if frame.info {
                info_bits.clear(bit[op as usize]);
                unknowns.undone(ops, op);
            } else {
                ok_bits.clear(bit[op as usize]);
                z_ok ^= zobrist[op as usize];
                remaining_ok += 1;
                // Unlift in the reverse order of the lift.
                for x in [partner[e as usize], e] {
                    let (p, q) = (prev[x as usize], next[x as usize]);
                    next[p as usize] = x;
                    prev[q as usize] = x;
                }
            }
            if !frame.forced {
                entry = frame.resume_entry;
                next_unknown = frame.resume_unknown;
                break;
            }
        }
    }
}

/// Right after an operation `w` with an unknown outcome took the state from `before` to
/// `after`, may `x` come next? Only if it needs `w` there: if `x` also fits `before` and
/// either ends in the same state (w x = x: w was overwritten, so w may as well come last,
/// i.e. never) or commutes with w (w x = x w: w may as well come later), some linearization
/// without this adjacency exists whenever one with it does. Repeating the argument moves
/// every unknown operation either right before an operation that needs it or to the end.
/// Returns the state after `x` when it may come next.
#[inline]
fn needs_unknown<M: Machine>(
    machine: &mut M,
    before: u32,
    after: u32,
    w: u32,
    x: u32,
) -> Option<u32> {
    let a = machine.step(after, x)?;
    if let Some(b) = machine.step(before, x)
        && (a == b || machine.step(b, w) == Some(a))
    {
        return None;
    }
    Some(a)
}

fn failure_at(
    frames: &[Frame],
    entry_op: &[u32],
    partner: &[u32],
    next: &[u32],
    stop: u32,
    blocked: u32,
    state: u32,
) -> Failure {
    let prefix = frames.iter().map(|f| entry_op[f.entry as usize]).collect();
    let mut pending = Vec::new();
    let mut e = next[0];
    while e != stop && e != NONE {
        if partner[e as usize] != NONE {
            pending.push(entry_op[e as usize]);
        }
        e = next[e as usize];
    }
    Failure {
        prefix,
        state,
        blocked,
        pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Value;
    use crate::check::models::{KeyMachine, KeyStep, ModelKind, SingleKey};

    fn run(ops: &[(u64, u64, bool, KeyStep)]) -> SearchResult {
        let km = KeyMachine::new(ModelKind::CasRegister);
        let mut m = SingleKey {
            km,
            ops: ops.iter().map(|o| o.3).collect(),
        };
        // Value ids: 0 = nil, then 1.. = Int(1)..
        for v in 1..5 {
            m.km.intern(Value::Int(v));
        }
        let sops: Vec<SearchOp> = ops
            .iter()
            .map(|&(invoke, ret, info, _)| SearchOp {
                invoke,
                ret,
                info,
                twin: NO_TWIN,
                unknown_write: false,
                blank: false,
            })
            .collect();
        let cancel = AtomicBool::new(false);
        let memory = MemoryGauge::start(usize::MAX);
        let limits = Limits {
            deadline: None,
            cancel: &cancel,
            requested: None,
            memory: &memory,
            concurrent: 1,
            max_steps: None,
        };
        search(&sops, &mut m, &limits)
    }

    #[test]
    fn concurrent_write_and_read_linearize_either_way() {
        let r = run(&[
            (0, 10, false, KeyStep::Write(1)),
            (5, 15, false, KeyStep::Read(1)),
            (6, 16, false, KeyStep::Read(0)),
        ]);
        assert!(matches!(r, SearchResult::Linearizable));
    }

    #[test]
    fn read_of_old_value_after_write_completed_is_a_violation() {
        let r = run(&[
            (0, 10, false, KeyStep::Write(1)),
            (11, 15, false, KeyStep::Read(0)),
        ]);
        let SearchResult::NotLinearizable(f) = r else {
            panic!("expected a violation, got {r:?}");
        };
        assert_eq!(f.prefix, vec![0]);
        assert_eq!(f.blocked, 1);
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        // Write 1 timed out; a later read sees nil, a still later one sees 1.
        let r = run(&[
            (0, u64::MAX, true, KeyStep::Write(1)),
            (5, 6, false, KeyStep::Read(0)),
            (7, 8, false, KeyStep::Read(1)),
        ]);
        assert!(matches!(r, SearchResult::Linearizable));
        let r = run(&[
            (0, u64::MAX, true, KeyStep::Write(1)),
            (5, 6, false, KeyStep::Read(0)),
        ]);
        assert!(matches!(r, SearchResult::Linearizable));
        // But once seen, it cannot be unseen.
        let r = run(&[
            (0, u64::MAX, true, KeyStep::Write(1)),
            (5, 6, false, KeyStep::Read(1)),
            (7, 8, false, KeyStep::Read(0)),
        ]);
        assert!(matches!(r, SearchResult::NotLinearizable(_)));
    }
}
