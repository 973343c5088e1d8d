//! The rules a schema cannot express, checked on the typed spec. Every CEL rule of the CRD is
//! repeated here with the most precise field path, so that offline validation and the
//! controller point at the exact field; the CRD's CEL rules guard the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::Problem;
use crate::api::chaos::*;

const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_DELAY: Duration = Duration::from_secs(60);
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Placeholders a local node command may use.
pub const COMMAND_PLACEHOLDERS: &[&str] =
    &["name", "index", "ip", "dataDir", "peers", "clusterState"];

/// Every semantic problem of a spec, in field order.
pub fn check_spec(spec: &ChaosSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    check_target(&spec.target, &mut out);
    let window = spec.duration.get();
    if window.is_zero() {
        out.push(Problem::new("spec.duration", "must be greater than 0"));
    } else if window > MAX_WINDOW {
        out.push(Problem::new(
            "spec.duration",
            format!("must be at most 24h, is {}", spec.duration),
        ));
    }
    let local_nodes = spec.target.local.as_ref().map(|l| l.nodes);
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, fault) in spec.faults.iter().enumerate() {
        let path = format!("spec.faults[{index}]");
        check_fault(fault, &path, window, local_nodes, &mut out);
        // A killed Deployment pod is replaced by one with another name and address, which the
        // clients and later faults cannot follow; StatefulSet pods and local nodes keep both.
        let replaced_under_new_name =
            spec.target.deployment.is_some() || spec.target.selector.is_some();
        if fault.pod_kill.is_some() && replaced_under_new_name {
            out.push(Problem::new(
                &format!("{path}.podKill"),
                "needs a statefulSet (or local) target: a killed pod of a Deployment or selector comes back under another name and address",
            ));
        }
        let name = fault_name(fault, index);
        if let Some(first) = names.insert(name.clone(), index) {
            let at = if fault.name.is_some() {
                format!("{path}.name")
            } else {
                path.clone()
            };
            out.push(Problem::new(&at, format!("name {name:?} is already used by spec.faults[{first}]; fault names must be unique")));
        }
    }
    if let Some(workload) = &spec.workload {
        check_workload(workload, spec.target.local.is_some(), &mut out);
    }
    if let Some(availability) = &spec.availability {
        check_availability(availability, "spec.availability", &mut out);
    }
    check_assertions(spec, &mut out);
    check_readers(spec, &mut out);
    check_abort(spec, &mut out);
    check_role_aims(spec, &mut out);
    out
}

/// Where each fault aimed by role is (its path), for the checks that need a role probe.
fn role_aimed_faults(spec: &ChaosSpec) -> Vec<String> {
    let by_role = |s: &Option<Selection>| {
        s.as_ref()
            .is_some_and(|s| matches!(s.mode, SelectionMode::Leader | SelectionMode::Followers))
    };
    spec.faults
        .iter()
        .enumerate()
        .filter_map(|(index, f)| {
            let path = format!("spec.faults[{index}]");
            if let Some(p) = &f.partition {
                return matches!(
                    p.shape,
                    PartitionShape::IsolateLeader | PartitionShape::LeaderInMinority
                )
                .then(|| format!("{path}.partition.shape"));
            }
            let (kind, targets) = if let Some(x) = &f.latency {
                ("latency", &x.targets)
            } else if let Some(x) = &f.loss {
                ("loss", &x.targets)
            } else if let Some(x) = &f.bandwidth {
                ("bandwidth", &x.targets)
            } else if let Some(x) = &f.pod_kill {
                ("podKill", &x.targets)
            } else if let Some(x) = &f.pause {
                ("pause", &x.targets)
            } else {
                return None;
            };
            by_role(targets).then(|| format!("{path}.{kind}.targets.mode"))
        })
        .collect()
}

/// Faults aimed at the leader need a way to find it: `spec.roleProbe`, or a workload whose
/// client can say; a role probe nothing uses is a mistake worth naming.
fn check_role_aims(spec: &ChaosSpec, out: &mut Vec<Problem>) {
    let aimed = role_aimed_faults(spec);
    let probe = spec.role_probe.as_ref();
    let Some(first) = aimed.first() else {
        if probe.is_some() {
            out.push(Problem::new(
                "spec.roleProbe",
                "no fault is aimed by role (targets.mode leader/followers, shapes isolate-leader/leader-in-minority): remove it",
            ));
        }
        return;
    };
    let workload = spec.workload.as_ref();
    let client = probe.and_then(|p| p.client).or(workload.map(|w| w.client));
    match client {
        None => out.push(Problem::new(
            first,
            "aims at the leader, which needs spec.roleProbe.client (etcd, redis, http) or a workload whose client tells it",
        )),
        Some(ClientKind::Http) => {
            if probe.and_then(|p| p.http.as_ref()).is_none() {
                out.push(Problem::new(
                    "spec.roleProbe.http",
                    format!("required to tell the leader over http ({first} aims at it)"),
                ));
            }
            if probe.and_then(|p| p.port).is_none() {
                out.push(Problem::new(
                    "spec.roleProbe.port",
                    format!("required to tell the leader over http ({first} aims at it)"),
                ));
            }
        }
        Some(ClientKind::Postgres) if workload.and_then(|w| w.postgres.as_ref()).is_none() => {
            out.push(Problem::new(
                "spec.roleProbe.client",
                "postgres roles are read with workload.postgres's connection settings, which are missing",
            ))
        }
        Some(_) => {}
    }
    if let Some(p) = probe {
        if p.client == Some(ClientKind::Postgres) {
            out.push(Problem::new(
                "spec.roleProbe.client",
                "postgres roles are read with the workload's connection: leave roleProbe.client unset and use workload.client postgres",
            ));
        }
        if p.http.is_some() && client != Some(ClientKind::Http) {
            out.push(Problem::new(
                "spec.roleProbe.http",
                "only allowed with roleProbe.client http",
            ));
        }
    }
}

