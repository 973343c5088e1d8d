//! The in-process API server double behaves like the real API server for the real kube client,
//! watcher, reflector, finalizer helper and Controller.

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{ApiServer, ResourceType};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PartialObjectMeta,
    Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// Every test is bounded by this; nothing here should take more than a second or two.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a test body with a hard time limit, so a regression fails instead of hanging.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("the test timed out");
}

/// Waits until `condition` holds, checking every 10 ms, or panics after 10 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut object: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    object.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    object
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A namespaced custom resource with a status subresource, like Schism's CRDs.
fn widget_resource() -> (ResourceType, ApiResource) {
    let served =
        ResourceType::namespaced("test.schism.dev", "v1", "widgets", "Widget").with_status();
    let gvk = GroupVersionKind::gvk("test.schism.dev", "v1", "Widget");
    (served, ApiResource::from_gvk_with_plural(&gvk, "widgets"))
}

async fn widget_server() -> (ApiServer, Api<DynamicObject>) {
    let (served, api_resource) = widget_resource();
    let server = ApiServer::builder().resource(served).start().await;
    let widgets = Api::namespaced_with(server.client(), "default", &api_resource);
    (server, widgets)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    let (_, api_resource) = widget_resource();
    let mut object = DynamicObject::new(name, &api_resource);
    object.data = json!({"spec": spec});
    object
}

fn generation_and_version(object: &DynamicObject) -> (i64, String) {
    (
        object.metadata.generation.unwrap(),
        object.resource_version().unwrap(),
    )
}

