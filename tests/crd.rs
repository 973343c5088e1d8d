//! The CRD in `crds/` is what the code generates, and it is a structural schema an API server
//! accepts: every node typed, no unsigned formats, no constructs forbidden in structural
//! schemas, a description on every field, and CEL rules that compile.

use serde_json::Value;

fn schemas() -> Vec<(String, Value)> {
    schism::api::crd::all()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let schema = serde_json::to_value(
                crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .unwrap()
                    .open_api_v3_schema
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            (name, schema)
        })
        .collect()
}

#[test]
fn the_helm_chart_installs_the_same_crds() {
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/schism/crds/schism.yaml"
    );
    let on_disk = std::fs::read_to_string(chart).expect("the chart holds the CRDs");
    assert!(
        on_disk == schism::api::crd::render_yaml(),
        "charts/schism/crds/schism.yaml is stale: cp crds/schism.yaml charts/schism/crds/"
    );
}

#[test]
fn crds_folder_matches_the_generated_crd_byte_for_byte() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/schism.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/schism.yaml exists");
    assert!(
        on_disk == schism::api::crd::render_yaml(),
        "crds/schism.yaml is stale: regenerate it with `cargo run -- crd > crds/schism.yaml`"
    );
}

fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: schema node is not an object"));
        return;
    };
    let typed = object.get("type").and_then(Value::as_str).is_some();
    let escape = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed && !escape {
        problems.push(format!("{path}: has no type"));
    }
    if let Some(format) = object.get("format").and_then(Value::as_str)
        && format.starts_with("uint")
    {
        problems.push(format!(
            "{path}: unsigned format {format} (API servers warn on it)"
        ));
    }
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "not",
        "additionalItems",
        "patternProperties",
        "dependencies",
        "uniqueItems",
        "const",
    ] {
        if object.contains_key(forbidden) {
            problems.push(format!(
                "{path}: {forbidden} is not allowed in a structural schema"
            ));
        }
    }
    for junction in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = object.get(junction).and_then(Value::as_array) {
            for (i, branch) in branches.iter().enumerate() {
                for key in [
                    "type",
                    "description",
                    "default",
                    "additionalProperties",
                    "nullable",
                    "x-kubernetes-validations",
                ] {
                    if branch.get(key).is_some() {
                        problems.push(format!(
                            "{path}.{junction}[{i}]: {key} is forbidden inside {junction}"
                        ));
                    }
                }
            }
        }
    }
    if object.contains_key("additionalProperties") && object.contains_key("properties") {
        problems.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = format!("{path}.{name}");
            let top_level_meta =
                path == "(root)" && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !top_level_meta
                && child
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                problems.push(format!("{child_path}: no description (add a doc comment)"));
            }
            walk(child, &child_path, problems);
        }
    }
    if let Some(items) = object.get("items") {
        walk(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = object.get("additionalProperties").filter(|a| a.is_object()) {
        walk(extra, &format!("{path}{{}}"), problems);
    }
    if object.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = object["x-kubernetes-list-map-keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let required: Vec<&str> = object["items"]["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for key in keys {
            if !required.contains(&key) {
                problems.push(format!(
                    "{path}: list-map key {key} must be required in the items"
                ));
            }
        }
    }
    if let Some(rules) = object
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            if rule
                .get("message")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{path}: CEL rule {} has no message", rule["rule"]));
            }
        }
    }
}

