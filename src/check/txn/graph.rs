//! The dependency graph between transactions, stored as compressed adjacency lists.
//!
//! Nodes `0..txns` are transactions; nodes past that are *virtual*: a real-time barrier
//! stands for "everything completed so far", so that real time costs a few edges per
//! transaction instead of one per concurrent pair. A path `X →realtime B →through … → T`
//! through virtual nodes is one real-time edge from X to T.

use rustc_hash::{FxHashMap, FxHashSet};

use super::why::Why;

/// Edge kinds as bits, so a search can say which kinds it may follow.
pub(super) const WW: u8 = 1;
pub(super) const WR: u8 = 2;
pub(super) const RW: u8 = 4;
pub(super) const PROCESS: u8 = 8;
pub(super) const REALTIME: u8 = 16;
/// The continuation of a real-time edge through a virtual node.
pub(super) const THROUGH: u8 = 32;
/// The data dependencies.
pub(super) const DATA: u8 = WW | WR | RW;

/// An edge as the inference produces it.
#[derive(Debug, Clone, Copy)]
struct RawEdge {
    from: u32,
    to: u32,
    kind: u8,
}

/// Collects edges; [`GraphBuilder::build`] sorts them into adjacency lists.
///
/// Reasons are not kept for every edge: a valid history never needs one, and a million
/// transactions have millions of edges. A builder made with [`GraphBuilder::explaining`]
/// instead keeps no edges and records the reason of each wanted edge, so the inference is
/// run a second time only when there are cycles to explain.
pub(super) struct GraphBuilder {
    txns: u32,
    nodes: u32,
    edges: Vec<RawEdge>,
    explain: Option<Reasons>,
}

/// The reasons for the edges a cycle uses, by (from, to, kind).
#[derive(Default)]
pub(super) struct Reasons {
    wanted: FxHashSet<(u32, u32, u8)>,
    found: FxHashMap<(u32, u32, u8), Why>,
}

impl Reasons {
    /// The recorded reason for an edge; process and real-time edges need none.
    pub(super) fn get(&self, from: u32, to: u32, kind: u8) -> Why {
        self.found
            .get(&(from, to, kind))
            .copied()
            .unwrap_or(Why::Structural)
    }
}

impl GraphBuilder {
    /// A builder for `txns` transactions, with room for about `edges` edges.
    pub(super) fn new(txns: usize, edges: usize) -> Self {
        GraphBuilder {
            txns: txns as u32,
            nodes: txns as u32,
            edges: Vec::with_capacity(edges),
            explain: None,
        }
    }

    /// A builder that only records why each of `wanted` edges exists.
    pub(super) fn explaining(
        txns: usize,
        wanted: impl IntoIterator<Item = (u32, u32, u8)>,
    ) -> Self {
        GraphBuilder {
            txns: txns as u32,
            nodes: txns as u32,
            edges: Vec::new(),
            explain: Some(Reasons {
                wanted: wanted.into_iter().collect(),
                found: FxHashMap::default(),
            }),
        }
    }

    /// A new virtual node.
    pub(super) fn virtual_node(&mut self) -> u32 {
        self.nodes += 1;
        self.nodes - 1
    }

    /// Adds `from → to` (never a self-loop: a transaction does not depend on itself).
    pub(super) fn add(&mut self, from: u32, to: u32, kind: u8, why: Why) {
        if from == to {
            return;
        }
        match &mut self.explain {
            None => self.edges.push(RawEdge { from, to, kind }),
            Some(reasons) => {
                if reasons.wanted.contains(&(from, to, kind)) {
                    reasons.found.entry((from, to, kind)).or_insert(why);
                }
            }
        }
    }

    /// The reasons an explaining builder recorded.
    pub(super) fn into_reasons(self) -> Reasons {
        self.explain.unwrap_or_default()
    }

