//! A cluster for the operator's tests, on the API server double: a namespace `demo` with the
//! runner's ServiceAccount, StatefulSets whose pods answer on loopback, a simulated node agent,
//! and a simulated Job controller and kubelet that run each runner Job as the real
//! `schism runner` binary (killable, stoppable) against the double.
//!
//! The double authenticates every request and authorizes it with the RBAC the Helm chart
//! renders (`helm template`, default values unless a test picks a shipped `ci/` value set):
//! the controller and each runner use their own ServiceAccount's token, so a permission the
//! chart lacks fails the test as it would fail in a cluster. The simulated kubelet, Job
//! controller and agent play other components and write as the cluster's administrator.
//!
//! Each test file that uses it declares `#[path = "support/apiserver/mod.rs"] mod apiserver;`
//! and `#[path = "support/chart.rs"] mod chart;` next to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::apiserver::ApiServer;
use crate::chart;
use schism::operator::controller::{self, Context, job::RunnerTemplate};
use schism::operator::metrics::Metrics;
use schism::operator::targets::BlastRadius;

pub const CHAOSES: &str = "chaoses.schism.dev";
pub const LEASES: &str = "faultleases.schism.dev";
pub const JOBS: &str = "jobs.batch";
pub const EVENTS: &str = "events.events.k8s.io";
pub const NAMESPACE: &str = "demo";

/// How the double is set up.
pub struct ClusterOptions {
    /// Recreate removed StatefulSet pods after this long (None: they stay gone).
    pub replace_pods_after: Option<Duration>,
    /// Delay watch events by up to this long (a lagging cache).
    pub watch_lag: Option<Duration>,
    /// Run the simulated node agent (without it, leases are never applied nor released).
    pub agent: bool,
    /// Start the runner binary for each Job; without it, runner pods only show Running.
    pub run_runners: bool,
    /// Runner pods cannot pull their image: they stay Pending in ImagePullBackOff.
    pub image_pull_fails: bool,
    /// The chart's values file whose RBAC applies (`ci/…-values.yaml`); None: the default
    /// values, with `demo` prepared for runners (`runner.namespaces`).
    pub chart_values: Option<&'static str>,
    /// Serve HTTPS on this address (a Docker network's gateway, for components in
    /// containers) instead of plain HTTP on loopback.
    pub serve_tls_on: Option<std::net::IpAddr>,
    /// More `--set` arguments for the chart (`runner.secrets={pg}`, say).
    pub chart_set: Vec<&'static str>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            replace_pods_after: None,
            watch_lag: None,
            agent: true,
            run_runners: true,
            image_pull_fails: false,
            chart_values: None,
            serve_tls_on: None,
            chart_set: Vec::new(),
        }
    }
}

/// One runner process the simulated kubelet started.
#[derive(Debug, Clone)]
pub struct RunnerRecord {
    pub job: String,
    pub pod: String,
    pub pid: u32,
    pub started: Instant,
    /// Exit code, or the signal that ended it (negative), once it ended.
    pub exit: Option<i32>,
    pub ended: Option<Instant>,
    pub stderr: PathBuf,
}

/// What the simulated agent did.
#[derive(Debug, Clone)]
pub struct AppliedLease {
    pub at: Instant,
    pub name: String,
    pub pod: String,
    pub pod_uid: String,
    pub drop_peers: Vec<String>,
    pub fault: Value,
}

