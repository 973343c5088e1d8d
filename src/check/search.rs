//! The linearizability search for one partition: Wing & Gong's algorithm with Lowe's
//! memoisation of (linearized set, state) pairs, as in Porcupine and Horn & Kroening.
//!
//! The history is a doubly linked list of call and return entries in time order. The search
//! walks it from the head: at a call it tries to linearize that operation now (its model step
//! succeeds and the resulting (set, state) was not seen before), then "lifts" the call and its
//! return out of the list and starts again from the head; at a return it has run out of
//! candidates that could precede that operation's completion and backtracks.
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

use super::memory::MemoryGauge;
use super::models::{Machine, Want};

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

/// A bitset that knows its first word that is not all ones (`lo`) and one past its last
/// non-zero word (`hi`), so that its canonical compressed form is `(lo, words[lo..hi])`.
struct Bits {
    words: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            lo: 0,
            hi: 0,
        }
    }

    #[inline]
    fn set(&mut self, i: u32) {
        let w = (i >> 6) as usize;
        self.words[w] |= 1u64 << (i & 63);
        if w >= self.hi {
            self.hi = w + 1;
        }
        if w == self.lo {
            while self.lo < self.words.len() && self.words[self.lo] == u64::MAX {
                self.lo += 1;
            }
        }
    }

    #[inline]
    fn clear(&mut self, i: u32) {
        let w = (i >> 6) as usize;
        self.words[w] &= !(1u64 << (i & 63));
        if w < self.lo {
            self.lo = w;
        }
        if w + 1 == self.hi {
            // Words below `lo` are all ones, so this stops at `lo` at the latest.
            while self.hi > 0 && self.words[self.hi - 1] == 0 {
                self.hi -= 1;
            }
        }
    }

    #[inline]
    fn tail(&self) -> &[u64] {
        &self.words[self.lo..self.hi.max(self.lo)]
    }
}

/// One memoised search node.
#[derive(Clone, Copy)]
struct Node {
    /// Hash of (all linearized operations, state).
    hash: u64,
    /// Hash of (linearized completed operations, state).
    sub_hash: u64,
    state: u32,
    /// Next node in the same exact-lookup bucket.
    next: u32,
    /// Next finished node in the same subsumption bucket.
    next_sub: u32,
    ok_lo: u32,
    ok_len: u32,
    info_lo: u32,
    info_len: u32,
    offset: usize,
}

/// How many finished nodes a subsumption lookup compares at most. Pruning less is always
/// sound; the cap keeps a lookup cheap when many sets of unknown operations share a bucket.
const SUBSUMPTION_SCAN: usize = 24;

/// The memo: every node entered, for exact lookups, and the nodes whose exploration finished
/// (and failed), chained by (completed operations, state) for subsumption lookups.
struct Memo {
    buckets: Vec<u32>,
    sub_buckets: Vec<u32>,
    shift: u32,
    nodes: Vec<Node>,
    words: Vec<u64>,
}

