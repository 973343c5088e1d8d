//! Rendering a node's command line from the configured template (pure).

use std::net::Ipv4Addr;

/// Whether a node starts a fresh cluster or rejoins one after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// First start of the run (`{clusterState}` = `new`).
    New,
    /// Restart after a kill (`{clusterState}` = `existing`).
    Existing,
}

impl ClusterState {
    fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// The values one node's placeholders take.
#[derive(Clone, Debug)]
pub struct NodeValues<'a> {
    /// `{name}`: `n1`, `n2`, …
    pub name: &'a str,
    /// `{index}`: 1-based.
    pub index: usize,
    /// `{ip}`.
    pub ip: Ipv4Addr,
    /// `{dataDir}`.
    pub data_dir: &'a str,
}

/// Expands `{placeholder}`s through `lookup`; `{{` and `}}` stand for literal braces, as
/// `schism validate` documents. Unknown placeholders are left as written (validation has
/// already refused them).
fn expand(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(close) = tail.find('}').filter(|_| tail.starts_with('{')) {
            let name = &tail[1..close];
            if let Some(value) = lookup(name) {
                out.push_str(&value);
                rest = &tail[close + 1..];
                continue;
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

fn node_value(name: &str, node: &NodeValues<'_>) -> Option<String> {
    Some(match name {
        "name" => node.name.to_owned(),
        "index" => node.index.to_string(),
        "ip" => node.ip.to_string(),
        "dataDir" => node.data_dir.to_owned(),
        _ => return None,
    })
}

/// Replaces `{name}`, `{index}`, `{ip}`, `{dataDir}` in `template`.
pub fn render_node(template: &str, node: &NodeValues<'_>) -> String {
    expand(template, &|name| node_value(name, node))
}

/// Renders the full command of `node`: its own placeholders, `{peers}` (every node rendered
/// with `peer_format`, joined by `peer_separator`) and `{clusterState}`.
pub fn render_command(
    command: &str,
    peer_format: &str,
    peer_separator: &str,
    node: &NodeValues<'_>,
    all_nodes: &[NodeValues<'_>],
    state: ClusterState,
) -> String {
    let peers = all_nodes
        .iter()
        .map(|peer| render_node(peer_format, peer))
        .collect::<Vec<_>>()
        .join(peer_separator);
    expand(command, &|name| match name {
        "peers" => Some(peers.clone()),
        "clusterState" => Some(state.as_str().to_owned()),
        other => node_value(other, node).or_else(|| other_node_ip(other, all_nodes)),
    })
}

/// `{nK.ip}`: the address of node K (1-based).
fn other_node_ip(name: &str, all_nodes: &[NodeValues<'_>]) -> Option<String> {
    let index: usize = name.strip_suffix(".ip")?.strip_prefix('n')?.parse().ok()?;
    let node = all_nodes.get(index.checked_sub(1)?)?;
    Some(node.ip.to_string())
}

/// The shell text to run: `exec` a simple command so the node itself (not a shell around it)
/// is the runner's child and dies with it; keep compound commands as they are.
pub fn shell_text(command: &str) -> String {
    let compound = command
        .chars()
        .any(|c| matches!(c, ';' | '&' | '|' | '\n' | '(' | ')' | '`'))
        || command.contains("$(");
    if compound {
        command.to_string()
    } else {
        format!("exec {command}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeValues<'static>> {
        vec![
            NodeValues {
                name: "n1",
                index: 1,
                ip: Ipv4Addr::new(10, 0, 0, 1),
                data_dir: "/d/n1",
            },
            NodeValues {
                name: "n2",
                index: 2,
                ip: Ipv4Addr::new(10, 0, 0, 2),
                data_dir: "/d/n2",
            },
        ]
    }

    #[test]
    fn another_nodes_address_is_rendered_by_its_name() {
        let all = nodes();
        let text = render_command(
            "pg_basebackup -h {n1.ip} -D {dataDir} # {n3.ip}",
            "{name}",
            ",",
            &all[1],
            &all,
            ClusterState::New,
        );
        // A node that does not exist stays as written (validation refuses it first).
        assert_eq!(text, "pg_basebackup -h 10.0.0.1 -D /d/n2 # {n3.ip}");
    }

    #[test]
    fn every_placeholder_is_rendered() {
        let all = nodes();
        let text = render_command(
            "etcd --name {name} #{index} {ip} {dataDir} --initial-cluster {peers} --state {clusterState}",
            "{name}=http://{ip}:2380",
            ",",
            &all[1],
            &all,
            ClusterState::Existing,
        );
        assert_eq!(
            text,
            "etcd --name n2 #2 10.0.0.2 /d/n2 --initial-cluster n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380 --state existing"
        );
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let nodes = nodes();
        let text = render_command(
            "echo '{{\"n\": \"{name}\"}}' {{name}} {peers}",
            "{ip}",
            " ",
            &nodes[0],
            &nodes,
            ClusterState::New,
        );
        assert_eq!(
            text,
            format!(
                "echo '{{\"n\": \"n1\"}}' {{name}} {} {}",
                nodes[0].ip, nodes[1].ip
            )
        );
    }

    #[test]
    fn simple_commands_are_execed_and_compound_ones_kept() {
        assert_eq!(shell_text("etcd --name n1"), "exec etcd --name n1");
        assert_eq!(shell_text("cd /x && etcd"), "cd /x && etcd");
        assert_eq!(shell_text("echo a; exit 3"), "echo a; exit 3");
    }
}
