//! The operations with unknown outcomes, and which of them are worth placing at a node.
//!
//! An unknown operation returns at +infinity, so in the search's list its call would sit in
//! the window of every node from its invocation on, and every scan of a window would walk
//! it: a partition that times out thousands of operations makes each step cost thousands.
//! So they are not in the list. The search asks this module for the few that are worth
//! trying at a node, found through lists keyed by what makes them fire:
//! * by **producer class** (what they write), for a completed operation that wants a class;
//! * by **trigger** (the value a compare-and-set must find), for "any change" and for what
//!   may follow another unknown operation;
//! * per key, the unknown **writes** (blank ones apart) and the **others** (appends).
//!
//! Which ones are worth it. In some linearization of each node's subtree, every unknown
//! operation either goes last (the same as never) or comes right before an operation that
//! needs it there (`needs_unknown` in the search), so the ones to try at a node start a
//! chain u1 … uk o of unknown operations, each needed by the next, ending in a completed
//! operation o of the window. Taking o's want at this node's state:
//! * o wants class c: uk produces c (o fits after uk and not before). If uk changes the
//!   state here (a write; a CAS whose trigger holds), [uk o] reaches what the chain reaches
//!   with fewer unknown operations, so trying uk suffices (a node that used a subset of the
//!   unknown operations and failed means this one fails: the search's subsumption). If it
//!   does not, it fires only on its trigger t, so u(k-1) produces t: the class t is wanted
//!   too, and the same argument runs down the chain;
//! * o wants any change: u1 must change the state here (else it may as well come later), so
//!   every unknown operation that does is tried, except that unknown writes give way to a
//!   blank one when one is ready (`[w, x]` becomes `[blank, x, w]`, the same end state);
//! * o wants nothing: the chain can come after o.
//!
//! Right after an unknown operation w only one that needs w may come, and an unknown write
//! never needs what came before it, so the candidates are the ones that fire on what w's key
//! holds now, and its others.

use super::lists::Lists;
use super::{NO_TWIN, SearchOp};
use crate::check::models::Machine;

/// Marks a group (a key) rather than a class in the wanted set: "any change of this key".
pub(super) const ANY: u32 = 1 << 31;

/// What the operations of one window want from an unknown operation: classes, and `ANY |
/// group` for any change of a key. Each at most once.
pub(super) struct Wanted {
    pub(super) list: Vec<u32>,
    mark: Vec<u32>,
    stamp: u32,
    n_classes: usize,
}

impl Wanted {
    pub(super) fn new(n_classes: usize, n_groups: usize) -> Self {
        Wanted {
            list: Vec::new(),
            mark: vec![0; n_classes + n_groups],
            stamp: 0,
            n_classes,
        }
    }

    pub(super) fn clear(&mut self) {
        self.list.clear();
        self.stamp += 1;
    }

    #[inline]
    pub(super) fn add(&mut self, w: u32) {
        let slot = if w & ANY != 0 {
            self.n_classes + (w & !ANY) as usize
        } else {
            w as usize
        };
        if self.mark[slot] != self.stamp {
            self.mark[slot] = self.stamp;
            self.list.push(w);
        }
    }
}

/// What the candidates of one node depend on.
pub(super) struct Node<'a> {
    pub(super) state: u32,
    /// The node's first return entry: only operations invoked before it may go next.
    pub(super) window_end: u32,
    pub(super) call_entry: &'a [u32],
    pub(super) linearized: &'a [bool],
    /// Every operation with a producer class, by class.
    pub(super) producers: &'a Lists,
}

pub(super) struct Unknowns {
    /// Unknown operations by trigger.
    triggered: Lists,
    /// Per key g, list 2g: its unknown writes but the blank ones; 2g+1: its other unknown
    /// operations without a trigger.
    untriggered: Lists,
    /// Twins (see `SearchOp::twin`) are linearized in invocation order: per class, its members
    /// in that order and how many are linearized.
    twin_members: Vec<Vec<u32>>,
    twin_cursor: Vec<usize>,
    /// Blank writes in order of invocation, and how many are linearized (two or more are
    /// twins, so the next one is `blanks[blank_cursor]`).
    blanks: Vec<u32>,
    blank_cursor: usize,
    /// Every unknown operation, in order of call entry.
    in_order: Vec<u32>,
    /// Candidates already taken at the node being built: `taken[op] == stamp`.
    taken: Vec<u32>,
    stamp: u32,
}

