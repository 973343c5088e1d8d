//! Partitions and packet loss as nftables tables owned by Schism.
//!
//! The peers sit in a set whose elements carry a kernel `timeout` equal to the time left until
//! the fault's deadline, so the rules stop matching at the deadline even if Schism is killed
//! with SIGKILL, and a guard deletes the table once its owner is gone. Healing deletes the
//! whole table, which the kernel does atomically.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::guard::{Guard, tool_step};
use super::tools::{RunningTool, Tool, run_tool};
use super::{AppliedFault, DataPlaneError, FaultId, FaultKind, Netns};

/// Drop all traffic to and from these peers, both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Peer addresses whose packets are dropped on input (source) and output (destination).
    pub drop_peers: Vec<Ipv4Addr>,
}

/// Drop a share of the packets arriving from chosen peers.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    /// Sources whose packets may be dropped; empty means every source except loopback.
    pub from_peers: Vec<Ipv4Addr>,
    /// Share of packets dropped, in percent (> 0 and ≤ 100, two decimals are honoured).
    pub percent: f64,
}

/// Remaining time until `deadline`, rounded up to whole milliseconds for the kernel timeout.
fn kernel_timeout(deadline: Instant) -> Result<u128, DataPlaneError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining < Duration::from_millis(1) {
        return Err(DataPlaneError::Invalid {
            what: "deadline",
            reason: "it has already passed".into(),
        });
    }
    Ok(remaining.as_micros().div_ceil(1000))
}