#[tokio::test]
async fn crud_round_trip_with_status_errors_that_kube_parses() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());

        let created = configmaps
            .create(&PostParams::default(), &config_map("app", &[("k", "v")]))
            .await
            .unwrap();
        assert!(created.uid().is_some());
        assert!(created.metadata.creation_timestamp.is_some());
        assert_eq!(created.metadata.generation, Some(1));
        assert_eq!(created.namespace().as_deref(), Some("default"));

        let fetched = configmaps.get("app").await.unwrap();
        assert_eq!(fetched.data, created.data);

        let duplicate = configmaps
            .create(&PostParams::default(), &config_map("app", &[]))
            .await
            .unwrap_err();
        assert_eq!(api_error(duplicate), (409, "AlreadyExists".to_string()));
        let missing = configmaps.get("nope").await.unwrap_err();
        assert_eq!(api_error(missing), (404, "NotFound".to_string()));
        assert!(configmaps.get_opt("nope").await.unwrap().is_none());

        let mut generated = config_map("", &[]);
        generated.metadata.generate_name = Some("gen-".into());
        let generated = configmaps
            .create(&PostParams::default(), &generated)
            .await
            .unwrap();
        assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

        let mut replacement = fetched.clone();
        replacement.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
        let replaced = configmaps
            .replace("app", &PostParams::default(), &replacement)
            .await
            .unwrap();
        assert_eq!(replaced.data.as_ref().unwrap()["k"], "v2");
        assert!(replaced.resource_version().unwrap().parse::<u64>().unwrap() > 1);

        // `replacement` still carries the resourceVersion it was read at.
        let stale = configmaps
            .replace("app", &PostParams::default(), &replacement)
            .await
            .unwrap_err();
        assert_eq!(api_error(stale), (409, "Conflict".to_string()));

        let list = configmaps.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 2);
        assert_eq!(
            list.metadata.resource_version,
            Some(server.resource_version().to_string())
        );

        let unknown = GroupVersionKind::gvk("nowhere.dev", "v1", "Ghost");
        let ghosts: Api<DynamicObject> = Api::default_namespaced_with(
            server.client(),
            &ApiResource::from_gvk_with_plural(&unknown, "ghosts"),
        );
        assert_eq!(
            api_error(ghosts.list(&ListParams::default()).await.unwrap_err()).0,
            404
        );

        let deleted = configmaps
            .delete("app", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            deleted.is_left(),
            "an object without finalizers is returned as deleted"
        );
        assert!(server.get("configmaps", Some("default"), "app").is_none());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn discovery_reports_the_registered_resources() {
    bounded(async {
        let (served, _) = widget_resource();
        let server = ApiServer::builder().resource(served).start().await;
        let client = server.client();
        assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
        let discovery = kube::Discovery::new(client).run().await.unwrap();
        let gvk = GroupVersionKind::gvk("test.schism.dev", "v1", "Widget");
        let (widgets, capabilities) = discovery
            .resolve_gvk(&gvk)
            .expect("widgets are discoverable");
        assert_eq!(widgets.plural, "widgets");
        assert_eq!(capabilities.scope, kube::discovery::Scope::Namespaced);
        assert!(discovery.has_group("coordination.k8s.io"));
    })
    .await;
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors() {
    bounded(async {
        let server = ApiServer::start().await;
        for (name, tier) in [("a", "web"), ("b", "db"), ("c", "cache")] {
            server.apply_raw(
                "pods",
                json!({
                    "metadata": {"name": name, "labels": {"tier": tier}},
                    "spec": {"nodeName": format!("node-{name}")},
                }),
            );
        }
        let unlabelled = json!({
            "metadata": {"name": "d", "uid": "pinned-uid"},
            "spec": {"nodeName": "node-a"},
        });
        let stored = server.apply_raw("pods", unlabelled);
        assert_eq!(
            stored["metadata"]["uid"], "pinned-uid",
            "test hooks may pin the uid"
        );
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(server.client());
        let names = |list: kube::core::ObjectList<k8s_openapi::api::core::v1::Pod>| {
            list.items
                .iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>()
        };
        let selected = |labels: &str| ListParams::default().labels(labels);
        assert_eq!(
            names(pods.list(&selected("tier=web")).await.unwrap()),
            ["a"]
        );
        assert_eq!(
            names(pods.list(&selected("tier in (web,db)")).await.unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            names(pods.list(&selected("tier notin (web),tier")).await.unwrap()),
            ["b", "c"]
        );
        assert_eq!(names(pods.list(&selected("!tier")).await.unwrap()), ["d"]);
        let on_node_a = ListParams::default().fields("spec.nodeName=node-a");
        assert_eq!(names(pods.list(&on_node_a).await.unwrap()), ["a", "d"]);
        let by_name = ListParams::default().fields("metadata.name=c");
        assert_eq!(names(pods.list(&by_name).await.unwrap()), ["c"]);
        let all: Api<k8s_openapi::api::core::v1::Pod> = Api::all(server.client());
        assert_eq!(
            all.list(&ListParams::default()).await.unwrap().items.len(),
            4
        );
        let paths: Vec<String> = server.request_log().into_iter().map(|r| r.path).collect();
        assert!(
            paths.contains(&"/api/v1/pods".to_string()),
            "a cluster-wide list was served: {paths:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn generation_grows_only_when_the_spec_changes() {
    bounded(async {
        let (_server, widgets) = widget_server().await;
        let created = widgets
            .create(&PostParams::default(), &widget("w", json!({"size": 1})))
            .await
            .unwrap();
        let (generation, version) = generation_and_version(&created);
        assert_eq!(generation, 1);

        let labelled = widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap();
        assert_eq!(
            labelled.metadata.generation,
            Some(1),
            "metadata changes keep the generation"
        );
        assert_ne!(labelled.resource_version().unwrap(), version);

        let resized = widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap();
        assert_eq!(resized.metadata.generation, Some(2));

        let with_status = widgets
            .patch_status(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"ready": true}})),
            )
            .await
            .unwrap();
        assert_eq!(
            with_status.metadata.generation,
            Some(2),
            "status writes never bump generation"
        );

        let before = generation_and_version(&with_status);
        let unchanged = widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 2}})),
            )
            .await
            .unwrap();
        assert_eq!(
            generation_and_version(&unchanged),
            before,
            "a no-op write changes nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn status_subresource_separates_spec_writes_from_status_writes() {
    bounded(async {
        let (_server, widgets) = widget_server().await;
        let mut object = widget("w", json!({"size": 1}));
        object.data["status"] = json!({"phase": "Set at create"});
        let created = widgets
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        assert!(created.data.get("status").is_none(), "create resets status");

        let main_write = widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 3}, "status": {"phase": "Sneaky"}})),
            )
            .await
            .unwrap();
        assert_eq!(main_write.data["spec"]["size"], 3);
        assert!(
            main_write.data.get("status").is_none(),
            "the main resource ignores status"
        );

        let status_write = widgets
            .patch_status(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 99}, "status": {"phase": "Running"}})),
            )
            .await
            .unwrap();
        assert_eq!(status_write.data["status"]["phase"], "Running");
        assert_eq!(
            status_write.data["spec"]["size"], 3,
            "the status subresource ignores spec"
        );

        let mut replacement = status_write.clone();
        replacement.data["status"]["phase"] = json!("Done");
        let replaced = widgets
            .replace_status("w", &PostParams::default(), &replacement)
            .await
            .unwrap();
        assert_eq!(replaced.data["status"]["phase"], "Done");
        assert_eq!(replaced.metadata.generation, Some(2));

        let mut unversioned = replaced.clone();
        unversioned.metadata.resource_version = None;
        let refused = widgets
            .replace("w", &PostParams::default(), &unversioned)
            .await
            .unwrap_err();
        assert_eq!(
            api_error(refused).0,
            422,
            "custom resources need metadata.resourceVersion on PUT"
        );
    })
    .await;
}