pub struct Cluster {
    pub server: Arc<ApiServer>,
    /// The manifests the chart rendered; its RBAC objects are installed in the double.
    pub manifests: Vec<Value>,
    /// Authenticates as the controller's ServiceAccount.
    pub controller_kubeconfig: PathBuf,
    pub controller_token: String,
    /// Authenticates as the runner's ServiceAccount in `demo`.
    pub runner_kubeconfig: PathBuf,
    pub runner_token: String,
    pub dir: PathBuf,
    pub runners: Arc<Mutex<Vec<RunnerRecord>>>,
    pub applied: Arc<Mutex<Vec<AppliedLease>>>,
    children: Arc<Mutex<HashMap<String, u32>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for pid in self.children.lock().unwrap().values() {
            // SAFETY: kill has no memory-safety preconditions; the pid is a child we started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    pub async fn start(options: ClusterOptions) -> Cluster {
        let mut builder = ApiServer::builder()
            .authenticate()
            .resources(chart::crds())
            // Runner pods get time to heal on SIGTERM; the kubelet below ends them sooner.
            .longest_pod_termination(Duration::from_secs(20));
        if let Some(delay) = options.replace_pods_after {
            builder = builder.replace_pods_after(delay);
        }
        if let Some(lag) = options.watch_lag {
            builder = builder.watch_lag(lag);
        }
        if let Some(address) = options.serve_tls_on {
            builder = builder.listen_on(address).tls();
        }
        let server = Arc::new(builder.start().await);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "schism-operator-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let prepared = format!("runner.namespaces={{{NAMESPACE}}}");
        let mut sets: Vec<&str> = options.chart_set.clone();
        if options.chart_values.is_none() {
            sets.push(&prepared);
        }
        let manifests = chart::render(options.chart_values, &sets);
        chart::install(&server, &chart::rbac(&manifests));
        let (controller_account, controller_namespaces) =
            chart::service_account(&manifests, "controller");
        let (runner_account, runner_namespaces) = chart::service_account(&manifests, "runner");
        assert!(
            runner_namespaces.iter().any(|n| n == NAMESPACE),
            "the chart prepares no runner ServiceAccount in {NAMESPACE}"
        );
        let controller_token =
            server.service_account_token(&controller_namespaces[0], &controller_account);
        let runner_token = server.service_account_token(NAMESPACE, &runner_account);
        let authority = match options.serve_tls_on {
            Some(_) => {
                let ca = dir.join("ca.crt");
                std::fs::write(&ca, server.ca_pem()).unwrap();
                format!(", certificate-authority: \"{}\"", ca.display())
            }
            None => String::new(),
        };
        let kubeconfig = |file: &str, token: &str| {
            let path = dir.join(file);
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{}\"{authority}}}\nusers:\n- name: test\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: test, namespace: {NAMESPACE}}}\ncurrent-context: double\n",
                    server.url()
                ),
            )
            .unwrap();
            path
        };
        let controller_kubeconfig = kubeconfig("controller.kubeconfig", &controller_token);
        let runner_kubeconfig = kubeconfig("runner.kubeconfig", &runner_token);
        let mut cluster = Cluster {
            server,
            manifests,
            controller_kubeconfig,
            controller_token,
            runner_kubeconfig,
            runner_token,
            dir,
            runners: Arc::default(),
            applied: Arc::default(),
            children: Arc::default(),
            tasks: Vec::new(),
        };
        let kubelet = tokio::spawn(run_jobs(
            options.run_runners && !options.image_pull_fails,
            options.image_pull_fails,
            Arc::clone(&cluster.server),
            cluster.runner_kubeconfig.clone(),
            cluster.dir.clone(),
            Arc::clone(&cluster.runners),
            Arc::clone(&cluster.children),
        ));
        cluster.tasks.push(kubelet);
        if options.agent {
            cluster.tasks.push(tokio::spawn(simulated_agent(
                Arc::clone(&cluster.server),
                Arc::clone(&cluster.applied),
            )));
        }
        cluster
    }

    /// A StatefulSet `name` with `count` Ready pods `name-0…`, on two nodes, with loopback IPs
    /// `127.0.0.{base+i}`.
    pub fn add_stateful_set(&self, name: &str, count: usize, base: u8) {
        let set = self.server.apply_raw(
            "statefulsets.apps",
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"selector": {"matchLabels": {"app": name}}, "serviceName": "", "template": {}}
            }),
        );
        for i in 0..count {
            self.server.apply_raw(
                "pods",
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-{i}"), "namespace": NAMESPACE,
                        "labels": {"app": name},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                            "name": name, "uid": set["metadata"]["uid"], "controller": true}]},
                    "spec": {"nodeName": format!("node-{}", i % 2), "containers": [{"name": "db", "image": "db"}]},
                    "status": {"phase": "Running", "podIP": format!("127.0.0.{}", base as usize + i),
                        "conditions": [{"type": "Ready", "status": "True"}]}
                }),
            );
        }
    }

    /// A Deployment `name` whose ReplicaSet has `count` Ready pods, with loopback IPs
    /// `127.0.0.{base+i}`.
    pub fn add_deployment(&self, name: &str, count: usize, base: u8) {
        let deployment = self.server.apply_raw(
            "deployments.apps",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"selector": {"matchLabels": {"app": name}}, "template": {}}
            }),
        );
        let replica_set = self.server.apply_raw(
            "replicasets.apps",
            json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-5d8f7c"), "namespace": NAMESPACE,
                    "labels": {"app": name},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                        "name": name, "uid": deployment["metadata"]["uid"], "controller": true}]},
                "spec": {"selector": {"matchLabels": {"app": name}}, "template": {}}
            }),
        );
        for i in 0..count {
            self.server.apply_raw(
                "pods",
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-5d8f7c-{i}"), "namespace": NAMESPACE,
                        "labels": {"app": name},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "name": format!("{name}-5d8f7c"), "uid": replica_set["metadata"]["uid"],
                            "controller": true}]},
                    "spec": {"nodeName": format!("node-{}", i % 2), "containers": [{"name": "app", "image": "app"}]},
                    "status": {"phase": "Running", "podIP": format!("127.0.0.{}", base as usize + i),
                        "conditions": [{"type": "Ready", "status": "True"}]}
                }),
            );
        }
    }

    /// A controller running in this process, as `schism controller` runs it; ends when the
    /// returned sender sends `true` (or the handle is aborted).
    pub fn controller(
        &self,
        radius: BlastRadius,
    ) -> (
        Arc<Context>,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut ctx = Context::new(
            self.server.client_with_token(Some(&self.controller_token)),
            radius,
            runner_template(),
            Arc::new(Metrics::default()),
        );
        ctx.agent_grace = Duration::from_millis(500);
        let ctx = Arc::new(ctx);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(controller::run(
            Arc::clone(&ctx),
            Some(NAMESPACE),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        (ctx, stop, task)
    }

    /// `schism controller` in a process of its own (killable), against the double, without
    /// leader election, watching `demo`.
    pub fn controller_process(&self, runner_image: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_schism"))
            .args([
                "controller",
                "--no-leader-election",
                "--watch-namespace",
                NAMESPACE,
                "--metrics-address",
                "127.0.0.1:0",
                "--runner-image",
                runner_image,
            ])
            .env("KUBECONFIG", &self.controller_kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the schism binary runs")
    }

    pub fn status(&self, name: &str) -> Value {
        self.server
            .get(CHAOSES, Some(NAMESPACE), name)
            .map(|c| c["status"].clone())
            .unwrap_or(Value::Null)
    }

    pub fn events(&self) -> Vec<Value> {
        self.server.objects(EVENTS)
    }

    pub fn event_notes(&self, reason: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The notes of the `reason` events once there is at least one. Events are published
    /// after the status write they accompany, so a test that has seen the status must
    /// still wait for them.
    pub async fn wait_for_event_notes(&self, reason: &str) -> Vec<String> {
        wait_for(
            &format!("a {reason} event"),
            Duration::from_secs(10),
            || !self.event_notes(reason).is_empty(),
        )
        .await;
        self.event_notes(reason)
    }

    /// SIGKILLs the runner process of `job`.
    pub fn kill_runner(&self, job: &str) {
        let runners = self.runners.lock().unwrap();
        let record = runners
            .iter()
            .find(|r| r.job == job && r.exit.is_none())
            .unwrap_or_else(|| panic!("no running runner for job {job}"));
        // SAFETY: kill has no memory-safety preconditions; the pid is a child we started.
        unsafe { libc::kill(record.pid as i32, libc::SIGKILL) };
    }

    pub fn runner_records(&self) -> Vec<RunnerRecord> {
        self.runners.lock().unwrap().clone()
    }

    pub fn stderr_of(&self, record: &RunnerRecord) -> String {
        std::fs::read_to_string(&record.stderr).unwrap_or_default()
    }
}

/// The runner template the tests' controllers use; the image is never pulled, the simulated
/// kubelet runs the built binary.
pub fn runner_template() -> RunnerTemplate {
    RunnerTemplate {
        image: "schism:test".into(),
        image_pull_policy: None,
        service_account: "schism-runner".into(),
        defaults: Default::default(),
        check_timeout: Duration::from_secs(60),
        prometheus_url: None,
        halt_namespace: Some(chart::RELEASE_NAMESPACE.into()),
        max_pods: 10,
        log_level: "info".into(),
        log_json: false,
        keep_finished: Duration::from_secs(3600),
    }
}

pub fn chaos(name: &str, yaml_spec: &str) -> schism::api::Chaos {
    let mut chaos = schism::api::Chaos::new(
        name,
        serde_yaml::from_str(yaml_spec).expect("test spec parses"),
    );
    chaos.metadata.namespace = Some(NAMESPACE.into());
    chaos
}

/// The condition `type_` of a status, or null.
pub fn status_condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP service on every loopback address, for availability probes.
pub async fn probe_target() -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    port
}

fn condition(object: &Value, type_: &str) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// The Job controller and kubelet, for runner Jobs: a pod per new Job, running the built
/// `schism runner` with the Job's arguments; its exit recorded in the pod and Job status; a
/// deleted pod's runner sent SIGTERM, and the pod removed once the runner is gone.
async fn run_jobs(
    run_runners: bool,
    image_pull_fails: bool,
    server: Arc<ApiServer>,
    kubeconfig: PathBuf,
    dir: PathBuf,
    records: Arc<Mutex<Vec<RunnerRecord>>>,
    pids: Arc<Mutex<HashMap<String, u32>>>,
) {
    struct Running {
        job: String,
        job_uid: String,
        pod: String,
        child: Child,
        terminating: bool,
        record: usize,
    }
    let mut started: std::collections::HashSet<String> = Default::default();
    let mut running: Vec<Running> = Vec::new();
    let mut serial = 0u32;
    loop {
        for job in server.objects(JOBS) {
            let uid = job["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if started.contains(&uid)
                || job["metadata"].get("deletionTimestamp").is_some()
                || condition(&job, "Complete")
                || condition(&job, "Failed")
            {
                continue;
            }
            started.insert(uid.clone());
            serial += 1;
            let job_name = job["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let pod_name = format!("{job_name}-r{serial}");
            let template = &job["spec"]["template"];
            let mut labels = template["metadata"]["labels"].clone();
            labels["batch.kubernetes.io/job-name"] = job_name.clone().into();
            server.apply_raw(
                "pods",
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name, "namespace": NAMESPACE, "labels": labels,
                        "annotations": template["metadata"]["annotations"],
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                            "name": job_name, "uid": uid, "controller": true}]},
                    "spec": {"nodeName": "node-runner", "containers": template["spec"]["containers"],
                        "terminationGracePeriodSeconds": 30},
                    "status": if image_pull_fails {
                        json!({"phase": "Pending", "containerStatuses": [{"name": "runner",
                            "image": "schism:test", "imageID": "", "ready": false, "restartCount": 0,
                            "state": {"waiting": {"reason": "ImagePullBackOff",
                                "message": "Back-off pulling image \"schism:test\""}}}]})
                    } else {
                        json!({"phase": "Running", "containerStatuses": [{"name": "runner",
                            "image": "schism:test", "imageID": "", "ready": true, "restartCount": 0,
                            "state": {"running": {}}}]})
                    }
                }),
            );
            server.apply_raw(
                JOBS,
                json!({"metadata": {"name": job_name, "namespace": NAMESPACE}, "status": {"active": 1}}),
            );
            if !run_runners {
                continue;
            }
            let args: Vec<String> = template["spec"]["containers"][0]["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            let stderr = dir.join(format!("{pod_name}.stderr"));
            let child = Command::new(env!("CARGO_BIN_EXE_schism"))
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("POD_NAME", &pod_name)
                .env("POD_NAMESPACE", NAMESPACE)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .kill_on_drop(true)
                .spawn()
                .expect("the schism binary runs");
            let pid = child.id().unwrap_or_default();
            pids.lock().unwrap().insert(pod_name.clone(), pid);
            let record = {
                let mut records = records.lock().unwrap();
                records.push(RunnerRecord {
                    job: job_name.clone(),
                    pod: pod_name.clone(),
                    pid,
                    started: Instant::now(),
                    exit: None,
                    ended: None,
                    stderr,
                });
                records.len() - 1
            };
            running.push(Running {
                job: job_name,
                job_uid: uid,
                pod: pod_name,
                child,
                terminating: false,
                record,
            });
        }
        let mut still = Vec::new();
        for mut run in running.drain(..) {
            let pod = server.get("pods", Some(NAMESPACE), &run.pod);
            let deleting = pod
                .as_ref()
                .is_none_or(|p| p["metadata"].get("deletionTimestamp").is_some());
            if deleting && !run.terminating {
                run.terminating = true;
                if let Some(pid) = run.child.id() {
                    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
            match run.child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    let code = status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                    pids.lock().unwrap().remove(&run.pod);
                    {
                        let mut records = records.lock().unwrap();
                        records[run.record].exit = Some(code);
                        records[run.record].ended = Some(Instant::now());
                    }
                    let stderr =
                        std::fs::read_to_string(&records.lock().unwrap()[run.record].stderr)
                            .unwrap_or_default();
                    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                    let message: String = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                    if deleting {
                        server.delete_now("pods", Some(NAMESPACE), &run.pod);
                    } else {
                        server.apply_raw(
                            "pods",
                            json!({"metadata": {"name": run.pod, "namespace": NAMESPACE},
                                "status": {"phase": if code == 0 { "Succeeded" } else { "Failed" },
                                    "containerStatuses": [{"name": "runner", "image": "schism:test",
                                        "imageID": "", "ready": false, "restartCount": 0,
                                        "state": {"terminated": {"exitCode": code,
                                            "reason": if code == 0 { "Completed" } else { "Error" },
                                            "message": if code == 0 { String::new() } else { message }}}}]}}),
                        );
                    }
                    let job = server.get(JOBS, Some(NAMESPACE), &run.job);
                    if job.is_some_and(|j| j["metadata"]["uid"] == run.job_uid.as_str()) {
                        let condition = if code == 0 && !deleting {
                            json!({"type": "Complete", "status": "True"})
                        } else {
                            json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                "message": "Job has reached the specified backoff limit"})
                        };
                        server.apply_raw(
                            JOBS,
                            json!({"metadata": {"name": run.job, "namespace": NAMESPACE},
                                "status": {"active": 0, "conditions": [condition]}}),
                        );
                    }
                }
                Ok(None) => still.push(run),
                Err(error) => panic!("waiting for a runner: {error}"),
            }
        }
        running = still;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Plays the node agents: applies a lease whose pod exists (and records it), fails one whose
