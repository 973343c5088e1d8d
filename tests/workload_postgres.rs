//! The list-append workload against a real PostgreSQL (Debian's, run as the `postgres`
//! user in a network namespace this test creates, the clients in another):
//! * at `REPEATABLE READ`, which PostgreSQL implements as snapshot isolation, every one of
//!   ten seeded runs shows write skew — G2-item, which snapshot isolation allows and
//!   serializability forbids — and nothing snapshot isolation forbids;
//! * at `SERIALIZABLE` the histories are serializable;
//! * aborted transactions (serialization failures) are recorded as failed, not lost.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use schism::check::Outcome;
use schism::check::txn::{
    AnomalyKind, Consistency, CycleClass, TxnHistory, TxnModel, TxnOptions, TxnVerdict, Variant,
    check,
};
use schism::engine::generator::WorkloadCounters;
use schism::engine::transactions::{TxnPlan, run_transactions};
use schism::workload::TxnClient;
use schism::workload::postgres::{Isolation, PostgresTxnClient};
use support::postgres::{Auth, PostgresServer};
use support::{TestNet, require};

/// A PostgreSQL server in node 0 of `net`, trusting every client.
fn start_server(net: &TestNet) -> PostgresServer {
    PostgresServer::start(
        &net.prefix,
        Some(&net.names[0]),
        net.ips[0],
        5432,
        Auth::Trust,
    )
}

fn config(host: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(5432)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    config
}

/// Runs the list-append workload for `length` at `isolation` on an emptied table.
async fn run_once(host: &str, isolation: Isolation, seed: u64, length: Duration) -> TxnHistory {
    run_model(host, TxnModel::ListAppend, isolation, seed, length).await
}

/// Runs the workload of `model` for `length` at `isolation` on an emptied table; returns the
/// history.
async fn run_model(
    host: &str,
    model: TxnModel,
    isolation: Isolation,
    seed: u64,
    length: Duration,
) -> TxnHistory {
    let (admin, connection) = config(host).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let clients: Vec<Arc<dyn TxnClient>> = (0..10)
        .map(|_| Arc::new(PostgresTxnClient::new(config(host), isolation)) as Arc<dyn TxnClient>)
        .collect();
    let first = PostgresTxnClient::new(config(host), isolation);
    first.prepare().await.expect("create the table");
    admin.batch_execute("TRUNCATE schism_append").await.unwrap();
    let plan = TxnPlan {
        model,
        key_prefix: String::new(),
        concurrency: 10,
        rate: 600,
        active_keys: 2,
        writes_per_key: 16,
        max_steps: 4,
        readers: 0,
        timeout: Duration::from_secs(2),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(run_transactions(
        clients,
        plan,
        Instant::now(),
        seed,
        Arc::new(WorkloadCounters::default()),
        stopped,
    ));
    tokio::time::sleep(length).await;
    stop.send(true).unwrap();
    run.await.unwrap().expect("no crashed client")
}

fn tally(h: &TxnHistory) -> (usize, usize, usize) {
    let count = |o: Outcome| h.txns.iter().filter(|t| t.outcome == o).count();
    (
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
    )
}

/// Runs `work` with a runtime inside node 1 of `net`, once the server accepts sessions.
fn in_client_namespace<T: Send + 'static>(
    net: &TestNet,
    server: &PostgresServer,
    work: impl FnOnce(String) -> T + Send + 'static,
) -> T {
    let host = net.ips[0].to_string();
    let ready_host = host.clone();
    let ready = net
        .netns(1)
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            rt.block_on(async {
                loop {
                    match config(&ready_host).connect(tokio_postgres::NoTls).await {
                        Ok(_) => return Ok(()),
                        Err(e) if Instant::now() > deadline => return Err(format!("{e:?}")),
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .unwrap();
    if let Err(e) = ready {
        panic!("postgres never accepted a session ({e}):\n{}", server.log());
    }
    net.netns(1).run_in(move || work(host)).unwrap()
}

#[test]
fn repeatable_read_shows_write_skew_in_every_seeded_run_and_nothing_snapshot_isolation_forbids() {
    require("postgres", &["ip", "runuser", "setpriv", "chown"]);
    let net = TestNet::new(2);
    let server = start_server(&net);
    let histories = in_client_namespace(&net, &server, |host| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut out = Vec::new();
            for seed in 0..10 {
                out.push(
                    run_once(
                        &host,
                        Isolation::RepeatableRead,
                        seed,
                        Duration::from_secs(2),
                    )
                    .await,
                );
            }
            out
        })
    });
    let skew = AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain);
    for (seed, history) in histories.iter().enumerate() {
        let (ok, failed, unknown) = tally(history);
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        assert!(
            ok > 50,
            "seed {seed}: only {ok} committed; server log:\n{}",
            tail.join("\n")
        );
        assert!(
            failed > 0,
            "seed {seed}: first-updater-wins must abort some concurrent appends"
        );
        let serializable = check(
            history,
            &TxnOptions::new(TxnModel::ListAppend, Consistency::Serializable),
        )
        .unwrap();
        let found: Vec<String> = serializable.anomalies.iter().map(|a| a.summary()).collect();
        eprintln!("seed {seed}: {ok} ok, {failed} failed, {unknown} unknown: {found:?}");
        assert_eq!(serializable.verdict, TxnVerdict::Violated, "seed {seed}");
        assert!(
            serializable.anomalies.iter().any(|a| a.kind == skew),
            "seed {seed}: no write skew in {found:?}"
        );
        let snapshot = check(
            history,
            &TxnOptions::new(TxnModel::ListAppend, Consistency::SnapshotIsolation),
        )
        .unwrap();
        assert_eq!(
            snapshot.verdict,
            TxnVerdict::Satisfied,
            "seed {seed}: PostgreSQL's repeatable read is snapshot isolation: {found:?}"
        );
    }
}