#[tokio::test]
async fn all_four_patch_types_apply() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        configmaps
            .create(
                &PostParams::default(),
                &config_map("p", &[("a", "1"), ("b", "2")]),
            )
            .await
            .unwrap();

        let merged = configmaps
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
            )
            .await
            .unwrap();
        assert_eq!(
            merged.data.unwrap(),
            BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
        );

        let operations: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/data/b", "value": "2"},
            {"op": "replace", "path": "/data/b", "value": "20"},
        ]))
        .unwrap();
        let json_patched = configmaps
            .patch("p", &PatchParams::default(), &Patch::Json::<()>(operations))
            .await
            .unwrap();
        assert_eq!(json_patched.data.unwrap()["b"], "20");
        let failing_test: json_patch::Patch =
            serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "2"}]))
                .unwrap();
        let failed = configmaps
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Json::<()>(failing_test),
            )
            .await
            .unwrap_err();
        assert_eq!(api_error(failed).0, 422);

        let strategic = configmaps
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Strategic(json!({"data": {"d": "4"}})),
            )
            .await
            .unwrap();
        assert_eq!(strategic.data.unwrap()["d"], "4");

        let applied_config = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "p"}, "data": {"e": "5"},
        });
        let applied = configmaps
            .patch(
                "p",
                &PatchParams::apply("schism-test").force(),
                &Patch::Apply(&applied_config),
            )
            .await
            .unwrap();
        assert_eq!(applied.data.unwrap()["e"], "5");

        let created_config = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "fresh"}, "data": {"x": "1"},
        });
        let created = configmaps
            .patch(
                "fresh",
                &PatchParams::apply("schism-test"),
                &Patch::Apply(&created_config),
            )
            .await
            .unwrap();
        assert_eq!(
            created.metadata.generation,
            Some(1),
            "apply creates a missing object"
        );

        let without_manager = configmaps
            .patch("p", &PatchParams::default(), &Patch::Apply(&applied_config))
            .await
            .unwrap_err();
        assert_eq!(
            api_error(without_manager).0,
            400,
            "apply requires a field manager"
        );

        let content_types: Vec<Option<String>> = server
            .request_log()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| r.content_type)
            .collect();
        for expected in [
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            assert!(
                content_types.contains(&Some(expected.to_string())),
                "{expected} was used: {content_types:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        let mut guarded = config_map("guarded", &[]);
        guarded.metadata.finalizers = Some(vec!["schism.dev/a".into(), "schism.dev/b".into()]);
        let created = configmaps
            .create(&PostParams::default(), &guarded)
            .await
            .unwrap();
        let mut released = guarded.clone();
        released.metadata.name = Some("released".into());
        configmaps
            .create(&PostParams::default(), &released)
            .await
            .unwrap();
        let no_finalizers = Patch::Merge(json!({"metadata": {"finalizers": []}}));
        configmaps
            .patch("released", &PatchParams::default(), &no_finalizers)
            .await
            .unwrap();
        let released = server
            .get("configmaps", Some("default"), "released")
            .unwrap();
        assert!(
            released["metadata"].get("finalizers").is_none(),
            "an empty finalizer list is not stored, as in the API server"
        );
        let mut events = configmaps
            .watch(
                &WatchParams::default().fields("metadata.name=guarded"),
                &created.resource_version().unwrap(),
            )
            .await
            .unwrap()
            .boxed();

        let deleting = configmaps
            .delete("guarded", &DeleteParams::default())
            .await
            .unwrap();
        let deleting = deleting.left().expect("an object with finalizers is kept");
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
        assert_eq!(
            deleting.metadata.generation,
            Some(2),
            "marking for deletion bumps generation"
        );
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Modified(_))
        ));

        let adding = configmaps
            .patch(
                "guarded",
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"finalizers": ["schism.dev/a", "schism.dev/b", "schism.dev/c"]},
                })),
            )
            .await
            .unwrap_err();
        assert_eq!(
            api_error(adding).0,
            422,
            "no finalizer may be added during deletion"
        );

        let one_left = configmaps
            .patch(
                "guarded",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["schism.dev/b"]}})),
            )
            .await
            .unwrap();
        assert_eq!(one_left.finalizers(), ["schism.dev/b"]);
        assert!(
            server
                .get("configmaps", Some("default"), "guarded")
                .is_some()
        );
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Modified(_))
        ));

        configmaps
            .patch(
                "guarded",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        assert!(
            server
                .get("configmaps", Some("default"), "guarded")
                .is_none()
        );
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(object)) => assert_eq!(object.name_any(), "guarded"),
            other => panic!("expected DELETED, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn garbage_collection_deletes_dependents_recursively_and_respects_their_finalizers() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        let owned_by = |owner: &ConfigMap, name: &str, finalizers: &[&str]| {
            let mut object = config_map(name, &[]);
            object.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
            object.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
            object
        };
        let create = |object: ConfigMap| {
            let configmaps = configmaps.clone();
            async move {
                configmaps
                    .create(&PostParams::default(), &object)
                    .await
                    .unwrap()
            }
        };
        let root = create(config_map("root", &[])).await;
        let other_owner = create(config_map("other-owner", &[])).await;
        let child = create(owned_by(&root, "child", &[])).await;
        create(owned_by(&child, "grandchild", &["schism.dev/hold"])).await;
        let mut shared = owned_by(&root, "shared", &[]);
        let mut second_reference = other_owner.controller_owner_ref(&()).unwrap();
        second_reference.controller = Some(false);
        shared
            .metadata
            .owner_references
            .as_mut()
            .unwrap()
            .push(second_reference);
        create(shared).await;
        let kept = create(owned_by(&root, "kept", &[])).await;
        let dependent_of_kept = create(owned_by(&kept, "dependent-of-kept", &[])).await;

        // Orphan propagation strips the owner reference and leaves the dependent alone.
        configmaps
            .delete("kept", &DeleteParams::orphan())
            .await
            .unwrap();
        let orphan = server
            .get("configmaps", Some("default"), "dependent-of-kept")
            .unwrap();
        assert!(
            orphan["metadata"]
                .get("ownerReferences")
                .is_none_or(|r| r == &json!([]))
        );
        assert_ne!(
            orphan["metadata"]["resourceVersion"],
            json!(dependent_of_kept.resource_version())
        );

        configmaps
            .delete("root", &DeleteParams::background())
            .await
            .unwrap();
        let present = |name: &str| server.get("configmaps", Some("default"), name).is_some();
        wait_until("the child is collected", || !present("child")).await;
        wait_until("the grandchild is marked for deletion", || {
            server
                .get("configmaps", Some("default"), "grandchild")
                .is_some_and(|g| g["metadata"].get("deletionTimestamp").is_some())
        })
        .await;
        assert!(present("shared"), "a dependent with a live owner is kept");

        server.apply_raw(
            "configmaps",
            json!({"metadata": {"name": "grandchild", "finalizers": null}}),
        );
        assert!(
            !present("grandchild"),
            "removing the last finalizer completes the deletion"
        );
        configmaps
            .delete("other-owner", &DeleteParams::default())
            .await
            .unwrap();
        wait_until(
            "the shared dependent is collected with its last owner",
            || !present("shared"),
        )
        .await;
        assert!(present("dependent-of-kept"));
    })
    .await;
}