#[test]
fn schema_is_structural_and_documented() {
    let mut problems = Vec::new();
    for (name, schema) in schemas() {
        let mut found = Vec::new();
        walk(&schema, "(root)", &mut found);
        problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
    }
    assert!(
        problems.is_empty(),
        "the CRD schema breaks structural-schema rules:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_cel_rule_compiles() {
    let mut errors: Vec<String> = Vec::new();
    for (name, schema) in schemas() {
        let compiled = kube::core::cel::compile_schema(&schema);
        errors.extend(
            compiled
                .compilation_errors()
                .iter()
                .map(|e| format!("{name}: {e}")),
        );
    }
    assert!(
        errors.is_empty(),
        "CEL rules that do not compile:\n{}",
        errors.join("\n")
    );
}

#[test]
fn crd_has_status_subresource_printer_columns_and_short_name() {
    let crd = schism::api::crd::all().remove(0);
    assert_eq!(crd.spec.group, "schism.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.plural, "chaoses");
    assert!(
        crd.spec
            .names
            .short_names
            .as_ref()
            .unwrap()
            .contains(&"cx".to_owned())
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Verdict",
            "Availability",
            "Consistency",
            "Aborted",
            "Seed",
            "Age"
        ]
    );
}

fn manifest(spec: Value) -> Value {
    serde_json::json!({"apiVersion": "schism.dev/v1alpha1", "kind": "Chaos", "metadata": {"name": "x"}, "spec": spec})
}

/// The CEL rules are the API server's guard; they must reject what the semantic checks reject.
#[test]
fn cel_rules_reject_what_admission_must_reject() {
    let target = serde_json::json!({"statefulSet": "etcd"});
    let cases = [
        (
            "two targets",
            serde_json::json!({"target": {"statefulSet": "a", "deployment": "b"}, "duration": "10s"}),
            "exactly one of deployment",
        ),
        (
            "zero window",
            serde_json::json!({"target": target, "duration": "0s"}),
            "duration must be greater than 0",
        ),
        (
            "window over 24h",
            serde_json::json!({"target": target, "duration": "25h"}),
            "at most 24h",
        ),
        (
            "fault past window",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {}, "start": "5s", "duration": "6s"}]}),
            "end inside the chaos window",
        ),
        (
            "two kinds",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {}, "podKill": {}, "duration": "1s"}]}),
            "exactly one of partition",
        ),
        (
            "kill with duration",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"podKill": {}, "duration": "1s"}]}),
            "podKill is instantaneous",
        ),
        (
            "every below duration",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {}, "duration": "2s", "every": "1s"}]}),
            "every must be at least duration",
        ),
        (
            "loss zero",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"loss": {"percent": 0}, "duration": "2s"}]}),
            "percent must be greater than 0",
        ),
        (
            "value missing",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {"targets": {"mode": "fixed"}}, "duration": "2s"}]}),
            "value is required",
        ),
        (
            "percent over 100",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {"targets": {"mode": "fixed-percent", "value": 150}}, "duration": "2s"}]}),
            "at most 100",
        ),
        (
            "groups without shape",
            serde_json::json!({"target": target, "duration": "10s", "faults": [{"partition": {"shape": "halves", "groups": [["a"], ["b"]]}, "duration": "2s"}]}),
            "groups is only allowed",
        ),
        (
            "consistency without workload",
            serde_json::json!({"target": target, "duration": "10s", "assertions": {"consistency": "linearizable"}}),
            "needs a workload",
        ),
        (
            "availability assertion without probe",
            serde_json::json!({"target": target, "duration": "10s", "assertions": {"minAvailability": 0.5}}),
            "need an availability probe",
        ),
        (
            "http without templates",
            serde_json::json!({"target": target, "duration": "10s", "workload": {"client": "http", "port": 80}}),
            "http is required",
        ),
        (
            "probe interval",
            serde_json::json!({"target": target, "duration": "10s", "availability": {"tcp": {"port": 1}, "interval": "5ms"}}),
            "at least 10ms",
        ),
        (
            "empty selector",
            serde_json::json!({"target": {"selector": {}}, "duration": "10s"}),
            "selector must not be empty",
        ),
    ];
    let mut failures = Vec::new();
    for (name, spec, fragment) in cases {
        let problems = schism::api::validate::cel_problems(&manifest(spec));
        if !problems.iter().any(|p| p.reason.contains(fragment)) {
            failures.push(format!(
                "{name}: expected a CEL error containing {fragment:?}, got {problems:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let valid = manifest(
        serde_json::json!({"target": target, "duration": "10s", "faults": [{"pause": {}, "start": "5s", "duration": "5s"}]}),
    );
    assert_eq!(schism::api::validate::cel_problems(&valid), vec![]);
}
