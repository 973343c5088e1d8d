//! Root qdiscs owned by Schism: tbf for bandwidth, netem for latency where the kernel has it.
//!
//! Every qdisc gets the handle [`QDISC_HANDLE`]; `tc qdisc del … root handle 5c15:` only deletes
//! a root qdisc with exactly that handle, so reverting never removes someone else's qdisc.

use std::str::FromStr;
use std::time::{Duration, Instant};

use super::guard::{Guard, tool_step};
use super::tools::{Tool, run_tool};
use super::{AppliedFault, DataPlaneError, FaultId, FaultKind, Netns, QDISC_HANDLE};

/// A link rate in bits per second, parsed from tc-style text (`10mbit`, `512kbit`, `1gbit`,
/// `100kbps` for bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    bits_per_second: u64,
}

impl Rate {
    /// The rate in bits per second.
    pub fn bits_per_second(self) -> u64 {
        self.bits_per_second
    }
}

impl FromStr for Rate {
    type Err = DataPlaneError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| DataPlaneError::Invalid {
            what: "rate",
            reason: format!("{text:?}: {reason} (examples: 10mbit, 512kbit, 1gbit)"),
        };
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| invalid("missing unit"))?;
        let (number, unit) = lower.split_at(split);
        let value: f64 = number.parse().map_err(|_| invalid("not a number"))?;
        let multiplier: f64 = match unit {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "tbit" => 1e12,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            _ => return Err(invalid("unknown unit")),
        };
        let bits = (value * multiplier).round();
        if !(1.0..1e15).contains(&bits) {
            return Err(invalid("must be > 0 and below 1000tbit"));
        }
        Ok(Rate {
            bits_per_second: bits as u64,
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}bit", self.bits_per_second)
    }
}

/// Limit egress bandwidth of every non-loopback interface in the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BandwidthSpec {
    /// The rate limit.
    pub rate: Rate,
}

/// The tbf burst: at least 32 KiB (what was measured to give 87 % of 10 mbit), and at least
/// 20 ms worth of traffic so fast rates are not limited by timer granularity.
pub(crate) fn tbf_burst_bytes(rate: Rate) -> u64 {
    (rate.bits_per_second / 8 / 50).max(32 * 1024)
}

/// Names of the namespace's interfaces except loopback.
pub(crate) fn interfaces(netns: &Netns) -> Result<Vec<String>, DataPlaneError> {
    let listing = run_tool(netns, Tool::Ip, &["-o", "link", "show"], None)?;
    Ok(parse_interfaces(&listing))
}

/// Parses `ip -o link show` lines (`2: eth0@if5: <…>`).
pub(crate) fn parse_interfaces(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name != "lo")
        .collect()
}

/// The `tc` arguments that delete Schism's root qdisc on `device`.
fn delete_args(device: &str) -> [&str; 7] {
    [
        "qdisc",
        "del",
        "dev",
        device,
        "root",
        "handle",
        QDISC_HANDLE,
    ]
}

