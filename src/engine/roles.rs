//! Who leads when a fault aimed by role starts: the role query built from the spec, every
//! node asked at once, and the pure choice of the leader from their answers.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::{ChaosSpec, ClientKind};
use crate::workload::postgres::Password;
use crate::workload::role::{self, Role, RoleQuery};

use super::experiment::NodeAddress;

/// How long one node may take to say its role, unless `roleProbe.timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The role query of a spec: `roleProbe` where given, else the workload's client.
pub fn role_query(spec: &ChaosSpec, password: Option<&Password>) -> Result<RoleQuery, String> {
    let probe = spec.role_probe.clone().unwrap_or_default();
    let workload = spec.workload.as_ref();
    let client = probe
        .client
        .or(workload.map(|w| w.client))
        .ok_or("faults aimed at the leader need spec.roleProbe.client or a workload")?;
    // The workload's port only when the probe asks the same kind of server.
    let port = probe
        .port
        .or(workload.filter(|w| w.client == client).and_then(|w| w.port));
    Ok(match client {
        ClientKind::Etcd => RoleQuery::Etcd {
            port: port.unwrap_or(2379) as u16,
        },
        ClientKind::Redis => RoleQuery::Redis {
            port: port.unwrap_or(6379) as u16,
        },
        ClientKind::Postgres => {
            let pg = workload
                .and_then(|w| w.postgres.as_ref())
                .ok_or("a postgres role probe needs workload.postgres")?;
            let mut config = tokio_postgres::Config::new();
            config
                .port(port.unwrap_or(5432) as u16)
                .user(&pg.user)
                .dbname(&pg.database)
                .application_name("schism-role");
            if let Some(password) = password {
                config.password(password.expose());
            }
            RoleQuery::Postgres {
                config: Box::new(config),
            }
        }
        ClientKind::Http => {
            let http = probe
                .http
                .ok_or("a role probe of client http needs spec.roleProbe.http")?;
            RoleQuery::Http {
                port: port.ok_or("a role probe of client http needs spec.roleProbe.port")? as u16,
                path: http.path,
                leader_status: http.leader_status.unwrap_or(200) as u16,
                body_contains: http.leader_body_contains,
            }
        }
    })
}

