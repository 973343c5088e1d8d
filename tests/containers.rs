//! Schism's components in real containers of the image the Dockerfile builds, run as their
//! manifests say: the `docker run` flags come from the pod specs — the controller's from the
//! Deployment `helm template` renders, the runner's from the Job the controller made — never
//! hand-copied. They reach the API double the way a pod reaches the API server: HTTPS on the
//! Docker network's gateway, the in-cluster environment, and their ServiceAccount's token and
//! CA mounted where Kubernetes projects them, so each uses its real in-cluster configuration
//! under the chart's RBAC.

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
    Container, IMAGE, Network, PodIdentity, ServiceAccountVolume, container_args, docker,
    in_cluster_env, require_image, run_flags,
};
use kube::Api;
use kube::api::PostParams;
use operator::{Cluster, ClusterOptions, JOBS, NAMESPACE, chaos, wait_for};
use schism::api::Chaos;
use serde_json::Value;

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
async fn the_controller_and_a_runner_run_in_their_containers_as_their_manifests_say() {
    require_image("the container test");
    let network = Network::create();
    let cluster = Cluster::start(ClusterOptions {
        serve_tls_on: Some(network.gateway.into()),
        run_runners: false,
        ..Default::default()
    })
    .await;
    cluster.add_stateful_set("etcd", 3, 10);
    let port = cluster.server.address().port();

    // The controller, as the chart's Deployment runs it.
    let deployment = cluster
        .manifests
        .iter()
        .find(|m| {
            m["kind"] == "Deployment"
                && m["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
        })
        .expect("the chart renders the controller Deployment")
        .clone();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let identity = PodIdentity {
        name: "schism-controller-5c7d9-x2k4p",
        namespace: chart::RELEASE_NAMESPACE,
        node_name: "node-0",
    };
    let mut flags = run_flags(pod, container, &identity);
    flags.push(format!("--network={}", network.name));
    flags.extend(in_cluster_env(network.gateway, port));
    let account = ServiceAccountVolume::new(
        &cluster.dir,
        &cluster.controller_token,
        cluster.server.ca_pem(),
        chart::RELEASE_NAMESPACE,
    );
    flags.push(account.flag());
    let controller = Container::run(&flags, IMAGE, &container_args(container, &identity));
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

    // An experiment: the controller makes a Job; the runner runs as the Job says.
    let chaoses: Api<Chaos> = Api::namespaced(cluster.server.client(), NAMESPACE);
    chaoses
        .create(
            &PostParams::default(),
            &chaos(
                "in-cluster",
                "target: {statefulSet: etcd}\nduration: 3s\nfaults:\n- pause: {}\n  start: 500ms\n  duration: 1s\n",
            ),
        )
        .await
        .unwrap();
    wait_for("the runner's pod", Duration::from_secs(30), || {
        !cluster.server.objects(JOBS).is_empty()
            && cluster
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
    let pod = &job["spec"]["template"]["spec"];
    let mut container = pod["containers"][0].clone();
    // The node pulled the chart's tag; here that is the image just built.
    container["image"] = IMAGE.into();
    let identity = PodIdentity {
        name: &pod_name,
        namespace: NAMESPACE,
        node_name: "node-runner",
    };
    let mut flags = run_flags(pod, &container, &identity);
    flags.push(format!("--network={}", network.name));
    flags.extend(in_cluster_env(network.gateway, port));
    let account = ServiceAccountVolume::new(
        &cluster.dir,
        &cluster.runner_token,
        cluster.server.ca_pem(),
        NAMESPACE,
    );
    flags.push(account.flag());
    let runner = Container::run(&flags, IMAGE, &container_args(&container, &identity));
    wait_for("the verdict", Duration::from_secs(60), || {
        cluster.status("in-cluster")["phase"] == "Completed" || runner.exit_code().is_some()
    })
    .await;
    let status = cluster.status("in-cluster");
    assert_eq!(
        status["verdict"],
        "Pass",
        "{status:#}\nrunner logs:\n{}",
        runner.logs()
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

    // A rollout's SIGTERM: the controller stops cleanly within its grace period.
    let grace = pod_grace(&deployment);
    let stopping = Instant::now();
    docker(&["stop", "-t", &grace.to_string(), &controller.name]);
    let stopped_in = stopping.elapsed();
    assert_eq!(controller.exit_code(), Some(0), "{}", controller.logs());
    assert!(stopped_in < Duration::from_secs(grace), "{stopped_in:?}");
    println!(
        "controller Ready and serving probes in its container; runner verdict {}; controller stopped in {stopped_in:?}",
        status["verdict"]
    );
}

fn pod_grace(deployment: &Value) -> u64 {
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30)
}