#[tokio::test]
async fn reflector_stays_in_sync_through_200_changes() {
    bounded(async {
        let server = ApiServer::start().await;
        let client = server.client();
        let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "sync");
        let elsewhere: Api<ConfigMap> = Api::namespaced(client, "elsewhere");
        let (reader, writer) = reflector::store();
        let reflecting = reflector(writer, watcher(watched.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| ready(()));
        let reflecting = tokio::spawn(reflecting);
        reader.wait_until_ready().await.unwrap();

        // 200 writes in a mix a controller's cache has to follow: creates, updates, deletes,
        // and noise in another namespace.
        for round in 0..40 {
            let name = format!("cm-{round}");
            watched
                .create(
                    &PostParams::default(),
                    &config_map(&name, &[("round", "0")]),
                )
                .await
                .unwrap();
            let patch = Patch::Merge(json!({"data": {"round": "1"}}));
            watched
                .patch(&name, &PatchParams::default(), &patch)
                .await
                .unwrap();
            let label = Patch::Merge(json!({"metadata": {"labels": {"round": round.to_string()}}}));
            watched
                .patch(&name, &PatchParams::default(), &label)
                .await
                .unwrap();
            elsewhere
                .create(&PostParams::default(), &config_map(&name, &[]))
                .await
                .unwrap();
            if round % 2 == 1 {
                watched
                    .delete(&format!("cm-{}", round - 1), &DeleteParams::default())
                    .await
                    .unwrap();
            } else {
                let patch = Patch::Merge(json!({"data": {"round": "2"}}));
                watched
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .unwrap();
            }
        }

        let server_state = || -> BTreeMap<String, Value> {
            server
                .objects("configmaps")
                .into_iter()
                .filter(|o| o["metadata"]["namespace"] == "sync")
                .map(|o| {
                    (
                        o["metadata"]["name"].as_str().unwrap().to_string(),
                        o["data"].clone(),
                    )
                })
                .collect()
        };
        let cached_state = || -> BTreeMap<String, Value> {
            reader
                .state()
                .iter()
                .map(|cm| (cm.name_any(), serde_json::to_value(&cm.data).unwrap()))
                .collect()
        };
        assert_eq!(server_state().len(), 20);
        wait_until("the cache matches the server", || {
            cached_state() == server_state()
        })
        .await;
        assert!(
            reader
                .state()
                .iter()
                .all(|cm| cm.namespace().as_deref() == Some("sync"))
        );
        reflecting.abort();
    })
    .await;
}

#[tokio::test]
async fn an_expired_resource_version_gets_410_and_the_watcher_relists() {
    bounded(async {
        // No bookmarks, so the watcher's resourceVersion only moves with its own objects.
        let server = ApiServer::builder()
            .bookmark_interval(Duration::from_secs(3600))
            .start()
            .await;
        let client = server.client();
        let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
        let elsewhere: Api<ConfigMap> = Api::namespaced(client, "elsewhere");
        let first = watched
            .create(&PostParams::default(), &config_map("first", &[]))
            .await
            .unwrap();
        elsewhere
            .create(&PostParams::default(), &config_map("noise", &[]))
            .await
            .unwrap();
        server.compact_history();

        let stale_version = first.resource_version().unwrap();
        let mut events = watched
            .watch(&WatchParams::default(), &stale_version)
            .await
            .unwrap()
            .boxed();
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }

        let (reader, writer) = reflector::store();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen_errors = errors.clone();
        let reflecting = reflector(writer, watcher(watched.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(move |event| {
                if let Err(watcher::Error::WatchError(status)) = event {
                    seen_errors.lock().unwrap().push(status.code);
                }
                ready(())
            });
        let reflecting = tokio::spawn(reflecting);
        reader.wait_until_ready().await.unwrap();
        server.clear_request_log();

        // Move the global resourceVersion past the watcher's, forget the history, and drop the
        // connection: the watcher resumes from a version the server no longer has.
        elsewhere
            .create(&PostParams::default(), &config_map("more-noise", &[]))
            .await
            .unwrap();
        server.compact_history();
        server.close_watches();
        wait_until("the watcher saw 410 Gone", || {
            errors.lock().unwrap().contains(&410)
        })
        .await;

        watched
            .create(&PostParams::default(), &config_map("second", &[]))
            .await
            .unwrap();
        wait_until("the relisted cache has the new object", || {
            reader
                .get(&reflector::ObjectRef::new("second").within("watched"))
                .is_some()
        })
        .await;
        let relists = server
            .request_log()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && !r.is_watch()
                    && r.path == "/api/v1/namespaces/watched/configmaps"
            })
            .count();
        assert_eq!(relists, 1, "the watcher relisted once after 410");
        reflecting.abort();
    })
    .await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_live_changes() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        configmaps
            .create(&PostParams::default(), &config_map("before", &[]))
            .await
            .unwrap();
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().streaming_lists();
        let reflecting = tokio::spawn(
            reflector(writer, watcher(configmaps.clone(), config)).for_each(|_| ready(())),
        );
        reader.wait_until_ready().await.unwrap();
        assert_eq!(reader.state().len(), 1);
        configmaps
            .create(&PostParams::default(), &config_map("after", &[]))
            .await
            .unwrap();
        wait_until("the live change arrives", || reader.state().len() == 2).await;
        let watches = server
            .request_log()
            .into_iter()
            .filter(|r| r.is_watch())
            .collect::<Vec<_>>();
        assert!(
            watches[0].query.contains("sendInitialEvents=true"),
            "{watches:?}"
        );
        reflecting.abort();
    })
    .await;
}

