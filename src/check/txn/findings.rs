//! The anomalies an inference finds without a cycle search, counted, with a few examples.

use rustc_hash::FxHashMap;

use super::anomaly::{Anomaly, AnomalyKind};

/// How many examples of each kind are kept; the rest are only counted.
pub(super) const EXAMPLES_PER_KIND: usize = 3;

#[derive(Default)]
pub(super) struct Findings {
    pub(super) examples: Vec<Anomaly>,
    pub(super) counts: FxHashMap<AnomalyKind, usize>,
}

impl Findings {
    /// Records one instance of `kind` among `txns`; `explanation` is only built for kept
    /// examples.
    pub(super) fn report(
        &mut self,
        kind: AnomalyKind,
        txns: Vec<usize>,
        explanation: impl FnOnce() -> String,
    ) {
        let count = self.counts.entry(kind).or_insert(0);
        *count += 1;
        if *count <= EXAMPLES_PER_KIND {
            self.examples.push(Anomaly {
                kind,
                txns,
                cycle: Vec::new(),
                explanation: explanation(),
            });
        }
    }
}
