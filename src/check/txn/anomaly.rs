//! Anomalies, the consistency models they rule out, and what a reported anomaly carries.
//!
//! The cycle classes follow Adya's generalized isolation levels as Jepsen's Elle names them:
//! G0 (write cycle), G1c (circular information flow), G-single (exactly one anti-dependency),
//! G-nonadjacent (several, none adjacent), G2-item (any other cycle with anti-dependencies).
//! A cycle that needs a per-process edge is the `-process` variant, one that needs a real-time
//! edge the `-realtime` variant.

use std::fmt;
use std::str::FromStr;

/// The shape of a dependency cycle, by the kinds of edge it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CycleClass {
    /// Write-write edges only.
    G0,
    /// Write-write and write-read edges, at least one write-read.
    G1c,
    /// Exactly one read-write (anti-dependency) edge.
    GSingle,
    /// At least two read-write edges, no two of them adjacent.
    GNonadjacent,
    /// Read-write edges, some adjacent: write skew and its longer relatives.
    G2Item,
}

impl CycleClass {
    /// From the strongest (the weakest models forbid it) to the weakest.
    pub const ALL: [CycleClass; 5] = [
        CycleClass::G0,
        CycleClass::G1c,
        CycleClass::GSingle,
        CycleClass::GNonadjacent,
        CycleClass::G2Item,
    ];

    fn name(self) -> &'static str {
        match self {
            CycleClass::G0 => "G0",
            CycleClass::G1c => "G1c",
            CycleClass::GSingle => "G-single",
            CycleClass::GNonadjacent => "G-nonadjacent",
            CycleClass::G2Item => "G2-item",
        }
    }

    /// What the class is called in plain words.
    pub fn plain(self) -> &'static str {
        match self {
            CycleClass::G0 => "dirty write",
            CycleClass::G1c => "circular information flow",
            CycleClass::GSingle => "read skew",
            CycleClass::GNonadjacent => "non-adjacent anti-dependency cycle",
            CycleClass::G2Item => "anti-dependency cycle",
        }
    }
}

/// Which edges beyond the data dependencies a cycle needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// Only write-write, write-read and read-write edges.
    Plain,
    /// Also the order of transactions on one client.
    Process,
    /// Also real time: one transaction completed before the other began.
    Realtime,
}

/// A kind of anomaly: a cycle class in a variant, or an anomaly that needs no cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// A dependency cycle.
    Cycle(CycleClass, Variant),
    /// G1a: a committed transaction read a value written by a failed one.
    AbortedRead,
    /// G1b: a committed transaction read a value that its writer later overwrote in the same
    /// transaction.
    IntermediateRead,
    /// A committed write was applied on top of a failed transaction's write.
    DirtyUpdate,
    /// A read returned a value that no transaction wrote.
    GarbageRead,
    /// A read returned a list with the same element twice.
    DuplicateElements,
    /// Two reads of a key returned lists neither of which is a prefix of the other.
    IncompatibleOrder,
    /// A transaction's reads disagree with its own earlier reads and writes.
    Internal,
    /// An acknowledged append was never read, though reads of its key began after it
    /// committed.
    LostAppend,
}

impl AnomalyKind {
    /// Every kind, in the order they are reported.
    pub fn all() -> Vec<AnomalyKind> {
        let mut all = vec![
            AnomalyKind::GarbageRead,
            AnomalyKind::DuplicateElements,
            AnomalyKind::IncompatibleOrder,
            AnomalyKind::Internal,
            AnomalyKind::AbortedRead,
            AnomalyKind::IntermediateRead,
            AnomalyKind::DirtyUpdate,
            AnomalyKind::LostAppend,
        ];
        for variant in [Variant::Plain, Variant::Process, Variant::Realtime] {
            for class in CycleClass::ALL {
                all.push(AnomalyKind::Cycle(class, variant));
            }
        }
        all
    }

    /// The name in reports: `G0`, `G-single-realtime`, `G1a`, `lost-append`, …
    pub fn name(self) -> String {
        match self {
            AnomalyKind::Cycle(class, Variant::Plain) => class.name().to_string(),
            AnomalyKind::Cycle(class, Variant::Process) => format!("{}-process", class.name()),
            AnomalyKind::Cycle(class, Variant::Realtime) => format!("{}-realtime", class.name()),
            AnomalyKind::AbortedRead => "G1a".to_string(),
            AnomalyKind::IntermediateRead => "G1b".to_string(),
            AnomalyKind::DirtyUpdate => "dirty-update".to_string(),
            AnomalyKind::GarbageRead => "garbage-read".to_string(),
            AnomalyKind::DuplicateElements => "duplicate-elements".to_string(),
            AnomalyKind::IncompatibleOrder => "incompatible-order".to_string(),
            AnomalyKind::Internal => "internal".to_string(),
            AnomalyKind::LostAppend => "lost-append".to_string(),
        }
    }

