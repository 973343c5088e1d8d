//! Finding dependency cycles and telling which class each is.
//!
//! A history whose full graph (data, process and real-time edges) has no strongly connected
//! component is free of cycles, and that is all a valid history costs: one linear pass. For
//! each component, and each tier of edges (data only, then with process order, then with real
//! time), the search looks for the shortest cycle of each class: a G0 among write-write edges,
//! a G1c through a write-read edge, any cycle through an anti-dependency, a G-single (a path
//! back without another anti-dependency), a G-nonadjacent (a walk whose anti-dependencies
//! never touch). Every cycle found is classified by the edges it actually has, so a class is
//! never claimed that the cycle does not show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::anomaly::{CycleClass, Variant};
use super::graph::{
    Budget, DATA, Graph, PROCESS, PathSearch, REALTIME, RW, Scope, Step, THROUGH, WR, WW,
    components,
};

/// Why a search stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    Timeout,
    Cancelled,
}

/// The time and cancellation budget of a check.
pub(super) struct Limits<'a> {
    pub(super) deadline: Option<Instant>,
    pub(super) cancel: Option<&'a AtomicBool>,
    pub(super) stopped: Option<Stopped>,
    since_check: usize,
}

impl<'a> Limits<'a> {
    pub(super) fn new(deadline: Option<Instant>, cancel: Option<&'a AtomicBool>) -> Self {
        Limits {
            deadline,
            cancel,
            stopped: None,
            since_check: 0,
        }
    }

    /// Checks the clock and the cancel flag now.
    pub(super) fn check_now(&mut self) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            self.stopped = Some(Stopped::Cancelled);
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stopped = Some(Stopped::Timeout);
        }
        self.stopped.is_none()
    }
}

impl Budget for Limits<'_> {
    fn spend(&mut self, steps: usize) -> bool {
        self.since_check += steps;
        if self.since_check < 1 << 16 {
            return self.stopped.is_none();
        }
        self.since_check = 0;
        self.check_now()
    }
}

/// A cycle, as transaction-to-transaction steps (real-time paths through barriers merged).
#[derive(Debug, Clone)]
pub(super) struct Cycle {
    pub(super) class: CycleClass,
    pub(super) variant: Variant,
    pub(super) steps: Vec<Step>,
}

/// A component the search proved cyclic but could not classify in its budget.
#[derive(Debug, Clone)]
pub(super) struct Unclassified {
    pub(super) variant: Variant,
    /// Transactions in the component.
    pub(super) txns: Vec<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Cycles {
    pub(super) found: Vec<Cycle>,
    pub(super) unclassified: Vec<Unclassified>,
    /// The budget ran out while searching this tier of edges: cycles needing it, or any
    /// later tier, may be there unfound.
    pub(super) incomplete_from: Option<Variant>,
}

const TIERS: [(Variant, u8); 3] = [
    (Variant::Plain, DATA),
    (Variant::Process, DATA | PROCESS),
    (Variant::Realtime, DATA | PROCESS | REALTIME | THROUGH),
];

/// Searches `graph` for one shortest cycle of each class, in the weakest variant that has
/// one.
pub(super) fn search(graph: &Graph, limits: &mut Limits) -> Cycles {
    let mut out = Cycles::default();
    let everything = Scope::all(graph);
    let Some(full) = components(
        graph,
        &everything,
        DATA | PROCESS | REALTIME | THROUGH,
        limits,
    ) else {
        out.incomplete_from = Some(Variant::Plain);
        return out;
    };
    if full.is_empty() {
        return out;
    }
    let mut paths = PathSearch::new(graph);
    let mut found_classes: Vec<CycleClass> = Vec::new();
    'tiers: for (variant, mask) in TIERS {
        for component in &full {
            let outer = Scope::of(component.clone());
            let Some(inner) = components(graph, &outer, mask, limits) else {
                out.incomplete_from = Some(variant);
                break 'tiers;
            };
            for nodes in inner {
                let scope = Scope::of(nodes);
                let mut classified = false;
                for class in SEARCH_ORDER {
                    if found_classes.contains(&class) {
                        classified = true;
                        continue;
                    }
                    match find(graph, &mut paths, &scope, mask, class, limits) {
                        Err(()) => {
                            out.incomplete_from = Some(variant);
                            break;
                        }
                        Ok(None) => {}
                        Ok(Some(walk)) => {
                            classified = true;
                            for steps in simple_cycles(merge_barriers(graph, walk)) {
                                let cycle = classify(steps);
                                if !found_classes.contains(&cycle.class) {
                                    found_classes.push(cycle.class);
                                    out.found.push(cycle);
                                }
                            }
                        }
                    }
                }
                if !classified {
                    out.unclassified.push(Unclassified {
                        variant,
                        txns: scope
                            .nodes
                            .iter()
                            .copied()
                            .filter(|&n| graph.is_txn(n))
                            .collect(),
                    });
                }
                if out.incomplete_from.is_some() {
                    break 'tiers;
                }
            }
        }
    }
    out.found.sort_by_key(|c| (c.variant, c.class));
    out
}