    pub(super) fn build(self) -> Graph {
        let n = self.nodes as usize;
        let mut offsets = vec![0u32; n + 1];
        for e in &self.edges {
            offsets[e.from as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let m = self.edges.len();
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; m];
        let mut kinds = vec![0u8; m];
        for e in &self.edges {
            let at = fill[e.from as usize] as usize;
            fill[e.from as usize] += 1;
            targets[at] = e.to;
            kinds[at] = e.kind;
        }
        Graph {
            txns: self.txns,
            offsets,
            targets,
            kinds,
        }
    }
}

/// One edge of a path: `from → to` of `kind`, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) kind: u8,
}

/// The graph, read-only.
pub(super) struct Graph {
    txns: u32,
    offsets: Vec<u32>,
    targets: Vec<u32>,
    kinds: Vec<u8>,
}

impl Graph {
    pub(super) fn nodes(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(super) fn is_txn(&self, node: u32) -> bool {
        node < self.txns
    }

    pub(super) fn edges(&self) -> usize {
        self.targets.len()
    }

    fn out(&self, node: u32) -> std::ops::Range<usize> {
        self.offsets[node as usize] as usize..self.offsets[node as usize + 1] as usize
    }

    fn step(&self, from: u32, at: usize) -> Step {
        Step {
            from,
            to: self.targets[at],
            kind: self.kinds[at],
        }
    }

    /// Every edge from a node in `scope` to a node in `scope` whose kind is in `mask`.
    pub(super) fn edges_within(&self, scope: &Scope, mask: u8) -> Vec<Step> {
        let mut out = Vec::new();
        for &node in &scope.nodes {
            for at in self.out(node) {
                if self.kinds[at] & mask != 0 && scope.contains(self.targets[at]) {
                    out.push(self.step(node, at));
                }
            }
        }
        out
    }
}

/// A set of nodes to search within: the whole graph, or a component of it. A component's
/// nodes get local numbers, so that searching many small components costs what they hold,
/// not what the graph holds.
pub(super) struct Scope {
    pub(super) nodes: Vec<u32>,
    /// Node → local number; `None` for the whole graph, where they are the same.
    local: Option<FxHashMap<u32, u32>>,
}

impl Scope {
    pub(super) fn all(graph: &Graph) -> Scope {
        Scope {
            nodes: (0..graph.nodes() as u32).collect(),
            local: None,
        }
    }

    pub(super) fn of(nodes: Vec<u32>) -> Scope {
        let local = nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i as u32))
            .collect();
        Scope {
            nodes,
            local: Some(local),
        }
    }

    fn local(&self, node: u32) -> Option<usize> {
        match &self.local {
            None => Some(node as usize),
            Some(map) => map.get(&node).map(|&i| i as usize),
        }
    }

    pub(super) fn contains(&self, node: u32) -> bool {
        self.local(node).is_some()
    }
}

/// Counts the work of a search, so that it stops when its budget runs out.
pub(super) trait Budget {
    /// Records `steps` edges looked at; false when the search must stop.
    fn spend(&mut self, steps: usize) -> bool;
}

