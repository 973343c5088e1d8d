//! Real containers as pods, with the Docker engine (`docker` CLI): a user-defined network
//! whose gateway is where the host — and the API double — answers, ServiceAccount tokens
//! mounted where Kubernetes projects them, and `docker run` flags derived from a pod spec's
//! security settings, so a test runs a component exactly as its manifest says and never as a
//! hand-copied approximation. Everything made carries the label `schism-test` and is removed
//! on drop (`scripts/container-images.sh --remove` sweeps what a killed test left).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The image `scripts/test.sh` builds from the Dockerfile.
pub const IMAGE: &str = "schism:test";
/// Where the kubelet projects a pod's ServiceAccount token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const LABEL: &str = "schism-test";

/// Runs `docker ARGS`, panicking with its stderr on failure; returns stdout, trimmed.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Fails loudly unless the engine answers and the image exists.
pub fn require_image(test: &str) {
    // SAFETY: geteuid has no preconditions.
    assert!(unsafe { libc::geteuid() } == 0, "{test} needs root");
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    assert!(
        engine.is_ok_and(|o| o.status.success()),
        "{test} needs a Docker engine: scripts/install-deps.sh installs docker.io, \
         scripts/container-images.sh starts dockerd"
    );
    let image = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output();
    assert!(
        image.is_ok_and(|o| o.status.success()),
        "{test} needs the image {IMAGE}: scripts/container-images.sh builds it (scripts/test.sh runs it)"
    );
}

fn unique(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "schism-test-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A user-defined bridge network; the host is its gateway.
pub struct Network {
    pub name: String,
    pub gateway: Ipv4Addr,
}

impl Network {
    /// A network with a subnet of its own choosing (so containers may get fixed addresses):
    /// the first free `10.231.N.0/24`.
    pub fn create() -> Self {
        let name = unique("net");
        let start = std::process::id() as usize % 200;
        let gateway = (0..50).find_map(|i| {
            let prefix = format!("10.231.{}", (start + i) % 250);
            let (subnet, gateway) = (format!("{prefix}.0/24"), format!("{prefix}.1"));
            Command::new("docker")
                .args(["network", "create", "--label", LABEL, "--subnet", &subnet])
                .args(["--gateway", &gateway, &name])
                .output()
                .is_ok_and(|o| o.status.success())
                .then(|| gateway.parse().expect("an IPv4 address"))
        });
        let gateway = gateway.expect("no free 10.231.N.0/24 subnet for a Docker network");
        Self { gateway, name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// One running container, removed (killed first) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d` with the label, a unique name and `flags`, then `image` and `args`.
    pub fn run(flags: &[String], image: &str, args: &[String]) -> Self {
        let name = unique("ctr");
        let mut all = vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--name".to_owned(),
            name.clone(),
        ];
        all.extend(["--label".to_owned(), LABEL.to_owned()]);
        all.extend(flags.iter().cloned());
        all.push(image.to_owned());
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        // Constructed first, so that a failed start is removed too.
        let container = Self { name };
        docker(&refs);
        container
    }

    /// The container's address on `network`.
    pub fn ip(&self, network: &Network) -> Ipv4Addr {
        let template = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            network.name
        );
        let ip = docker(&["inspect", "-f", &template, &self.name]);
        ip.parse().unwrap_or_else(|_| panic!("container IP {ip:?}"))
    }

    /// The host PID of the container's first process.
    pub fn pid(&self) -> u32 {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.name])
            .parse()
            .expect("a PID")
    }

    pub fn running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.name]) == "true"
    }

    /// The exit code, once the container stopped.
    pub fn exit_code(&self) -> Option<i32> {
        (!self.running()).then(|| {
            docker(&["inspect", "-f", "{{.State.ExitCode}}", &self.name])
                .parse()
                .expect("an exit code")
        })
    }

    pub fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// A ServiceAccount's projected volume on the host, mounted read-only where the kubelet puts
/// it: `token`, `ca.crt` and `namespace`.
pub struct ServiceAccountVolume {
    pub dir: PathBuf,
}