/// Cheap searches first, so that a budget spent on the costly ones still leaves answers.
const SEARCH_ORDER: [CycleClass; 5] = [
    CycleClass::G0,
    CycleClass::G1c,
    CycleClass::G2Item,
    CycleClass::GSingle,
    CycleClass::GNonadjacent,
];

/// How many cycles of a class are tried, the shortest reported: the first one found from an
/// arbitrary edge may be much longer than the cycle a person needs to see.
const SHORTEST_OF: usize = 8;

/// Keeps the shorter of two cycles.
fn shorter(best: Option<Vec<Step>>, found: Vec<Step>) -> Option<Vec<Step>> {
    match best {
        Some(b) if b.len() <= found.len() => Some(b),
        _ => Some(found),
    }
}

/// One cycle within `scope` of at least the edges `class` needs (its actual class is what
/// [`classify`] says).
fn find(
    graph: &Graph,
    paths: &mut PathSearch,
    scope: &Scope,
    mask: u8,
    class: CycleClass,
    limits: &mut Limits,
) -> Result<Option<Vec<Step>>, ()> {
    let extras = mask & !DATA;
    let follow = |allowed: u8| move |kind: u8, _: usize| (kind & allowed != 0).then_some(0);
    let any_state = |_: usize| true;
    match class {
        CycleClass::G0 | CycleClass::G1c => {
            let (allowed, through) = if class == CycleClass::G0 {
                (WW | extras, WW)
            } else {
                (WW | WR | extras, WR)
            };
            let Some(subs) = components(graph, scope, allowed, limits) else {
                return Err(());
            };
            let mut best = None;
            for nodes in subs {
                let sub = Scope::of(nodes);
                for first in graph
                    .edges_within(&sub, through)
                    .into_iter()
                    .take(SHORTEST_OF)
                {
                    let back = paths.shortest(
                        &sub,
                        first.to,
                        0,
                        first.from,
                        &any_state,
                        &follow(allowed),
                        limits,
                    )?;
                    if let Some(back) = back {
                        best = shorter(best, prepend(first, back));
                    }
                }
                if best.is_some() {
                    break;
                }
            }
            Ok(best)
        }
        CycleClass::G2Item => {
            let mut best = None;
            for first in graph.edges_within(scope, RW).into_iter().take(SHORTEST_OF) {
                let back = paths.shortest(
                    scope,
                    first.to,
                    0,
                    first.from,
                    &any_state,
                    &follow(mask),
                    limits,
                )?;
                if let Some(back) = back {
                    best = shorter(best, prepend(first, back));
                }
            }
            Ok(best)
        }
        CycleClass::GSingle => {
            let allowed = WW | WR | extras;
            let Some(subs) = components(graph, scope, allowed, limits) else {
                return Err(());
            };
            // An anti-dependency inside one component of the other edges closes a cycle for
            // sure; try those first.
            let mut label = rustc_hash::FxHashMap::default();
            for (i, nodes) in subs.iter().enumerate() {
                for &n in nodes {
                    label.insert(n, i);
                }
            }
            let mut rws = graph.edges_within(scope, RW);
            rws.sort_by_key(|e| {
                let (a, b) = (label.get(&e.from), label.get(&e.to));
                !(a.is_some() && a == b)
            });
            let (mut best, mut found) = (None, 0);
            for first in rws {
                let back = paths.shortest(
                    scope,
                    first.to,
                    0,
                    first.from,
                    &any_state,
                    &follow(allowed),
                    limits,
                )?;
                if let Some(back) = back {
                    best = shorter(best, prepend(first, back));
                    found += 1;
                    if found == SHORTEST_OF {
                        break;
                    }
                }
            }
            Ok(best)
        }
        CycleClass::GNonadjacent => {
            // State bits: 1 = the last edge was an anti-dependency, 2 = a second one was taken.
            let others = WW | WR | extras;
            let step = move |kind: u8, state: usize| {
                if kind & RW != 0 {
                    (state & 1 == 0).then_some(3)
                } else if kind & others != 0 {
                    Some(state & 2)
                } else {
                    None
                }
            };
            for first in graph.edges_within(scope, RW) {
                let back = paths.shortest(
                    scope,
                    first.to,
                    1,
                    first.from,
                    &|state| state == 2,
                    &step,
                    limits,
                )?;
                if let Some(back) = back {
                    return Ok(Some(prepend(first, back)));
                }
            }
            Ok(None)
        }
    }
}