#[tokio::test]
async fn metadata_watcher_receives_partial_object_metadata() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        let first = config_map("first", &[("payload", "large")]);
        configmaps
            .create(&PostParams::default(), &first)
            .await
            .unwrap();
        // kube makes `Api<PartialObjectMeta<K>>` requests metadata-only, by the Accept header.
        let metadata: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(server.client());
        let mut applied = watcher(metadata, watcher::Config::default())
            .applied_objects()
            .boxed();
        let seen = applied.try_next().await.unwrap().unwrap();
        assert_eq!(seen.name_any(), "first");
        assert_eq!(seen.types.unwrap().kind, "PartialObjectMetadata");

        let second = config_map("second", &[]);
        configmaps
            .create(&PostParams::default(), &second)
            .await
            .unwrap();
        assert_eq!(
            applied.try_next().await.unwrap().unwrap().name_any(),
            "second"
        );
        assert!(
            server
                .delete_raw("configmaps", Some("default"), "second")
                .is_some()
        );
        assert!(
            server
                .get("configmaps", Some("default"), "second")
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn watch_reports_objects_entering_and_leaving_a_label_selection_and_honours_timeouts() {
    bounded(async {
        let server = ApiServer::start().await;
        let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
        let created = configmaps
            .create(&PostParams::default(), &config_map("x", &[]))
            .await
            .unwrap();
        let params = WatchParams::default()
            .labels("selected=yes")
            .timeout(1)
            .disable_bookmarks();
        let mut events = configmaps
            .watch(&params, &created.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        let label =
            |value: Value| Patch::Merge(json!({"metadata": {"labels": {"selected": value}}}));
        configmaps
            .patch("x", &PatchParams::default(), &label(json!("yes")))
            .await
            .unwrap();
        configmaps
            .patch("x", &PatchParams::default(), &label(json!("no")))
            .await
            .unwrap();
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Added(_))
        ));
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Deleted(_))
        ));
        // timeoutSeconds=1 ends the stream.
        assert!(events.try_next().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn events_and_leases_can_be_written_as_recorders_and_leader_election_do() {
    bounded(async {
        let server = ApiServer::start().await;
        let client = server.client();
        let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let subject = configmaps
            .create(&PostParams::default(), &config_map("subject", &[]))
            .await
            .unwrap();

        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "schism-test".into(),
                instance: None,
            },
        );
        let event = Event {
            type_: EventType::Normal,
            reason: "FaultInjected".into(),
            note: Some("partitioned".into()),
            action: "Inject".into(),
            secondary: None,
        };
        recorder
            .publish(&event, &subject.object_ref(&()))
            .await
            .unwrap();
        recorder
            .publish(&event, &subject.object_ref(&()))
            .await
            .unwrap();
        let events = server.objects("events.events.k8s.io");
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0]["series"]["count"], 2,
            "a repeated event becomes a series"
        );

        let core_events: Api<CoreEvent> = Api::default_namespaced(client.clone());
        let core_event: CoreEvent = serde_json::from_value(json!({
            "metadata": {"name": "subject.1"},
            "involvedObject": {"kind": "ConfigMap", "name": "subject", "namespace": "default"},
            "reason": "Legacy",
        }))
        .unwrap();
        core_events
            .create(&PostParams::default(), &core_event)
            .await
            .unwrap();
        assert_eq!(server.objects("events").len(), 1);

        let leases: Api<Lease> = Api::default_namespaced(client);
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": "schism-controller"},
            "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
        }))
        .unwrap();
        let held = leases.create(&PostParams::default(), &lease).await.unwrap();
        let renewed = leases
            .patch(
                "schism-controller",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": "2025-01-01T00:00:00.000000Z"}})),
            )
            .await
            .unwrap();
        assert!(renewed.spec.unwrap().renew_time.is_some());
        // A second replica that read the lease before the renewal loses the race.
        let mut takeover = held.clone();
        takeover.spec.as_mut().unwrap().holder_identity = Some("replica-b".into());
        let lost = leases
            .replace("schism-controller", &PostParams::default(), &takeover)
            .await
            .unwrap_err();
        assert_eq!(api_error(lost), (409, "Conflict".to_string()));
    })
    .await;
}

