//! The API server double authenticates and authorizes as the API server does: 401 without a
//! valid bearer token, RBAC decisions from stored Roles and bindings with the API server's
//! 403, and the owner-reference admission check.

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use apiserver::{ApiServer, ResourceType};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io";

async fn server() -> ApiServer {
    ApiServer::builder()
        .authenticate()
        .resource(
            ResourceType::namespaced("schism.dev", "v1alpha1", "chaoses", "Chaos").with_status(),
        )
        .start()
        .await
}

/// The code and reason of a failed request.
fn refusal<T: std::fmt::Debug>(outcome: Result<T, kube::Error>) -> (u16, String, String) {
    match outcome {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cluster_role(server: &ApiServer, name: &str, rules: Value) {
    server.apply_raw(
        &format!("clusterroles.{RBAC}"),
        json!({"metadata": {"name": name}, "rules": rules}),
    );
}

fn role_binding(server: &ApiServer, namespace: &str, role: &str, account: (&str, &str)) {
    server.apply_raw(
        &format!("rolebindings.{RBAC}"),
        json!({"metadata": {"name": format!("{role}-{}", account.1), "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account.1, "namespace": account.0}]}),
    );
}

fn as_account(server: &ApiServer, namespace: &str, name: &str) -> Client {
    server.client_with_token(Some(&server.service_account_token(namespace, name)))
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let server = server().await;
    let anonymous: Api<ConfigMap> = Api::namespaced(server.client_with_token(None), "demo");
    let (code, reason, _) = refusal(anonymous.list(&ListParams::default()).await);
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    let forged: Api<ConfigMap> =
        Api::namespaced(server.client_with_token(Some("not-a-token")), "demo");
    let (code, _, _) = refusal(forged.get("app").await);
    assert_eq!(code, 401);
    // The administrator is not restricted; a fresh account with no binding may only discover.
    let admin: Api<ConfigMap> = Api::namespaced(server.client(), "demo");
    admin.list(&ListParams::default()).await.unwrap();
    as_account(&server, "demo", "nobody")
        .apiserver_version()
        .await
        .expect("discovery is open to every authenticated user");
    let log = server.request_log();
    assert_eq!(log[0].user, None, "an unauthenticated request has no user");
    assert_eq!(
        log.last().unwrap().user.as_deref(),
        Some("system:serviceaccount:demo:nobody")
    );
}

#[tokio::test]
async fn a_role_binding_grants_its_rules_in_its_namespace_only_and_denials_read_as_the_api_servers()
{
    let server = server().await;
    cluster_role(
        &server,
        "reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
    );
    role_binding(&server, "demo", "reader", ("ops", "app"));
    server.apply_raw(
        "configmaps",
        json!({"metadata": {"name": "app", "namespace": "demo"}}),
    );
    server.apply_raw(
        "configmaps",
        json!({"metadata": {"name": "app", "namespace": "other"}}),
    );
    let client = as_account(&server, "ops", "app");

    let demo: Api<ConfigMap> = Api::namespaced(client.clone(), "demo");
    demo.get("app").await.unwrap();
    assert_eq!(
        demo.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let (code, reason, message) = refusal(
        demo.patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "configmaps \"app\" is forbidden: User \"system:serviceaccount:ops:app\" cannot patch \
         resource \"configmaps\" in API group \"\" in the namespace \"demo\""
    );
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    assert_eq!(refusal(other.get("app").await).0, 403);
    let everywhere: Api<ConfigMap> = Api::all(client);
    let (_, _, message) = refusal(everywhere.list(&ListParams::default()).await);
    assert!(message.ends_with("at the cluster scope"), "{message}");

    let decisions = server.decisions();
    let allowed: Vec<_> = decisions.iter().filter(|d| d.allowed).collect();
    assert_eq!(allowed.len(), 2, "{decisions:#?}");
    assert_eq!(allowed[0].allowed_by[0].role, "ClusterRole/reader");
    assert_eq!(
        allowed[0].allowed_by[0].binding,
        "RoleBinding/demo/reader-app"
    );
    assert_eq!(decisions.iter().filter(|d| !d.allowed).count(), 3);
}

#[tokio::test]
async fn resource_names_subresources_and_create_through_apply_are_authorized_separately() {
    let server = server().await;
    cluster_role(
        &server,
        "narrow",
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["report"], "verbs": ["get", "list", "patch"]},
            {"apiGroups": ["schism.dev"], "resources": ["chaoses/status"], "verbs": ["patch"]},
            {"apiGroups": ["schism.dev"], "resources": ["chaoses"], "verbs": ["get"]},
        ]),
    );
    role_binding(&server, "demo", "narrow", ("demo", "runner"));
    server.apply_raw(
        "configmaps",
        json!({"metadata": {"name": "other", "namespace": "demo"}}),
    );
    server.apply_raw(
        "chaoses.schism.dev",
        json!({"metadata": {"name": "c", "namespace": "demo"}, "spec": {}}),
    );
    let client = as_account(&server, "demo", "runner");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "demo");

    assert_eq!(
        refusal(maps.get("other").await).0,
        403,
        "a name outside resourceNames"
    );
    assert_eq!(
        refusal(maps.list(&ListParams::default()).await).0,
        403,
        "a whole collection"
    );
    maps.list(&ListParams::default().fields("metadata.name=report"))
        .await
        .expect("a list pinned to the name by a field selector is authorized for that name");
    let apply = PatchParams::apply("runner");
    let (code, _, message) = refusal(
        maps.patch(
            "report",
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "report"}}),
            ),
        )
        .await,
    );
    assert_eq!(code, 403, "an apply that creates also needs create");
    assert!(
        message.contains("cannot create resource \"configmaps\""),
        "{message}"
    );
    assert!(server.get("configmaps", Some("demo"), "report").is_none());

    let chaoses: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client,
        "demo",
        &kube::core::ApiResource {
            group: "schism.dev".into(),
            version: "v1alpha1".into(),
            api_version: "schism.dev/v1alpha1".into(),
            kind: "Chaos".into(),
            plural: "chaoses".into(),
        },
    );
    let status = Patch::Merge(json!({"status": {"phase": "Running"}}));
    chaoses
        .patch_status("c", &PatchParams::default(), &status)
        .await
        .expect("chaoses/status allows patching the status");
    let (code, _, message) = refusal(chaoses.patch("c", &PatchParams::default(), &status).await);
    assert_eq!(
        code, 403,
        "the status rule does not cover the main resource"
    );
    assert!(message.contains("cannot patch resource \"chaoses\" in API group \"schism.dev\""));
}

