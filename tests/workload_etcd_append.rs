//! The list-append transactional workload against a real 3-member etcd in network
//! namespaces, through a partition and a member's crash: the history it records must be
//! strict-serializable (etcd's transactions are), and it must be a real one — committed
//! transactions that read what others appended, conflicts that aborted, and answers lost
//! to the faults.

#[path = "support/local_etcd.rs"]
mod local_etcd;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use local_etcd::etcd_config;
use schism::check::Outcome;
use schism::check::txn::{Consistency, ReadValue, TxnModel, TxnOptions, TxnVerdict, check};
use schism::dataplane::{self, FaultId};
use schism::engine::generator::WorkloadCounters;
use schism::engine::transactions::{TxnPlan, run_transactions};
use schism::faultplan::{PartitionShape, plan_partition, rng_from_seed};
use schism::local::LocalCluster;
use schism::workload::etcd::EtcdTxnClient;
use schism::workload::{TxnClient, TxnStep};
use support::{require, runtime};

#[test]
fn etcd_list_append_transactions_stay_strict_serializable_through_a_partition_and_a_crash() {
    require("etcd append", &["ip", "nft", "tc", "iptables", "etcd"]);
    let rt = runtime();
    let cluster = rt.block_on(LocalCluster::start(etcd_config())).unwrap();
    let hosts: Vec<String> = cluster.nodes().iter().map(|n| n.ip.to_string()).collect();
    let netns = cluster.client_netns().clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let counters = Arc::new(WorkloadCounters::default());
    let workload_counters = Arc::clone(&counters);
    // Sockets belong to the namespace of the thread that opens them.
    let workload = std::thread::spawn(move || {
        netns
            .enter_current_thread()
            .expect("enter the clients' namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let clients: Vec<Arc<dyn TxnClient>> = hosts
                .iter()
                .map(|h| Arc::new(EtcdTxnClient::new(http.clone(), h, 2379)) as Arc<dyn TxnClient>)
                .collect();
            // Wait for a leader: a transaction through the first member that commits.
            let deadline = Instant::now() + Duration::from_secs(20);
            let probe = [TxnStep::Append {
                key: "ready".into(),
                value: 1,
            }];
            while clients[0].transact(&probe).await.is_err() {
                assert!(Instant::now() < deadline, "etcd never elected a leader");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let plan = TxnPlan {
                model: TxnModel::ListAppend,
                key_prefix: String::new(),
                concurrency: 6,
                rate: 150,
                active_keys: 4,
                writes_per_key: 16,
                max_steps: 4,
                readers: 0,
                timeout: Duration::from_secs(1),
            };
            run_transactions(
                clients,
                plan,
                Instant::now(),
                42,
                workload_counters,
                stopped,
            )
            .await
        })
    });

    // Let the workload get going, then cut one member off, heal, crash another, recover.
    let started = Instant::now();
    while counters.ok.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the workload never got going"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let plan = plan_partition(&PartitionShape::IsolateOne, &names, &mut rng_from_seed(3)).unwrap();
    let faults = cluster
        .apply_partition(
            &plan,
            &FaultId::new("append_isolate").unwrap(),
            Instant::now() + Duration::from_secs(30),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    for result in dataplane::heal_all(faults) {
        result.unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    rt.block_on(cluster.kill_and_restart(1)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stop.send(true).unwrap();
    let history = workload
        .join()
        .expect("the workload thread")
        .expect("no crashed client");

    let count = |o: Outcome| history.txns.iter().filter(|t| t.outcome == o).count();
    let (ok, failed, unknown) = (
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
    );
    let nonempty_reads = history
        .txns
        .iter()
        .filter(|t| t.outcome == Outcome::Ok)
        .flat_map(|t| &t.ops)
        .filter(|op| matches!(op, schism::check::txn::MicroOp::Read { value: ReadValue::List(l), .. } if !l.is_empty()))
        .count();
    eprintln!(
        "{} transactions: {ok} ok, {failed} failed, {unknown} unknown; {nonempty_reads} reads saw appends; {} keys",
        history.txns.len(),
        history.keys.len()
    );
    assert!(
        ok > 200,
        "too few committed transactions to mean anything: {ok}"
    );
    assert!(nonempty_reads > 100, "reads must see what others appended");
    assert!(
        failed + unknown > 0,
        "conflicts and faults must cost some transactions"
    );
    assert!(history.keys.len() > 4, "keys must rotate as they fill up");

    let outcome = check(
        &history,
        &TxnOptions::new(TxnModel::ListAppend, Consistency::StrictSerializable),
    )
    .expect("a well-formed history");
    let found: Vec<String> = outcome.anomalies.iter().map(|a| a.summary()).collect();
    assert_eq!(outcome.verdict, TxnVerdict::Satisfied, "{found:?}");
    assert!(outcome.anomalies.is_empty(), "{found:?}");
}
