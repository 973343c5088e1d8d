//! A 3-member etcd cluster for `schism::local`: the command line and the cluster settings
//! every test of real etcd in network namespaces starts from.

use std::time::Duration;

use schism::local::{LocalClusterConfig, ReadyCheck};

/// etcd's command line, with the local backend's placeholders.
pub const ETCD: &str = "etcd --name {name} --data-dir {dataDir} \
    --listen-peer-urls http://{ip}:2380 --initial-advertise-peer-urls http://{ip}:2380 \
    --listen-client-urls http://{ip}:2379 --advertise-client-urls http://{ip}:2379 \
    --initial-cluster {peers} --initial-cluster-state {clusterState} \
    --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true";

/// Three members, ready when their client port answers.
pub fn etcd_config() -> LocalClusterConfig {
    let mut config = LocalClusterConfig::new(3, ETCD, ReadyCheck::Tcp { port: 2379 });
    config.peer_format = "{name}=http://{ip}:2380".into();
    config.restart_delay = Duration::from_millis(300);
    config
}