/// Abort guards: one kind each, a window inside the experiment, and what they watch exists.
fn check_abort(spec: &ChaosSpec, out: &mut Vec<Problem>) {
    for (i, guard) in spec.abort.iter().enumerate() {
        let path = format!("spec.abort[{i}]");
        let kinds = [
            guard.availability.is_some(),
            guard.probe_latency.is_some(),
            guard.prometheus.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            out.push(Problem::new(
                &path,
                "exactly one of availability, probeLatency, prometheus must be set",
            ));
            continue;
        }
        let over = guard
            .availability
            .as_ref()
            .map(|a| ("availability", a.over))
            .or(guard
                .probe_latency
                .as_ref()
                .map(|l| ("probeLatency", l.over)));
        if let Some((field, over)) = over {
            if spec.availability.is_none() {
                out.push(Problem::new(
                    &format!("{path}.{field}"),
                    "needs spec.availability: the guard watches the availability probe",
                ));
            }
            if over.is_zero() {
                out.push(Problem::new(
                    &format!("{path}.{field}.over"),
                    "must be greater than 0",
                ));
            } else if over.get() > spec.duration.get() {
                out.push(Problem::new(
                    &format!("{path}.{field}.over"),
                    format!(
                        "is {over}, longer than the chaos window ({}): it could never fill",
                        spec.duration
                    ),
                ));
            }
        }
        if let Some(name) = &guard.prometheus {
            let during = spec
                .assertions
                .iter()
                .flat_map(|a| &a.prometheus)
                .find(|p| &p.name == name);
            match during {
                None => out.push(Problem::new(
                    &format!("{path}.prometheus"),
                    format!("names no assertion of spec.assertions.prometheus: {name:?}"),
                )),
                Some(p) if p.when != PrometheusWhen::During => out.push(Problem::new(
                    &format!("{path}.prometheus"),
                    format!("{name:?} is evaluated {}, not during the window: only a `during` assertion can abort", p.when.name()),
                )),
                Some(_) => {}
            }
        }
    }
}

/// The name a fault goes by: its own, or `fault-N` after its position.
pub fn fault_name(fault: &FaultEntry, index: usize) -> String {
    fault
        .name
        .clone()
        .unwrap_or_else(|| format!("fault-{index}"))
}

fn check_target(target: &Target, out: &mut Vec<Problem>) {
    let set = [
        target.deployment.is_some(),
        target.stateful_set.is_some(),
        target.selector.is_some(),
        target.local.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        1 => {}
        0 => out.push(Problem::new(
            "spec.target",
            "exactly one of deployment, statefulSet, selector, local must be set; none is",
        )),
        _ => out.push(Problem::new(
            "spec.target",
            "exactly one of deployment, statefulSet, selector, local must be set; several are",
        )),
    }
    for (field, name) in [
        ("deployment", &target.deployment),
        ("statefulSet", &target.stateful_set),
    ] {
        if let Some(name) = name
            && !is_dns_subdomain(name)
        {
            out.push(Problem::new(
                &format!("spec.target.{field}"),
                format!(
                    "{name:?} is not a valid object name (lower-case letters, digits, '-' and '.')"
                ),
            ));
        }
    }
    if let Some(selector) = &target.selector {
        let labels = selector
            .match_labels
            .as_ref()
            .is_some_and(|m| !m.is_empty());
        let expressions = selector
            .match_expressions
            .as_ref()
            .is_some_and(|m| !m.is_empty());
        if !labels && !expressions {
            out.push(Problem::new("spec.target.selector", "must not be empty: give matchLabels or matchExpressions (an empty selector would match every pod)"));
        }
    }
    if let Some(selector) = &target.selector {
        check_selector(selector, "spec.target.selector", out);
    }
    if let Some(local) = &target.local {
        check_local(local, out);
    }
}