/// The `nft -f` script that (re)creates the partition table. Creating and deleting the table
/// first makes the script replace any leftover table of the same fault in one transaction.
pub(crate) fn partition_script(id: &FaultId, peers: &[Ipv4Addr], timeout_ms: u128) -> String {
    let table = id.table_name();
    let elements = peers
        .iter()
        .map(|peer| format!("{peer} timeout {timeout_ms}ms"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut script = String::new();
    let _ = writeln!(script, "add table inet {table}");
    let _ = writeln!(script, "delete table inet {table}");
    let _ = writeln!(script, "table inet {table} {{");
    let _ = writeln!(
        script,
        "  set peers {{ type ipv4_addr; flags timeout; elements = {{ {elements} }}; }}"
    );
    // Priority -300 runs before conntrack, so established connections are cut too.
    let _ = writeln!(
        script,
        "  chain input {{ type filter hook input priority -300; policy accept; ip saddr @peers drop; }}"
    );
    let _ = writeln!(
        script,
        "  chain output {{ type filter hook output priority -300; policy accept; ip daddr @peers drop; }}"
    );
    script.push_str("}\n");
    script
}

/// The `nft -f` script for random loss. An interval set lets "every source" be `0.0.0.0/0`
/// while still expiring in the kernel.
pub(crate) fn loss_script(
    id: &FaultId,
    from_peers: &[Ipv4Addr],
    percent: f64,
    timeout_ms: u128,
) -> String {
    let table = id.table_name();
    let elements = if from_peers.is_empty() {
        format!("0.0.0.0/0 timeout {timeout_ms}ms")
    } else {
        from_peers
            .iter()
            .map(|peer| format!("{peer} timeout {timeout_ms}ms"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let basis_points = (percent * 100.0).round() as u32;
    // numgen's range is 0–9999, so "< 10000" does not parse: 100 % is a plain drop.
    let chance = if basis_points >= 10_000 {
        String::new()
    } else {
        format!("numgen random mod 10000 < {basis_points} ")
    };
    let mut script = String::new();
    let _ = writeln!(script, "add table inet {table}");
    let _ = writeln!(script, "delete table inet {table}");
    let _ = writeln!(script, "table inet {table} {{");
    let _ = writeln!(
        script,
        "  set peers {{ type ipv4_addr; flags interval,timeout; elements = {{ {elements} }}; }}"
    );
    let _ = writeln!(
        script,
        "  chain input {{ type filter hook input priority -300; policy accept; iifname \"lo\" accept; ip saddr @peers {chance}drop; }}"
    );
    script.push_str("}\n");
    script
}

fn table_revert(netns: &Netns, id: &FaultId) -> super::fault::Revert {
    let netns = netns.clone();
    let table = id.table_name();
    Box::new(move || delete_table(&netns, &table))
}

/// Deletes an nftables `inet` table; a table that is already gone counts as deleted.
pub(crate) fn delete_table(netns: &Netns, table: &str) -> Result<(), DataPlaneError> {
    match run_tool(netns, Tool::Nft, &["delete", "table", "inet", table], None) {
        Ok(_) => Ok(()),
        Err(DataPlaneError::ToolFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn validate_partition(spec: &PartitionSpec) -> Result<(), DataPlaneError> {
    if spec.drop_peers.is_empty() {
        return Err(DataPlaneError::Invalid {
            what: "partition",
            reason: "no peers to drop; skip nodes that keep all their links".into(),
        });
    }
    Ok(())
}

/// Cuts `netns` off from `spec.drop_peers` in both directions until `deadline`.
pub fn apply_partition(
    netns: &Netns,
    id: &FaultId,
    spec: &PartitionSpec,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    apply_partitions(
        std::slice::from_ref(&(netns.clone(), spec.clone())),
        id,
        deadline,
    )
    .map(|mut faults| faults.remove(0))
}

/// Applies one partition table per namespace, all namespaces in parallel. If any namespace
/// fails, the ones that succeeded are healed again and the first error is returned.
pub fn apply_partitions(
    targets: &[(Netns, PartitionSpec)],
    id: &FaultId,
    deadline: Instant,
) -> Result<Vec<AppliedFault>, DataPlaneError> {
    targets
        .iter()
        .try_for_each(|(_, spec)| validate_partition(spec))?;
    let timeout_ms = kernel_timeout(deadline)?;
    // The guards first, one per namespace: the kernel times the rules out at the deadline,
    // and a guard removes the table itself as soon as its owner dies, so not even an empty
    // table outlives a killed Schism.
    let guards = targets
        .iter()
        .map(|(netns, _)| table_guard(netns, id, deadline))
        .collect::<Result<Vec<_>, _>>()?;
    let started: Vec<_> = targets
        .iter()
        .map(|(netns, spec)| {
            let script = partition_script(id, &spec.drop_peers, timeout_ms);
            RunningTool::start(netns, Tool::Nft, &["-f", "-"], Some(&script))
        })
        .collect();
    let mut applied = Vec::with_capacity(targets.len());
    let mut first_error = None;
    for (((netns, _), running), guard) in targets.iter().zip(started).zip(guards) {
        match running.and_then(RunningTool::finish) {
            Ok(_) => applied.push(AppliedFault::new(
                id.clone(),
                FaultKind::Partition,
                netns.path().display().to_string(),
                deadline,
                table_revert(netns, id),
                Some(guard),
            )),
            Err(error) => {
                // Nothing was made in this namespace (the script is one transaction).
                guard.disarm();
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        None => Ok(applied),
        Some(error) => {
            super::heal_all(applied);
            Err(error)
        }
    }
}

/// Drops `spec.percent` % of the packets arriving in `netns` from `spec.from_peers` until
/// `deadline`.
pub fn apply_loss(
    netns: &Netns,
    id: &FaultId,
    spec: &LossSpec,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    if !(spec.percent > 0.0 && spec.percent <= 100.0) {
        return Err(DataPlaneError::Invalid {
            what: "loss percent",
            reason: format!("{} is not > 0 and ≤ 100", spec.percent),
        });
    }
    let script = loss_script(
        id,
        &spec.from_peers,
        spec.percent,
        kernel_timeout(deadline)?,
    );
    // As for partitions: the kernel times the rules out, the guard removes the table.
    let guard = table_guard(netns, id, deadline)?;
    if let Err(error) = run_tool(netns, Tool::Nft, &["-f", "-"], Some(&script)) {
        guard.disarm();
        return Err(error);
    }
    Ok(AppliedFault::new(
        id.clone(),
        FaultKind::Loss,
        netns.path().display().to_string(),
        deadline,
        table_revert(netns, id),
        Some(guard),
    ))
}

/// A guard that deletes the fault's table in `netns`.
fn table_guard(netns: &Netns, id: &FaultId, deadline: Instant) -> Result<Guard, DataPlaneError> {
    let table = id.table_name();
    Guard::start(
        vec![tool_step(
            netns,
            Tool::Nft,
            &["delete", "table", "inet", &table],
        )?],
        Some(deadline),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_script_drops_peers_both_ways_with_kernel_timeout() {
        let id = FaultId::new("p1").unwrap();
        let script = partition_script(
            &id,
            &[Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
            1500,
        );
        assert!(script.contains("table inet schism_p1 {"));
        assert!(script.contains("10.0.0.1 timeout 1500ms, 10.0.0.2 timeout 1500ms"));
        assert!(script.contains("ip saddr @peers drop"));
        assert!(script.contains("ip daddr @peers drop"));
        assert!(script.starts_with("add table inet schism_p1\ndelete table inet schism_p1\n"));
    }

    #[test]
    fn loss_script_without_peers_matches_every_source_but_loopback() {
        let id = FaultId::new("l1").unwrap();
        let script = loss_script(&id, &[], 30.0, 2000);
        assert!(script.contains("0.0.0.0/0 timeout 2000ms"));
        assert!(script.contains("iifname \"lo\" accept"));
        assert!(script.contains("numgen random mod 10000 < 3000 drop"));
    }

    #[test]
    fn fractional_loss_percent_keeps_two_decimals() {
        let id = FaultId::new("l2").unwrap();
        let script = loss_script(&id, &[Ipv4Addr::new(10, 0, 0, 9)], 12.34, 10);
        assert!(script.contains("< 1234 drop"));
    }

    #[test]
    fn total_loss_is_a_plain_drop_because_numgen_stops_at_9999() {
        let id = FaultId::new("l3").unwrap();
        let script = loss_script(&id, &[], 100.0, 10);
        assert!(script.contains("ip saddr @peers drop;"), "{script}");
        assert!(!script.contains("numgen"));
    }

    #[test]
    fn fault_ids_must_be_nft_identifiers() {
        assert!(FaultId::new("fault_1").is_ok());
        assert!(FaultId::new("fault-1").is_err());
        assert!(FaultId::new("").is_err());
        assert_eq!(
            FaultId::sanitized("run-42/fault 1").as_str(),
            "run_42_fault_1"
        );
    }
}
