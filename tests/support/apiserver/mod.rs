//! An in-process Kubernetes API server test double, so the real `kube::Client`,
//! `kube::runtime::watcher` and `kube::runtime::Controller` can be tested without a cluster.
//!
//! It speaks HTTP/1.1 on a random loopback port and keeps every object as JSON, so any kind
//! works once its resource is registered. It follows the API server's semantics where
//! controllers depend on them:
//!
//! * one global, increasing `resourceVersion`; lists report it; PUT and PATCH with a stale
//!   `metadata.resourceVersion` get 409 Conflict; PUT on a custom resource without one gets
//!   422, as for CRDs (built-in kinds allow unconditional updates); writes that change
//!   nothing are no-ops (no new version, no watch event);
//! * create assigns `uid`, `creationTimestamp`, `generation: 1` and a `generateName` suffix,
//!   validates the name (DNS-1123 subdomain) and answers 409 AlreadyExists;
//! * `metadata.generation` grows only when something outside `metadata` and `status` changes
//!   (and once when deletion starts, as the API server does);
//! * the `/status` subresource: writes to it change only `.status`; writes to the main
//!   resource (and create) ignore `.status`;
//! * merge, JSON and strategic-merge patches (the last approximated as a merge patch), and
//!   server-side apply with field ownership: `managedFields` per manager, conflicts (409
//!   unless forced), removal of fields a manager stops applying, list-maps merged by key
//!   (`managed.rs`);
//! * pods deleted with a grace period stay Terminating (`deletionTimestamp`,
//!   `deletionGracePeriodSeconds`) until the simulated kubelet removes them; optionally their
//!   StatefulSet or ReplicaSet replaces them with a new UID and IP;
//! * finalizers: DELETE sets `deletionTimestamp` and `deletionGracePeriodSeconds: 0`, no new
//!   finalizer may be added then, and removing the last one removes the object; empty
//!   metadata lists and maps are not stored (Go's `omitempty`);
//! * owner references: removing an object deletes, in the background, the dependents whose
//!   owners are all gone, recursively; Orphan propagation strips the references instead;
//!   DELETE preconditions (uid, resourceVersion) and `dryRun=All` are honoured;
//! * watches: list-then-watch from a resourceVersion, a history ring for resuming, 410 Gone
//!   (as an ERROR event) when the version is older than the history, synthetic ADDED events
//!   without a version, `sendInitialEvents` with its end bookmark, periodic bookmarks,
//!   `timeoutSeconds`, label and field selectors (objects modified into or out of a selection
//!   are reported as ADDED or DELETED), and `PartialObjectMetadata` for metadata watchers;
//! * discovery (`/version`, `/api`, `/apis`, resource lists) and errors as `Status` objects,
//!   which kube turns into `kube::Error::Api`.
//! * with [`ApiServerBuilder::authenticate`]: bearer-token authentication (401), RBAC from the
//!   stored Roles, ClusterRoles and bindings (403 with the API server's message), and the
//!   OwnerReferencesPermissionEnforcement admission check (`auth.rs`);
//! * for resources made with [`ResourceType::from_crd`]: admission against the CRD's
//!   structural schema — pruning, defaults, validation and CEL rules (`schema.rs`);
//! * with [`ApiServerBuilder::tls`]: HTTPS from a CA of its own, on any address
//!   ([`ApiServerBuilder::listen_on`]), for components in containers (`tls.rs`).
//!
//! Approximated or left out: deletion of other kinds is immediate once finalizers allow it,
//! Foreground propagation behaves as Background, lists always serve the
//! latest state in one page (`resourceVersion`, `limit` and `continue` are ignored), field
//! selectors accept any dotted path, namespaces need not exist and deleting one does not
//! cascade, built-in kinds are not validated, and no admission webhooks run.
//!
//! ```ignore
//! #[path = "support/apiserver/mod.rs"]
//! mod apiserver;
//!
//! let chaos = apiserver::ResourceType::namespaced("schism.dev", "v1alpha1", "chaoses", "Chaos");
//! let server = apiserver::ApiServer::builder().resource(chaos.with_status()).start().await;
//! let configmaps: kube::Api<ConfigMap> = kube::Api::default_namespaced(server.client());
//! server.apply_raw("pods", json!({"metadata": {"name": "db-0"}, "status": {"phase": "Running"}}));
//! ```

#![allow(dead_code)]