fn prepend(first: Step, mut rest: Vec<Step>) -> Vec<Step> {
    rest.insert(0, first);
    rest
}

/// Merges each run `X → barrier → … → T` into one real-time step `X → T`.
fn merge_barriers(graph: &Graph, steps: Vec<Step>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut open: Option<Step> = None;
    for s in steps {
        match open.as_mut() {
            Some(run) => run.to = s.to,
            None => open = Some(s),
        }
        if graph.is_txn(s.to) {
            out.extend(open.take());
        }
    }
    out.extend(open);
    out
}

/// Splits a closed walk that passes a transaction twice into the simple cycles it is made
/// of. The search over (node, state) pairs may return such a walk; a cycle is reported, and
/// classified, only as a simple one.
fn simple_cycles(walk: Vec<Step>) -> Vec<Vec<Step>> {
    let mut pending = vec![walk];
    let mut out = Vec::new();
    while let Some(walk) = pending.pop() {
        let mut first_at: rustc_hash::FxHashMap<u32, usize> = Default::default();
        let mut split = None;
        for (j, s) in walk.iter().enumerate() {
            if let Some(&i) = first_at.get(&s.from) {
                split = Some((i, j));
                break;
            }
            first_at.insert(s.from, j);
        }
        match split {
            None => out.push(walk),
            Some((i, j)) => {
                let inner = walk[i..j].to_vec();
                let mut outer = walk[..i].to_vec();
                outer.extend_from_slice(&walk[j..]);
                pending.push(inner);
                pending.push(outer);
            }
        }
    }
    out
}

/// The class and variant of a cycle, from the edges it has.
fn classify(steps: Vec<Step>) -> Cycle {
    let rw: Vec<bool> = steps.iter().map(|s| s.kind & RW != 0).collect();
    let count = rw.iter().filter(|&&r| r).count();
    let adjacent = (0..rw.len()).any(|i| rw[i] && rw[(i + 1) % rw.len()]);
    let class = match count {
        0 if steps.iter().any(|s| s.kind & WR != 0) => CycleClass::G1c,
        0 => CycleClass::G0,
        1 => CycleClass::GSingle,
        _ if !adjacent => CycleClass::GNonadjacent,
        _ => CycleClass::G2Item,
    };
    let variant = if steps.iter().any(|s| s.kind & REALTIME != 0) {
        Variant::Realtime
    } else if steps.iter().any(|s| s.kind & PROCESS != 0) {
        Variant::Process
    } else {
        Variant::Plain
    };
    Cycle {
        class,
        variant,
        steps,
    }
}