#[tokio::test]
async fn owner_references_that_block_deletion_need_update_on_the_owners_finalizers() {
    let server = server().await;
    let chaos = server.apply_raw(
        "chaoses.schism.dev",
        json!({"metadata": {"name": "c", "namespace": "demo"}, "spec": {}}),
    );
    cluster_role(
        &server,
        "writer",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch"]}]),
    );
    role_binding(&server, "demo", "writer", ("demo", "runner"));
    let maps: Api<ConfigMap> = Api::namespaced(as_account(&server, "demo", "runner"), "demo");
    let owned = |name: &str, block: bool| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "schism.dev/v1alpha1", "kind": "Chaos", "name": "c",
            "uid": chaos["metadata"]["uid"], "blockOwnerDeletion": block}]}}))
        .unwrap()
    };

    maps.create(&PostParams::default(), &owned("plain", false))
        .await
        .expect("a create may set owner references that do not block deletion");
    let (code, _, message) = refusal(
        maps.create(&PostParams::default(), &owned("blocking", true))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains("cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on"),
        "{message}"
    );
    let (code, _, message) = refusal(
        maps.patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
        )
        .await,
    );
    assert_eq!(
        code, 403,
        "changing owner references takes delete on the object"
    );
    assert!(message.contains("cannot set an ownerRef on a resource you can't delete"));
    maps.patch(
        "plain",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .expect("a patch that keeps the references needs only patch");

    cluster_role(
        &server,
        "finalizers",
        json!([{"apiGroups": ["schism.dev"], "resources": ["chaoses/finalizers"], "verbs": ["update"]}]),
    );
    role_binding(&server, "demo", "finalizers", ("demo", "runner"));
    maps.create(&PostParams::default(), &owned("blocking", true))
        .await
        .expect("with update on chaoses/finalizers");
}
