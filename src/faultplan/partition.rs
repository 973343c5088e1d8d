//! Partition shapes turned into per-node drop lists.

use rand::Rng;
use rand::seq::SliceRandom;

use super::PlanError;

/// The shape of a network partition (API `partition.shape`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionShape {
    /// One node chosen at random is cut from all others.
    IsolateOne,
    /// A random majority (`n/2 + 1` nodes) and the minority cannot reach each other.
    MajorityMinority,
    /// Two random halves (`n/2` and the rest) cannot reach each other.
    Halves,
    /// Two random halves cut from each other, plus one random node that reaches both.
    Bridge,
    /// Nodes in a random ring order; each node reaches only its two neighbours.
    Ring,
    /// Explicit groups of node names; nodes of different groups cannot reach each other.
    /// A node listed in no group keeps every link (it bridges the groups).
    Groups(Vec<Vec<String>>),
    /// This node (the leader, by index) is cut from all others.
    IsolateLeader(usize),
    /// This node (the leader) and random others form the minority (`n - n/2 - 1` nodes
    /// with it), the rest a bare majority.
    LeaderInMinority(usize),
}

impl PartitionShape {
    /// The shape's name as in the API.
    pub fn name(&self) -> &'static str {
        match self {
            PartitionShape::IsolateOne => "isolate-one",
            PartitionShape::MajorityMinority => "majority-minority",
            PartitionShape::Halves => "halves",
            PartitionShape::Bridge => "bridge",
            PartitionShape::Ring => "ring",
            PartitionShape::Groups(_) => "groups",
            PartitionShape::IsolateLeader(_) => "isolate-leader",
            PartitionShape::LeaderInMinority(_) => "leader-in-minority",
        }
    }

    /// The smallest node count for which the shape cuts at least one link.
    fn minimum_nodes(&self) -> usize {
        match self {
            PartitionShape::IsolateOne
            | PartitionShape::Halves
            | PartitionShape::Groups(_)
            | PartitionShape::IsolateLeader(_) => 2,
            PartitionShape::MajorityMinority
            | PartitionShape::Bridge
            | PartitionShape::LeaderInMinority(_) => 3,
            // With three nodes every node's two neighbours are everyone.
            PartitionShape::Ring => 4,
        }
    }
}

/// Per-node drop lists: `drops(i)` are the nodes whose traffic node `i` drops in both
/// directions. The lists are symmetric (`j ∈ drops(i)` ⇔ `i ∈ drops(j)`), so a link is cut
/// even if one side's rule fails to apply; nodes with an empty list need no rules at all
/// (the bridge node, for instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    drops: Vec<Vec<usize>>,
}

impl PartitionPlan {
    fn from_links(nodes: usize, connected: impl Fn(usize, usize) -> bool) -> Self {
        let drops = (0..nodes)
            .map(|i| (0..nodes).filter(|&j| j != i && !connected(i, j)).collect())
            .collect();
        Self { drops }
    }

    /// Number of nodes the plan covers.
    pub fn node_count(&self) -> usize {
        self.drops.len()
    }

    /// The nodes whose traffic `node` drops, ascending.
    pub fn drops(&self, node: usize) -> &[usize] {
        &self.drops[node]
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.drops[a].binary_search(&b).is_ok()
    }

    /// Nodes that need rules (a non-empty drop list), ascending.
    pub fn affected_nodes(&self) -> Vec<usize> {
        (0..self.drops.len())
            .filter(|&node| !self.drops[node].is_empty())
            .collect()
    }
}

/// Turns a shape into drop lists over `node_names.len()` nodes. Random choices come from
/// `rng`; names are only used by [`PartitionShape::Groups`].
pub fn plan_partition<R: Rng + ?Sized>(
    shape: &PartitionShape,
    node_names: &[String],
    rng: &mut R,
) -> Result<PartitionPlan, PlanError> {
    let nodes = node_names.len();
    if nodes < shape.minimum_nodes() {
        return Err(PlanError::TooFewNodes {
            shape: shape.name(),
            needed: shape.minimum_nodes(),
            nodes,
        });
    }
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    // side[i]: which side node i is on; None means it reaches everyone.
    let mut side: Vec<Option<usize>> = vec![Some(0); nodes];
    match shape {
        PartitionShape::IsolateOne => side[order[0]] = Some(1),
        PartitionShape::MajorityMinority => {
            for &node in &order[nodes / 2 + 1..] {
                side[node] = Some(1);
            }
        }
        PartitionShape::Halves => {
            for &node in &order[nodes / 2..] {
                side[node] = Some(1);
            }
        }
        PartitionShape::Bridge => {
            side[order[0]] = None;
            let rest = &order[1..];
            for &node in &rest[rest.len() / 2..] {
                side[node] = Some(1);
            }
        }
        PartitionShape::Ring => {
            let mut position = vec![0; nodes];
            for (place, &node) in order.iter().enumerate() {
                position[node] = place;
            }
            return Ok(PartitionPlan::from_links(nodes, |a, b| {
                let distance = position[a].abs_diff(position[b]);
                distance == 1 || distance == nodes - 1
            }));
        }
        PartitionShape::Groups(groups) => side = group_sides(groups, node_names)?,
        PartitionShape::IsolateLeader(leader) => side[leader_index(*leader, nodes)?] = Some(1),
        PartitionShape::LeaderInMinority(leader) => {
            let leader = leader_index(*leader, nodes)?;
            side[leader] = Some(1);
            let companions = nodes - (nodes / 2 + 1) - 1;
            for &node in order.iter().filter(|&&n| n != leader).take(companions) {
                side[node] = Some(1);
            }
        }
    }
    Ok(PartitionPlan::from_links(nodes, |a, b| {
        match (side[a], side[b]) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }))
}

