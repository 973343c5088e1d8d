//! Fault plans: pure decisions about *which* links to cut and *which* nodes to hit.
//!
//! No I/O here. Nodes are indices `0..n` into the target's node list; the engine maps Schism's
//! API types onto these small enums and hands the resulting drop lists to the data plane.
//! Every random choice takes the caller's RNG ([`rng_from_seed`]), so a seed reproduces a run.

mod partition;
mod selection;

pub use partition::{PartitionPlan, PartitionShape, plan_partition};
pub use selection::{SelectionMode, select_targets};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The RNG behind every random choice of a run: ChaCha8 seeded from the experiment's seed.
pub fn rng_from_seed(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// An independent, reproducible RNG per fault (stream `fault_index` of the run's seed), so
/// adding or removing one fault does not change the choices of the others.
pub fn rng_for_fault(seed: u64, fault_index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(fault_index);
    rng
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The shape cannot cut anything with this few nodes.
    #[error("partition shape {shape} needs at least {needed} nodes, the target has {nodes}")]
    TooFewNodes {
        /// Shape name as in the API (`majority-minority`).
        shape: &'static str,
        /// Minimum node count.
        needed: usize,
        /// Actual node count.
        nodes: usize,
    },
    /// A `groups` partition names a node the target does not have.
    #[error("partition group names {0:?}, which is not one of the target's nodes")]
    UnknownNode(String),
    /// A `groups` partition names a node twice.
    #[error("partition groups name {0:?} more than once")]
    DuplicateNode(String),
    /// A `groups` partition has fewer than two non-empty groups.
    #[error("partition groups need at least two non-empty groups")]
    TooFewGroups,
    /// A selection asks for more nodes than exist (never silently trimmed).
    #[error("selection asks for {wanted} nodes, the target has {nodes}")]
    NotEnoughNodes {
        /// Requested count.
        wanted: usize,
        /// Available nodes.
        nodes: usize,
    },
    /// A selection's count or percentage is out of range.
    #[error("selection value {value} is out of range: {reason}")]
    InvalidValue {
        /// The value given.
        value: u32,
        /// The accepted range.
        reason: &'static str,
    },
    /// The target has no nodes at all.
    #[error("the target has no nodes")]
    NoNodes,
}