/// The error the test reconcilers return.
#[derive(Debug)]
struct ReconcileError(kube::Error);

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "reconcile failed: {}", self.0)
    }
}

impl std::error::Error for ReconcileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// What the test reconcilers share and record.
struct ReconcilerContext {
    client: Client,
    reconciles: AtomicUsize,
    cleanups: Mutex<Vec<String>>,
}

impl ReconcilerContext {
    fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client,
            reconciles: AtomicUsize::new(0),
            cleanups: Mutex::new(Vec::new()),
        })
    }
}

const OBSERVED_VALUE: &str = "schism.dev/observed-value";

/// Keeps a `PARENT-child` ConfigMap owned by each parent with the parent's `value`, and
/// records the value it acted on in an annotation on the parent (a status-like write).
async fn reconcile_parent(
    parent: Arc<ConfigMap>,
    context: Arc<ReconcilerContext>,
) -> Result<Action, ReconcileError> {
    context.reconciles.fetch_add(1, Ordering::SeqCst);
    let configmaps: Api<ConfigMap> =
        Api::namespaced(context.client.clone(), &parent.namespace().unwrap());
    let value = parent
        .data
        .as_ref()
        .and_then(|d| d.get("value"))
        .cloned()
        .unwrap_or_default();
    let child_name = format!("{}-child", parent.name_any());
    let child = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": child_name,
            "labels": {"role": "child"},
            "ownerReferences": [parent.controller_owner_ref(&()).unwrap()],
        },
        "data": {"value": value},
    });
    let apply = PatchParams::apply("schism-test").force();
    configmaps
        .patch(&child_name, &apply, &Patch::Apply(&child))
        .await
        .map_err(ReconcileError)?;
    let observed = json!({"metadata": {"annotations": {OBSERVED_VALUE: value}}});
    configmaps
        .patch(
            &parent.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&observed),
        )
        .await
        .map_err(ReconcileError)?;
    Ok(Action::await_change())
}

fn retry_soon<E>(_: Arc<ConfigMap>, _: &E, _: Arc<ReconcilerContext>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// Waits until the reconcile count has not moved for 300 ms and returns it.
async fn settled_reconciles(context: &ReconcilerContext) -> usize {
    loop {
        let before = context.reconciles.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if context.reconciles.load(Ordering::SeqCst) == before {
            return before;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_owned_objects_converges_and_then_stops_reconciling() {
    bounded(async {
        let server = ApiServer::start().await;
        let client = server.client();
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
        let context = ReconcilerContext::new(client);
        let parents = watcher::Config::default().labels("role=parent");
        let controller = Controller::new(configmaps.clone(), parents)
            .owns(
                configmaps.clone(),
                watcher::Config::default().labels("role=child"),
            )
            .run(reconcile_parent, retry_soon, context.clone())
            .for_each(|_| ready(()));
        let controller = tokio::spawn(controller);

        let mut parent = config_map("web", &[("value", "1")]);
        parent.labels_mut().insert("role".into(), "parent".into());
        configmaps
            .create(&PostParams::default(), &parent)
            .await
            .unwrap();
        let stored = |name: &str| server.get("configmaps", Some("apps"), name);
        let child_value = || stored("web-child").map(|child| child["data"]["value"].clone());
        let observed_value =
            || stored("web").unwrap()["metadata"]["annotations"][OBSERVED_VALUE].clone();
        wait_until("the child and the annotation are written", || {
            child_value() == Some(json!("1")) && observed_value() == json!("1")
        })
        .await;

        let converged = settled_reconciles(&context).await;
        assert!(
            converged <= 4,
            "a fixed point is reached in a few reconciles, took {converged}"
        );
        server.clear_request_log();
        // Bookmarks keep flowing meanwhile (one a second); they must not cause reconciles.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            context.reconciles.load(Ordering::SeqCst),
            converged,
            "no reconciles at the fixed point"
        );
        let writes: Vec<_> = server
            .request_log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert!(
            writes.is_empty(),
            "no writes at the fixed point: {writes:?}"
        );

        // Someone edits the owned object: `.owns()` triggers the parent, which repairs it.
        let tampered = json!({
            "metadata": {"name": "web-child", "namespace": "apps"},
            "data": {"value": "tampered"},
        });
        server.apply_raw("configmaps", tampered);
        wait_until("the child is repaired", || {
            child_value() == Some(json!("1"))
        })
        .await;

        configmaps
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"value": "2"}})),
            )
            .await
            .unwrap();
        wait_until("the new value reaches the child", || {
            child_value() == Some(json!("2")) && observed_value() == json!("2")
        })
        .await;
        let owner_uid = stored("web").unwrap()["metadata"]["uid"].clone();
        let child = stored("web-child").unwrap();
        assert_eq!(child["metadata"]["ownerReferences"][0]["uid"], owner_uid);
        controller.abort();
    })
    .await;
}