fn check_local(local: &LocalTarget, out: &mut Vec<Problem>) {
    let path = "spec.target.local";
    for (field, template) in [
        ("command", Some(&local.command)),
        ("restartCommand", local.restart_command.as_ref()),
        ("init", local.init.as_ref()),
        ("peerFormat", Some(&local.peer_format)),
    ] {
        let Some(template) = template else { continue };
        if template.trim().is_empty() {
            out.push(Problem::new(
                &format!("{path}.{field}"),
                "must not be empty",
            ));
        }
        if let Err(reason) = check_placeholders(template, field == "peerFormat", local.nodes) {
            out.push(Problem::new(&format!("{path}.{field}"), reason));
        }
    }
    check_roles(local, out);
    if local.ready.tcp.is_some() == local.ready.http.is_some() {
        out.push(Problem::new(
            &format!("{path}.ready"),
            "exactly one of tcp, http must be set",
        ));
    }
    if local.ready_timeout.is_some_and(|t| t.is_zero()) {
        out.push(Problem::new(
            &format!("{path}.readyTimeout"),
            "must be greater than 0",
        ));
    }
    if let Some(subnet) = &local.subnet {
        // Any allowed prefix fits the nodes: a /26 holds 62 addresses, more than 32 nodes and
        // the clients' address need.
        if let Err(reason) = parse_subnet(subnet) {
            out.push(Problem::new(&format!("{path}.subnet"), reason));
        }
    }
    for key in local.env.keys() {
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push(Problem::new(&format!("{path}.env[{}]", super::shown(key)), "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"));
        }
    }
}

/// The roles of a local target: known nodes, one role per node, unique names, good templates.
fn check_roles(local: &LocalTarget, out: &mut Vec<Problem>) {
    let mut taken: BTreeMap<i32, usize> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, role) in local.roles.iter().enumerate() {
        let path = format!("spec.target.local.roles[{r}]");
        if let Some(first) = names.insert(&role.name, r) {
            out.push(Problem::new(
                &format!("{path}.name"),
                format!("{:?} is already the name of roles[{first}]", role.name),
            ));
        }
        if role.nodes.is_empty() {
            out.push(Problem::new(
                &format!("{path}.nodes"),
                "must name at least one node",
            ));
        }
        for (i, &node) in role.nodes.iter().enumerate() {
            let at = format!("{path}.nodes[{i}]");
            if node < 1 || node > local.nodes {
                out.push(Problem::new(
                    &at,
                    format!(
                        "node {node} does not exist: the target has nodes 1 to {}",
                        local.nodes
                    ),
                ));
            } else if let Some(first) = taken.insert(node, r) {
                out.push(Problem::new(
                    &at,
                    format!(
                        "node {node} already takes role {:?}; a node takes at most one role",
                        local.roles[first].name
                    ),
                ));
            }
        }
        for (field, template) in [
            ("command", role.command.as_ref()),
            ("restartCommand", role.restart_command.as_ref()),
            ("init", role.init.as_ref()),
        ] {
            let Some(template) = template else { continue };
            if template.trim().is_empty() {
                out.push(Problem::new(
                    &format!("{path}.{field}"),
                    "must not be empty",
                ));
            } else if let Err(reason) = check_placeholders(template, false, local.nodes) {
                out.push(Problem::new(&format!("{path}.{field}"), reason));
            }
        }
    }
}

/// The workload's readers name nodes that exist (locally) and leave some to the writers.
fn check_readers(spec: &ChaosSpec, out: &mut Vec<Problem>) {
    let Some(readers) = spec.workload.as_ref().and_then(|w| w.readers.as_ref()) else {
        return;
    };
    let path = "spec.workload.readers.nodes";
    let mut seen = BTreeSet::new();
    for (i, name) in readers.nodes.iter().enumerate() {
        if !seen.insert(name) {
            out.push(Problem::new(
                &format!("{path}[{i}]"),
                format!("{name:?} is named twice"),
            ));
        }
        if let Some(local) = &spec.target.local {
            let known = name
                .strip_prefix('n')
                .and_then(|k| k.parse::<i32>().ok())
                .is_some_and(|k| (1..=local.nodes).contains(&k) && *name == format!("n{k}"));
            if !known {
                out.push(Problem::new(
                    &format!("{path}[{i}]"),
                    format!(
                        "{name:?} is not a node of the local target: n1 to n{}",
                        local.nodes
                    ),
                ));
            }
        }
    }
    if let Some(local) = &spec.target.local
        && seen.len() as i32 >= local.nodes
    {
        out.push(Problem::new(
            path,
            "names every node: the writers need at least one node that is not a reader's",
        ));
    }
}