mod access;
pub mod auth;
mod http;
mod managed;
mod patch;
mod resources;
mod schema;
mod selectors;
mod store;
mod tls;
mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch as signal};
use tokio::task::{JoinHandle, JoinSet};

use self::auth::{Decision, Identity, Tokens};
pub use self::resources::ResourceType;
use self::store::{DeleteOptions, ObjectKey, PodLifecycle, Store};

/// One request as the server received it, for tests that assert which API calls were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The URL path, e.g. `/api/v1/namespaces/default/configmaps/app`.
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: String,
    /// The `Content-Type` header, e.g. `application/merge-patch+json`.
    pub content_type: Option<String>,
    /// The authenticated user, when the double authenticates.
    pub user: Option<String>,
}

impl RecordedRequest {
    /// True for a watch request (`?watch=true`).
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// State shared by the connection tasks and the test handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Bumped to end every open watch stream.
    watch_epoch: signal::Sender<u64>,
    bookmark_interval: Duration,
    /// Watch events arrive up to this late (a lagging cache), when set.
    watch_lag: Option<Duration>,
    /// The accepted bearer tokens; `None`: no authentication and no authorization.
    tokens: Option<Mutex<Tokens>>,
    /// Every RBAC decision made, in order.
    decisions: Mutex<Vec<Decision>>,
}

impl Shared {
    /// The store. Store operations validate before they commit, so a panic under the lock
    /// cannot leave half a change behind; later requests keep being served.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request log; see `store` about poisoning.
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The authorization log; see `store` about poisoning.
    fn decisions(&self) -> MutexGuard<'_, Vec<Decision>> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures an [`ApiServer`] before it starts.
pub struct ApiServerBuilder {
    resources: Vec<ResourceType>,
    history_capacity: usize,
    bookmark_interval: Duration,
    pod_lifecycle: PodLifecycle,
    watch_lag: Option<Duration>,
    authenticate: bool,
    listen: IpAddr,
    tls: bool,
}

impl ApiServerBuilder {
    /// Serves another resource type (a CRD, say). Replaces a registration with the same
    /// group, version and plural.
    pub fn resource(mut self, resource: ResourceType) -> Self {
        self.resources.retain(|r| {
            !(r.group == resource.group
                && r.version == resource.version
                && r.plural == resource.plural)
        });
        self.resources.push(resource);
        self
    }

    /// Serves each of these resource types (see [`ApiServerBuilder::resource`]).
    pub fn resources(self, resources: impl IntoIterator<Item = ResourceType>) -> Self {
        resources.into_iter().fold(self, Self::resource)
    }

    /// How many changes the watch history keeps (default 4096); watches from older
    /// resourceVersions get 410 Gone.
    pub fn history_capacity(mut self, changes: usize) -> Self {
        self.history_capacity = changes;
        self
    }

    /// How often watches that allow bookmarks get one (default 1 s; the API server sends
    /// them about once a minute, but tests should not wait that long).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// How long a gracefully deleted pod stays Terminating at most (default 300 ms; its grace
    /// period if shorter).
    pub fn longest_pod_termination(mut self, longest: Duration) -> Self {
        self.pod_lifecycle.longest_termination = longest;
        self
    }

    /// Recreate removed pods of StatefulSets (same name) and ReplicaSets (new name) after
    /// `delay`, with a new UID and IP (`127.0.1.N`), Running and Ready, as their
    /// controllers and the kubelet would.
    pub fn replace_pods_after(mut self, delay: Duration) -> Self {
        self.pod_lifecycle.replace_after = Some(delay);
        self
    }

    /// Delivers every watch event up to `lag` late (each watch on its own, in order), as a
    /// busy API server or a slow network does: caches built from watches lag behind reads.
    pub fn watch_lag(mut self, lag: Duration) -> Self {
        self.watch_lag = Some(lag);
        self
    }

    /// Requires a bearer token on every request (401 without a valid one) and authorizes
    /// resource requests with RBAC against the stored Roles, ClusterRoles and bindings (403),
    /// with the owner-reference admission check (see `auth`). [`ApiServer::client`] then
    /// authenticates as a cluster administrator; components get their own tokens from
    /// [`ApiServer::service_account_token`].
    pub fn authenticate(mut self) -> Self {
        self.authenticate = true;
        self
    }

    /// Listens on `address` instead of 127.0.0.1, e.g. a Docker network's gateway, where the
    /// network's containers reach the host.
    pub fn listen_on(mut self, address: IpAddr) -> Self {
        self.listen = address;
        self
    }