/// The leader among `names`, from each node's answer. One node saying it leads is the
/// leader; of several, the one with the highest term (a deposed leader that has not heard
/// of its successor still says it leads). None, or several with no term to tell them apart,
/// is an error that quotes every answer.
pub fn pick_leader(names: &[String], answers: &[Result<Role, String>]) -> Result<usize, String> {
    let leaders: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, answer)| answer.as_ref().is_ok_and(|role| role.leads))
        .map(|(index, _)| index)
        .collect();
    let term = |index: usize| answers[index].as_ref().ok().and_then(|r| r.term);
    let said = || {
        names
            .iter()
            .zip(answers)
            .map(|(name, answer)| match answer {
                Ok(role) if role.leads => format!("{name}: leader"),
                Ok(_) => format!("{name}: follower"),
                Err(e) => format!("{name}: {e}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match leaders.as_slice() {
        [] => Err(format!("no node says it leads ({})", said())),
        [only] => Ok(*only),
        several => {
            let highest = several.iter().copied().max_by_key(|&i| term(i));
            let unique = highest.filter(|&best| {
                term(best).is_some() && several.iter().all(|&i| i == best || term(i) < term(best))
            });
            unique.ok_or_else(|| format!("more than one node says it leads ({})", said()))
        }
    }
}

/// Asks every node for its role, from the clients' network namespace when there is one.
#[derive(Debug, Clone)]
pub struct RoleProber {
    query: RoleQuery,
    nodes: Vec<NodeAddress>,
    netns: Option<PathBuf>,
    timeout: Duration,
}

impl RoleProber {
    /// A prober of these nodes.
    pub fn new(
        spec: &ChaosSpec,
        nodes: &[NodeAddress],
        netns: Option<PathBuf>,
        password: Option<&Password>,
    ) -> Result<Self, String> {
        Ok(Self {
            query: role_query(spec, password)?,
            nodes: nodes.to_vec(),
            netns,
            timeout: spec
                .role_probe
                .as_ref()
                .and_then(|p| p.timeout)
                .map_or(DEFAULT_TIMEOUT, |t| t.get()),
        })
    }

    /// The index of the node that leads now.
    pub async fn leader(&self) -> Result<usize, String> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let answers = match &self.netns {
            None => self.ask_all().await,
            Some(path) => {
                // Sockets belong to the namespace of the thread that opens them: the question
                // is asked from a thread of its own inside the target's network.
                let (answered, answer) = tokio::sync::oneshot::channel();
                let prober = self.clone();
                let path = path.clone();
                std::thread::Builder::new()
                    .name("schism-roles".into())
                    .spawn(move || {
                        let answers = crate::dataplane::Netns::open(&path)
                            .and_then(|ns| ns.enter_current_thread())
                            .map_err(|e| format!("cannot enter the clients' namespace: {e}"))
                            .and_then(|()| {
                                tokio::runtime::Builder::new_current_thread()
                                    .enable_all()
                                    .build()
                                    .map_err(|e| e.to_string())
                            })
                            .map(|runtime| runtime.block_on(prober.ask_all()));
                        let _ = answered.send(answers);
                    })
                    .map_err(|e| format!("cannot start the role probe: {e}"))?;
                answer
                    .await
                    .map_err(|_| "the role probe thread was lost".to_owned())??
            }
        };
        pick_leader(&names, &answers)
    }

    async fn ask_all(&self) -> Vec<Result<Role, String>> {
        let asks = self
            .nodes
            .iter()
            .map(|node| role::ask(&self.query, &node.host, self.timeout));
        futures::future::join_all(asks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn role(leads: bool, term: Option<u64>) -> Result<Role, String> {
        Ok(Role { leads, term })
    }

    #[test]
    fn the_one_node_that_leads_is_the_leader() {
        let answers = [role(false, None), role(true, None), Err("refused".into())];
        assert_eq!(pick_leader(&names(3), &answers), Ok(1));
    }

    #[test]
    fn of_two_self_declared_leaders_the_higher_term_wins() {
        let answers = [
            role(true, Some(2)),
            role(false, Some(3)),
            role(true, Some(3)),
        ];
        assert_eq!(pick_leader(&names(3), &answers), Ok(2));
        let tied = [role(true, Some(3)), role(true, Some(3))];
        let error = pick_leader(&names(2), &tied).unwrap_err();
        assert!(error.contains("more than one"), "{error}");
        let termless = [role(true, None), role(true, None)];
        assert!(pick_leader(&names(2), &termless).is_err());
    }

    #[test]
    fn no_leader_quotes_every_answer() {
        let answers = [role(false, None), Err("connection refused".into())];
        let error = pick_leader(&names(2), &answers).unwrap_err();
        assert!(
            error.contains("n1: follower") && error.contains("n2: connection refused"),
            "{error}"
        );
    }

    #[test]
    fn the_query_follows_the_workload_unless_the_probe_says_otherwise() {
        let spec = |yaml: &str| -> ChaosSpec { serde_yaml::from_str(yaml).unwrap() };
        let etcd = spec(
            "target: {statefulSet: e}\nduration: 10s\nworkload: {client: etcd, port: 12379, keys: 1, concurrency: 1, rate: 1, timeout: 1s}",
        );
        assert!(matches!(
            role_query(&etcd, None),
            Ok(RoleQuery::Etcd { port: 12379 })
        ));
        let redis = spec(
            "target: {statefulSet: e}\nduration: 10s\nroleProbe: {client: redis}\nworkload: {client: etcd, port: 12379, keys: 1, concurrency: 1, rate: 1, timeout: 1s}",
        );
        assert!(matches!(
            role_query(&redis, None),
            Ok(RoleQuery::Redis { port: 6379 })
        ));
        let bare = spec("target: {statefulSet: e}\nduration: 10s");
        assert!(role_query(&bare, None).is_err());
    }
}