/// Checks `{placeholder}`s in a command template; `{{` and `}}` stand for literal braces.
/// `{nK.ip}` is node K's address, for K in 1..=`nodes`.
fn check_placeholders(template: &str, per_peer: bool, nodes: i32) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
            rest = &after[1..];
            continue;
        }
        if rest.as_bytes()[open] == b'}' {
            return Err("has a '}' without '{' (write }} for a literal brace)".into());
        }
        let Some(close) = after.find('}') else {
            return Err("has a '{' that is never closed (write {{ for a literal brace)".into());
        };
        let name = &after[..close];
        if let Some(node) = name
            .strip_suffix(".ip")
            .and_then(|n| n.strip_prefix('n'))
            .and_then(|k| k.parse::<i32>().ok())
        {
            if node < 1 || node > nodes {
                return Err(format!(
                    "placeholder {{{name}}} names node {node}, but the target has nodes 1 to {nodes}"
                ));
            }
            rest = &after[close + 1..];
            continue;
        }
        let allowed = COMMAND_PLACEHOLDERS
            .iter()
            .any(|p| *p == name && !(per_peer && *p == "peers"));
        if !allowed {
            let known: Vec<String> = COMMAND_PLACEHOLDERS
                .iter()
                .filter(|p| !(per_peer && **p == "peers"))
                .map(|p| format!("{{{p}}}"))
                .collect();
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}, {{nK.ip}}",
                known.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Parses `A.B.C.D/P` with a prefix of 8 to 26 bits.
pub fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("{text:?} is not an IPv4 subnet like 10.231.7.0/24");
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(8..=26).contains(&prefix) {
        return Err(format!(
            "prefix length must be between 8 and 26, is {prefix}"
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    if u32::from(address) & !mask != 0 {
        return Err(format!(
            "{text:?} has host bits set; did you mean {}/{prefix}?",
            Ipv4Addr::from(u32::from(address) & mask)
        ));
    }
    Ok((address, prefix))
}

fn check_fault(
    fault: &FaultEntry,
    path: &str,
    window: Duration,
    local_nodes: Option<i32>,
    out: &mut Vec<Problem>,
) {
    let kinds = [
        fault.partition.is_some(),
        fault.latency.is_some(),
        fault.loss.is_some(),
        fault.bandwidth.is_some(),
        fault.pod_kill.is_some(),
        fault.pause.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        1 => {}
        0 => out.push(Problem::new(path, "exactly one of partition, latency, loss, bandwidth, podKill, pause must be set; none is")),
        _ => out.push(Problem::new(path, "exactly one of partition, latency, loss, bandwidth, podKill, pause must be set; several are (use one entry per fault)")),
    }
    let start = fault.start.map(|s| s.get()).unwrap_or_default();
    let instantaneous = fault.pod_kill.is_some();
    match (fault.duration, instantaneous) {
        (Some(_), true) => out.push(Problem::new(&format!("{path}.duration"), "podKill is instantaneous: duration is not allowed")),
        (None, false) if kinds.iter().any(|k| *k) => out.push(Problem::new(&format!("{path}.duration"), "required field is missing (every fault except podKill needs a duration)")),
        (Some(d), false) if d.is_zero() => out.push(Problem::new(&format!("{path}.duration"), "must be greater than 0")),
        (Some(d), false) if start + d.get() > window => out.push(Problem::new(path, format!(
            "the fault must end inside the chaos window: start {} + duration {} = {} is after spec.duration {}",
            crate::api::duration::format(start), d, crate::api::duration::format(start + d.get()), crate::api::duration::format(window)))),
        _ => {}
    }
    if start >= window && !window.is_zero() {
        out.push(Problem::new(
            &format!("{path}.start"),
            format!(
                "must be before the end of the chaos window (spec.duration {})",
                crate::api::duration::format(window)
            ),
        ));
    }
    if let Some(every) = fault.every {
        if every.is_zero() {
            out.push(Problem::new(
                &format!("{path}.every"),
                "must be greater than 0",
            ));
        } else if let Some(d) = fault.duration.filter(|d| every < *d) {
            out.push(Problem::new(
                &format!("{path}.every"),
                format!(
                    "must be at least duration ({d}) so that repeats never overlap, is {every}"
                ),
            ));
        }
    }
    if let Some(partition) = &fault.partition {
        check_partition(partition, &format!("{path}.partition"), local_nodes, out);
    }
    if let Some(latency) = &fault.latency {
        let delay = latency.delay.get();
        if delay.is_zero() {
            out.push(Problem::new(
                &format!("{path}.latency.delay"),
                "must be greater than 0",
            ));
        } else if delay > MAX_DELAY {
            out.push(Problem::new(
                &format!("{path}.latency.delay"),
                format!("must be at most 60s, is {}", latency.delay),
            ));
        }
        if let Some(jitter) = latency.jitter.filter(|j| *j > latency.delay) {
            out.push(Problem::new(
                &format!("{path}.latency.jitter"),
                format!("must be at most the delay ({}), is {jitter}", latency.delay),
            ));
        }
        check_selection(
            latency.targets.as_ref(),
            &format!("{path}.latency.targets"),
            local_nodes,
            out,
        );
    }
    if let Some(loss) = &fault.loss {
        if !(loss.percent > 0.0 && loss.percent <= 100.0) {
            out.push(Problem::new(
                &format!("{path}.loss.percent"),
                format!(
                    "must be greater than 0 and at most 100, is {}",
                    loss.percent
                ),
            ));
        }
        check_selection(
            loss.targets.as_ref(),
            &format!("{path}.loss.targets"),
            local_nodes,
            out,
        );
    }
    if let Some(bandwidth) = &fault.bandwidth {
        match parse_rate(&bandwidth.rate) {
            Ok(0) => out.push(Problem::new(
                &format!("{path}.bandwidth.rate"),
                "must be greater than 0",
            )),
            Ok(_) => {}
            Err(reason) => out.push(Problem::new(&format!("{path}.bandwidth.rate"), reason)),
        }
        check_selection(
            bandwidth.targets.as_ref(),
            &format!("{path}.bandwidth.targets"),
            local_nodes,
            out,
        );
    }
    if let Some(kill) = &fault.pod_kill {
        check_selection(
            kill.targets.as_ref(),
            &format!("{path}.podKill.targets"),
            local_nodes,
            out,
        );
    }
    if let Some(pause) = &fault.pause {
        check_selection(
            pause.targets.as_ref(),
            &format!("{path}.pause.targets"),
            local_nodes,
            out,
        );
    }
}

/// Parses a rate like `10mbit` into bits per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a rate: expected a number and a unit among bit, kbit, mbit, gbit (like 10mbit)"
        )
    };
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bits = value * scale;
    if bits > 1e12 {
        return Err(format!("{text:?} is too high: at most 1000gbit"));
    }
    Ok(bits as u64)
}

