//! Finding and removing everything Schism installed in a namespace.

use super::latency::delete_queue_rules;
use super::nft::delete_table;
use super::qdisc::{delete_root_qdisc, interfaces};
use super::tools::{Tool, run_tool};
use super::{DataPlaneError, Netns, QDISC_HANDLE, TABLE_PREFIX};

/// One thing the reaper removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReapedItem {
    /// An nftables table (`inet schism_…`).
    NftTable(String),
    /// A root qdisc with Schism's handle on this device.
    Qdisc(String),
    /// An iptables mangle rule, as `iptables -S` printed it.
    IptablesRule(String),
}

impl std::fmt::Display for ReapedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReapedItem::NftTable(table) => write!(f, "nftables table inet {table}"),
            ReapedItem::Qdisc(device) => write!(f, "qdisc {QDISC_HANDLE} on {device}"),
            ReapedItem::IptablesRule(rule) => write!(f, "iptables mangle rule `{rule}`"),
        }
    }
}

/// Names of Schism's `inet` tables in `nft list tables` output.
pub(crate) fn schism_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.strip_prefix("table inet "))
        .map(str::trim)
        .filter(|name| name.starts_with(TABLE_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Devices whose root qdisc has Schism's handle, from `tc qdisc show` output.
pub(crate) fn devices_with_schism_qdisc(listing: &str) -> Vec<String> {
    let marker = format!(" {QDISC_HANDLE} dev ");
    listing
        .lines()
        .filter(|line| line.contains(" root"))
        .filter_map(|line| line.split(&marker).nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Removes every Schism-owned table, qdisc and iptables rule in `netns` and lists what it
/// removed. Tools that are not installed are skipped (nothing of Schism's can exist there).
///
/// The delay loops of live faults keep running until their fault is healed; with their rules
/// gone they receive nothing.
pub fn reap_netns(netns: &Netns) -> Result<Vec<ReapedItem>, DataPlaneError> {
    let mut removed = Vec::new();
    if Tool::Nft.locate().is_ok() {
        let listing = run_tool(netns, Tool::Nft, &["list", "tables"], None)?;
        for table in schism_tables(&listing) {
            delete_table(netns, &table)?;
            removed.push(ReapedItem::NftTable(table));
        }
    }
    if Tool::Tc.locate().is_ok() && Tool::Ip.locate().is_ok() {
        let listing = run_tool(netns, Tool::Tc, &["qdisc", "show"], None)?;
        let ours = devices_with_schism_qdisc(&listing);
        for device in interfaces(netns)?.into_iter().filter(|d| ours.contains(d)) {
            delete_root_qdisc(netns, &device)?;
            removed.push(ReapedItem::Qdisc(device));
        }
    }
    if Tool::Iptables.locate().is_ok() && Tool::IptablesRestore.locate().is_ok() {
        removed.extend(
            delete_queue_rules(netns, None)?
                .into_iter()
                .map(ReapedItem::IptablesRule),
        );
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_schism_tables_are_reaped() {
        let listing =
            "table inet schism_p1\ntable ip filter\ntable inet other\ntable inet schism_l2\n";
        assert_eq!(schism_tables(listing), vec!["schism_p1", "schism_l2"]);
    }

    #[test]
    fn only_root_qdiscs_with_schism_handle_are_reaped() {
        let listing = "qdisc noqueue 0: dev lo root refcnt 2\n\
                       qdisc tbf 5c15: dev eth0 root refcnt 2 rate 10Mbit burst 32Kb lat 50ms\n\
                       qdisc tbf 1: dev eth1 root refcnt 2 rate 10Mbit\n";
        assert_eq!(devices_with_schism_qdisc(listing), vec!["eth0"]);
    }
}