impl Unknowns {
    /// `by_call`: every operation in order of its call entry; `n_groups` bounds the groups
    /// of every operation (a window may want a change of any key, not only of keys with
    /// unknown operations).
    pub(super) fn new<M: Machine>(
        ops: &[SearchOp],
        machine: &M,
        by_call: &[u32],
        n_groups: usize,
    ) -> Self {
        let in_order: Vec<u32> = by_call
            .iter()
            .copied()
            .filter(|&op| ops[op as usize].info)
            .collect();
        // Only unknown operations are ever looked up here: with none, nothing per operation.
        let n = if in_order.is_empty() { 0 } else { ops.len() };
        let n_classes = if n == 0 {
            0
        } else {
            machine.classes() as usize
        };
        let triggered = Lists::new(
            n,
            n_classes,
            in_order
                .iter()
                .filter_map(|&op| machine.trigger(op).map(|t| (op, t))),
        );
        let untriggered = Lists::new(
            n,
            if n == 0 { 0 } else { 2 * n_groups },
            in_order
                .iter()
                .filter(|&&op| machine.trigger(op).is_none() && !ops[op as usize].blank)
                .map(|&op| {
                    let o = &ops[op as usize];
                    (op, 2 * machine.group(op) + u32::from(!o.unknown_write))
                }),
        );
        let n_twins = ops
            .iter()
            .filter(|o| o.twin != NO_TWIN)
            .map(|o| o.twin as usize + 1)
            .max()
            .unwrap_or(0);
        let mut twin_members: Vec<Vec<u32>> = vec![Vec::new(); n_twins];
        for &op in &in_order {
            let t = ops[op as usize].twin;
            if t != NO_TWIN {
                twin_members[t as usize].push(op);
            }
        }
        let blanks = in_order
            .iter()
            .copied()
            .filter(|&op| ops[op as usize].blank)
            .collect();
        Unknowns {
            triggered,
            untriggered,
            twin_cursor: vec![0; n_twins],
            twin_members,
            blanks,
            blank_cursor: 0,
            in_order,
            taken: vec![0; n],
            stamp: 0,
        }
    }

    /// `op` (unknown) was linearized; `linearized[op]` is set.
    pub(super) fn linearized(&mut self, ops: &[SearchOp], op: u32, linearized: &[bool]) {
        self.triggered.linearized(op, linearized);
        self.untriggered.linearized(op, linearized);
        let o = &ops[op as usize];
        if o.twin != NO_TWIN {
            self.twin_cursor[o.twin as usize] += 1;
        }
        self.blank_cursor += usize::from(o.blank);
    }

    /// `op`'s (unknown) linearization was undone.
    pub(super) fn undone(&mut self, ops: &[SearchOp], op: u32) {
        self.triggered.undone(op);
        self.untriggered.undone(op);
        let o = &ops[op as usize];
        if o.twin != NO_TWIN {
            self.twin_cursor[o.twin as usize] -= 1;
        }
        self.blank_cursor -= usize::from(o.blank);
    }

    /// May `op` go next as far as its twins go: it is the first of them not linearized.
    #[inline]
    fn first_twin(&self, ops: &[SearchOp], op: u32) -> bool {
        let t = ops[op as usize].twin;
        t == NO_TWIN || self.twin_members[t as usize][self.twin_cursor[t as usize]] == op
    }

    /// Appends to `out`, in order of call entry, the unknown operations worth trying at a
    /// node whose window wants `wanted` (see the module's argument); the classes that the
    /// chains need are added to `wanted` on the way.
    pub(super) fn worth_trying<M: Machine>(
        &mut self,
        ops: &[SearchOp],
        machine: &mut M,
        node: &Node,
        wanted: &mut Wanted,
        out: &mut Vec<u32>,
    ) {
        if self.in_order.is_empty() {
            return;
        }
        let start = out.len();
        self.stamp += 1;
        let mut i = 0;
        while i < wanted.list.len() {
            let w = wanted.list[i];
            i += 1;
            if w & ANY == 0 {
                self.take(ops, machine, node, Source::Producers(w), Some(wanted), out);
                continue;
            }
            let g = w & !ANY;
            let holding = machine.holding(node.state, g);
            // These fire here (on their trigger, or on anything), so they need no chain and
            // no step now: the search drops any that turns out to change nothing.
            if !self.triggered.is_empty() {
                self.take(ops, machine, node, Source::Triggered(holding), None, out);
            }
            let blank = self
                .blanks
                .get(self.blank_cursor)
                .copied()
                .filter(|&b| machine.group(b) == g)
                .filter(|&b| node.call_entry[b as usize] < node.window_end);
            match blank {
                Some(b) => self.offer(ops, machine, node, b, None, out),
                None => {
                    let writes = Source::Untriggered(2 * g);
                    self.take(ops, machine, node, writes, None, out);
                }
            }
            let others = Source::Untriggered(2 * g + 1);
            self.take(ops, machine, node, others, None, out);
        }
        out[start..].sort_unstable_by_key(|&op| node.call_entry[op as usize]);
    }

