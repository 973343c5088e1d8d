//! The whole of Schism in real containers of the image the Dockerfile builds, each run as its
//! manifest says — the `docker run` flags come from the pod specs: the controller's from the
//! Deployment `helm template` renders, the agent's from its DaemonSet, the runner's from the
//! Job the controller made; never hand-copied. They reach the API double the way a pod
//! reaches the API server: HTTPS on the Docker network's gateway, the in-cluster environment,
//! and their ServiceAccount's token and CA mounted where Kubernetes projects them, so each
//! uses its real in-cluster configuration under the chart's RBAC. The target is three real
//! etcd members in pod cgroups; the experiment partitions them while the runner drives a
//! workload and checks linearizability.

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/chart.rs"]
mod chart;
#[path = "support/containers.rs"]
mod containers;
#[path = "support/operator.rs"]
mod operator;

use std::time::{Duration, Instant};

use containers::{
    Container, EtcdPods, IMAGE, InCluster, Network, PodIdentity, chart_pod, docker, require_image,
};
use kube::Api;
use kube::api::PostParams;
use operator::{Cluster, ClusterOptions, JOBS, NAMESPACE, chaos, wait_for};

const NODE: &str = "node-a";
use schism::api::Chaos;
use serde_json::{Value, json};

/// The port a probe names, from the container's ports.
fn probe_port(container: &Value, probe: &str) -> (String, u16) {
    let get = &container[probe]["httpGet"];
    let port = match &get["port"] {
        Value::String(name) => container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{probe} names port {name}, which the container lacks")),
        number => number.as_u64().expect("a probe port"),
    };
    (
        get["path"].as_str().expect("a probe path").to_owned(),
        port as u16,
    )
}

async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let code = response.status().as_u16();
    Some((code, response.text().await.unwrap_or_default()))
}