/// Strongly connected components of the subgraph of `mask` edges within `scope`, those with
/// at least two nodes (the graph has no self-loops, so only they hold cycles). `None` when
/// the budget ran out.
pub(super) fn components(
    graph: &Graph,
    scope: &Scope,
    mask: u8,
    budget: &mut dyn Budget,
) -> Option<Vec<Vec<u32>>> {
    const UNSEEN: u32 = u32::MAX;
    let n = scope.nodes.len();
    // All indexed by local number.
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    // Each frame: the node, its local number and the next of its edges to look at.
    let mut frames: Vec<(u32, usize, usize)> = Vec::new();
    let mut next_index = 0u32;
    let mut found = Vec::new();
    for &root in &scope.nodes {
        let r = scope.local(root).expect("a scope holds its own nodes");
        if index[r] != UNSEEN {
            continue;
        }
        index[r] = next_index;
        low[r] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[r] = true;
        frames.push((root, r, graph.out(root).start));
        while let Some(&mut (node, local, ref mut at)) = frames.last_mut() {
            let end = graph.out(node).end;
            let mut descended = None;
            let mut looked = 0usize;
            while *at < end {
                let e = *at;
                *at += 1;
                looked += 1;
                if graph.kinds[e] & mask == 0 {
                    continue;
                }
                let next = graph.targets[e];
                let Some(j) = scope.local(next) else {
                    continue;
                };
                if index[j] == UNSEEN {
                    index[j] = next_index;
                    low[j] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[j] = true;
                    descended = Some((next, j));
                    break;
                } else if on_stack[j] {
                    low[local] = low[local].min(index[j]);
                }
            }
            if !budget.spend(looked + 1) {
                return None;
            }
            if let Some((next, j)) = descended {
                frames.push((next, j, graph.out(next).start));
                continue;
            }
            frames.pop();
            if let Some(&(_, parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[local]);
            }
            if low[local] == index[local] {
                let mut component = Vec::new();
                loop {
                    let member = stack.pop().expect("the node is on the stack");
                    let m = scope.local(member).expect("stacked nodes are in scope");
                    on_stack[m] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    found.push(component);
                }
            }
        }
    }
    Some(found)
}

/// A breadth-first search over (node, state) pairs, for the shortest path whose edges a
/// small state machine accepts. States are `0..STATES`.
pub(super) struct PathSearch<'g> {
    graph: &'g Graph,
    /// Per (node, state): the search generation that reached it.
    seen: Vec<u32>,
    /// Per (node, state): the edge index and previous (node, state) it was reached by.
    parent: Vec<(u32, u32)>,
    generation: u32,
}

/// How many states a path search tracks per node.
pub(super) const STATES: usize = 4;

impl<'g> PathSearch<'g> {
    pub(super) fn new(graph: &'g Graph) -> Self {
        PathSearch {
            graph,
            seen: vec![0; graph.nodes() * STATES],
            parent: vec![(0, 0); graph.nodes() * STATES],
            generation: 0,
        }
    }

    /// The shortest path from `(start, start_state)` to `(goal, a state goal_state accepts)`
    /// within `scope`, following an edge of kind `k` from state `s` to `transition(k, s)`
    /// when that is `Some`. `Err(())` when the budget ran out, `Ok(None)` when there is none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn shortest(
        &mut self,
        scope: &Scope,
        start: u32,
        start_state: usize,
        goal: u32,
        goal_state: &dyn Fn(usize) -> bool,
        transition: &dyn Fn(u8, usize) -> Option<usize>,
        budget: &mut dyn Budget,
    ) -> Result<Option<Vec<Step>>, ()> {
        self.generation += 1;
        let generation = self.generation;
        let slot = |node: u32, state: usize| node as usize * STATES + state;
        let mut queue = std::collections::VecDeque::new();
        self.seen[slot(start, start_state)] = generation;
        queue.push_back((start, start_state));
        while let Some((node, state)) = queue.pop_front() {
            let range = self.graph.out(node);
            if !budget.spend(range.len() + 1) {
                return Err(());
            }
            for at in range {
                let next = self.graph.targets[at];
                if !scope.contains(next) {
                    continue;
                }
                let Some(next_state) = transition(self.graph.kinds[at], state) else {
                    continue;
                };
                let s = slot(next, next_state);
                if self.seen[s] == generation {
                    continue;
                }
                self.seen[s] = generation;
                self.parent[s] = (at as u32, slot(node, state) as u32);
                if next == goal && goal_state(next_state) {
                    return Ok(Some(self.path(start, start_state, s)));
                }
                queue.push_back((next, next_state));
            }
        }
        Ok(None)
    }

    fn path(&self, start: u32, start_state: usize, mut s: usize) -> Vec<Step> {
        let first = start as usize * STATES + start_state;
        let mut steps = Vec::new();
        while s != first {
            let (at, prev) = self.parent[s];
            let from = (prev as usize / STATES) as u32;
            steps.push(self.graph.step(from, at as usize));
            s = prev as usize;
        }
        steps.reverse();
        steps
    }
}