impl Memo {
    fn new() -> Self {
        let bits = 12;
        Memo {
            buckets: vec![NONE; 1 << bits],
            sub_buckets: vec![NONE; 1 << bits],
            shift: 64 - bits,
            nodes: Vec::new(),
            words: Vec::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.buckets.len() * 8
            + self.nodes.capacity() * size_of::<Node>()
            + self.words.capacity() * 8
    }

    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn ok_words(&self, n: &Node) -> &[u64] {
        &self.words[n.offset..n.offset + n.ok_len as usize]
    }

    #[inline]
    fn info_words(&self, n: &Node) -> &[u64] {
        let start = n.offset + n.ok_len as usize;
        &self.words[start..start + n.info_len as usize]
    }

    /// Was exactly this node entered before?
    #[inline]
    fn contains(&self, hash: u64, state: u32, ok: &Bits, info: &Bits) -> bool {
        let mut i = self.buckets[self.bucket(hash)];
        while i != NONE {
            let n = &self.nodes[i as usize];
            if n.hash == hash
                && n.state == state
                && n.ok_lo as usize == ok.lo
                && n.info_lo as usize == info.lo
                && self.ok_words(n) == ok.tail()
                && self.info_words(n) == info.tail()
            {
                return true;
            }
            i = n.next;
        }
        false
    }

    /// Did a node with the same completed operations and state, and a subset of these
    /// unknown operations, fail?
    #[inline]
    fn subsumed(&self, sub_hash: u64, state: u32, ok: &Bits, info: &Bits) -> bool {
        let mut i = self.sub_buckets[self.bucket(sub_hash)];
        let mut scanned = 0;
        while i != NONE && scanned < SUBSUMPTION_SCAN {
            let n = &self.nodes[i as usize];
            if n.sub_hash == sub_hash
                && n.state == state
                && n.ok_lo as usize == ok.lo
                && self.ok_words(n) == ok.tail()
                && subset(n.info_lo as usize, self.info_words(n), info)
            {
                return true;
            }
            scanned += 1;
            i = n.next_sub;
        }
        false
    }

    /// The bytes the next [`Memo::insert`] of this node would allocate: vectors that are full
    /// double, and a rehash allocates both bucket arrays anew while the old ones still live.
    fn growth_of_insert(&self, ok: &Bits, info: &Bits) -> usize {
        let mut bytes = 0;
        if self.nodes.len() * 4 >= self.buckets.len() * 3 {
            bytes += 2 * 2 * self.buckets.len() * size_of::<u32>();
        }
        if self.nodes.len() == self.nodes.capacity() {
            bytes += self.nodes.capacity().max(4) * 2 * size_of::<Node>();
        }
        let words = ok.tail().len() + info.tail().len();
        if self.words.len() + words > self.words.capacity() {
            bytes += (self.words.capacity() * 2).max(self.words.len() + words) * 8;
        }
        bytes
    }

    fn insert(&mut self, hash: u64, sub_hash: u64, state: u32, ok: &Bits, info: &Bits) -> u32 {
        if self.nodes.len() * 4 >= self.buckets.len() * 3 {
            self.grow();
        }
        let offset = self.words.len();
        self.words.extend_from_slice(ok.tail());
        self.words.extend_from_slice(info.tail());
        let b = self.bucket(hash);
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            hash,
            sub_hash,
            state,
            next: self.buckets[b],
            next_sub: NONE,
            ok_lo: ok.lo as u32,
            ok_len: ok.tail().len() as u32,
            info_lo: info.lo as u32,
            info_len: info.tail().len() as u32,
            offset,
        });
        self.buckets[b] = id;
        id
    }

    /// Records that node `id` was explored and failed.
    fn finish(&mut self, id: u32) {
        let b = self.bucket(self.nodes[id as usize].sub_hash);
        self.nodes[id as usize].next_sub = self.sub_buckets[b];
        self.sub_buckets[b] = id;
    }

    fn grow(&mut self) {
        let bits = 64 - self.shift + 1;
        self.shift = 64 - bits;
        // Keep the subsumption chains' order (newest first) by relinking oldest first.
        let finished: Vec<u32> = {
            let mut f = Vec::new();
            for &head in &self.sub_buckets {
                let mut i = head;
                while i != NONE {
                    f.push(i);
                    i = self.nodes[i as usize].next_sub;
                }
            }
            f.sort_unstable();
            f
        };
        self.buckets = vec![NONE; 1 << bits];
        self.sub_buckets = vec![NONE; 1 << bits];
        for id in 0..self.nodes.len() {
            let b = self.bucket(self.nodes[id].hash);
            self.nodes[id].next = self.buckets[b];
            self.buckets[b] = id as u32;
        }
        for id in finished {
            self.finish(id);
        }
    }
}

