//! Which part each local node plays, decided from the configuration (pure): the command it
//! starts and restarts with, its init step, and the stage it starts in.

use super::LocalClusterConfig;
use super::template::ClusterState;

/// Nodes that play another part (a replica beside its primary), with commands of their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRole {
    /// The role's name, e.g. `replica`.
    pub name: String,
    /// The nodes that take it, 0-based.
    pub nodes: Vec<usize>,
    /// Their start command instead of the cluster's.
    pub command: Option<String>,
    /// Their restart command; default this role's command, else the cluster's restart
    /// command, else its command.
    pub restart_command: Option<String>,
    /// Their init step instead of the cluster's.
    pub init: Option<String>,
}

impl LocalClusterConfig {
    /// The role node `node` (0-based) takes, if any.
    pub fn role_of(&self, node: usize) -> Option<&NodeRole> {
        self.roles.iter().find(|r| r.nodes.contains(&node))
    }

    /// The template node `node` starts with, first or after a kill.
    pub fn start_template(&self, node: usize, state: ClusterState) -> &str {
        let role = self.role_of(node);
        let restart = state == ClusterState::Existing;
        let chosen = match role {
            Some(role) if restart => role
                .restart_command
                .as_ref()
                .or(role.command.as_ref())
                .or(self.restart_command.as_ref()),
            Some(role) => role.command.as_ref(),
            None if restart => self.restart_command.as_ref(),
            None => None,
        };
        chosen.unwrap_or(&self.command)
    }

    /// The init step of node `node`, if it has one.
    pub fn init_template(&self, node: usize) -> Option<&str> {
        match self.role_of(node) {
            Some(role) => role.init.as_deref().or(self.init.as_deref()),
            None => self.init.as_deref(),
        }
    }

    /// The order nodes start in: those without a role first, then every role's nodes in
    /// the order the roles are listed; each stage is ready before the next one starts.
    pub fn stages(&self) -> Vec<Vec<usize>> {
        let plain: Vec<usize> = (0..self.nodes)
            .filter(|n| self.role_of(*n).is_none())
            .collect();
        std::iter::once(plain)
            .chain(self.roles.iter().map(|r| {
                let mut nodes: Vec<usize> = r
                    .nodes
                    .iter()
                    .copied()
                    .filter(|n| *n < self.nodes)
                    .collect();
                nodes.dedup();
                nodes
            }))
            .filter(|stage| !stage.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::ReadyCheck;

    fn primary_and_replicas() -> LocalClusterConfig {
        let mut config = LocalClusterConfig::new(3, "primary", ReadyCheck::Tcp { port: 5432 });
        config.init = Some("initdb".into());
        config.restart_command = Some("primary again".into());
        config.roles = vec![NodeRole {
            name: "replica".into(),
            nodes: vec![1, 2],
            command: Some("replica".into()),
            restart_command: None,
            init: Some("basebackup".into()),
        }];
        config
    }

    #[test]
    fn a_role_replaces_the_commands_of_its_nodes_only() {
        let config = primary_and_replicas();
        assert_eq!(config.start_template(0, ClusterState::New), "primary");
        assert_eq!(
            config.start_template(0, ClusterState::Existing),
            "primary again"
        );
        assert_eq!(config.start_template(1, ClusterState::New), "replica");
        // A replica restarts as a replica, not with the primary's restart command.
        assert_eq!(config.start_template(2, ClusterState::Existing), "replica");
        assert_eq!(config.init_template(0), Some("initdb"));
        assert_eq!(config.init_template(2), Some("basebackup"));
    }

    #[test]
    fn nodes_without_a_role_start_first_then_each_role_in_order() {
        let config = primary_and_replicas();
        assert_eq!(config.stages(), vec![vec![0], vec![1, 2]]);
        let plain = LocalClusterConfig::new(3, "x", ReadyCheck::Tcp { port: 1 });
        assert_eq!(plain.stages(), vec![vec![0, 1, 2]]);
    }
}
