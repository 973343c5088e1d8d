//! What the tests of the transactional checker share: the sets of consistency models that
//! each class of anomaly rules out, and the small readings of an outcome their assertions
//! are made of.
#![allow(dead_code)]

use schism::check::txn::{Consistency, TxnOutcome, TxnVerdict};

use Consistency as C;

/// Every model: G0 and the anomalies that need no cycle (a read of what nobody wrote, …).
pub const EVERY: &[Consistency] = &Consistency::ALL;

/// Every model but read uncommitted: G1a, G1b, G1c, dirty update.
pub const READ_COMMITTED_UP: &[Consistency] = &[
    C::ReadCommitted,
    C::RepeatableRead,
    C::SnapshotIsolation,
    C::StrongSessionSnapshotIsolation,
    C::StrongSnapshotIsolation,
    C::Serializable,
    C::StrongSessionSerializable,
    C::StrictSerializable,
];

/// G-single (read skew, lost update), G-nonadjacent: repeatable read, snapshot isolation
/// and everything stronger, that is `READ_COMMITTED_UP` without read committed itself.
pub const SNAPSHOT_UP: &[Consistency] = READ_COMMITTED_UP.split_at(1).1;

/// G2-item (write skew): repeatable read and the serializable models; not snapshot isolation.
pub const NO_WRITE_SKEW: &[Consistency] = &[
    C::RepeatableRead,
    C::Serializable,
    C::StrongSessionSerializable,
    C::StrictSerializable,
];

/// A `-process` cycle of a class snapshot isolation forbids: the session models.
pub const SESSION: &[Consistency] = &[
    C::StrongSessionSnapshotIsolation,
    C::StrongSnapshotIsolation,
    C::StrongSessionSerializable,
    C::StrictSerializable,
];

/// A `-realtime` cycle of a class snapshot isolation forbids: the real-time models.
pub const REAL_TIME: &[Consistency] = &[C::StrongSnapshotIsolation, C::StrictSerializable];

/// The summary of every reported anomaly, in order.
pub fn summaries(out: &TxnOutcome) -> Vec<String> {
    out.anomalies.iter().map(|a| a.summary()).collect()
}

/// The verdict of a check for `m` of a history that rules out exactly the models of `broken`.
pub fn expected_verdict(broken: &[Consistency], m: Consistency) -> TxnVerdict {
    if broken.contains(&m) {
        TxnVerdict::Violated
    } else {
        TxnVerdict::Satisfied
    }
}
