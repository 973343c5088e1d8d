//! `target.local` for databases that refuse root: nodes run as a given user who owns their
//! data directory, after a per-node init step that runs once — PostgreSQL from Debian as the
//! example, reached from the clients' namespace.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use schism::local::{LocalCluster, LocalClusterConfig, LocalError, ReadyCheck};
use support::{require, runtime};

fn uid_of(user: &str) -> u32 {
    let out = support::run("id", &["-u", user]);
    out.trim().parse().expect("a uid")
}

#[test]
fn nodes_run_as_the_given_user_after_an_init_step_that_runs_once() {
    require(
        "local user",
        &["ip", "nft", "tc", "iptables", "python3", "id"],
    );
    let rt = runtime();
    let mut config = LocalClusterConfig::new(
        2,
        "test -s {dataDir}/initialized && id -un > {dataDir}/whoami && \
         exec python3 -m http.server 8000 --bind {ip}",
        ReadyCheck::Tcp { port: 8000 },
    );
    config.user = Some("nobody".into());
    config.init = Some("id -un >> {dataDir}/initialized".into());
    config.restart_delay = Duration::from_millis(100);
    let cluster = rt.block_on(LocalCluster::start(config)).unwrap();
    let nobody = uid_of("nobody");
    for node in cluster.nodes() {
        let data = &node.data_dir;
        assert_eq!(
            std::fs::metadata(data).unwrap().uid(),
            nobody,
            "{data:?} is the user's"
        );
        let whoami = std::fs::read_to_string(data.join("whoami")).unwrap();
        assert_eq!(
            whoami.trim(),
            "nobody",
            "{}'s process runs as the user",
            node.name
        );
        let init = std::fs::read_to_string(data.join("initialized")).unwrap();
        assert_eq!(init, "nobody\n", "the init step ran once, as the user");
    }
    rt.block_on(cluster.kill_and_restart(0)).unwrap();
    let init = std::fs::read_to_string(cluster.nodes()[0].data_dir.join("initialized")).unwrap();
    assert_eq!(
        init, "nobody\n",
        "a restart does not run the init step again"
    );
}

#[test]
fn a_failing_init_step_stops_the_start_naming_the_node_and_showing_its_log() {
    require("local init", &["ip", "nft", "tc", "iptables"]);
    let rt = runtime();
    let mut config = LocalClusterConfig::new(1, "exec sleep 60", ReadyCheck::Tcp { port: 8000 });
    config.init = Some("echo no space left for the catalog >&2; exit 3".into());
    let err = rt
        .block_on(LocalCluster::start(config))
        .err()
        .expect("the start must fail");
    match &err {
        LocalError::NodeExited {
            node, status, tail, ..
        } => {
            assert_eq!(node, "n1 (its init step)");
            assert!(status.contains('3'), "{status}");
            assert!(tail.contains("no space left for the catalog"), "{tail}");
        }
        other => panic!("expected the init step's failure, got {other}"),
    }
}

#[test]
fn an_unknown_user_is_a_configuration_error_before_anything_is_made() {
    require("local user", &["ip"]);
    let rt = runtime();
    let mut config = LocalClusterConfig::new(1, "exec sleep 60", ReadyCheck::Tcp { port: 1 });
    config.user = Some("no-such-user-here".into());
    let err = rt
        .block_on(LocalCluster::start(config))
        .err()
        .expect("the start must fail");
    assert!(
        matches!(&err, LocalError::Config(m) if m.contains("no-such-user-here")),
        "{err}"
    );
}

#[test]
fn postgres_runs_as_a_local_cluster_node_as_its_own_user() {
    require("local postgres", &["ip", "nft", "tc", "iptables"]);
    let bin = support::postgres_bin();
    let rt = runtime();
    let mut config = LocalClusterConfig::new(
        1,
        "postgres -D {dataDir}/pg -c listen_addresses={ip} -c unix_socket_directories={dataDir}",
        ReadyCheck::Tcp { port: 5432 },
    );
    config.user = Some("postgres".into());
    config.init = Some(
        "initdb -D {dataDir}/pg -A trust -U postgres --no-sync && \
         echo 'host all all 0.0.0.0/0 trust' >> {dataDir}/pg/pg_hba.conf"
            .into(),
    );
    config.env.insert(
        "PATH".into(),
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
    );
    let cluster = rt.block_on(LocalCluster::start(config)).unwrap();
    let host = cluster.nodes()[0].ip.to_string();
    let answer = cluster
        .client_netns()
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // The port opens before the server takes sessions ("the database system
                // is starting up"), as any client of a starting PostgreSQL sees.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                let (client, connection) = loop {
                    match tokio_postgres::Config::new()
                        .host(&host)
                        .port(5432)
                        .user("postgres")
                        .dbname("postgres")
                        .connect(tokio_postgres::NoTls)
                        .await
                    {
                        Ok(session) => break session,
                        Err(e) if std::time::Instant::now() > deadline => {
                            panic!("connect from the clients' namespace: {e:?}")
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                tokio::spawn(connection);
                let row = client
                    .query_one("SELECT current_user::text, pg_backend_pid()", &[])
                    .await
                    .unwrap();
                row.get::<_, String>(0)
            })
        })
        .unwrap();
    assert_eq!(answer, "postgres");
    let owner = std::fs::metadata(cluster.nodes()[0].data_dir.join("pg"))
        .unwrap()
        .uid();
    assert_eq!(owner, uid_of("postgres"), "initdb ran as postgres");
}