/// Deletes Schism's root qdisc on `device`; a qdisc that is already gone counts as deleted.
pub(crate) fn delete_root_qdisc(netns: &Netns, device: &str) -> Result<(), DataPlaneError> {
    match run_tool(netns, Tool::Tc, &delete_args(device), None) {
        Ok(_) => Ok(()),
        Err(DataPlaneError::ToolFailed { stderr, .. })
            if stderr.contains("Invalid handle") || stderr.contains("Cannot find device") =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Installs `qdisc_args` as Schism's root qdisc on every interface until `deadline`, undoing
/// partial work on failure, and returns the revert and the fault's armed guard.
pub(crate) fn install_root_qdiscs(
    netns: &Netns,
    qdisc_args: &[String],
    deadline: Instant,
) -> Result<(super::fault::Revert, Guard), DataPlaneError> {
    let devices = interfaces(netns)?;
    if devices.is_empty() {
        return Err(DataPlaneError::Invalid {
            what: "namespace",
            reason: format!("{} has no interface besides lo", netns.path().display()),
        });
    }
    let undo = devices
        .iter()
        .map(|device| tool_step(netns, Tool::Tc, &delete_args(device)))
        .collect::<Result<Vec<_>, _>>()?;
    let guard = Guard::start(undo, Some(deadline))?;
    let mut installed: Vec<String> = Vec::new();
    for device in &devices {
        let mut args = vec![
            "qdisc",
            "add",
            "dev",
            device,
            "root",
            "handle",
            QDISC_HANDLE,
        ];
        args.extend(qdisc_args.iter().map(String::as_str));
        if let Err(error) = run_tool(netns, Tool::Tc, &args, None) {
            for done in &installed {
                let _ = delete_root_qdisc(netns, done);
            }
            // Undone here: a guard firing now could only hit another fault's qdisc.
            guard.disarm();
            return Err(error);
        }
        installed.push(device.clone());
    }
    let netns = netns.clone();
    let revert: super::fault::Revert = Box::new(move || {
        // Try every device even if one fails, then report the first failure.
        let results: Vec<_> = installed
            .iter()
            .map(|device| delete_root_qdisc(&netns, device))
            .collect();
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    });
    Ok((revert, guard))
}

/// Limits egress bandwidth with tbf until `deadline`.
pub fn apply_bandwidth(
    netns: &Netns,
    id: &FaultId,
    spec: &BandwidthSpec,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    let args = vec![
        "tbf".to_string(),
        "rate".to_string(),
        spec.rate.to_string(),
        "burst".to_string(),
        format!("{}b", tbf_burst_bytes(spec.rate)),
        "latency".to_string(),
        "50ms".to_string(),
    ];
    let (revert, guard) = install_root_qdiscs(netns, &args, deadline)?;
    Ok(AppliedFault::new(
        id.clone(),
        FaultKind::Bandwidth,
        netns.path().display().to_string(),
        deadline,
        revert,
        Some(guard),
    ))
}

/// Arguments of a netem qdisc for `delay` ± `jitter`.
pub(crate) fn netem_args(delay: Duration, jitter: Duration) -> Vec<String> {
    let mut args = vec![
        "netem".to_string(),
        "delay".to_string(),
        format!("{}us", delay.as_micros()),
    ];
    if !jitter.is_zero() {
        args.push(format!("{}us", jitter.as_micros()));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_tc() {
        assert_eq!(
            "10mbit".parse::<Rate>().unwrap().bits_per_second(),
            10_000_000
        );
        assert_eq!(
            "512kbit".parse::<Rate>().unwrap().bits_per_second(),
            512_000
        );
        assert_eq!(
            "1gbit".parse::<Rate>().unwrap().bits_per_second(),
            1_000_000_000
        );
        assert_eq!(
            "1.5Mbit".parse::<Rate>().unwrap().bits_per_second(),
            1_500_000
        );
        assert_eq!(
            "100kbps".parse::<Rate>().unwrap().bits_per_second(),
            800_000
        );
        for bad in ["", "10", "mbit", "0mbit", "10furlongs", "-1mbit"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn burst_scales_with_rate_but_never_below_32k() {
        assert_eq!(tbf_burst_bytes("512kbit".parse().unwrap()), 32 * 1024);
        assert_eq!(tbf_burst_bytes("1gbit".parse().unwrap()), 2_500_000);
    }

    #[test]
    fn interfaces_skip_loopback_and_peer_suffix() {
        let listing = "1: lo: <LOOPBACK,UP> mtu 65536\n2: eth0@if7: <BROADCAST> mtu 1500\n";
        assert_eq!(parse_interfaces(listing), vec!["eth0".to_string()]);
    }

    #[test]
    fn netem_jitter_is_optional() {
        assert_eq!(
            netem_args(Duration::from_millis(100), Duration::ZERO),
            vec!["netem", "delay", "100000us"]
        );
        assert_eq!(
            netem_args(Duration::from_millis(100), Duration::from_millis(10)).len(),
            4
        );
    }
}