fn check_partition(
    partition: &Partition,
    path: &str,
    local_nodes: Option<i32>,
    out: &mut Vec<Problem>,
) {
    let is_groups = partition.shape == PartitionShape::Groups;
    match (&partition.groups, is_groups) {
        (None, true) => out.push(Problem::new(
            &format!("{path}.groups"),
            "required when shape is groups",
        )),
        (Some(_), false) => out.push(Problem::new(
            &format!("{path}.groups"),
            "only allowed when shape is groups",
        )),
        (Some(groups), true) => {
            let non_empty = groups.iter().filter(|g| !g.is_empty()).count();
            if non_empty < 2 {
                out.push(Problem::new(
                    &format!("{path}.groups"),
                    "needs at least two non-empty groups",
                ));
            }
            let mut seen: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for (g, group) in groups.iter().enumerate() {
                for (k, name) in group.iter().enumerate() {
                    let at = format!("{path}.groups[{g}][{k}]");
                    if let Some((g0, k0)) = seen.insert(name.as_str(), (g, k)) {
                        out.push(Problem::new(&at, format!("{name:?} is already in {path}.groups[{g0}][{k0}]; a name may appear once")));
                    }
                    if let Some(nodes) = local_nodes {
                        let known = name
                            .strip_prefix('n')
                            .and_then(|i| i.parse::<i32>().ok())
                            .is_some_and(|i| (1..=nodes).contains(&i) && name == &format!("n{i}"));
                        if !known {
                            out.push(Problem::new(
                                &at,
                                format!(
                                    "{name:?} is not a node of the local target (n1 to n{nodes})"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        (None, false) => {}
    }
    if let (Some(nodes), PartitionShape::Bridge | PartitionShape::LeaderInMinority) =
        (local_nodes, partition.shape)
        && nodes < 3
    {
        let shape = if partition.shape == PartitionShape::Bridge {
            "bridge"
        } else {
            "leader-in-minority"
        };
        out.push(Problem::new(
            &format!("{path}.shape"),
            format!("{shape} needs at least 3 nodes, the local target has {nodes}"),
        ));
    }
    if let (Some(nodes), true) = (
        local_nodes,
        !matches!(
            partition.shape,
            PartitionShape::Groups | PartitionShape::Bridge | PartitionShape::LeaderInMinority
        ),
    ) && nodes < 2
    {
        out.push(Problem::new(
            &format!("{path}.shape"),
            "a partition needs at least 2 nodes; the local target has 1",
        ));
    }
}

fn check_selection(
    selection: Option<&Selection>,
    path: &str,
    local_nodes: Option<i32>,
    out: &mut Vec<Problem>,
) {
    let Some(selection) = selection else { return };
    let takes_value = matches!(
        selection.mode,
        SelectionMode::Fixed | SelectionMode::FixedPercent | SelectionMode::RandomMaxPercent
    );
    match (selection.value, takes_value) {
        (None, true) => out.push(Problem::new(
            &format!("{path}.value"),
            "required for modes fixed, fixed-percent and random-max-percent",
        )),
        (Some(_), false) => out.push(Problem::new(
            &format!("{path}.value"),
            "only allowed with modes fixed, fixed-percent and random-max-percent",
        )),
        (Some(v), true) if v < 1 => {
            out.push(Problem::new(&format!("{path}.value"), "must be at least 1"))
        }
        (Some(v), true) if selection.mode != SelectionMode::Fixed && v > 100 => {
            out.push(Problem::new(
                &format!("{path}.value"),
                format!("is a percentage for this mode: must be at most 100, is {v}"),
            ))
        }
        (Some(v), true) if selection.mode == SelectionMode::Fixed => {
            if let Some(nodes) = local_nodes.filter(|n| v > *n) {
                out.push(Problem::new(
                    &format!("{path}.value"),
                    format!("asks for {v} nodes but the local target has {nodes}"),
                ));
            }
        }
        _ => {}
    }
}

fn check_workload(workload: &Workload, local: bool, out: &mut Vec<Problem>) {
    let path = "spec.workload";
    check_transactional_workload(workload, local, out);
    let is_http = workload.client == ClientKind::Http;
    match (&workload.http, is_http) {
        (None, true) => out.push(Problem::new(
            &format!("{path}.http"),
            "required for client http",
        )),
        (Some(_), false) => out.push(Problem::new(
            &format!("{path}.http"),
            "only allowed with client http",
        )),
        _ => {}
    }
    if is_http && workload.port.is_none() {
        out.push(Problem::new(
            &format!("{path}.port"),
            "required for client http",
        ));
    }
    if workload.read_consistency.is_some() && workload.client != ClientKind::Etcd {
        out.push(Problem::new(
            &format!("{path}.readConsistency"),
            "only allowed with client etcd",
        ));
    }
    if workload.timeout.is_zero() {
        out.push(Problem::new(
            &format!("{path}.timeout"),
            "must be greater than 0",
        ));
    }
    match (workload.model(), workload.client) {
        (ModelKind::Kv, ClientKind::Etcd) => out.push(Problem::new(&format!("{path}.model"), "kv (get/put/append) needs an append operation, which the etcd client does not have; use register or cas-register")),
        (ModelKind::Kv, ClientKind::Http) => out.push(Problem::new(&format!("{path}.model"), "kv (get/put/append) is not supported by the http client; use register or cas-register")),
        (ModelKind::CasRegister, ClientKind::Http) if workload.http.as_ref().is_some_and(|h| h.cas.is_none()) => {
            out.push(Problem::new(&format!("{path}.http.cas"), "required for model cas-register; give a cas request or use model register"))
        }
        _ => {}
    }
    if let Some(http) = &workload.http {
        if let Some(status) = http.read.success_status.as_ref().filter(|s| s.is_empty()) {
            let _ = status;
            out.push(Problem::new(
                &format!("{path}.http.read.successStatus"),
                "must not be empty",
            ));
        }
        for (field, template) in [
            ("read", Some(&http.read)),
            ("write", Some(&http.write)),
            ("cas", http.cas.as_ref()),
        ] {
            let Some(template) = template else { continue };
            if field != "cas" && template.mismatch_status.is_some() {
                out.push(Problem::new(
                    &format!("{path}.http.{field}.mismatchStatus"),
                    "only the cas request can fail a comparison; remove it here",
                ));
            }
            if let (Some(success), Some(mismatch)) = (
                template.success_status.as_ref(),
                template.mismatch_status.as_ref(),
            ) && let Some(both) = mismatch.iter().find(|s| success.contains(s))
            {
                out.push(Problem::new(
                    &format!("{path}.http.{field}.mismatchStatus"),
                    format!("{both} is also in successStatus; a status cannot mean both"),
                ));
            }
            let allowed: &[&str] = match field {
                "read" => &["key"],
                "write" => &["key", "value"],
                _ => &["key", "value", "expected"],
            };
            for (part, text) in [
                ("path", Some(&template.path)),
                ("body", template.body.as_ref()),
            ] {
                let Some(text) = text else { continue };
                if let Some(bad) = unknown_http_placeholder(text, allowed) {
                    out.push(Problem::new(
                        &format!("{path}.http.{field}.{part}"),
                        format!(
                            "unknown placeholder {{{bad}}} for a {field} request; allowed: {}",
                            allowed
                                .iter()
                                .map(|a| format!("{{{a}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
    }
}

fn unknown_http_placeholder(text: &str, allowed: &[&str]) -> Option<String> {
    // JSON bodies contain braces of their own; only `{identifier}` is a placeholder, wherever
    // it sits (also inside a JSON object's braces).
    static PLACEHOLDER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let placeholder = PLACEHOLDER.get_or_init(|| {
        regex::Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("a valid pattern")
    });
    placeholder
        .captures_iter(text)
        .map(|c| c[1].to_owned())
        .find(|name| !allowed.contains(&name.as_str()))
}

fn check_availability(availability: &Availability, path: &str, out: &mut Vec<Problem>) {
    if availability.tcp.is_some() == availability.http.is_some() {
        out.push(Problem::new(path, "exactly one of tcp, http must be set"));
    }
    if availability.interval.get() < MIN_PROBE_INTERVAL {
        out.push(Problem::new(
            &format!("{path}.interval"),
            format!("must be at least 10ms, is {}", availability.interval),
        ));
    }
    if availability.timeout.is_zero() {
        out.push(Problem::new(
            &format!("{path}.timeout"),
            "must be greater than 0",
        ));
    }
}

/// The rules of clients and models that run transactions.
fn check_transactional_workload(workload: &Workload, local: bool, out: &mut Vec<Problem>) {
    let path = "spec.workload";
    let transactional = workload.model().is_transactional();
    let model = workload.model().name();
    match workload.client {
        ClientKind::Postgres if !transactional => out.push(Problem::new(
            &format!("{path}.model"),
            format!("client postgres runs transactions: model must be list-append or rw-register, not {model}"),
        )),
        ClientKind::Redis | ClientKind::Http if transactional => out.push(Problem::new(
            &format!("{path}.model"),
            format!("{model} is transactional: it needs client etcd or postgres"),
        )),
        _ => {}
    }
    if let Some(readers) = &workload.readers
        && readers.clients >= workload.concurrency
    {
        out.push(Problem::new(
            &format!("{path}.readers.clients"),
            format!(
                "is {} but the workload has {} clients: at least one must be left to write",
                readers.clients, workload.concurrency
            ),
        ));
    }
    if !transactional {
        for (field, set) in [
            ("writesPerKey", workload.writes_per_key.is_some()),
            ("maxOpsPerTxn", workload.max_ops_per_txn.is_some()),
            ("readers", workload.readers.is_some()),
        ] {
            if set {
                out.push(Problem::new(
                    &format!("{path}.{field}"),
                    "only allowed with a transactional model (list-append, rw-register)",
                ));
            }
        }
    }
    if transactional && workload.read_consistency.is_some() {
        out.push(Problem::new(
            &format!("{path}.readConsistency"),
            "only for single-key models: a transaction's reads run inside the transaction",
        ));
    }
    match (&workload.postgres, workload.client == ClientKind::Postgres) {
        (None, true) => out.push(Problem::new(
            &format!("{path}.postgres"),
            "required for client postgres",
        )),
        (Some(_), false) => out.push(Problem::new(
            &format!("{path}.postgres"),
            "only allowed with client postgres",
        )),
        _ => {}
    }
    let Some(password) = workload.postgres.as_ref().and_then(|p| p.password.as_ref()) else {
        return;
    };
    let path = format!("{path}.postgres.password");
    let set = [
        password.secret_key_ref.is_some(),
        password.env.is_some(),
        password.value.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        out.push(Problem::new(
            &path,
            "exactly one of secretKeyRef, env, value must be set",
        ));
    } else if local && password.secret_key_ref.is_some() {
        out.push(Problem::new(
            &format!("{path}.secretKeyRef"),
            "Secrets are read only in a cluster; a local target takes env or value",
        ));
    } else if !local && password.secret_key_ref.is_none() {
        let field = if password.env.is_some() {
            "env"
        } else {
            "value"
        };
        out.push(Problem::new(
            &format!("{path}.{field}"),
            "only for a local target: in a cluster the password comes from a Secret (secretKeyRef), so it is neither in the manifest nor in the runner's environment",
        ));
    }
    if let Some(name) = &password.env
        && (name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        out.push(Problem::new(
            &format!("{path}.env"),
            format!("{name:?} is not an environment variable name (letters, digits, _; not starting with a digit)"),
        ));
    }
}

fn check_assertions(spec: &ChaosSpec, out: &mut Vec<Problem>) {
    let Some(assertions) = &spec.assertions else {
        return;
    };
    let wanted = assertions.consistency;
    if wanted != ConsistencyAssertion::None && spec.workload.is_none() {
        out.push(Problem::new(
            "spec.workload",
            format!(
                "required when assertions.consistency is {}: the history to check comes from the workload",
                wanted.name()
            ),
        ));
    }
    if let Some(workload) = &spec.workload
        && wanted != ConsistencyAssertion::None
        && wanted.is_transactional() != workload.model().is_transactional()
    {
        let model = workload.model().name();
        let why = if workload.model().is_transactional() {
            format!(
                "{model} histories are transactions, checked for an isolation level: use read-committed, repeatable-read, snapshot-isolation, serializable or strict-serializable"
            )
        } else {
            format!(
                "{model} histories are single-key operations, checked for linearizability: use linearizable, or a transactional model (list-append, rw-register) for {}",
                wanted.name()
            )
        };
        out.push(Problem::new(
            "spec.assertions.consistency",
            format!(
                "{} does not fit workload.model {model}: {why}",
                wanted.name()
            ),
        ));
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in assertions.prometheus.iter().enumerate() {
        let path = format!("spec.assertions.prometheus[{i}]");
        if let Some(first) = names.insert(&p.name, i) {
            out.push(Problem::new(
                &format!("{path}.name"),
                format!("{:?} is already the name of prometheus[{first}]", p.name),
            ));
        }
        if let Err(e) = crate::api::Expectation::parse(&p.expect) {
            out.push(Problem::new(&format!("{path}.expect"), e));
        }
        if p.query.trim().is_empty() {
            out.push(Problem::new(&format!("{path}.query"), "must not be empty"));
        }
        if let Some(url) = &p.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push(Problem::new(
                &format!("{path}.url"),
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if p.interval.get() < Duration::from_secs(1) {
            out.push(Problem::new(
                &format!("{path}.interval"),
                format!("is {}, must be at least 1s", p.interval),
            ));
        }
    }
    let needs_probe: BTreeSet<&str> = [
        assertions.min_availability.map(|_| "minAvailability"),
        assertions.max_recovery.map(|_| "maxRecovery"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !needs_probe.is_empty() && spec.availability.is_none() {
        let names: Vec<String> = needs_probe
            .iter()
            .map(|n| format!("assertions.{n}"))
            .collect();
        out.push(Problem::new(
            "spec.availability",
            format!(
                "required when {} is set: it is measured by the availability probe",
                names.join(" or ")
            ),
        ));
    }
    if let Some(min) = assertions
        .min_availability
        .filter(|m| !(0.0..=1.0).contains(m))
    {
        out.push(Problem::new(
            "spec.assertions.minAvailability",
            format!("must be between 0 and 1, is {min}"),
        ));
    }
    if assertions.max_recovery.is_some_and(|r| r.is_zero()) {
        out.push(Problem::new(
            "spec.assertions.maxRecovery",
            "must be greater than 0",
        ));
    }
}

fn check_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    path: &str,
    out: &mut Vec<Problem>,
) {
    for (key, value) in selector.match_labels.iter().flatten() {
        let at = format!("{path}.matchLabels[{}]", super::shown(key));
        if let Err(reason) = check_label_key(key) {
            out.push(Problem::new(&at, reason));
        }
        if !is_label_value(value) {
            out.push(Problem::new(&at, format!("{} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", super::shown(value))));
        }
    }
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Err(reason) = check_label_key(&expression.key) {
            out.push(Problem::new(&format!("{at}.key"), reason));
        }
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => out.push(Problem::new(
                &format!("{at}.values"),
                format!("must not be empty for operator {}", expression.operator),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(Problem::new(
                &format!("{at}.values"),
                format!("must be empty for operator {}", expression.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.push(Problem::new(
                &format!("{at}.operator"),
                format!(
                    "{} is not one of: In, NotIn, Exists, DoesNotExist",
                    super::shown(other)
                ),
            )),
        }
        for (k, value) in values.iter().enumerate() {
            if !is_label_value(value) {
                out.push(Problem::new(
                    &format!("{at}.values[{k}]"),
                    format!("{} is not a valid label value", super::shown(value)),
                ));
            }
        }
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix.filter(|p| !is_dns_subdomain(p)) {
        return Err(format!(
            "label key prefix {} is not a DNS subdomain",
            super::shown(prefix)
        ));
    }
    if name.is_empty() || !is_label_value(name) {
        return Err(format!(
            "{} is not a valid label key: a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally behind a DNS prefix and '/'",
            super::shown(key)
        ));
    }
    Ok(())
}

fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A DNS subdomain name as Kubernetes object names require.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked_and_braces_escape() {
        assert!(
            check_placeholders("etcd --name {name} --initial-cluster {peers}", false, 3).is_ok()
        );
        assert!(check_placeholders("echo '{{literal}}'", false, 3).is_ok());
        assert!(
            check_placeholders("run {nmae}", false, 3)
                .unwrap_err()
                .contains("{nmae}")
        );
        assert!(check_placeholders("run {name", false, 3).is_err());
        assert!(check_placeholders("{peers}", true, 3).is_err());
    }

    #[test]
    fn another_nodes_address_must_name_a_node_of_the_target() {
        assert!(check_placeholders("pg_basebackup -h {n1.ip}", false, 2).is_ok());
        let e = check_placeholders("pg_basebackup -h {n3.ip}", false, 2).unwrap_err();
        assert!(
            e.contains("names node 3, but the target has nodes 1 to 2"),
            "{e}"
        );
    }

    #[test]
    fn subnets_need_a_clean_network_address() {
        assert_eq!(parse_subnet("10.231.7.0/24").unwrap().1, 24);
        assert!(
            parse_subnet("10.231.7.1/24")
                .unwrap_err()
                .contains("10.231.7.0/24")
        );
        assert!(parse_subnet("10.0.0.0/30").is_err());
        assert!(parse_subnet("nonsense").is_err());
    }

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1.5kbit").unwrap(), 1500);
        assert!(parse_rate("10mb").is_err());
        assert!(parse_rate("mbit").is_err());
    }
}