/// pod does not, and on deletion reverts and releases it.
async fn simulated_agent(server: Arc<ApiServer>, applied: Arc<Mutex<Vec<AppliedLease>>>) {
    loop {
        for lease in server.objects(LEASES) {
            let name = lease["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let metadata = json!({"name": name, "namespace": NAMESPACE});
            if lease["metadata"].get("deletionTimestamp").is_some() {
                server.apply_raw(
                    LEASES,
                    json!({"metadata": {"name": name, "namespace": NAMESPACE, "finalizers": null}}),
                );
            } else if lease.get("status").is_none_or(Value::is_null) {
                let pod_name = lease["spec"]["pod"]["name"].as_str().unwrap_or_default();
                let pod_uid = lease["spec"]["pod"]["uid"].as_str().unwrap_or_default();
                let pod = server.get("pods", Some(NAMESPACE), pod_name);
                let there = pod.is_some_and(|p| {
                    p["metadata"]["uid"] == pod_uid
                        && p["metadata"].get("deletionTimestamp").is_none()
                });
                let status = if there {
                    applied.lock().unwrap().push(AppliedLease {
                        at: Instant::now(),
                        name: name.clone(),
                        pod: pod_name.to_owned(),
                        pod_uid: pod_uid.to_owned(),
                        drop_peers: lease["spec"]["fault"]["partition"]["dropPeers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect(),
                        fault: lease["spec"]["fault"].clone(),
                    });
                    json!({"phase": "Applied", "mechanism": "nftables", "agent": lease["spec"]["pod"]["nodeName"]})
                } else {
                    json!({"phase": "Failed", "error": format!("pod {pod_name} (uid {pod_uid}) has no process on this node")})
                };
                server.apply_raw(LEASES, json!({"metadata": metadata, "status": status}));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Starts `schism runner` by hand for the current generation of Chaos `name`, as pod
    /// `pod` (no Job, no controller): for tests of the runner's own rules.
    pub fn spawn_runner(&self, name: &str, pod: &str) -> (Child, PathBuf) {
        let chaos = self
            .server
            .get(CHAOSES, Some(NAMESPACE), name)
            .unwrap_or_else(|| panic!("no Chaos {name}"));
        let stderr = self.dir.join(format!("{pod}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_schism"))
            .args([
                "runner".to_owned(),
                format!("--namespace={NAMESPACE}"),
                format!("--name={name}"),
                format!("--uid={}", chaos["metadata"]["uid"].as_str().unwrap()),
                format!("--generation={}", chaos["metadata"]["generation"]),
                "--check-timeout=60s".to_owned(),
            ])
            .env("KUBECONFIG", &self.runner_kubeconfig)
            .env("POD_NAME", pod)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the schism binary runs");
        (child, stderr)
    }
}