impl ServiceAccountVolume {
    pub fn new(dir: &Path, token: &str, ca_pem: &str, namespace: &str) -> Self {
        let dir = dir.join(unique("sa"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), token).unwrap();
        std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
        std::fs::write(dir.join("namespace"), namespace).unwrap();
        // Readable by the container's non-root user, as the kubelet's projection is.
        for file in ["", "token", "ca.crt", "namespace"] {
            let path = dir.join(file);
            let mode = if file.is_empty() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Self { dir }
    }

    pub fn flag(&self) -> String {
        format!("--volume={}:{SERVICE_ACCOUNT_DIR}:ro", self.dir.display())
    }
}

/// The in-cluster environment the kubelet gives every container: where the API server is.
pub fn in_cluster_env(host: Ipv4Addr, port: u16) -> Vec<String> {
    vec![
        format!("--env=KUBERNETES_SERVICE_HOST={host}"),
        format!("--env=KUBERNETES_SERVICE_PORT={port}"),
    ]
}

/// A fresh pod UID (a version-4 UUID's shape).
pub fn pod_uid(index: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let hex = format!("{random:016x}{index:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Three etcd members (Debian's etcd, mounted into the image), each a container in a pod
/// cgroup as the kubelet's cgroupfs driver makes them, `/kubepods/besteffort/pod<UID>`, with
/// fixed addresses on the network.
pub struct EtcdPods {
    pub members: Vec<Container>,
    pub ips: Vec<Ipv4Addr>,
    pub uids: Vec<String>,
}

impl EtcdPods {
    pub fn start(network: &Network) -> Self {
        let subnet = docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Subnet}}",
            &network.name,
        ]);
        let base: Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
        let ips: Vec<Ipv4Addr> = (0..3)
            .map(|i| Ipv4Addr::from(u32::from(base) + 100 + i))
            .collect();
        let uids: Vec<String> = (0..3).map(pod_uid).collect();
        let cluster: Vec<String> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("m{i}=http://{ip}:2380"))
            .collect();
        let members = (0..3)
            .map(|i| {
                let flags = vec![
                    format!("--network={}", network.name),
                    format!("--ip={}", ips[i]),
                    format!("--cgroup-parent=/kubepods/besteffort/pod{}", uids[i]),
                    "--volume=/usr/bin/etcd:/usr/local/bin/etcd:ro".to_owned(),
                    "--tmpfs=/var/lib/etcd:rw,mode=1777".to_owned(),
                    "--entrypoint=/usr/local/bin/etcd".to_owned(),
                ];
                let ip = ips[i];
                let args = vec![
                    format!("--name=m{i}"),
                    "--data-dir=/var/lib/etcd/data".to_owned(),
                    "--listen-peer-urls=http://0.0.0.0:2380".to_owned(),
                    "--listen-client-urls=http://0.0.0.0:2379".to_owned(),
                    format!("--advertise-client-urls=http://{ip}:2379"),
                    format!("--initial-advertise-peer-urls=http://{ip}:2380"),
                    format!("--initial-cluster={}", cluster.join(",")),
                    "--initial-cluster-state=new".to_owned(),
                    "--heartbeat-interval=50".to_owned(),
                    "--election-timeout=500".to_owned(),
                ];
                Container::run(&flags, IMAGE, &args)
            })
            .collect();
        Self { members, ips, uids }
    }

    /// `etcdctl endpoint health` on one member: a quorum read answered within a second.
    pub fn healthy(&self, member: usize) -> bool {
        Command::new("etcdctl")
            .args([
                &format!("--endpoints=http://{}:2379", self.ips[member]),
                "--dial-timeout=1s",
                "--command-timeout=1s",
                "endpoint",
                "health",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// Where containers find the API double, as pods find the API server.
pub struct InCluster<'a> {
    pub network: &'a Network,
    pub api_port: u16,
    pub ca_pem: &'a str,
    /// Where ServiceAccount volumes are written.
    pub dir: &'a Path,
}

impl InCluster<'_> {
    /// Runs the first container of pod spec `pod` as pod `identity` of the built image, as
    /// the kubelet would, with `token` as its ServiceAccount's.
    pub fn run(&self, pod: &Value, identity: &PodIdentity<'_>, token: &str) -> Container {
        let container = &pod["containers"][0];
        let mut flags = run_flags(pod, container, identity);
        flags.push(format!("--network={}", self.network.name));
        flags.extend(in_cluster_env(self.network.gateway, self.api_port));
        let account = ServiceAccountVolume::new(self.dir, token, self.ca_pem, identity.namespace);
        flags.push(account.flag());
        Container::run(&flags, IMAGE, &container_args(container, identity))
    }
}

/// The pod spec of the chart's workload of `kind` for `component`.
pub fn chart_pod<'a>(manifests: &'a [Value], kind: &str, component: &str) -> &'a Value {
    let workload = manifests
        .iter()
        .find(|m| {
            m["kind"] == kind && m["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .unwrap_or_else(|| panic!("the chart renders no {kind} for the {component}"));
    &workload["spec"]["template"]["spec"]
}

/// What a pod's metadata fills in for `fieldRef` environment variables.
pub struct PodIdentity<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub node_name: &'a str,
}

/// `docker run` flags for container `container` of pod spec `pod`, as a kubelet would run it:
/// user and group, the root filesystem, privilege escalation, capabilities, seccomp and
/// AppArmor, host PID and network namespaces, memory and CPU limits, `emptyDir` volumes (as
/// tmpfs, memory-backed or not) and `hostPath` ones, and the environment (`value` and
/// `fieldRef`). A setting it does not know panics, so that none is ever silently left out.
/// Requests, probes and ports are the kubelet's business, not the container runtime's.
pub fn run_flags(pod: &Value, container: &Value, identity: &PodIdentity<'_>) -> Vec<String> {
    let mut flags = Vec::new();
    let pod_security = &pod["securityContext"];
    let security = &container["securityContext"];
    let setting = |name: &str| -> &Value {
        if security.get(name).is_some() {
            &security[name]
        } else {
            &pod_security[name]
        }
    };
    known(
        pod_security,
        "pod securityContext",
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "seccompProfile",
            "fsGroup",
            "appArmorProfile",
        ],
    );
    known(
        security,
        "securityContext",
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "seccompProfile",
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
            "privileged",
            "appArmorProfile",
        ],
    );
    known(
        pod,
        "pod spec",
        &[
            "securityContext",
            "containers",
            "volumes",
            "hostPID",
            "hostNetwork",
            "serviceAccountName",
            "restartPolicy",
            "terminationGracePeriodSeconds",
            "nodeSelector",
            "tolerations",
            "affinity",
            "priorityClassName",
            "imagePullSecrets",
            "automountServiceAccountToken",
            "nodeName",
            "dnsPolicy",
        ],
    );

    let user = setting("runAsUser").as_i64();
    let group = setting("runAsGroup").as_i64();
    match (user, group) {
        (Some(user), Some(group)) => flags.push(format!("--user={user}:{group}")),
        (Some(user), None) => flags.push(format!("--user={user}")),
        (None, Some(_)) => panic!("runAsGroup without runAsUser is not run by this test helper"),
        (None, None) => {}
    }
    if setting("runAsNonRoot") == true {
        let effective = match user {
            Some(user) => user.to_string(),
            None => docker(&[
                "image",
                "inspect",
                "-f",
                "{{.Config.User}}",
                container["image"].as_str().unwrap_or(IMAGE),
            ]),
        };
        let uid = effective.split(':').next().unwrap_or_default();
        assert!(
            uid.parse::<u32>().is_ok_and(|u| u != 0),
            "runAsNonRoot: the kubelet refuses to start a container whose user is {effective:?} (not a non-zero numeric UID)"
        );
    }
    if let Some(group) = pod_security["fsGroup"].as_i64() {
        flags.push(format!("--group-add={group}"));
    }
    if security["privileged"] == true {
        flags.push("--privileged".to_owned());
    }
    if security["readOnlyRootFilesystem"] == true {
        flags.push("--read-only".to_owned());
    }
    if security["allowPrivilegeEscalation"] == false {
        flags.push("--security-opt=no-new-privileges".to_owned());
    }
    let capabilities = &security["capabilities"];
    known(capabilities, "capabilities", &["drop", "add"]);
    for (field, flag) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
        for capability in capabilities[field].as_array().into_iter().flatten() {
            flags.push(format!(
                "{flag}={}",
                capability.as_str().expect("capabilities are strings")
            ));
        }
    }
    match setting("seccompProfile")["type"].as_str() {
        // Docker's default profile is the runtime default.
        None | Some("RuntimeDefault") => {}
        Some("Unconfined") => flags.push("--security-opt=seccomp=unconfined".to_owned()),
        Some(other) => panic!("seccompProfile {other} is not run by this test helper"),
    }
    match setting("appArmorProfile")["type"].as_str() {
        None | Some("RuntimeDefault") => {}
        Some("Unconfined") => flags.push("--security-opt=apparmor=unconfined".to_owned()),
        Some(other) => panic!("appArmorProfile {other} is not run by this test helper"),
    }
    if pod["hostPID"] == true {
        flags.push("--pid=host".to_owned());
    }
    if pod["hostNetwork"] == true {
        flags.push("--network=host".to_owned());
    }
    let limits = &container["resources"]["limits"];
    if let Some(memory) = limits["memory"].as_str() {
        flags.push(format!("--memory={}", docker_quantity(memory)));
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        let cores = match cpu.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().expect("a CPU quantity") / 1000.0,
            None => cpu.parse::<f64>().expect("a CPU quantity"),
        };
        flags.push(format!("--cpus={cores}"));
    }

    let volumes: Vec<&Value> = pod["volumes"].as_array().into_iter().flatten().collect();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        known(mount, "volumeMount", &["name", "mountPath", "readOnly"]);
        let path = mount["mountPath"].as_str().expect("a mountPath");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {} for mount {path}", mount["name"]));
        let read_only = if mount["readOnly"] == true { ":ro" } else { "" };
        if let Some(empty_dir) = volume.get("emptyDir") {
            known(empty_dir, "emptyDir", &["medium", "sizeLimit"]);
            // Disk-backed emptyDirs are directories on the node; a tmpfs is as writable, and
            // root-owned with mode 1777 as the kubelet makes them.
            let size = empty_dir["sizeLimit"]
                .as_str()
                .map(|s| format!(",size={}", docker_quantity(s)))
                .unwrap_or_default();
            flags.push(format!("--tmpfs={path}:rw,mode=1777{size}"));
        } else if let Some(host) = volume.get("hostPath") {
            known(host, "hostPath", &["path", "type"]);
            let host_path = host["path"].as_str().expect("a hostPath path");
            match host["type"].as_str() {
                Some("FileOrCreate") if !Path::new(host_path).exists() => {
                    std::fs::write(host_path, "").unwrap();
                }
                Some("DirectoryOrCreate") => std::fs::create_dir_all(host_path).unwrap(),
                Some("Directory") => assert!(
                    Path::new(host_path).is_dir(),
                    "hostPath {host_path} must be a directory on this machine"
                ),
                _ => {}
            }
            flags.push(format!("--volume={host_path}:{path}{read_only}"));
        } else {
            panic!(
                "volume {} is of a kind this test helper does not mount: {volume}",
                mount["name"]
            );
        }
    }

    for (name, value) in container_env(container, identity) {
        flags.push(format!("--env={name}={value}"));
    }
    flags
}

