"""Checks what the Helm chart renders against the rules the chart promises, beyond schema
validity (kubernetes-validate does that): least-privilege RBAC, the security contexts of the
controller and the node agent, that the values (allowed namespaces, leader election, the
agent switch) really change what is installed, and that the ServiceMonitor, the PodMonitor and
the dashboard ConfigMap appear when asked for and reach what they are meant to.

usage: check_rendered_chart.py RENDERED.yaml CHART_DIR [VALUES.yaml]
Prints one line per problem and exits 1 when there is any.
"""
import json
import sys

import yaml

NAMESPACED = {
    "ServiceAccount", "Service", "Deployment", "DaemonSet", "Role", "RoleBinding", "ConfigMap",
    "ServiceMonitor", "PodMonitor",
}
AGENT_CAPABILITIES = {"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "KILL"}


def merge(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return override


class Checker:
    def __init__(self, docs, values, chart_dir):
        self.docs = docs
        self.values = values
        self.chart_dir = chart_dir
        self.problems = []

    def fail(self, message):
        self.problems.append(message)

    def of_kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind, suffix):
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"].endswith(suffix)]
        if len(found) != 1:
            self.fail(f"expected one {kind} named *{suffix}, found {len(found)}")
            return None
        return found[0]

    def run(self):
        controller_values = self.values["controller"]
        agent_values = self.values["agent"]
        allowed = controller_values.get("allowedNamespaces") or []
        watch = controller_values.get("watchNamespace") or ""
        targets = sorted(set(allowed)) or ([watch] if watch else [])

        for doc in self.docs:
            meta = doc.get("metadata") or {}
            if not meta.get("name"):
                self.fail(f"a {doc.get('kind')} has no name")
            if doc.get("kind") in NAMESPACED and not meta.get("namespace"):
                self.fail(f"{doc['kind']}/{meta.get('name')} has no explicit namespace")

        runner_namespaces = sorted(set(targets) | set(self.values["runner"].get("namespaces") or []))
        self.check_rbac(targets, watch)
        self.check_runner_rbac(runner_namespaces)
        images = set()
        deployment = self.one("Deployment", "-controller")
        if deployment:
            images.add(self.check_controller(deployment, controller_values, allowed, watch))
        daemonsets = self.of_kind("DaemonSet")
        if agent_values.get("enabled"):
            daemonset = self.one("DaemonSet", "-agent")
            if daemonset:
                images.add(self.check_agent(daemonset, agent_values, targets))
        elif daemonsets:
            self.fail("agent.enabled is false but a DaemonSet is rendered")
        if len(images) > 1:
            self.fail(f"the controller and the agent run different images: {sorted(images)}")

        services = self.of_kind("Service")
        if controller_values["metrics"]["service"]["enabled"] != bool(services):
            self.fail("the metrics Service does not follow controller.metrics.service.enabled")
        self.check_service_monitor(services)
        self.check_pod_monitor(daemonsets)
        self.check_dashboard()
        return self.problems

    def check_monitor_namespaces(self, monitor, values, scraped_namespace):
        where = f"{monitor['kind']}/{monitor['metadata']['name']}"
        want = values.get("namespace") or scraped_namespace
        if monitor["metadata"].get("namespace") != want:
            self.fail(f"{where}: must be in namespace {want}")
        if monitor["spec"].get("namespaceSelector") != {"matchNames": [scraped_namespace]}:
            self.fail(f"{where}: must select namespace {scraped_namespace} only")
        for key, value in (values.get("labels") or {}).items():
            if monitor["metadata"].get("labels", {}).get(key) != value:
                self.fail(f"{where}: lacks the label {key}={value} of its values")

    def check_service_monitor(self, services):
        values = self.values["controller"]["metrics"]["serviceMonitor"]
        monitors = self.of_kind("ServiceMonitor")
        if bool(monitors) != bool(values["enabled"]):
            self.fail("the ServiceMonitor does not follow controller.metrics.serviceMonitor.enabled")
        if not monitors or not services:
            return
        monitor, service = monitors[0], services[0]
        self.check_monitor_namespaces(monitor, values, service["metadata"]["namespace"])
        selector = monitor["spec"]["selector"].get("matchLabels", {})
        if not selector or any(service["metadata"]["labels"].get(k) != v for k, v in selector.items()):
            self.fail(f"ServiceMonitor: its selector {selector} does not select the metrics Service")
        ports = {p.get("name") for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in ports:
                self.fail(f"ServiceMonitor: endpoint port {endpoint.get('port')!r} is not a port of the Service")
            if endpoint.get("honorLabels") != values["honorLabels"]:
                self.fail("ServiceMonitor: honorLabels must follow its value")

    def check_pod_monitor(self, daemonsets):
        values = self.values["agent"]["metrics"]["podMonitor"]
        monitors = self.of_kind("PodMonitor")
        if bool(monitors) != bool(values["enabled"] and self.values["agent"]["enabled"]):
            self.fail("the PodMonitor does not follow agent.metrics.podMonitor.enabled and agent.enabled")
        if not monitors or not daemonsets:
            return
        monitor, daemonset = monitors[0], daemonsets[0]
        self.check_monitor_namespaces(monitor, values, daemonset["metadata"]["namespace"])
        template = daemonset["spec"]["template"]
        selector = monitor["spec"]["selector"].get("matchLabels", {})
        if not selector or any(template["metadata"]["labels"].get(k) != v for k, v in selector.items()):
            self.fail(f"PodMonitor: its selector {selector} does not select the agent pods")
        ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            if endpoint.get("port") not in ports:
                self.fail(f"PodMonitor: endpoint port {endpoint.get('port')!r} is not a port of the agent")

    def check_dashboard(self):
        values = self.values["grafana"]["dashboard"]
        maps = [c for c in self.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
        if bool(maps) != bool(values["enabled"]):
            self.fail("the dashboard ConfigMap does not follow grafana.dashboard.enabled")
        if not maps:
            return
        (config_map,) = maps
        for key, value in (values.get("labels") or {}).items():
            if config_map["metadata"].get("labels", {}).get(key) != value:
                self.fail(f"dashboard ConfigMap: lacks the sidecar's label {key}={value}")
        with open(f"{self.chart_dir}/dashboards/schism.json") as f:
            shipped = json.load(f)
        if json.loads(config_map["data"].get("schism.json", "null")) != shipped:
            self.fail("dashboard ConfigMap: schism.json is not the chart's dashboards/schism.json")

    def check_rbac(self, targets, watch):
        roles = {("ClusterRole", d["metadata"]["name"]): d for d in self.of_kind("ClusterRole")}
        roles.update({("Role", d["metadata"]["name"]): d for d in self.of_kind("Role")})
        accounts = {(d["metadata"]["namespace"], d["metadata"]["name"])
                    for d in self.of_kind("ServiceAccount")}
        for role in roles.values():
            for rule in role.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    if "*" in rule.get(field, []):
                        self.fail(f"{role['kind']}/{role['metadata']['name']}: wildcard in {field}")
                if "secrets" in rule.get("resources", []):
                    self.fail(f"{role['kind']}/{role['metadata']['name']}: grants secrets")
                if {"escalate", "bind", "impersonate"} & set(rule.get("verbs", [])):
                    self.fail(f"{role['kind']}/{role['metadata']['name']}: grants escalation verbs")
        # Writes to target workloads belong to the role that is bound only where experiments
        # may run; the watch role, bound wherever Chaos objects are watched, only reads them.
        for (kind, name), role in roles.items():
            if kind == "ClusterRole" and name.endswith("-controller"):
                for rule in role.get("rules", []):
                    writes = set(rule.get("verbs", [])) - {"get", "list", "watch"}
                    touched = set(rule.get("resources", [])) & {
                        "pods", "configmaps", "deployments", "statefulsets"}
                    if touched and writes:
                        self.fail(f"ClusterRole/{name}: {sorted(writes)} on {sorted(touched)} "
                                  "belongs in the -controller-targets role")
        bindings = self.of_kind("ClusterRoleBinding") + self.of_kind("RoleBinding")
        for binding in bindings:
            ref = binding["roleRef"]
            where = f"{binding['kind']}/{binding['metadata']['name']}"
            if (ref["kind"], ref["name"]) not in roles:
                self.fail(f"{where}: refers to {ref['kind']}/{ref['name']}, which is not rendered")
            for subject in binding.get("subjects", []):
                key = (subject.get("namespace"), subject["name"])
                if self.values["serviceAccount"]["create"] and key not in accounts:
                    self.fail(f"{where}: subject {key} is not a rendered ServiceAccount")

        def bound(role_suffix):
            return [b for b in bindings if b["roleRef"]["name"].endswith(role_suffix)]

        for suffix in ("-controller-targets", "-agent"):
            if suffix == "-agent" and not self.values["agent"]["enabled"]:
                if bound(suffix):
                    self.fail("agent RBAC is rendered although the agent is disabled")
                continue
            found = bound(suffix)
            if targets:
                namespaces = sorted(b["metadata"].get("namespace", "") for b in found)
                if any(b["kind"] != "RoleBinding" for b in found) or namespaces != targets:
                    self.fail(f"*{suffix} must be bound by RoleBindings in exactly {targets}, "
                              f"found {[(b['kind'], b['metadata'].get('namespace')) for b in found]}")
            elif [b["kind"] for b in found] != ["ClusterRoleBinding"]:
                self.fail(f"*{suffix} must be bound by one ClusterRoleBinding")
        base = [b for b in bound("-controller") if b["roleRef"]["kind"] == "ClusterRole"]
        expected = ["RoleBinding"] if watch else ["ClusterRoleBinding"]
        if [b["kind"] for b in base] != expected:
            self.fail(f"the controller's base ClusterRole must be bound by {expected}")

        leader = [r for r in self.of_kind("Role") if r["metadata"]["name"].endswith("-leader")]
        if bool(leader) != bool(self.values["controller"]["leaderElection"]):
            self.fail("the leader-election Role does not follow controller.leaderElection")

    def check_runner_rbac(self, namespaces):
        (role,) = [r for r in self.of_kind("ClusterRole") if r["metadata"]["name"].endswith("-runner")] or [None]
        if role is None:
            self.fail("expected one ClusterRole named *-runner")
            return
        name = role["metadata"]["name"]
        bindings = [b for b in self.of_kind("RoleBinding") + self.of_kind("ClusterRoleBinding")
                    if b["roleRef"]["name"] == name]
        if any(b["kind"] != "RoleBinding" for b in bindings):
            self.fail("the runner's role must only be bound by RoleBindings, namespace by namespace")
        bound = sorted(b["metadata"]["namespace"] for b in bindings)
        if bound != namespaces:
            self.fail(f"the runner's role must be bound in exactly {namespaces}, found {bound}")
        accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in self.of_kind("ServiceAccount")}
        for binding in bindings:
            namespace = binding["metadata"]["namespace"]
            for subject in binding.get("subjects", []):
                if subject.get("namespace") != namespace or subject["name"] != name:
                    self.fail(f"RoleBinding {namespace}/{name}: the subject must be the runner "
                              f"ServiceAccount of that namespace, got {subject}")
                elif self.values["serviceAccount"]["create"] and (namespace, name) not in accounts:
                    self.fail(f"no runner ServiceAccount {namespace}/{name} is rendered")

    def check_controller(self, deployment, values, allowed, watch):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        security = container.get("securityContext", {})
        pod_security = pod.get("securityContext", {})
        if not (pod_security.get("runAsNonRoot") and security.get("runAsNonRoot")):
            self.fail("controller: runAsNonRoot must be set")
        if not security.get("readOnlyRootFilesystem"):
            self.fail("controller: the root filesystem must be read-only")
        if security.get("allowPrivilegeEscalation") is not False:
            self.fail("controller: allowPrivilegeEscalation must be false")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            self.fail("controller: must drop ALL capabilities")
        if pod.get("hostPID") or pod.get("hostNetwork"):
            self.fail("controller: must not share host namespaces")
        env = {e["name"]: e for e in container.get("env", [])}
        for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            if env.get(name, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != path:
                self.fail(f"controller: {name} must come from the downward API ({path})")
        if env.get("RUST_LOG", {}).get("value") != self.values["logLevel"]:
            self.fail("controller: RUST_LOG must be the logLevel value")
        port = values["metrics"]["port"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports.get("metrics") != port:
            self.fail(f"controller: the metrics port must be {port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("metrics", port):
                self.fail(f"controller: {probe} must GET {path} on the metrics port")
        args = container["args"]
        if args[0] != "controller":
            self.fail("controller: the first argument must be the subcommand `controller`")
        if f"--metrics-address=0.0.0.0:{port}" not in args:
            self.fail("controller: --metrics-address must match the metrics port")
        if f"--max-pods={values['maxPods']}" not in args:
            self.fail("controller: --max-pods must follow controller.maxPods")
        if values["leaderElection"] == ("--no-leader-election" in args):
            self.fail("controller: --no-leader-election must follow controller.leaderElection")
        allowed_arg = [a for a in args if a.startswith("--allowed-namespaces=")]
        want = [f"--allowed-namespaces={','.join(dict.fromkeys(allowed))}"] if allowed else []
        if allowed_arg != want:
            self.fail(f"controller: expected {want or 'no --allowed-namespaces'}, got {allowed_arg}")
        if bool(watch) != any(a == f"--watch-namespace={watch}" for a in args):
            self.fail("controller: --watch-namespace must follow controller.watchNamespace")
        if f"--runner-image={container['image']}" not in args:
            self.fail("controller: runner pods must run the controller's own image (--runner-image)")
        runner_roles = [r["metadata"]["name"] for r in self.of_kind("ClusterRole")
                        if r["metadata"]["name"].endswith("-runner")]
        if runner_roles and f"--runner-service-account={runner_roles[0]}" not in args:
            self.fail("controller: --runner-service-account must name the runner's ServiceAccount")
        # Readiness must not wait for leadership, or a rolling update never finishes.
        strategy = deployment["spec"].get("strategy", {})
        if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            self.fail("controller: expected a RollingUpdate that keeps a Ready replica (maxUnavailable 0)")
        return container["image"]

    def check_agent(self, daemonset, values, targets):
        pod = daemonset["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        if pod.get("hostPID") is not True:
            self.fail("agent: hostPID must be true")
        if pod.get("hostNetwork"):
            self.fail("agent: must not use the host network")
        env = {e["name"]: e for e in container.get("env", [])}
        if env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
            self.fail("agent: NODE_NAME must come from spec.nodeName")
        port = values["metrics"]["port"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports.get("metrics") != port:
            self.fail(f"agent: the metrics port must be {port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("metrics", port):
                self.fail(f"agent: {probe} must GET {path} on the metrics port")
        if f"--metrics-address=0.0.0.0:{port}" not in container["args"]:
            self.fail("agent: --metrics-address must match the metrics port")
        args = container["args"]
        if args[:2] != ["agent", "--node-name=$(NODE_NAME)"]:
            self.fail(f"agent: must start with `agent --node-name=$(NODE_NAME)`, got {args[:2]}")
        namespaces = [a for a in args if a.startswith("--namespaces=")]
        want = [f"--namespaces={','.join(targets)}"] if targets else []
        if namespaces != want:
            self.fail(f"agent: expected {want or 'no --namespaces'}, got {namespaces}")
        security = container.get("securityContext", {})
        if values["privileged"]:
            if security.get("privileged") is not True:
                self.fail("agent: agent.privileged must make the container privileged")
        else:
            if security.get("privileged"):
                self.fail("agent: privileged although agent.privileged is false")
            capabilities = security.get("capabilities", {})
            if capabilities.get("drop") != ["ALL"]:
                self.fail("agent: must drop ALL capabilities before adding its own")
            added = set(capabilities.get("add", []))
            if added - AGENT_CAPABILITIES:
                self.fail(f"agent: capabilities beyond what it needs: {sorted(added - AGENT_CAPABILITIES)}")
        if not security.get("readOnlyRootFilesystem"):
            self.fail("agent: the root filesystem must be read-only")
        tolerations = pod.get("tolerations", [])
        if values.get("tolerations") and tolerations != values["tolerations"]:
            self.fail("agent: tolerations must follow agent.tolerations")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if values["hostXtablesLock"] != ("/run/xtables.lock" in mounts):
            self.fail("agent: the xtables lock mount must follow agent.hostXtablesLock")
        args = container.get("args", [])
        if values["cgroupFreezer"] != ("/host/sys/fs/cgroup" in mounts):
            self.fail("agent: the cgroup mount must follow agent.cgroupFreezer")
        expected_root = "/host/sys/fs/cgroup" if values["cgroupFreezer"] else "none"
        if f"--cgroup-root={expected_root}" not in args:
            self.fail(f"agent: --cgroup-root={expected_root} must follow agent.cgroupFreezer")
        if "--pause-journal=/var/lib/schism-agent/pauses" not in args or (
            "/var/lib/schism-agent" not in mounts
        ):
            self.fail("agent: the pause journal must be mounted where --pause-journal points")
        # The node paths the agent may mount, and why: iptables' lock, the cgroups of the
        # pods it freezes, its pause journal.
        allowed = {"/run/xtables.lock", "/sys/fs/cgroup", values["pauseJournalHostPath"]}
        for volume in pod.get("volumes", []):
            path = volume.get("hostPath", {}).get("path")
            if path and path not in allowed:
                self.fail(f"agent: unexpected hostPath volume {path}")
        return container["image"]


def main(rendered, chart_dir, values_file=None):
    with open(f"{chart_dir}/values.yaml") as f:
        values = yaml.safe_load(f)
    if values_file:
        with open(values_file) as f:
            values = merge(values, yaml.safe_load(f) or {})
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = Checker(docs, values, chart_dir).run()
    for problem in problems:
        print(f"{rendered}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