    /// Serves HTTPS, as the API server does, with a certificate for the listening address,
    /// `localhost` and `kubernetes.default.svc` from a CA of its own ([`ApiServer::ca_pem`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Binds the listening address (127.0.0.1 unless set) on a random port and starts serving.
    pub async fn start(self) -> ApiServer {
        let (removed_owners, mut removed_owner_uids) = mpsc::unbounded_channel();
        let (watch_epoch, _) = signal::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new({
                let mut store = Store::new(self.resources, self.history_capacity, removed_owners);
                store.pod_lifecycle = self.pod_lifecycle;
                store
            }),
            requests: Mutex::new(Vec::new()),
            watch_epoch,
            bookmark_interval: self.bookmark_interval,
            watch_lag: self.watch_lag,
            tokens: self.authenticate.then(|| Mutex::new(Tokens::default())),
            decisions: Mutex::new(Vec::new()),
        });
        let admin_token = shared.tokens.as_ref().map(|tokens| {
            tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .issue(Identity::administrator())
        });
        let listener = TcpListener::bind((self.listen, 0))
            .await
            .expect("bind a port for the API server double");
        let certificates = self.tls.then(|| tls::Certificates::issue(self.listen));
        let acceptor = certificates.as_ref().map(tls::Certificates::acceptor);
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, mut shutdown_requested) = signal::channel(false);

        let accepting = shared.clone();
        let accept_task = tokio::spawn(async move {
            // Dropping the set when this task ends aborts every open connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = shutdown_requested.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = accepting.clone();
                        match acceptor.clone() {
                            None => connections.spawn(serve_connection(shared, stream)),
                            Some(acceptor) => connections.spawn(async move {
                                // A client that gives up on the handshake is not an error here.
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve_connection(shared, stream).await;
                                }
                            }),
                        };
                    }
                    // Reap finished connections so the set does not grow without bound.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });

        // The garbage collector runs apart from the request that removed the owner, as the
        // real one does, so dependents disappear shortly after, not atomically with it.
        let collecting = shared.clone();
        // The same task plays the kubelet ending terminations and the workload controllers
        // replacing pods, at a 20 ms resolution.
        let garbage_collector = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    removed = removed_owner_uids.recv() => match removed {
                        Some(owner_uid) => collecting.store().collect_garbage(&owner_uid),
                        None => return,
                    },
                    _ = tick.tick() => {
                        collecting.store().finish_terminations(std::time::Instant::now());
                    }
                }
            }
        });

        ApiServer {
            shared,
            address,
            certificates,
            admin_token,
            shutdown,
            accept_task: Some(accept_task),
            garbage_collector,
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
async fn serve_connection<S>(shared: Arc<Shared>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(shared, request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // A client closing its connection mid-request is not an error here.
    let _ = connection.await;
}

/// A running API server double. Dropping it stops it too; [`ApiServer::shutdown`] also waits.
pub struct ApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    /// The serving certificate and its CA, when the double serves HTTPS.
    certificates: Option<tls::Certificates>,
    /// The administrator's token, when the double authenticates.
    admin_token: Option<String>,
    shutdown: signal::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
    garbage_collector: JoinHandle<()>,
}

impl ApiServer {
    /// A builder with the built-in resources registered (namespaces, nodes, configmaps,
    /// secrets, pods, services, serviceaccounts, core and `events.k8s.io` events,
    /// `coordination.k8s.io` leases, and the `apps` workloads).
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder {
            resources: resources::builtin_resources(),
            history_capacity: 4096,
            bookmark_interval: Duration::from_secs(1),
            pod_lifecycle: PodLifecycle {
                longest_termination: Duration::from_millis(300),
                replace_after: None,
            },
            watch_lag: None,
            authenticate: false,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
        }
    }

    /// Starts a server with the built-in resources only.
    pub async fn start() -> ApiServer {
        Self::builder().start().await
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (`https://…` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.certificates.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.address)
    }

    /// The address and port it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The PEM of the CA that signed the serving certificate (what a pod finds in its
    /// ServiceAccount's `ca.crt`); panics unless the double serves TLS.
    pub fn ca_pem(&self) -> &str {
        &self
            .certificates
            .as_ref()
            .expect("the CA exists when the double serves TLS (ApiServerBuilder::tls)")
            .ca_pem
    }

    /// A `kube::Client` for this server whose default namespace is `default`; a cluster
    /// administrator's when the double authenticates.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(self.admin_token.as_deref())
    }

    /// The administrator's token, for a kubeconfig of a command a person would run.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// A `kube::Client` that sends `token` (none: no `Authorization` header).
    pub fn client_with_token(&self, token: Option<&str>) -> kube::Client {
        let url = self.url().parse().expect("the server URL is a valid URI");
        let mut config = kube::Config::new(url);
        if let Some(certificates) = &self.certificates {
            config.root_cert = Some(vec![certificates.ca_der.clone()]);
        }
        if let Some(token) = token {
            config.auth_info.token = Some(token.to_owned().into());
        }
        kube::Client::try_from(config).expect("a client config for the double is valid")
    }

    /// A new bearer token for ServiceAccount `namespace/name` (the account object need not
    /// exist). Panics unless the double authenticates.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.shared
            .tokens
            .as_ref()
            .expect("service account tokens need ApiServerBuilder::authenticate")
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .issue(Identity::service_account(namespace, name))
    }

    /// Every RBAC decision so far, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.shared.decisions().clone()
    }

    /// All stored objects of a resource (`configmaps`, `leases.coordination.k8s.io`, …), in
    /// namespace and name order.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let store = self.shared.store();
        store.list(resolve(&store, resource), None, |_| true)
    }

    /// One stored object; `namespace` is `None` for cluster-scoped resources.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let store = self.shared.store();
        let key = ObjectKey {
            resource: resolve(&store, resource),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        };
        store.get(&key).cloned()
    }

    /// Creates the object, or merge-patches it (RFC 7386) when it exists, bypassing the status
    /// subresource rules and resourceVersion checks: how tests play the other actors of a
    /// cluster, e.g. the kubelet marking a pod Ready. Watches see the change as usual.
    /// `metadata.namespace` defaults to `default` for namespaced resources; on creation a
    /// given `metadata.uid` or `creationTimestamp` is kept.
    pub fn apply_raw(&self, resource: &str, object: Value) -> Value {
        let mut store = self.shared.store();
        let resource_id = resolve(&store, resource);
        store
            .apply_unrestricted(resource_id, object)
            .unwrap_or_else(|error| panic!("apply_raw on {resource} failed: {}", error.message))
    }

    /// Deletes an object as a DELETE request would (finalizers and garbage collection
    /// included), e.g. to simulate a pod vanishing. Returns `None` if it did not exist.
    pub fn delete_raw(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut store = self.shared.store();
        let key = ObjectKey {
            resource: resolve(&store, resource),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        };
        store.delete(&key, &DeleteOptions::default()).ok()
    }

    /// Deletes an object with no grace period, as the kubelet does once a pod's containers
    /// have stopped (finalizers still hold it). Returns `None` if it did not exist.
    pub fn delete_now(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut store = self.shared.store();
        let key = ObjectKey {
            resource: resolve(&store, resource),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        };
        let options = DeleteOptions {
            grace_period_seconds: Some(0),
            ..DeleteOptions::default()
        };
        store.delete(&key, &options).ok()
    }

    /// Every request received so far, in order.
    pub fn request_log(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_request_log(&self) {
        self.shared.requests().clear();
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Drops the watch history, as an etcd compaction does: resuming a watch from any
    /// resourceVersion before now gets 410 Gone.
    pub fn compact_history(&self) {
        self.shared.store().compact();
    }

    /// Ends every open watch stream, as an API server restart or a proxy timeout does; clients
    /// reconnect from the last resourceVersion they saw.
    pub fn close_watches(&self) {
        self.shared.watch_epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Stops accepting requests, ends all watches and connections, and waits for that.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(accept_task) = self.accept_task.take() {
            // The task only ends by returning, or by being aborted in `stop`.
            let _ = accept_task.await;
        }
    }

    fn stop(&self) {
        self.close_watches();
        // Fails only if the accept task is already gone.
        let _ = self.shutdown.send(true);
        self.garbage_collector.abort();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(accept_task) = &self.accept_task {
            accept_task.abort();
        }
    }
}

/// The resource id for a hook's resource name; panics with the known names, as a test helper.
fn resolve(store: &Store, resource: &str) -> store::ResourceId {
    store.find_by_qualified_name(resource).unwrap_or_else(|| {
        let known: Vec<String> = store
            .resources()
            .iter()
            .map(ResourceType::qualified_name)
            .collect();
        panic!(
            "the API server double does not serve `{resource}`; known: {}",
            known.join(", ")
        )
    })
}
