"""Checks the chart's Grafana dashboard against the metrics Schism exposes.

The dashboard must parse; every panel sits at the top level (no rows hiding panels) and has
targets, each with a PromQL expr; the annotations are PromQL too. Every expr uses variables only
as `namespace=~"$namespace"` and `chaos=~"$chaos"`, names only metrics of METRICS below and
only their labels (and those Prometheus adds at scrape time), and every metric appears on some
panel. Then each expr, with `.*` for the variables as the "All" choice sends it, is evaluated by
`promtool test rules` over synthetic series of every metric, and must return data.

usage: check_dashboard.py DASHBOARD.json PROMTOOL
Prints one line per problem and exits 1 when there is any.
"""
import json
import re
import subprocess
import sys
import tempfile

import yaml

# What the controller (src/operator/metrics.rs) and the node agent (src/operator/agent/
# metrics.rs) expose at /metrics: name -> (type, labels). A histogram's series are NAME_bucket,
# NAME_sum and NAME_count.
METRICS = {
    "schism_experiments": ("gauge", ["phase", "verdict"]),
    "schism_experiments_with_active_faults": ("gauge", []),
    "schism_reconcile_errors_total": ("counter", ["error"]),
    "schism_reconcile_duration_seconds": ("histogram", []),
    "schism_experiment_verdict": ("gauge", ["namespace", "chaos", "verdict"]),
    "schism_experiment_availability_ratio": ("gauge", ["namespace", "chaos"]),
    "schism_experiment_recovery_seconds": ("gauge", ["namespace", "chaos"]),
    "schism_experiment_check_seconds": ("gauge", ["namespace", "chaos"]),
    "schism_experiment_faults": ("gauge", ["namespace", "chaos", "kind"]),
    "schism_experiment_faults_active": ("gauge", ["namespace", "chaos"]),
    "schism_schedule_runs": ("gauge", ["namespace", "schedule", "verdict"]),
    "schism_schedule_pass_ratio": ("gauge", ["namespace", "schedule"]),
    "schism_agent_faults_applied_total": ("counter", []),
    "schism_agent_faults_reverted_total": ("counter", []),
    "schism_agent_failures_total": ("counter", ["action"]),
    "schism_agent_faults_held": ("gauge", []),
}
# Labels a ServiceMonitor or PodMonitor scrape adds to every series. `namespace` is the pod's
# for metrics without one of their own (honorLabels keeps the experiment's where there is).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service"}
VARIABLES = ('namespace=~"$namespace"', 'chaos=~"$chaos"')
LABEL_VALUES = {
    "phase": "Completed", "verdict": "Pass", "namespace": "demo", "chaos": "etcd-partition",
    "kind": "partition", "schedule": "nightly", "error": "kube", "action": "apply",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan"}


def series_of(name):
    kind, labels = METRICS[name]
    if kind == "histogram":
        return {name + "_bucket": labels + ["le"], name + "_sum": labels, name + "_count": labels}
    return {name: labels}


# Every series name a query may select, with its labels.
SERIES = {series: labels for name in METRICS for series, labels in series_of(name).items()}


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)


def metric_names(expr):
    """The metric names an expr selects: identifiers that are no function, aggregation,
    keyword, label or duration."""
    text = strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        followed_by_call = re.match(r"\s*\(", text[match.end():])
        if word in AGGREGATIONS or word in KEYWORDS or followed_by_call:
            continue
        names.add(word)
    return names


def label_names(expr):
    """Label names an expr matches on or groups by."""
    text = strip_strings(expr)
    labels = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels.update(l.strip() for l in group.split(",") if l.strip())
    # Values are blanked first, so an `=` inside a value is not read as a matcher.
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