async fn wait_for_http_ok(url: &str, container: &Container, limit: Duration) {
    let started = Instant::now();
    loop {
        if let Some((200, _)) = http_get(url).await {
            return;
        }
        assert!(
            started.elapsed() < limit && container.running(),
            "{url} never answered 200; the container logged:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schism_runs_in_its_containers_as_its_manifests_say_and_partitions_real_etcd() {
    require_image("the container test");
    let network = Network::create();
    let cluster = Cluster::start(ClusterOptions {
        serve_tls_on: Some(network.gateway.into()),
        run_runners: false,
        agent: false,
        ..Default::default()
    })
    .await;
    let in_cluster = InCluster {
        network: &network,
        api_port: cluster.server.address().port(),
        ca_pem: cluster.server.ca_pem(),
        dir: &cluster.dir,
    };

    // The target: a StatefulSet whose pods are real etcd members on node-a. No serviceName:
    // the runner would reach the members by their headless Service's DNS names, which no
    // cluster DNS serves here; it uses the pod IPs instead.
    let pods = EtcdPods::start(&network);
    let set = cluster.server.apply_raw(
        "statefulsets.apps",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "etcd", "namespace": NAMESPACE},
            "spec": {"selector": {"matchLabels": {"app": "etcd"}}, "serviceName": "", "template": {}}}),
    );
    for i in 0..3 {
        cluster.server.apply_raw(
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("etcd-{i}"), "namespace": NAMESPACE, "uid": pods.uids[i],
                    "labels": {"app": "etcd"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "etcd",
                        "uid": set["metadata"]["uid"], "controller": true}]},
                "spec": {"nodeName": NODE, "containers": [{"name": "etcd", "image": "etcd"}]},
                "status": {"phase": "Running", "podIP": pods.ips[i].to_string(),
                    "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
    }

    // The agent, as the chart's DaemonSet runs it on node-a.
    let (agent_account, agent_namespaces) = chart::service_account(&cluster.manifests, "agent");
    let agent_token = cluster
        .server
        .service_account_token(&agent_namespaces[0], &agent_account);
    let agent_pod = chart_pod(&cluster.manifests, "DaemonSet", "agent");
    let agent = in_cluster.run(
        agent_pod,
        &PodIdentity {
            name: "schism-agent-p2x9q",
            namespace: chart::RELEASE_NAMESPACE,
            node_name: NODE,
        },
        &agent_token,
    );
    let (path, agent_port) = probe_port(&agent_pod["containers"][0], "readinessProbe");
    wait_for_http_ok(
        &format!("http://{}:{agent_port}{path}", agent.ip(&network)),
        &agent,
        Duration::from_secs(30),
    )
    .await;

    // The controller, as the chart's Deployment runs it.
    let controller_pod = chart_pod(&cluster.manifests, "Deployment", "controller");
    let container = &controller_pod["containers"][0];
    let controller = in_cluster.run(
        controller_pod,
        &PodIdentity {
            name: "schism-controller-5c7d9-x2k4p",
            namespace: chart::RELEASE_NAMESPACE,
            node_name: "node-0",
        },
        &cluster.controller_token,
    );
    let address = controller.ip(&network);
    for probe in ["readinessProbe", "livenessProbe"] {
        let (path, probe_port) = probe_port(container, probe);
        wait_for_http_ok(
            &format!("http://{address}:{probe_port}{path}"),
            &controller,
            Duration::from_secs(30),
        )
        .await;
    }
    let metrics_port = container["ports"][0]["containerPort"].as_u64().unwrap();
    let (_, metrics) = http_get(&format!("http://{address}:{metrics_port}/metrics"))
        .await
        .expect("/metrics answers");
    assert!(metrics.contains("schism_"), "{metrics}");
    let user = docker(&["exec", &controller.name, "id", "-u"]);
    assert_eq!(
        user, "65532",
        "the controller runs as the image's unprivileged user"
    );
    let write = std::process::Command::new("docker")
        .args(["exec", &controller.name, "touch", "/usr/local/bin/x"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "the root filesystem is read-only");

    // The experiment: the controller makes a Job; the runner runs as the Job says.
    let chaoses: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    chaoses
        .create(
            &PostParams::default(),
            &chaos(
                "in-cluster",
                "target: {statefulSet: etcd}\nduration: 10s\nseed: 7\nfaults:\n- name: split\n  partition: {shape: isolate-one}\n  start: 2s\n  duration: 4s\nworkload: {client: etcd, model: cas-register, keys: 4, concurrency: 3, rate: 50, timeout: 1s}\navailability: {http: {port: 2379, path: /health}, interval: 200ms}\nassertions: {consistency: linearizable}\n",
            ),
        )
        .await
        .unwrap();
    wait_for("the runner's pod", Duration::from_secs(30), || {
        cluster
            .server
            .objects("pods")
            .iter()
            .any(|p| p["metadata"]["labels"]["batch.kubernetes.io/job-name"].is_string())
    })
    .await;
    let job = cluster.server.objects(JOBS).remove(0);
    let runner_pod = cluster
        .server
        .objects("pods")
        .into_iter()
        .find(|p| {
            p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == job["metadata"]["name"]
        })
        .unwrap();
    let pod_name = runner_pod["metadata"]["name"].as_str().unwrap().to_owned();
    let mut pod = job["spec"]["template"]["spec"].clone();
    // The node pulled the chart's tag; here that is the image just built.
    pod["containers"][0]["image"] = IMAGE.into();
    let runner = in_cluster.run(
        &pod,
        &PodIdentity {
            name: &pod_name,
            namespace: NAMESPACE,
            node_name: "node-runner",
        },
        &cluster.runner_token,
    );
    let mut isolated = false;
    wait_for("the verdict", Duration::from_secs(90), || {
        let leases = cluster.server.objects(operator::LEASES);
        isolated |= leases.iter().any(|l| {
            l["status"]["phase"] == "Applied"
                && l["status"]["agent"] == NODE
                && l["status"]["mechanism"] == "nftables"
        });
        cluster.status("in-cluster")["phase"] == "Completed" || runner.exit_code().is_some()
    })
    .await;
    let status = cluster.status("in-cluster");
    assert_eq!(
        status["verdict"],
        "Pass",
        "{status:#}\nrunner logs:\n{}\nagent logs:\n{}",
        runner.logs(),
        agent.logs()
    );
    assert!(
        isolated,
        "the agent container applied the partition with nftables: {status:#}"
    );
    assert_eq!(
        status["consistency"]["result"], "Linearizable",
        "the history was checked: {:#}",
        status["consistency"]
    );
    assert!(
        status["consistency"]["operations"].as_u64().unwrap() > 100,
        "the workload reached etcd: {:#}",
        status["consistency"]
    );
    wait_for("the runner to exit", Duration::from_secs(20), || {
        runner.exit_code().is_some()
    })
    .await;
    assert_eq!(runner.exit_code(), Some(0), "{}", runner.logs());
    let memory = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &runner.name]);
    assert!(
        memory.parse::<u64>().unwrap() > 0,
        "the runner's memory limit applies"
    );
    assert!((0..3).all(|m| pods.healthy(m)), "etcd is whole again");

    // A rollout's SIGTERM: the controller stops cleanly within its grace period.
    let grace = controller_pod["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let stopping = Instant::now();
    docker(&["stop", "-t", &grace.to_string(), &controller.name]);
    let stopped_in = stopping.elapsed();
    assert_eq!(controller.exit_code(), Some(0), "{}", controller.logs());
    assert!(stopped_in < Duration::from_secs(grace), "{stopped_in:?}");
    println!(
        "in containers: verdict {}, availability {}, controller stopped in {stopped_in:?}",
        status["verdict"], status["availability"]
    );
}