/// Is the stored set `(lo, tail)` a subset of `cur`?
#[inline]
fn subset(lo: usize, tail: &[u64], cur: &Bits) -> bool {
    if cur.lo < lo {
        // The stored set has all of words ..lo; `cur` misses a bit in one of them.
        return false;
    }
    tail.iter()
        .enumerate()
        .all(|(k, &w)| w & !cur.words[lo + k] == 0)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn node_hash(z_ok: u64, state: u32) -> u64 {
    z_ok ^ (u64::from(state) + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

struct Frame {
    entry: u32,
    state: u32,
    node: u32,
    /// A read forced as the only child worth trying.
    forced: bool,
    /// Tried first, out of list order: the node's other children are tried from the head.
    priority: bool,
    /// The operation has an unknown outcome.
    info: bool,
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

    // Entry 0 is the head sentinel, 2n+1 the tail sentinel.
    let tail = (2 * n + 1) as u32;
    let mut next: Vec<u32> = (1..=tail + 1).collect();
    let mut prev: Vec<u32> = (0..=tail).map(|i| i.wrapping_sub(1)).collect();
    next[tail as usize] = NONE;
    let mut entry_op = vec![NONE; 2 * n + 2];
    // For a call entry, its return entry; NONE for returns.
    let mut partner = vec![NONE; 2 * n + 2];
    let mut call_entry = vec![0u32; n];
    for (k, &(_, kind, op)) in events.iter().enumerate() {
        let e = (k + 1) as u32;
        entry_op[e as usize] = op;
        if kind == 0 {
            call_entry[op as usize] = e;
        } else {
            partner[call_entry[op as usize] as usize] = e;
        }
    }

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
    let n_classes = machine.classes() as usize;
    let mut class_of = vec![NONE; n];
    let mut class_start = vec![0u32; n_classes + 1];
    for op in 0..n as u32 {
        if let Some(c) = machine.producer_class(op) {
            class_of[op as usize] = c;
            class_start[c as usize + 1] += 1;
        }
    }
    for c in 0..n_classes {
        class_start[c + 1] += class_start[c];
    }
    let mut class_list = vec![0u32; class_start[n_classes] as usize];
    let mut class_pos = vec![0u32; n];
    {
        let mut fill = class_start.clone();
        let mut by_invoke: Vec<u32> = (0..n as u32)
            .filter(|&o| class_of[o as usize] != NONE)
            .collect();
        by_invoke.sort_by_key(|&o| ops[o as usize].invoke);
        for o in by_invoke {
            let c = class_of[o as usize] as usize;
            class_pos[o as usize] = fill[c];
            class_list[fill[c] as usize] = o;
            fill[c] += 1;
        }
    }
    let mut class_cursor: Vec<u32> = class_start[..n_classes].to_vec();
    let mut linearized = vec![false; n];

    // Twins (unknown operations with the same step) are linearized in order of invocation
    // only. Sound and complete by exchange: they all return at +infinity and act alike, so
    // in any linearization the ones used can be swapped for the earliest-invoked ones, in
    // invocation order, and each still takes effect after its invocation. Without this, k
    // timed-out writes of values nobody reads open k ways to do the same thing at every node.
    let n_twins = ops
        .iter()
        .filter(|o| o.twin != NO_TWIN)
        .map(|o| o.twin as usize + 1)
        .max()
        .unwrap_or(0);
    let mut twin_members: Vec<Vec<u32>> = vec![Vec::new(); n_twins];
    for &(_, kind, op) in &events {
        let t = ops[op as usize].twin;
        if kind == 0 && t != NO_TWIN {
            twin_members[t as usize].push(op);
        }
    }
    let mut twin_cursor = vec![0usize; n_twins];
    // Only the next twin of each class is in the list: the others are parked (unlinked) and
    // come in one at a time, as the one before is linearized, so no scan walks over them.
    for members in &twin_members {
        for &op in members.iter().skip(1) {
            let x = call_entry[op as usize] as usize;
            let (p, q) = (prev[x], next[x]);
            next[p as usize] = q;
            prev[q as usize] = p;
        }
    }
    // Blank writes in order of invocation, and how many are linearized: with two or more
    // they are twins, linearized in that order, so the next one is `blanks[blank_cursor]`.
    let blanks: Vec<u32> = events
        .iter()
        .filter(|&&(_, kind, op)| kind == 0 && ops[op as usize].blank)
        .map(|&(_, _, op)| op)
        .collect();
    let mut blank_cursor = 0usize;

    let mut ok_bits = Bits::new(n_ok as usize);
    let mut info_bits = Bits::new(n_info as usize);
    let mut z_ok = 0u64;
    let mut z_all = 0u64;
    let use_subsumption = n_info > 0;
    let mut memo = Memo::new();
    let mut frames: Vec<Frame> = Vec::with_capacity(n);
    let mut best: Option<Failure> = None;

    // Per node on the current path (index: depth), the range of `wanted` holding what its
    // window's operations want from an unknown operation: a class, or GROUP|group for any.
    const GROUP: u32 = 1 << 31;
    let mut wanted: Vec<u32> = Vec::new();
    // (start, end) in `wanted`, and the node's first return entry: the end of its window.
    let mut wanted_at: Vec<(usize, usize, u32)> = Vec::with_capacity(n + 1);
    // Membership in the current node's range, in O(1): `mark[slot] == stamp`. A new stamp
    // each time a node's range is built, or is current again after a backtrack.
    let n_groups = (0..n as u32)
        .map(|op| machine.group(op))
        .max()
        .map_or(0, |g| g + 1);
    let slot = |w: u32| -> usize {
        if w & GROUP != 0 {
            n_classes + (w & !GROUP) as usize
        } else {
            w as usize
        }
    };
    let mut mark = vec![0u32; n_classes + n_groups as usize];
    let mut stamp = 0u32;
    let info_class: Vec<u32> = (0..n as u32)
        .map(|op| machine.producer_class(op).unwrap_or(NONE))
        .collect();

    let urgent_first = machine.urgent_first();
    let mut state = machine.init();
    let mut remaining_ok = n_ok;
    if remaining_ok == 0 {
        return SearchResult::Linearizable;
    }
    let mut entry = next[0];
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

        // The candidate to try: a forced read, the call entry at `entry`, or none (backtrack).
        let mut candidate = None;
        let mut forced = false;
        let mut priority = false;
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
            wanted_at.truncate(depth);
            let start = wanted_at.last().map_or(0, |w| w.1);
            wanted.truncate(start);
            stamp += 1;
            let mut e = next[0];
            let mut dead = None;
            while partner[e as usize] != NONE {
                let op = entry_op[e as usize];
                match machine.wants(state, op) {
                    Want::Nothing => {}
                    Want::Class(c) => {
                        if mark[slot(c)] != stamp {
                            mark[slot(c)] = stamp;
                            wanted.push(c);
                        }
                    }
                    Want::Any => {
                        let g = GROUP | machine.group(op);
                        if mark[slot(g)] != stamp {
                            mark[slot(g)] = stamp;
                            wanted.push(g);
                        }
                    }
                }
                if let Some(c) = machine.needs(state, op) {
                    let cur = class_cursor[c as usize];
                    let next_producer = if cur < class_start[c as usize + 1] {
                        ops[class_list[cur as usize] as usize].invoke
                    } else {
                        u64::MAX
                    };
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
            wanted_at.push((start, wanted.len(), e));
            entry = next[0];
            if let Some(op) = dead {
                if best.as_ref().is_none_or(|f| frames.len() > f.prefix.len()) {
                    let mut r = e;
                    while partner[r as usize] != NONE {
                        r = next[r as usize];
                    }
                    best = Some(failure_at(
                        &frames, &entry_op, &partner, &next, r, op, state,
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
                    Some(c) => {
                        let cur = class_cursor[c as usize];
                        (cur < class_start[c as usize + 1])
                            .then(|| class_list[cur as usize])
                            .filter(|&p| call_entry[p as usize] < e)
                    }
                    None => (!read_only[urgent as usize]).then_some(urgent),
                };
                if let Some(p) = pick.filter(|&p| !ops[p as usize].info)
                    && let Some(s) = machine.step(state, p)
                {
                    candidate = Some((call_entry[p as usize], s));
                    priority = true;
                }
            }
        }
        let ret = partner[entry as usize];
        if candidate.is_none() && !forced && ret != NONE {
            let op = entry_op[entry as usize];
            debug_assert!({
                let t = ops[op as usize].twin;
                t == NO_TWIN || twin_members[t as usize][twin_cursor[t as usize]] == op
            });
            if ops[op as usize].info && after_unknown.is_none() {
                // An unknown operation is only worth placing here if something pending may
                // need it right after (see `needs_unknown`).
                let window_end = wanted_at[frames.len()].2;
                let wants = |w: u32| mark[slot(w)] == stamp;
                let c = info_class[op as usize];
                // An unknown write wanted only as "any change" (a CAS whose compare must fail)
                // gives way to a blank write, when one is available: [w, x] can become
                // [blank, x, w], which ends in the same state, w still after its invocation.
                let blank_ready = blanks
                    .get(blank_cursor)
                    .is_some_and(|&b| call_entry[b as usize] < window_end);
                let any_change = wants(GROUP | machine.group(op))
                    && !(ops[op as usize].unknown_write && !ops[op as usize].blank && blank_ready);
                let useful = (c != NONE && wants(c)) || any_change;
                if !useful {
                    entry = next[entry as usize];
                    continue;
                }
            }
            candidate = match after_unknown {
                None => machine.step(state, op),
                Some((before, w)) => needs_unknown(machine, before, state, w, op),
            }
            // An unknown operation that would change nothing here (a CAS whose compare
            // fails) may as well come later or never: [w, x] with w a no-op is [x].
            .filter(|&s| !(ops[op as usize].info && s == state))
            .map(|s| (entry, s));
            if candidate.is_none() {
                entry = next[entry as usize];
                continue;
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
                    priority,
                    info,
                });
                state = new_state;
                z_ok = z_new;
                z_all = z_all_new;
                if !info {
                    remaining_ok -= 1;
                }
                linearized[op as usize] = true;
                blank_cursor += usize::from(ops[op as usize].blank);
                let c = class_of[op as usize];
                if c != NONE && class_cursor[c as usize] == class_pos[op as usize] {
                    let end = class_start[c as usize + 1];
                    let cur = &mut class_cursor[c as usize];
                    while *cur < end && linearized[class_list[*cur as usize] as usize] {
                        *cur += 1;
                    }
                }
                // Lift the call and its return out of the list.
                for x in [e, partner[e as usize]] {
                    let (p, q) = (prev[x as usize], next[x as usize]);
                    next[p as usize] = q;
                    prev[q as usize] = p;
                }
                // The next twin comes in, at its place in time order: after e's old
                // neighbour, which is still in the list, past entries invoked before it.
                let t = ops[op as usize].twin;
                if t != NO_TWIN {
                    twin_cursor[t as usize] += 1;
                    if let Some(&twin) = twin_members[t as usize].get(twin_cursor[t as usize]) {
                        let x = call_entry[twin as usize];
                        let mut q = prev[e as usize];
                        while next[q as usize] < x {
                            q = next[q as usize];
                        }
                        let r = next[q as usize];
                        next[x as usize] = r;
                        prev[x as usize] = q;
                        prev[r as usize] = x;
                        next[q as usize] = x;
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
            if priority {
                entry = next[0];
                continue;
            }
            if !forced {
                entry = next[e as usize];
                continue;
            }
            // A forced read leads to a node known to fail: so does this one.
        } else if forced {
            // A dead node: backtrack.
        } else {
            // At a return: nothing pending can be linearized before this operation completes.
            if best.as_ref().is_none_or(|f| frames.len() > f.prefix.len()) {
                let blocked = entry_op[entry as usize];
                best = Some(failure_at(
                    &frames, &entry_op, &partner, &next, entry, blocked, state,
                ));
            }
        }

        // Backtrack: undo linearizations until one leaves alternatives to try. Undoing a
        // forced read means its parent failed too.
        loop {
            let Some(frame) = frames.pop() else {
                return SearchResult::NotLinearizable(best.unwrap_or_else(|| {
                    let mut r = next[0];
                    while partner[r as usize] != NONE {
                        r = next[r as usize];
                    }
                    failure_at(
                        &frames,
                        &entry_op,
                        &partner,
                        &next,
                        r,
                        entry_op[r as usize],
                        state,
                    )
                }));
            };
            if use_subsumption && frame.node != NONE {
                memo.finish(frame.node);
            }
            let e = frame.entry;
            let op = entry_op[e as usize];
            z_all ^= zobrist[op as usize];
            if frame.info {
                info_bits.clear(bit[op as usize]);
            } else {
                ok_bits.clear(bit[op as usize]);
                z_ok ^= zobrist[op as usize];
                remaining_ok += 1;
            }
            state = frame.state;
            linearized[op as usize] = false;
            let t = ops[op as usize].twin;
            if t != NO_TWIN {
                // Park the twin that came in with it (undone in reverse order, so its
                // neighbours are the ones it was inserted between).
                if let Some(&twin) = twin_members[t as usize].get(twin_cursor[t as usize]) {
                    let x = call_entry[twin as usize] as usize;
                    let (p, q) = (prev[x], next[x]);
                    next[p as usize] = q;
                    prev[q as usize] = p;
                }
                twin_cursor[t as usize] -= 1;
            }
            blank_cursor -= usize::from(ops[op as usize].blank);
            let c = class_of[op as usize];
            if c != NONE && class_pos[op as usize] < class_cursor[c as usize] {
                class_cursor[c as usize] = class_pos[op as usize];
            }
            // Unlift in the reverse order of the lift.
            for x in [partner[e as usize], e] {
                let (p, q) = (prev[x as usize], next[x as usize]);
                next[p as usize] = x;
                prev[q as usize] = x;
            }
            if !frame.forced {
                entry = if frame.priority {
                    next[0]
                } else {
                    next[e as usize]
                };
                // This node's range is current again.
                stamp += 1;
                let (a, b, _) = wanted_at[frames.len()];
                for &w in &wanted[a..b] {
                    mark[slot(w)] = stamp;
                }
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
