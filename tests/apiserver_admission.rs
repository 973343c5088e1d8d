//! The API server double admits custom resources as the API server does with their CRD's
//! structural schema: unknown fields pruned, defaults applied, types, enums, required fields,
//! patterns, list-map keys and CEL rules (transition rules too) enforced, with the API
//! server's 422 and its causes — for creates, updates and status writes, on Schism's own CRDs.

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use apiserver::{ApiServer, ResourceType};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn server() -> ApiServer {
    let crds = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/schism.yaml"))
        .expect("crds/schism.yaml is readable");
    ApiServer::builder()
        .resources(ResourceType::from_crd_manifests(&crds))
        .start()
        .await
}

fn chaoses(server: &ApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "schism.dev".into(),
        version: "v1alpha1".into(),
        api_version: "schism.dev/v1alpha1".into(),
        kind: "Chaos".into(),
        plural: "chaoses".into(),
    };
    Api::namespaced_with(server.client(), "demo", &resource)
}

fn chaos(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "schism.dev/v1alpha1", "kind": "Chaos",
        "metadata": {"name": name, "namespace": "demo"}, "spec": spec,
    }))
    .unwrap()
}

/// The message of a 422 Invalid.
fn refusal<T: std::fmt::Debug>(outcome: Result<T, kube::Error>) -> String {
    match outcome {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (422, "Invalid"),
                "{status:?}"
            );
            status.message
        }
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

/// The causes of the last answer, from the raw Status (kube keeps only the message).
async fn causes(server: &ApiServer, body: Value) -> Vec<(String, String, String)> {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/apis/schism.dev/v1alpha1/namespaces/demo/chaoses",
            server.url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let status: Value = response.json().await.unwrap();
    status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["reason"].as_str().unwrap().to_owned(),
                c["field"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_invalid_chaos_is_refused_naming_each_field_and_why() {
    let server = server().await;
    let body = json!({
        "apiVersion": "schism.dev/v1alpha1", "kind": "Chaos",
        "metadata": {"name": "bad", "namespace": "demo"},
        "spec": {
            "duration": 30,
            "faults": [{"partition": {"shape": "sideways"}}],
            "availability": {"tcp": {"port": 2379}, "http": {"port": 80}},
        },
    });
    let causes = causes(&server, body.clone()).await;
    let has = |reason: &str, field: &str, text: &str| {
        causes
            .iter()
            .any(|(r, f, m)| r == reason && f == field && m.contains(text))
    };
    assert!(
        has(
            "FieldValueTypeInvalid",
            "spec.duration",
            "must be of type string: \"integer\""
        ),
        "{causes:#?}"
    );
    assert!(
        has("FieldValueRequired", "spec.target", "Required value"),
        "{causes:#?}"
    );
    assert!(
        has(
            "FieldValueNotSupported",
            "spec.faults[0].partition.shape",
            "supported values: \"isolate-one\""
        ),
        "{causes:#?}"
    );
    assert!(
        has(
            "FieldValueInvalid",
            "spec.availability",
            "exactly one of tcp, http must be set"
        ),
        "{causes:#?}"
    );
    let message = refusal(
        chaoses(&server)
            .create(
                &PostParams::default(),
                &serde_json::from_value(body).unwrap(),
            )
            .await,
    );
    assert!(
        message.starts_with("Chaos.schism.dev \"bad\" is invalid: ["),
        "{message}"
    );
    assert!(
        server
            .get("chaoses.schism.dev", Some("demo"), "bad")
            .is_none(),
        "nothing was stored"
    );

    let message = refusal(
        chaoses(&server)
            .create(
                &PostParams::default(),
                &chaos(
                    "slow",
                    json!({"target": {"statefulSet": "etcd"}, "duration": "5 minutes"}),
                ),
            )
            .await,
    );
    assert!(
        message.contains("spec.duration in body should match"),
        "{message}"
    );
    let message = refusal(
        chaoses(&server)
            .create(
                &PostParams::default(),
                &chaos(
                    "long",
                    json!({"target": {"statefulSet": "etcd"}, "duration": "48h"}),
                ),
            )
            .await,
    );
    assert!(
        message.contains("duration must be greater than 0 and at most 24h"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned_and_defaults_applied() {
    let server = server().await;
    let created = chaoses(&server)
        .create(
            &PostParams::default(),
            &chaos(
                "ok",
                json!({"target": {"statefulSet": "etcd"}, "duration": "30s", "colour": "red",
                    "availability": {"tcp": {"port": 2379, "shape": "round"}}}),
            ),
        )
        .await
        .unwrap();
    let spec = &created.data["spec"];
    assert!(spec.get("colour").is_none(), "{spec}");
    assert!(spec["availability"]["tcp"].get("shape").is_none(), "{spec}");
    assert_eq!(
        spec["availability"]["interval"], "1s",
        "the schema's default: {spec}"
    );
    assert_eq!(spec["availability"]["timeout"], "500ms", "{spec}");
    let stored = server
        .get("chaoses.schism.dev", Some("demo"), "ok")
        .unwrap();
    assert_eq!(stored["spec"], *spec);
}

#[tokio::test]
async fn status_writes_are_validated_on_the_status_alone() {
    let server = server().await;
    chaoses(&server)
        .create(
            &PostParams::default(),
            &chaos(
                "run",
                json!({"target": {"statefulSet": "etcd"}, "duration": "30s"}),
            ),
        )
        .await
        .unwrap();
    let api = chaoses(&server);
    let message = refusal(
        api.patch_status(
            "run",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Sleeping"}})),
        )
        .await,
    );
    assert!(
        message.contains("status.phase: Unsupported value: \"Sleeping\""),
        "{message}"
    );
    let condition = json!({"type": "Completed", "status": "True", "reason": "VerdictReached",
        "message": "verdict Pass", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let message = refusal(
        api.patch_status(
            "run",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [condition, condition]}})),
        )
        .await,
    );
    assert!(
        message.contains("status.conditions[1]: Duplicate value"),
        "{message}"
    );
    let message = refusal(
        api.patch_status(
            "run",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Completed", "status": "True"}]}}),
            ),
        )
        .await,
    );
    assert!(
        message.contains("status.conditions[0].reason: Required value"),
        "{message}"
    );
    api.patch_status(
        "run",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [condition]}})),
    )
    .await
    .expect("a valid status is stored");
}

#[tokio::test]
async fn transition_rules_compare_with_the_stored_object() {
    let crd = json!({
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "storage": true, "served": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "owner": {"type": "string",
                            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "owner is immutable"}]},
                    }},
                }}}}],
        },
    });
    let server = ApiServer::builder()
        .resource(ResourceType::from_crd(&crd))
        .start()
        .await;
    let resource = ApiResource {
        group: "example.dev".into(),
        version: "v1".into(),
        api_version: "example.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(server.client(), "demo", &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3, "owner": "ops"},
    }))
    .unwrap();
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let message = refusal(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"owner": "dev"}})),
            )
            .await,
    );
    assert!(
        message.contains("spec.owner: Invalid value: \"dev\": owner is immutable"),
        "{message}"
    );
    let message = refusal(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 11}})),
            )
            .await,
    );
    assert!(
        message.contains("spec.size in body should be less than or equal to 10"),
        "{message}"
    );
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .expect("an allowed change");
}
