//! The exhaustive reference the checker is held to on small histories.

use schism::check::{Call, History, ModelKind, Operation, Outcome, Value};

/// Exhaustive reference: is there an order of the operations, consistent with real time, in
/// which the model accepts each, where an unknown-outcome operation may also never happen?
pub fn brute_force(h: &History, model: ModelKind) -> bool {
    let ops: Vec<&Operation> = h
        .ops
        .iter()
        .filter(|o| o.outcome != Outcome::Fail)
        .filter(|o| !(o.call.is_read() && o.outcome == Outcome::Info))
        .collect();
    fn ret(o: &Operation) -> u64 {
        match o.outcome {
            Outcome::Info => u64::MAX,
            _ => o.complete.unwrap_or(u64::MAX),
        }
    }
    type States = std::collections::BTreeMap<Option<String>, Value>;
    fn go(ops: &[&Operation], done: u32, states: &States, model: ModelKind) -> bool {
        // Done when every operation with a known outcome is placed; unknown ones may never happen.
        if (0..ops.len()).all(|i| done & (1 << i) != 0 || ops[i].outcome == Outcome::Info) {
            return true;
        }
        for i in 0..ops.len() {
            if done & (1 << i) != 0 {
                continue;
            }
            // Every unplaced operation that completed before this one began must come first.
            let blocked = (0..ops.len())
                .any(|j| j != i && done & (1 << j) == 0 && ret(ops[j]) < ops[i].invoke);
            if blocked {
                continue;
            }
            let call = match (&ops[i].call, ops[i].outcome) {
                (Call::Cas { from, to, .. }, Outcome::Info) => Call::Cas {
                    from: from.clone(),
                    to: to.clone(),
                    swapped: None,
                },
                (c, _) => c.clone(),
            };
            let state = states
                .get(&ops[i].key)
                .cloned()
                .unwrap_or_else(|| model.init());
            if let Some(next) = model.step(&state, &call) {
                let mut after = states.clone();
                after.insert(ops[i].key.clone(), next);
                if go(ops, done | (1 << i), &after, model) {
                    return true;
                }
            }
        }
        false
    }
    go(&ops, 0, &States::new(), model)
}