    /// Appends to `out`, in order of call entry, the unknown operations that may come right
    /// after the unknown operation `w` brought the node to its state: those that fire on
    /// what `w`'s key holds now, and its others. Whether each needs `w` is for the caller.
    pub(super) fn after_unknown<M: Machine>(
        &mut self,
        ops: &[SearchOp],
        machine: &mut M,
        node: &Node,
        w: u32,
        out: &mut Vec<u32>,
    ) {
        let start = out.len();
        self.stamp += 1;
        let g = machine.group(w);
        let holding = machine.holding(node.state, g);
        // No chains here: nothing is wanted on their behalf, and the search steps them.
        if !self.triggered.is_empty() {
            self.take(ops, machine, node, Source::Triggered(holding), None, out);
        }
        self.take(
            ops,
            machine,
            node,
            Source::Untriggered(2 * g + 1),
            None,
            out,
        );
        out[start..].sort_unstable_by_key(|&op| node.call_entry[op as usize]);
    }

    /// Offers every unknown member of `source` invoked inside the window.
    fn take<M: Machine>(
        &mut self,
        ops: &[SearchOp],
        machine: &mut M,
        node: &Node,
        source: Source,
        mut chain: Option<&mut Wanted>,
        out: &mut Vec<u32>,
    ) {
        // By index: `offer` needs `self` while the list is one of its own.
        let len = match source {
            Source::Producers(c) => node.producers.still_to_come(c).len(),
            Source::Triggered(t) => self.triggered.still_to_come(t).len(),
            Source::Untriggered(l) => self.untriggered.still_to_come(l).len(),
        };
        for k in 0..len {
            let op = match source {
                Source::Producers(c) => node.producers.still_to_come(c)[k],
                Source::Triggered(t) => self.triggered.still_to_come(t)[k],
                Source::Untriggered(l) => self.untriggered.still_to_come(l)[k],
            };
            if node.call_entry[op as usize] >= node.window_end {
                break;
            }
            if ops[op as usize].info {
                self.offer(ops, machine, node, op, chain.as_deref_mut(), out);
            }
        }
    }

    /// Offers `op`. Following chains (`chain` given), it is taken only if it changes the
    /// state here, and otherwise its trigger is wanted (the chain's next link down); without,
    /// it is taken as it is, to be stepped only if the search comes to it.
    fn offer<M: Machine>(
        &mut self,
        ops: &[SearchOp],
        machine: &mut M,
        node: &Node,
        op: u32,
        chain: Option<&mut Wanted>,
        out: &mut Vec<u32>,
    ) {
        if node.linearized[op as usize]
            || self.taken[op as usize] == self.stamp
            || !self.first_twin(ops, op)
        {
            return;
        }
        let Some(wanted) = chain else {
            self.taken[op as usize] = self.stamp;
            out.push(op);
            return;
        };
        match machine.step(node.state, op) {
            Some(s) if s != node.state => {
                self.taken[op as usize] = self.stamp;
                out.push(op);
            }
            _ => {
                if let Some(t) = machine.trigger(op) {
                    wanted.add(t);
                }
            }
        }
    }

    /// The unknown operations invoked before entry `stop` and not in `prefix`.
    pub(super) fn pending(&self, call_entry: &[u32], stop: u32, prefix: &[u32]) -> Vec<u32> {
        let mut placed = vec![false; call_entry.len()];
        for &op in prefix {
            placed[op as usize] = true;
        }
        self.in_order
            .iter()
            .copied()
            .take_while(|&op| call_entry[op as usize] < stop)
            .filter(|&op| !placed[op as usize])
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Source {
    Producers(u32),
    Triggered(u32),
    Untriggered(u32),
}