#[test]
fn serializable_histories_are_serializable() {
    require("postgres", &["ip", "runuser", "setpriv", "chown"]);
    let net = TestNet::new(2);
    let server = start_server(&net);
    let histories = in_client_namespace(&net, &server, |host| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut out = Vec::new();
            for seed in 0..3 {
                out.push(
                    run_once(&host, Isolation::Serializable, seed, Duration::from_secs(2)).await,
                );
            }
            out
        })
    });
    for (seed, history) in histories.iter().enumerate() {
        let (ok, failed, unknown) = tally(history);
        assert!(ok > 50, "seed {seed}: only {ok} committed");
        assert!(failed > 0, "seed {seed}: SSI must abort some transactions");
        let outcome = check(
            history,
            &TxnOptions::new(TxnModel::ListAppend, Consistency::StrictSerializable),
        )
        .unwrap();
        let found: Vec<String> = outcome.anomalies.iter().map(|a| a.summary()).collect();
        eprintln!("seed {seed}: {ok} ok, {failed} failed, {unknown} unknown: {found:?}");
        assert_eq!(
            outcome.verdict,
            TxnVerdict::Satisfied,
            "seed {seed}: {found:?}"
        );
    }
}

#[test]
fn register_transactions_are_sound_at_both_levels_and_serializable_at_serializable() {
    require("postgres", &["ip", "runuser", "setpriv", "chown"]);
    let net = TestNet::new(2);
    let server = start_server(&net);
    let histories = in_client_namespace(&net, &server, |host| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut out = Vec::new();
            for (seed, isolation) in [
                (0, Isolation::RepeatableRead),
                (1, Isolation::RepeatableRead),
                (2, Isolation::Serializable),
                (3, Isolation::Serializable),
            ] {
                let history = run_model(
                    &host,
                    TxnModel::RwRegister,
                    isolation,
                    seed,
                    Duration::from_secs(2),
                )
                .await;
                out.push((isolation, history));
            }
            out
        })
    });
    let mut rr_anomalies = 0;
    for (run, (isolation, history)) in histories.iter().enumerate() {
        let (ok, failed, _) = tally(history);
        assert!(ok > 50, "run {run}: only {ok} committed");
        assert!(failed > 0, "run {run}: concurrent writes must abort some");
        let writes = history
            .txns
            .iter()
            .flat_map(|t| &t.ops)
            .filter(|op| matches!(op, schism::check::txn::MicroOp::Write { .. }))
            .count();
        assert!(writes > 50, "run {run}: register writes recorded");
        let strongest = if *isolation == Isolation::Serializable {
            Consistency::StrictSerializable
        } else {
            Consistency::SnapshotIsolation
        };
        // What PostgreSQL promises at each level holds: the register inference is sound.
        let outcome = check(history, &TxnOptions::new(TxnModel::RwRegister, strongest)).unwrap();
        let found: Vec<String> = outcome.anomalies.iter().map(|a| a.summary()).collect();
        assert_eq!(
            outcome.verdict,
            TxnVerdict::Satisfied,
            "run {run} at {isolation:?}: {found:?}"
        );
        if *isolation == Isolation::RepeatableRead {
            rr_anomalies += outcome.anomalies.len();
        }
    }
    eprintln!("anomalies snapshot isolation allows, in the repeatable-read runs: {rr_anomalies}");
}