class Checker:
    def __init__(self, dashboard):
        self.dashboard = dashboard
        self.problems = []
        self.exprs = []  # (where, expr, legend)

    def fail(self, message):
        self.problems.append(message)

    def run(self):
        self.check_templating()
        for panel in self.dashboard.get("panels", []):
            where = f"panel {panel.get('id')} {panel.get('title')!r}"
            if panel.get("type") == "row" or "panels" in panel:
                self.fail(f"{where}: rows are not allowed; every panel sits at the top level")
                continue
            targets = panel.get("targets") or []
            if not targets:
                self.fail(f"{where}: has no targets")
            for target in targets:
                expr = (target.get("expr") or "").strip()
                if not expr:
                    self.fail(f"{where}: target {target.get('refId')} has no expr")
                    continue
                self.exprs.append((where, expr, target.get("legendFormat", "")))
        annotations = self.dashboard.get("annotations", {}).get("list", [])
        for annotation in annotations:
            where = f"annotation {annotation.get('name')!r}"
            expr = (annotation.get("expr") or "").strip()
            if not expr:
                self.fail(f"{where}: has no expr")
                continue
            self.exprs.append((where, expr, annotation.get("textFormat", "")))
        used = set()
        for where, expr, legend in self.exprs:
            used |= self.check_expr(where, expr, legend)
        for name in sorted(n for n in METRICS if not used & set(series_of(n))):
            self.fail(f"metric {name} is on no panel")
        return self.problems

    def check_templating(self):
        variables = {v.get("name"): v for v in self.dashboard.get("templating", {}).get("list", [])}
        datasource = variables.get("datasource", {})
        if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
            self.fail("templating: needs a variable `datasource` of type datasource, query prometheus")
        for name in ("namespace", "chaos"):
            variable = variables.get(name, {})
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if variable.get("type") != "query" or not str(query).startswith("label_values("):
                self.fail(f"templating: needs a query variable `{name}` over label_values(...)")
            if variable.get("includeAll") and variable.get("allValue") != ".*":
                self.fail(f"templating: `{name}`'s All must be `.*`, as the queries are tested with")

    def check_expr(self, where, expr, legend):
        rest = expr
        for form in VARIABLES:
            rest = rest.replace(form, "")
        if "$" in rest:
            self.fail(f"{where}: variables must appear only as {' or '.join(VARIABLES)}: {expr}")
        names = metric_names(expr)
        unknown = names - set(SERIES)
        if unknown:
            self.fail(f"{where}: unknown metrics {sorted(unknown)} in {expr}")
        if not names:
            self.fail(f"{where}: selects no metric: {expr}")
        known = TARGET_LABELS.union(*(SERIES.get(n, []) for n in names))
        for label in sorted(label_names(expr) - known):
            self.fail(f"{where}: label {label!r} is not a label of {sorted(names)}: {expr}")
        for label in sorted(set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend)) - known):
            self.fail(f"{where}: the legend names {label!r}, which {sorted(names)} do not carry")
        return names

    def evaluate(self, promtool):
        """Each expr, as the All choice of every variable sends it, over synthetic series."""
        input_series = []
        kinds = {series: METRICS[name][0] for name in METRICS for series in series_of(name)}
        for name, labels in SERIES.items():
            kind = kinds[name]
            scrape = {"job": "schism", "instance": "10.0.0.1:8080", "pod": "schism-0"}
            if "namespace" not in labels:
                scrape["namespace"] = "schism-system"
            values = [dict(scrape, **{l: LABEL_VALUES[l] for l in labels if l != "le"})]
            if name.endswith("_bucket"):
                values = [dict(values[0], le=le) for le in ("0.001", "0.01", "0.1", "1", "+Inf")]
            elif "verdict" in labels:
                values = [dict(values[0], verdict=v) for v in ("Pass", "Fail", "Inconclusive")]
            for i, series_labels in enumerate(values):
                matchers = ",".join(f'{k}="{v}"' for k, v in sorted(series_labels.items()))
                counter = kind in ("counter", "histogram")
                # A verdict gauge is 1 for the latest verdict only.
                value = "0+1x40" if counter else ("1x40" if i == 0 else "0x40")
                if name.endswith("_bucket"):
                    value = f"0+{i + 1}x40"
                input_series.append({"series": f"{name}{{{matchers}}}", "values": value})
        tests = []
        for where, expr, _ in self.exprs:
            all_values = re.sub(r"\$(namespace|chaos)\b", ".*", expr)
            tests.append({"expr": f"absent({all_values})", "eval_time": "30m", "exp_samples": []})
        suite = {"rule_files": [], "evaluation_interval": "1m",
                 "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": tests}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(suite, f, sort_keys=False)
            f.flush()
            result = subprocess.run([promtool, "test", "rules", f.name], capture_output=True, text=True)
        if result.returncode != 0:
            self.fail("promtool: a query is not valid PromQL or returned no data over series of "
                      "every metric (`absent(QUERY)` returned a sample):\n"
                      + (result.stdout + result.stderr).strip())


def main(path, promtool):
    try:
        with open(path) as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as error:
        print(f"{path}: {error}")
        return 1
    checker = Checker(dashboard)
    problems = checker.run()
    if not problems:
        checker.evaluate(promtool)
    for problem in checker.problems:
        print(f"{path}: {problem}")
    if not checker.problems:
        print(f"{len(checker.exprs)} queries over {len(METRICS)} metrics")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