const CLEANUP_FINALIZER: &str = "schism.dev/cleanup";

async fn reconcile_guarded(
    object: Arc<ConfigMap>,
    context: Arc<ReconcilerContext>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    let configmaps: Api<ConfigMap> =
        Api::namespaced(context.client.clone(), &object.namespace().unwrap());
    finalizer(&configmaps, CLEANUP_FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(_) => {
                context.reconciles.fetch_add(1, Ordering::SeqCst);
            }
            FinalizerEvent::Cleanup(object) => {
                context.cleanups.lock().unwrap().push(object.name_any())
            }
        }
        Ok::<_, ReconcileError>(Action::await_change())
    })
    .await
}

#[tokio::test]
async fn finalizer_helper_cleans_up_before_the_object_goes_away() {
    bounded(async {
        let server = ApiServer::start().await;
        let client = server.client();
        let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let context = ReconcilerContext::new(client);
        let controller = Controller::new(
            configmaps.clone(),
            watcher::Config::default().labels("role=guarded"),
        )
        .run(reconcile_guarded, retry_soon, context.clone())
        .for_each(|_| ready(()));
        let controller = tokio::spawn(controller);

        let mut guarded = config_map("guarded", &[]);
        guarded.labels_mut().insert("role".into(), "guarded".into());
        configmaps
            .create(&PostParams::default(), &guarded)
            .await
            .unwrap();
        wait_until("the finalizer is added and Apply has run", || {
            context.reconciles.load(Ordering::SeqCst) > 0
                && server
                    .get("configmaps", Some("default"), "guarded")
                    .unwrap()["metadata"]["finalizers"]
                    == json!([CLEANUP_FINALIZER])
        })
        .await;

        let deleting = configmaps
            .delete("guarded", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            deleting
                .left()
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        wait_until("the object is gone", || {
            server
                .get("configmaps", Some("default"), "guarded")
                .is_none()
        })
        .await;
        assert_eq!(*context.cleanups.lock().unwrap(), ["guarded"]);
        let json_patches = server
            .request_log()
            .into_iter()
            .filter(|r| r.content_type.as_deref() == Some("application/json-patch+json"))
            .count();
        assert_eq!(
            json_patches, 2,
            "the helper added and removed its finalizer with JSON patches"
        );
        controller.abort();
    })
    .await;
}

/// A widget resource whose `status.conditions` merge by `type`, as the CRDs' do.
async fn widget_server_with_conditions() -> (ApiServer, Api<DynamicObject>) {
    let (served, api_resource) = widget_resource();
    let server = ApiServer::builder()
        .resource(served.list_map("status.conditions", &["type"]))
        .start()
        .await;
    let widgets = Api::namespaced_with(server.client(), "default", &api_resource);
    (server, widgets)
}

fn apply_status(status: Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "test.schism.dev/v1", "kind": "Widget", "status": status}))
}

fn managers(object: &DynamicObject) -> Vec<(String, String)> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_side_apply_tracks_field_owners_and_removes_what_a_manager_gives_up() {
    bounded(async {
        let (_server, widgets) = widget_server_with_conditions().await;
        widgets
            .create(&PostParams::default(), &widget("w", json!({"size": 1})))
            .await
            .unwrap();
        let runner = PatchParams::apply("runner");
        let controller = PatchParams::apply("controller");
        widgets
            .patch_status(
                "w",
                &runner,
                &apply_status(json!({"phase": "Running", "seed": 4, "faults": [1, 2],
                    "conditions": [{"type": "Completed", "status": "False"}]})),
            )
            .await
            .unwrap();
        let both = widgets
            .patch_status(
                "w",
                &controller,
                &apply_status(json!({"runner": {"job": "j1"},
                    "conditions": [{"type": "Accepted", "status": "True"}]})),
            )
            .await
            .unwrap();
        let status = &both.data["status"];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["runner"]["job"], "j1");
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Completed", "Accepted"], "a list-map merges by key");
        let owners = managers(&both);
        assert!(
            owners.contains(&("runner".into(), "Apply".into())),
            "{owners:?}"
        );
        assert!(
            owners.contains(&("controller".into(), "Apply".into())),
            "{owners:?}"
        );

        // The runner stops applying `seed` and its condition: they go; the controller's stay.
        let after = widgets
            .patch_status(
                "w",
                &runner,
                &apply_status(json!({"phase": "Checking", "faults": [1, 2]})),
            )
            .await
            .unwrap();
        let status = &after.data["status"];
        assert!(status.get("seed").is_none(), "{status}");
        assert_eq!(status["phase"], "Checking");
        assert_eq!(status["runner"]["job"], "j1");
        assert_eq!(
            status["conditions"].as_array().unwrap().len(),
            1,
            "{status}"
        );
        assert_eq!(status["conditions"][0]["type"], "Accepted");
        assert_eq!(
            after.data["spec"]["size"], 1,
            "the spec is not the status's business"
        );
    })
    .await;
}

