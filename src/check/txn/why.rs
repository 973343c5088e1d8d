//! Why one transaction must precede another, recorded by the inference as it adds each edge,
//! and told in words when the edge is part of a reported cycle.

use super::anomaly::{EdgeKind, ExplainedEdge};
use super::history::{KeyId, TxnHistory};

/// The evidence for one edge. `witness` is the transaction whose read showed the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// Process and real-time edges: the transactions' own clients and clocks say it.
    Structural,
    /// List-append ww: `after` follows `before` in the key's version order.
    AppendedAfter {
        key: KeyId,
        before: i64,
        after: i64,
        witness: u32,
    },
    /// List-append ww: `after` was acknowledged but never read, so it follows every append
    /// that was read, the last of which is `before`.
    AppendedAfterUnread { key: KeyId, before: i64, after: i64 },
    /// List-append wr: the reader's list ended with `value`.
    ReadAppend { key: KeyId, value: i64 },
    /// List-append rw: the reader's list lacked `missing`, which comes next in the order.
    ReadWithout {
        key: KeyId,
        missing: i64,
        witness: u32,
    },
    /// List-append rw: the reader's list lacked `missing`, an acknowledged append no read saw.
    ReadWithoutUnread { key: KeyId, missing: i64 },
    /// Rw-register wr: the reader saw `value`.
    ReadValue { key: KeyId, value: i64 },
    /// Rw-register ww: the later writer read `read` (the earlier one's) and wrote `written`.
    Overwrote { key: KeyId, read: i64, written: i64 },
    /// Rw-register rw: the reader saw `read` (`None`: the unborn register), and the writer
    /// installed `written`, a later version.
    ReadBefore {
        key: KeyId,
        read: Option<i64>,
        written: i64,
    },
}

/// The one-word kind of a single edge bit.
pub(super) fn kind_of(bit: u8) -> EdgeKind {
    use super::graph::{PROCESS, RW, WR, WW};
    match bit {
        WW => EdgeKind::WriteWrite,
        WR => EdgeKind::WriteRead,
        RW => EdgeKind::ReadWrite,
        PROCESS => EdgeKind::Process,
        _ => EdgeKind::Realtime,
    }
}

/// The edge `from → to` of `kind`, told in words.
pub(super) fn explain(
    history: &TxnHistory,
    from: usize,
    to: usize,
    kind: EdgeKind,
    why: Why,
) -> ExplainedEdge {
    let key = |k: KeyId| history.key_name(k).to_string();
    let arrow = format!("T{from} {}→ T{to}", kind.name());
    let reason = match why {
        Why::AppendedAfter {
            key: k,
            before,
            after,
            witness,
        } => format!(
            "T{to} appended {after} to key {} right after T{from}'s append of {before}, as T{witness} read",
            key(k)
        ),
        Why::AppendedAfterUnread {
            key: k,
            before,
            after,
        } => format!(
            "T{to}'s acknowledged append of {after} to key {} was never read, so it follows every append that was, the last being T{from}'s {before}",
            key(k)
        ),
        Why::ReadAppend { key: k, value } => format!(
            "T{to} read key {} ending in {value}, T{from}'s append",
            key(k)
        ),
        Why::ReadWithout {
            key: k,
            missing,
            witness,
        } => format!(
            "T{from} read key {} without T{to}'s append of {missing}, which T{witness} saw",
            key(k)
        ),
        Why::ReadWithoutUnread { key: k, missing } => format!(
            "T{from} read key {} without T{to}'s acknowledged append of {missing}, which no read saw",
            key(k)
        ),
        Why::ReadValue { key: k, value } => {
            format!("T{to} read key {} = {value}, which T{from} wrote", key(k))
        }
        Why::Overwrote {
            key: k,
            read,
            written,
        } => format!(
            "T{to} read key {} = {read}, which T{from} wrote, then wrote {written}",
            key(k)
        ),
        Why::ReadBefore {
            key: k,
            read: Some(read),
            written,
        } => format!(
            "T{from} read key {} = {read}, and T{to} replaced that version with {written}",
            key(k)
        ),
        Why::ReadBefore {
            key: k,
            read: None,
            written,
        } => format!(
            "T{from} read key {} before any write (nil), and T{to} wrote {written}",
            key(k)
        ),
        Why::Structural => match kind {
            EdgeKind::Process => format!(
                "T{from} and then T{to} ran on process {}",
                history.txns[from].process
            ),
            _ => {
                let complete = history.txns[from]
                    .complete
                    .map_or("?".to_string(), |c| c.to_string());
                format!(
                    "T{from} completed (at {complete}) before T{to} was invoked (at {})",
                    history.txns[to].invoke
                )
            }
        },
    };
    ExplainedEdge {
        from,
        to,
        kind,
        reason: format!("{reason} ⇒ {arrow}"),
    }
}