    /// What it is called in plain words.
    pub fn plain(self) -> &'static str {
        match self {
            AnomalyKind::Cycle(class, _) => class.plain(),
            AnomalyKind::AbortedRead => "aborted read",
            AnomalyKind::IntermediateRead => "intermediate read",
            AnomalyKind::DirtyUpdate => "dirty update",
            AnomalyKind::GarbageRead => "garbage read",
            AnomalyKind::DuplicateElements => "duplicate elements",
            AnomalyKind::IncompatibleOrder => "incompatible orders",
            AnomalyKind::Internal => "internal inconsistency",
            AnomalyKind::LostAppend => "lost append",
        }
    }

    /// Whether `model` forbids this anomaly.
    pub fn forbidden_by(self, model: Consistency) -> bool {
        use Consistency as C;
        let at_least = |weakest: C| model.implies(weakest);
        match self {
            // Every model assumes reads return what some transaction wrote, in one order.
            AnomalyKind::GarbageRead
            | AnomalyKind::DuplicateElements
            | AnomalyKind::IncompatibleOrder
            | AnomalyKind::Internal
            | AnomalyKind::Cycle(CycleClass::G0, Variant::Plain) => true,
            AnomalyKind::AbortedRead
            | AnomalyKind::IntermediateRead
            | AnomalyKind::DirtyUpdate
            | AnomalyKind::Cycle(CycleClass::G1c, Variant::Plain) => at_least(C::ReadCommitted),
            AnomalyKind::Cycle(CycleClass::GSingle | CycleClass::GNonadjacent, Variant::Plain) => {
                at_least(C::RepeatableRead) || at_least(C::SnapshotIsolation)
            }
            AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain) => at_least(C::RepeatableRead),
            AnomalyKind::LostAppend => at_least(C::StrongSnapshotIsolation),
            AnomalyKind::Cycle(class, Variant::Process) => {
                let base = AnomalyKind::Cycle(class, Variant::Plain);
                base.forbidden_by(model)
                    && (at_least(C::StrongSessionSnapshotIsolation)
                        || at_least(C::StrongSessionSerializable))
            }
            AnomalyKind::Cycle(class, Variant::Realtime) => {
                let base = AnomalyKind::Cycle(class, Variant::Plain);
                base.forbidden_by(model) && at_least(C::StrongSnapshotIsolation)
            }
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for AnomalyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnomalyKind::all()
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown anomaly {s:?}"))
    }
}

/// A transactional consistency model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Consistency {
    /// Adya's PL-1: no write cycles (G0).
    ReadUncommitted,
    /// PL-2: no G0 and no G1 (aborted, intermediate or circular reads).
    ReadCommitted,
    /// PL-2.99: read committed, and no item anti-dependency cycles (G2-item).
    RepeatableRead,
    /// Read committed, no G-single and no G-nonadjacent; write skew is allowed.
    SnapshotIsolation,
    /// Snapshot isolation that also respects each client's order.
    StrongSessionSnapshotIsolation,
    /// Snapshot isolation that also respects real time.
    StrongSnapshotIsolation,
    /// PL-3: no dependency cycles at all.
    Serializable,
    /// Serializable, respecting each client's order.
    StrongSessionSerializable,
    /// Serializable, respecting real time.
    StrictSerializable,
}

impl Consistency {
    /// Every model, weakest first.
    pub const ALL: [Consistency; 9] = [
        Consistency::ReadUncommitted,
        Consistency::ReadCommitted,
        Consistency::RepeatableRead,
        Consistency::SnapshotIsolation,
        Consistency::StrongSessionSnapshotIsolation,
        Consistency::StrongSnapshotIsolation,
        Consistency::Serializable,
        Consistency::StrongSessionSerializable,
        Consistency::StrictSerializable,
    ];

    /// The model's name: `read-committed`, `strict-serializable`, …
    pub fn name(self) -> &'static str {
        match self {
            Consistency::ReadUncommitted => "read-uncommitted",
            Consistency::ReadCommitted => "read-committed",
            Consistency::RepeatableRead => "repeatable-read",
            Consistency::SnapshotIsolation => "snapshot-isolation",
            Consistency::StrongSessionSnapshotIsolation => "strong-session-snapshot-isolation",
            Consistency::StrongSnapshotIsolation => "strong-snapshot-isolation",
            Consistency::Serializable => "serializable",
            Consistency::StrongSessionSerializable => "strong-session-serializable",
            Consistency::StrictSerializable => "strict-serializable",
        }
    }

    /// The models this one is directly stronger than.
    fn weaker(self) -> &'static [Consistency] {
        use Consistency as C;
        match self {
            C::ReadUncommitted => &[],
            C::ReadCommitted => &[C::ReadUncommitted],
            C::RepeatableRead => &[C::ReadCommitted],
            C::SnapshotIsolation => &[C::ReadCommitted],
            C::StrongSessionSnapshotIsolation => &[C::SnapshotIsolation],
            C::StrongSnapshotIsolation => &[C::StrongSessionSnapshotIsolation],
            C::Serializable => &[C::RepeatableRead, C::SnapshotIsolation],
            C::StrongSessionSerializable => &[C::Serializable, C::StrongSessionSnapshotIsolation],
            C::StrictSerializable => &[C::StrongSessionSerializable, C::StrongSnapshotIsolation],
        }
    }

    /// Whether every history this model allows is also allowed by `other` (a model implies
    /// itself).
    pub fn implies(self, other: Consistency) -> bool {
        self == other || self.weaker().iter().any(|w| w.implies(other))
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Consistency::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Consistency::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown consistency model {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Why one transaction must precede another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Write-write: `to` overwrote (or appended after) `from`'s write.
    WriteWrite,
    /// Write-read: `to` read `from`'s write.
    WriteRead,
    /// Read-write (anti-dependency): `to` overwrote what `from` read.
    ReadWrite,
    /// `from` and `to` ran in that order on one client.
    Process,
    /// `from` completed before `to` was invoked.
    Realtime,
}

impl EdgeKind {
    /// `ww`, `wr`, `rw`, `process` or `realtime`.
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::WriteWrite => "ww",
            EdgeKind::WriteRead => "wr",
            EdgeKind::ReadWrite => "rw",
            EdgeKind::Process => "process",
            EdgeKind::Realtime => "realtime",
        }
    }
}