/// The container's arguments with `$(VAR)` references to its environment expanded, as the
/// kubelet expands them.
pub fn container_args(container: &Value, identity: &PodIdentity<'_>) -> Vec<String> {
    let env = container_env(container, identity);
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|arg| {
            let mut arg = arg.as_str().expect("arguments are strings").to_owned();
            for (name, value) in &env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            arg
        })
        .collect()
}

fn container_env(container: &Value, identity: &PodIdentity<'_>) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|variable| {
            let name = variable["name"].as_str().expect("an env name").to_owned();
            let value = if let Some(value) = variable["value"].as_str() {
                value.to_owned()
            } else {
                match variable
                    .pointer("/valueFrom/fieldRef/fieldPath")
                    .and_then(Value::as_str)
                {
                    Some("metadata.name") => identity.name.to_owned(),
                    Some("metadata.namespace") => identity.namespace.to_owned(),
                    Some("spec.nodeName") => identity.node_name.to_owned(),
                    _ => panic!(
                        "env {name} comes from a source this test helper does not fill: {variable}"
                    ),
                }
            };
            (name, value)
        })
        .collect()
}

/// A Kubernetes quantity (`256Mi`, `1Gi`) as Docker spells sizes.
fn docker_quantity(quantity: &str) -> String {
    for (suffix, docker) in [("Ki", "k"), ("Mi", "m"), ("Gi", "g")] {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return format!("{number}{docker}");
        }
    }
    quantity.to_owned()
}

/// Panics if `object` has a field outside `allowed`: a setting the helper would drop.
fn known(object: &Value, what: &str, allowed: &[&str]) {
    if let Some(fields) = object.as_object() {
        for field in fields.keys() {
            assert!(
                allowed.contains(&field.as_str()),
                "{what} has {field}, which this test helper does not run: {object}"
            );
        }
    }
}