#[tokio::test]
async fn an_apply_that_would_change_another_managers_field_conflicts_unless_forced() {
    bounded(async {
        let (_server, widgets) = widget_server_with_conditions().await;
        widgets
            .create(&PostParams::default(), &widget("w", json!({})))
            .await
            .unwrap();
        widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &apply_status(json!({"phase": "Running"})),
            )
            .await
            .unwrap();
        // The same value: shared ownership, no conflict.
        widgets
            .patch_status(
                "w",
                &PatchParams::apply("controller"),
                &apply_status(json!({"phase": "Running"})),
            )
            .await
            .unwrap();
        let error = widgets
            .patch_status(
                "w",
                &PatchParams::apply("other"),
                &apply_status(json!({"phase": "Error"})),
            )
            .await
            .unwrap_err();
        let message = match &error {
            kube::Error::Api(status) => status.message.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(api_error(error), (409, "Conflict".into()));
        assert!(
            message.contains("\"runner\"") && message.contains(".status.phase"),
            "{message}"
        );
        let forced = widgets
            .patch_status(
                "w",
                &PatchParams::apply("other").force(),
                &apply_status(json!({"phase": "Error"})),
            )
            .await
            .unwrap();
        assert_eq!(forced.data["status"]["phase"], "Error");
        // Ownership moved: the runner giving the field up now removes nothing.
        let after = widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &apply_status(json!({"seed": 1})),
            )
            .await
            .unwrap();
        assert_eq!(after.data["status"]["phase"], "Error");
        let owners = managers(&after);
        assert!(
            !owners.contains(&("controller".into(), "Apply".into())),
            "{owners:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_update_takes_ownership_and_an_apply_with_a_stale_version_is_refused() {
    bounded(async {
        let (server, widgets) = widget_server_with_conditions().await;
        widgets
            .create(&PostParams::default(), &widget("w", json!({})))
            .await
            .unwrap();
        widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &apply_status(json!({"phase": "Running"})),
            )
            .await
            .unwrap();
        let merged = widgets
            .patch_status(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Completed"}})),
            )
            .await
            .unwrap();
        let owners = managers(&merged);
        assert!(owners.iter().any(|(_, op)| op == "Update"), "{owners:?}");
        let error = widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &apply_status(json!({"phase": "Running"})),
            )
            .await
            .unwrap_err();
        assert_eq!(api_error(error), (409, "Conflict".into()));

        // A resourceVersion in the configuration is a precondition.
        let version = merged.metadata.resource_version.clone().unwrap();
        let mut config = json!({"apiVersion": "test.schism.dev/v1", "kind": "Widget",
            "metadata": {"resourceVersion": version}, "status": {"seed": 2}});
        widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &Patch::Apply(config.clone()),
            )
            .await
            .unwrap();
        config["status"]["seed"] = 3.into();
        let error = widgets
            .patch_status("w", &PatchParams::apply("runner"), &Patch::Apply(config))
            .await
            .unwrap_err();
        assert_eq!(api_error(error), (409, "Conflict".into()));

        // Applying the same configuration again changes nothing: no new version.
        let before = server.resource_version();
        widgets
            .patch_status(
                "w",
                &PatchParams::apply("runner"),
                &apply_status(json!({"seed": 2})),
            )
            .await
            .unwrap();
        assert_eq!(server.resource_version(), before);
    })
    .await;
}

#[tokio::test]
async fn a_deleted_pod_terminates_first_and_its_stateful_set_brings_it_back_with_a_new_uid() {
    bounded(async {
        let server = ApiServer::builder()
            .longest_pod_termination(Duration::from_millis(200))
            .replace_pods_after(Duration::from_millis(100))
            .start()
            .await;
        let set = server.apply_raw(
            "statefulsets.apps",
            json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {}}),
        );
        let owner = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
            "uid": set["metadata"]["uid"], "controller": true});
        let first = server.apply_raw(
            "pods",
            json!({"metadata": {"name": "db-0", "namespace": "default", "labels": {"app": "db"},
                "ownerReferences": [owner]},
                "spec": {"nodeName": "n1", "containers": [{"name": "db", "image": "db"}]},
                "status": {"phase": "Running", "podIP": "127.0.0.9"}}),
        );
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(server.client());
        pods.delete("db-0", &DeleteParams::default()).await.unwrap();
        let terminating = pods.get("db-0").await.unwrap();
        assert!(terminating.metadata.deletion_timestamp.is_some());
        assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
        assert_eq!(
            terminating.metadata.uid,
            first["metadata"]["uid"].as_str().map(String::from)
        );

        wait_until("the replacement runs", || {
            server
                .get("pods", Some("default"), "db-0")
                .is_some_and(|p| {
                    p["metadata"]["uid"] != first["metadata"]["uid"]
                        && p["metadata"].get("deletionTimestamp").is_none()
                })
        })
        .await;
        let replacement = server.get("pods", Some("default"), "db-0").unwrap();
        assert_eq!(replacement["status"]["phase"], "Running");
        assert_ne!(
            replacement["status"]["podIP"], "127.0.0.9",
            "a new pod gets a new IP"
        );
        assert_eq!(replacement["metadata"]["labels"]["app"], "db");

        // Grace 0 removes at once, and a pod no controller owns stays gone.
        server.apply_raw(
            "pods",
            json!({"metadata": {"name": "lone", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": []}}),
        );
        pods.delete(
            "lone",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(pods.get_opt("lone").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(pods.get_opt("lone").await.unwrap().is_none());
    })
    .await;
}