/// One step of an explained cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedEdge {
    /// The transaction that must come first.
    pub from: usize,
    /// The transaction that must come after it.
    pub to: usize,
    /// Why, in one word.
    pub kind: EdgeKind,
    /// Why, in a sentence a person can check against the history.
    pub reason: String,
}

/// An anomaly found in a history, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What kind it is.
    pub kind: AnomalyKind,
    /// The transactions involved, in cycle order for cycles.
    pub txns: Vec<usize>,
    /// For cycles: each edge, closing back on the first transaction.
    pub cycle: Vec<ExplainedEdge>,
    /// One paragraph saying what happened.
    pub explanation: String,
}

impl Anomaly {
    /// `G2-item: write skew between T17 and T40`.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self.txns.iter().map(|t| format!("T{t}")).collect();
        let who = match names.len() {
            0 => String::new(),
            1 => format!(" in {}", names[0]),
            2 => format!(" between {} and {}", names[0], names[1]),
            _ => format!(
                " among {} and {}",
                names[..names.len() - 1].join(", "),
                names[names.len() - 1]
            ),
        };
        let plain = match self.kind {
            AnomalyKind::Cycle(CycleClass::G2Item, _) if self.txns.len() == 2 => "write skew",
            kind => kind.plain(),
        };
        format!("{}: {plain}{who}", self.kind.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lattice_orders_the_usual_levels() {
        use Consistency as C;
        assert!(C::StrictSerializable.implies(C::ReadUncommitted));
        assert!(C::Serializable.implies(C::SnapshotIsolation));
        assert!(C::Serializable.implies(C::RepeatableRead));
        assert!(!C::SnapshotIsolation.implies(C::RepeatableRead));
        assert!(!C::RepeatableRead.implies(C::SnapshotIsolation));
        assert!(!C::Serializable.implies(C::StrongSessionSerializable));
        assert!(C::StrictSerializable.implies(C::StrongSessionSnapshotIsolation));
    }

    #[test]
    fn write_skew_is_allowed_by_snapshot_isolation_only() {
        let skew = AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain);
        assert!(!skew.forbidden_by(Consistency::SnapshotIsolation));
        assert!(skew.forbidden_by(Consistency::RepeatableRead));
        assert!(skew.forbidden_by(Consistency::Serializable));
        let single = AnomalyKind::Cycle(CycleClass::GSingle, Variant::Plain);
        assert!(single.forbidden_by(Consistency::SnapshotIsolation));
        assert!(!single.forbidden_by(Consistency::ReadCommitted));
    }

    #[test]
    fn realtime_variants_matter_only_to_models_with_real_time() {
        let stale = AnomalyKind::Cycle(CycleClass::GSingle, Variant::Realtime);
        assert!(!stale.forbidden_by(Consistency::Serializable));
        assert!(!stale.forbidden_by(Consistency::StrongSessionSerializable));
        assert!(stale.forbidden_by(Consistency::StrictSerializable));
        assert!(stale.forbidden_by(Consistency::StrongSnapshotIsolation));
        let skew = AnomalyKind::Cycle(CycleClass::G2Item, Variant::Realtime);
        assert!(!skew.forbidden_by(Consistency::StrongSnapshotIsolation));
        let session = AnomalyKind::Cycle(CycleClass::G0, Variant::Process);
        assert!(session.forbidden_by(Consistency::StrongSessionSerializable));
        assert!(!session.forbidden_by(Consistency::Serializable));
    }

    #[test]
    fn names_round_trip() {
        for kind in AnomalyKind::all() {
            assert_eq!(kind.name().parse::<AnomalyKind>(), Ok(kind));
        }
        for model in Consistency::ALL {
            assert_eq!(model.name().parse::<Consistency>(), Ok(model));
        }
    }
}