fn leader_index(leader: usize, nodes: usize) -> Result<usize, PlanError> {
    if leader < nodes {
        Ok(leader)
    } else {
        Err(PlanError::UnknownNode(format!("#{leader}")))
    }
}

fn group_sides(
    groups: &[Vec<String>],
    node_names: &[String],
) -> Result<Vec<Option<usize>>, PlanError> {
    let mut side = vec![None; node_names.len()];
    let non_empty = groups.iter().filter(|group| !group.is_empty()).count();
    if non_empty < 2 {
        return Err(PlanError::TooFewGroups);
    }
    for (group_index, group) in groups.iter().enumerate() {
        for name in group {
            let node = node_names
                .iter()
                .position(|candidate| candidate == name)
                .ok_or_else(|| PlanError::UnknownNode(name.clone()))?;
            if side[node].is_some() {
                return Err(PlanError::DuplicateNode(name.clone()));
            }
            side[node] = Some(group_index);
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faultplan::rng_from_seed;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn plan(shape: &PartitionShape, n: usize, seed: u64) -> Result<PartitionPlan, PlanError> {
        plan_partition(shape, &names(n), &mut rng_from_seed(seed))
    }

    /// Connected components of the "can still talk" graph.
    fn components(plan: &PartitionPlan) -> Vec<Vec<usize>> {
        let n = plan.node_count();
        let mut seen = vec![false; n];
        let mut result = Vec::new();
        for start in 0..n {
            if seen[start] {
                continue;
            }
            let mut stack = vec![start];
            let mut component = Vec::new();
            seen[start] = true;
            while let Some(node) = stack.pop() {
                component.push(node);
                for (other, visited) in seen.iter_mut().enumerate() {
                    if other != node && !plan.is_cut(node, other) && !*visited {
                        *visited = true;
                        stack.push(other);
                    }
                }
            }
            component.sort_unstable();
            result.push(component);
        }
        result.sort_by_key(Vec::len);
        result
    }

    fn assert_well_formed(plan: &PartitionPlan) {
        let n = plan.node_count();
        for a in 0..n {
            assert!(!plan.drops(a).contains(&a), "node {a} is cut from itself");
            assert!(plan.drops(a).windows(2).all(|w| w[0] < w[1]));
            for b in 0..n {
                assert_eq!(plan.is_cut(a, b), plan.is_cut(b, a), "asymmetric {a}-{b}");
            }
        }
        assert!(!plan.affected_nodes().is_empty(), "the plan cuts nothing");
    }

    const SIMPLE_SHAPES: [PartitionShape; 5] = [
        PartitionShape::IsolateOne,
        PartitionShape::MajorityMinority,
        PartitionShape::Halves,
        PartitionShape::Bridge,
        PartitionShape::Ring,
    ];

    #[test]
    fn every_shape_is_symmetric_and_never_cuts_a_node_from_itself() {
        for shape in &SIMPLE_SHAPES {
            for n in shape.minimum_nodes()..=7 {
                for seed in 0..20 {
                    assert_well_formed(&plan(shape, n, seed).unwrap());
                }
            }
        }
    }

    #[test]
    fn too_few_nodes_is_an_error_not_an_empty_plan() {
        for shape in &SIMPLE_SHAPES {
            for n in 0..shape.minimum_nodes() {
                assert!(
                    matches!(plan(shape, n, 1), Err(PlanError::TooFewNodes { .. })),
                    "{} with {n} nodes",
                    shape.name()
                );
            }
        }
    }

    #[test]
    fn isolate_one_cuts_exactly_one_node_from_everyone() {
        for n in 2..=7 {
            for seed in 0..20 {
                let plan = plan(&PartitionShape::IsolateOne, n, seed).unwrap();
                let parts = components(&plan);
                assert_eq!(parts.len(), 2);
                assert_eq!(parts[0].len(), 1);
                assert_eq!(plan.drops(parts[0][0]).len(), n - 1);
            }
        }
    }

    #[test]
    fn majority_side_has_more_than_half_of_the_nodes() {
        for n in 3..=7 {
            for seed in 0..20 {
                let parts = components(&plan(&PartitionShape::MajorityMinority, n, seed).unwrap());
                assert_eq!(parts.len(), 2);
                assert!(parts[1].len() * 2 > n, "majority {:?} of {n}", parts[1]);
                assert!(parts[0].len() * 2 < n, "minority {:?} of {n}", parts[0]);
            }
        }
    }

    #[test]
    fn halves_differ_in_size_by_at_most_one() {
        for n in 2..=7 {
            for seed in 0..20 {
                let parts = components(&plan(&PartitionShape::Halves, n, seed).unwrap());
                assert_eq!(parts.len(), 2);
                assert!(parts[1].len() - parts[0].len() <= 1);
            }
        }
    }

    #[test]
    fn bridge_node_sees_both_halves_which_do_not_see_each_other() {
        for n in 3..=7 {
            for seed in 0..20 {
                let plan = plan(&PartitionShape::Bridge, n, seed).unwrap();
                let bridges: Vec<usize> =
                    (0..n).filter(|&node| plan.drops(node).is_empty()).collect();
                assert_eq!(bridges.len(), 1, "exactly one bridge node");
                let bridge = bridges[0];
                let others: Vec<usize> = (0..n).filter(|&node| node != bridge).collect();
                // Without the bridge, the others split into two sides cut from each other.
                let cut_pairs = others
                    .iter()
                    .flat_map(|&a| others.iter().map(move |&b| (a, b)))
                    .filter(|&(a, b)| a < b && plan.is_cut(a, b))
                    .count();
                let side = plan.drops(others[0]).len();
                assert_eq!(cut_pairs, side * (others.len() - side));
                assert!(side >= 1 && side < others.len());
                assert_eq!(
                    components(&plan).len(),
                    1,
                    "the bridge keeps the graph connected"
                );
            }
        }
    }

    #[test]
    fn ring_nodes_see_only_their_two_neighbours() {
        for n in 4..=7 {
            for seed in 0..20 {
                let plan = plan(&PartitionShape::Ring, n, seed).unwrap();
                for node in 0..n {
                    assert_eq!(plan.drops(node).len(), n - 3, "node {node} of {n}");
                }
                assert_eq!(components(&plan).len(), 1, "the ring stays connected");
            }
        }
    }

    #[test]
    fn groups_cut_between_groups_and_leave_unlisted_nodes_connected() {
        let shape = PartitionShape::Groups(vec![vec!["n1".into(), "n2".into()], vec!["n3".into()]]);
        let plan = plan(&shape, 4, 0).unwrap();
        assert_well_formed(&plan);
        assert!(!plan.is_cut(0, 1));
        assert!(plan.is_cut(0, 2) && plan.is_cut(1, 2));
        assert!(plan.drops(3).is_empty(), "n4 is in no group");
        assert_eq!(plan.affected_nodes(), vec![0, 1, 2]);
    }

    #[test]
    fn groups_reject_unknown_duplicate_and_single_groups() {
        let unknown = PartitionShape::Groups(vec![vec!["n1".into()], vec!["n9".into()]]);
        assert_eq!(
            plan(&unknown, 3, 0),
            Err(PlanError::UnknownNode("n9".into()))
        );
        let twice = PartitionShape::Groups(vec![vec!["n1".into()], vec!["n1".into()]]);
        assert_eq!(
            plan(&twice, 3, 0),
            Err(PlanError::DuplicateNode("n1".into()))
        );
        let single = PartitionShape::Groups(vec![vec!["n1".into()], vec![]]);
        assert_eq!(plan(&single, 3, 0), Err(PlanError::TooFewGroups));
    }

    #[test]
    fn the_same_seed_reproduces_the_plan_and_seeds_vary_it() {
        for shape in &SIMPLE_SHAPES {
            assert_eq!(plan(shape, 5, 42), plan(shape, 5, 42));
            let distinct: std::collections::HashSet<_> = (0..30)
                .map(|seed| format!("{:?}", plan(shape, 5, seed).unwrap()))
                .collect();
            assert!(distinct.len() > 1, "{} ignores the seed", shape.name());
        }
    }

    #[test]
    fn leader_shapes_put_the_leader_alone_or_in_a_bare_minority() {
        for n in 2..=7 {
            for leader in 0..n {
                let isolated = plan(&PartitionShape::IsolateLeader(leader), n, 5).unwrap();
                let sides = components(&isolated);
                assert_eq!(sides.len(), 2);
                assert!(sides.iter().any(|side| side == &vec![leader]), "{sides:?}");
            }
        }
        for n in 3..=7 {
            for seed in 0..20 {
                let leader = (seed as usize) % n;
                let split = plan(&PartitionShape::LeaderInMinority(leader), n, seed).unwrap();
                let sides = components(&split);
                assert_eq!(sides.len(), 2, "{sides:?}");
                let minority = sides.iter().find(|side| side.contains(&leader)).unwrap();
                assert_eq!(minority.len(), n - (n / 2 + 1), "n={n} {sides:?}");
            }
        }
        assert!(plan(&PartitionShape::LeaderInMinority(0), 2, 1).is_err());
        assert!(plan(&PartitionShape::IsolateLeader(3), 3, 1).is_err());
    }
}
