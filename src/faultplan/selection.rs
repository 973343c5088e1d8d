//! Which nodes a fault hits: the selection modes users know from other chaos tools.

use rand::Rng;
use rand::seq::index::sample;

use super::PlanError;

/// How many of the target's nodes a fault affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionMode {
    /// One node chosen at random.
    One,
    /// Every node.
    All,
    /// Exactly this many nodes, chosen at random (≥ 1, ≤ node count).
    Fixed(u32),
    /// This percentage of the nodes (1–100), rounded down but at least one.
    FixedPercent(u32),
    /// A random count between one and this percentage of the nodes (1–100, rounded down but
    /// at least one).
    RandomMaxPercent(u32),
    /// This node, the leader (by index).
    Leader(usize),
    /// Every node but this one, the leader.
    Followers(usize),
}

fn percent_count(nodes: usize, percent: u32) -> Result<usize, PlanError> {
    if !(1..=100).contains(&percent) {
        return Err(PlanError::InvalidValue {
            value: percent,
            reason: "a percentage must be 1 to 100",
        });
    }
    Ok((nodes * percent as usize / 100).max(1))
}

/// Picks the affected node indices among `nodes`, sorted ascending.
pub fn select_targets<R: Rng + ?Sized>(
    mode: SelectionMode,
    nodes: usize,
    rng: &mut R,
) -> Result<Vec<usize>, PlanError> {
    if nodes == 0 {
        return Err(PlanError::NoNodes);
    }
    let count = match mode {
        SelectionMode::Leader(leader) | SelectionMode::Followers(leader) if leader >= nodes => {
            return Err(PlanError::UnknownNode(format!("#{leader}")));
        }
        SelectionMode::Leader(leader) => return Ok(vec![leader]),
        SelectionMode::Followers(leader) => {
            return Ok((0..nodes).filter(|&n| n != leader).collect());
        }
        SelectionMode::One => 1,
        SelectionMode::All => nodes,
        SelectionMode::Fixed(0) => {
            return Err(PlanError::InvalidValue {
                value: 0,
                reason: "a fixed count must be at least 1",
            });
        }
        SelectionMode::Fixed(count) => {
            let wanted = count as usize;
            if wanted > nodes {
                return Err(PlanError::NotEnoughNodes { wanted, nodes });
            }
            wanted
        }
        SelectionMode::FixedPercent(percent) => percent_count(nodes, percent)?,
        SelectionMode::RandomMaxPercent(percent) => {
            let max = percent_count(nodes, percent)?;
            rng.random_range(1..=max)
        }
    };
    let mut chosen = sample(rng, nodes, count).into_vec();
    chosen.sort_unstable();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faultplan::rng_from_seed;

    fn select(mode: SelectionMode, nodes: usize, seed: u64) -> Result<Vec<usize>, PlanError> {
        select_targets(mode, nodes, &mut rng_from_seed(seed))
    }

    #[test]
    fn one_picks_a_single_node_in_range() {
        for nodes in 1..=7 {
            let chosen = select(SelectionMode::One, nodes, 3).unwrap();
            assert_eq!(chosen.len(), 1);
            assert!(chosen[0] < nodes);
        }
    }

    #[test]
    fn all_picks_every_node_in_order() {
        assert_eq!(
            select(SelectionMode::All, 5, 1).unwrap(),
            vec![0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn fixed_picks_distinct_nodes_and_rejects_too_many() {
        let chosen = select(SelectionMode::Fixed(3), 5, 9).unwrap();
        assert_eq!(chosen.len(), 3);
        assert!(chosen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            select(SelectionMode::Fixed(6), 5, 9),
            Err(PlanError::NotEnoughNodes {
                wanted: 6,
                nodes: 5
            })
        );
        assert!(select(SelectionMode::Fixed(0), 5, 9).is_err());
    }

    #[test]
    fn fixed_percent_rounds_down_but_never_to_zero() {
        assert_eq!(
            select(SelectionMode::FixedPercent(50), 5, 1).unwrap().len(),
            2
        );
        assert_eq!(
            select(SelectionMode::FixedPercent(10), 3, 1).unwrap().len(),
            1
        );
        assert_eq!(
            select(SelectionMode::FixedPercent(100), 7, 1)
                .unwrap()
                .len(),
            7
        );
        assert!(select(SelectionMode::FixedPercent(0), 7, 1).is_err());
        assert!(select(SelectionMode::FixedPercent(101), 7, 1).is_err());
    }

    #[test]
    fn random_max_percent_stays_between_one_and_the_maximum() {
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let chosen = select(SelectionMode::RandomMaxPercent(60), 10, seed).unwrap();
            assert!((1..=6).contains(&chosen.len()));
            sizes.insert(chosen.len());
        }
        assert!(
            sizes.len() > 3,
            "sizes should vary with the seed: {sizes:?}"
        );
    }

    #[test]
    fn the_same_seed_reproduces_the_selection() {
        for seed in 0..50 {
            assert_eq!(
                select(SelectionMode::Fixed(2), 7, seed),
                select(SelectionMode::Fixed(2), 7, seed)
            );
        }
        let distinct: std::collections::BTreeSet<_> = (0..50)
            .map(|seed| select(SelectionMode::One, 7, seed).unwrap())
            .collect();
        assert!(
            distinct.len() > 1,
            "different seeds should pick different nodes"
        );
    }

    #[test]
    fn no_nodes_is_an_error() {
        assert_eq!(select(SelectionMode::All, 0, 1), Err(PlanError::NoNodes));
    }

    #[test]
    fn leader_and_followers_split_the_nodes_by_role() {
        assert_eq!(select(SelectionMode::Leader(2), 5, 1).unwrap(), vec![2]);
        assert_eq!(
            select(SelectionMode::Followers(2), 5, 1).unwrap(),
            vec![0, 1, 3, 4]
        );
        assert!(select(SelectionMode::Leader(5), 5, 1).is_err());
    }
}
