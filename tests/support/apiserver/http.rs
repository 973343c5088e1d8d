//! HTTP routing: Kubernetes API paths and verbs onto store operations.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::access;
use super::auth::Identity;
use super::patch::PatchBody;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{
    ApiError, DeleteOptions, ObjectKey, Ownership, Propagation, ResourceId, Store, WriteTarget,
};
use super::watch::{Selection, WatchStream, error_event, partial_object_metadata};
use super::{RecordedRequest, Shared};

/// A response body: one JSON document, or the lines of a watch as they happen.
pub enum ResponseBody {
    /// A complete body; `None` once sent.
    Complete(Option<Bytes>),
    /// A watch stream; ends when the sending task ends.
    Streaming(mpsc::Receiver<Bytes>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Complete(body) => Poll::Ready(body.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::Streaming(lines) => lines
                .poll_recv(context)
                .map(|line| line.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }
}

/// What a URL path addresses.
enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/GROUP/VERSION`
    ResourceList { group: String, version: String },
    /// `…/RESOURCE`, in one namespace or across all of them.
    Collection {
        resource: ResourceId,
        namespace: Option<String>,
    },
    /// `…/RESOURCE/NAME[/status]`
    Object { key: ObjectKey, status: bool },
}

/// Serves one request.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let content_type = header(hyper::header::CONTENT_TYPE);
    let user_agent = header(hyper::header::USER_AGENT).unwrap_or_default();
    let accept = header(hyper::header::ACCEPT).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query_text = parts.uri.query().unwrap_or_default().to_string();
    let identity = shared
        .tokens
        .as_ref()
        .map(|tokens| {
            let tokens = tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tokens.authenticate(header(hyper::header::AUTHORIZATION).as_deref())
        })
        .transpose();
    shared.requests().push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query_text.clone(),
        content_type: content_type.clone(),
        user: identity
            .as_ref()
            .ok()
            .and_then(|i| i.as_ref())
            .map(|i| i.user.clone()),
    });
    let identity = match identity {
        Ok(identity) => identity,
        Err(unauthorized) => return error_response(&unauthorized),
    };
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return error_response(&ApiError::bad_request(format!(
                "reading the request body: {error}"
            )));
        }
    };
    let request = ParsedRequest {
        method: parts.method,
        query: parse_query(&query_text),
        content_type: content_type.unwrap_or_default(),
        metadata_only: accept.contains("as=PartialObjectMetadata"),
        user_agent,
        body,
        identity,
    };
    let route = {
        let store = shared.store();
        route(&store, &path).and_then(|route| {
            authorize(&shared, &store, &route, &request)?;
            Ok(route)
        })
    };
    let outcome = match route {
        Ok(Route::Version) => Ok(json_response(StatusCode::OK, &version_info())),
        Ok(Route::CoreVersions) => Ok(json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        Ok(Route::Groups) => Ok(json_response(StatusCode::OK, &group_list(&shared.store()))),
        Ok(Route::ResourceList { group, version }) => Ok(json_response(
            StatusCode::OK,
            &resource_list(&shared.store(), &group, &version),
        )),
        Ok(Route::Collection {
            resource,
            namespace,
        }) => serve_collection(&shared, resource, namespace, &request),
        Ok(Route::Object { key, status }) => serve_object(&shared, key, status, &request),
        Err(error) => Err(error),
    };
    outcome.unwrap_or_else(|error| error_response(&error))
}

/// The request, decoded once.
struct ParsedRequest {
    method: Method,
    query: HashMap<String, String>,
    content_type: String,
    metadata_only: bool,
    user_agent: String,
    body: Bytes,
    /// Who is calling; `None` when the double does not authenticate.
    identity: Option<Identity>,
}

impl ParsedRequest {
    fn flag(&self, name: &str) -> bool {
        matches!(self.query.get(name).map(String::as_str), Some("true" | "1"))
    }

    /// The field manager of a write: `fieldManager`, else the user agent up to its first `/`,
    /// as the API server derives it.
    fn manager(&self) -> String {
        match self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(manager) => manager.clone(),
            None => self
                .user_agent
                .split('/')
                .next()
                .filter(|m| !m.is_empty())
                .unwrap_or("unknown")
                .to_owned(),
        }
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }

    fn selection(
        &self,
        resource: ResourceId,
        namespace: Option<String>,
    ) -> Result<Selection, ApiError> {
        let text = |name: &str| self.query.get(name).map(String::as_str).unwrap_or_default();
        Ok(Selection {
            resource,
            namespace,
            labels: LabelSelector::parse(text("labelSelector")).map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(text("fieldSelector")).map_err(ApiError::bad_request)?,
            metadata_only: self.metadata_only,
        })
    }
}

/// RBAC for a resource request, when the double authenticates; discovery is open to every
/// authenticated user. A PUT or PATCH that would create its object also needs `create`.
fn authorize(
    shared: &Shared,
    store: &Store,
    route: &Route,
    request: &ParsedRequest,
) -> Result<(), ApiError> {
    let Some(identity) = &request.identity else {
        return Ok(());
    };
    let text = |name: &str| {
        request
            .query
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    match route {
        Route::Collection {
            resource,
            namespace,
        } => {
            let (verb, pinned) = access::collection_verb(
                &request.method,
                request.flag("watch"),
                text("fieldSelector"),
            );
            let namespace = namespace.as_deref().unwrap_or_default();
            let attributes = access::attributes(store, *resource, namespace, &pinned, false, verb);
            access::check(shared, store, identity, &attributes)
        }
        Route::Object { key, status } => {
            let verb = access::object_verb(&request.method);
            let attributes = access::attributes(
                store,
                key.resource,
                &key.namespace,
                &key.name,
                *status,
                verb,
            );
            access::check(shared, store, identity, &attributes)?;
            if matches!(verb, "update" | "patch") && store.get(key).is_none() {
                let create = access::attributes(
                    store,
                    key.resource,
                    &key.namespace,
                    &key.name,
                    *status,
                    "create",
                );
                access::check(shared, store, identity, &create)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn route(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_served(path)),
    };
    // `/api/v1/namespaces/NAME[/status]` is the Namespace object itself; anything longer under
    // `namespaces/NAME/` is a namespaced resource.
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if !(tail.is_empty() && *plural == "status") =>
        {
            (Some(namespace.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let Some((plural, tail)) = rest.split_first() else {
        return Ok(Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        });
    };
    let resource = store
        .find_resource(group, version, plural)
        .ok_or_else(|| not_served(path))?;
    let resource_type = store.resource(resource);
    if namespace.is_some() && !resource_type.namespaced {
        return Err(not_served(path));
    }
    let object_key = |name: &str| ObjectKey {
        resource,
        namespace: namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    };
    match tail {
        [] => Ok(Route::Collection {
            resource,
            namespace,
        }),
        [_] | [_, _] if resource_type.namespaced && namespace.is_none() => Err(not_served(path)),
        [name] => Ok(Route::Object {
            key: object_key(name),
            status: false,
        }),
        [name, "status"] if resource_type.status_subresource => Ok(Route::Object {
            key: object_key(name),
            status: true,
        }),
        _ => Err(not_served(path)),
    }
}

fn not_served(path: &str) -> ApiError {
    ApiError {
        details: Some(json!({
            "causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}],
        })),
        ..ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }
}

fn serve_collection(
    shared: &Arc<Shared>,
    resource: ResourceId,
    namespace: Option<String>,
    request: &ParsedRequest,
) -> Result<Response<ResponseBody>, ApiError> {
    match request.method {
        Method::GET if request.flag("watch") => start_watch(shared, resource, namespace, request),
        Method::GET => {
            let selection = request.selection(resource, namespace.clone())?;
            let store = shared.store();
            let resource_type = store.resource(resource);
            let items: Vec<Value> = store
                .list(resource, namespace.as_deref(), |o| selection.matches(o))
                .iter()
                .map(|o| selection.present(o))
                .collect();
            // Pagination (`limit`, `continue`) is not implemented: the whole list is one page,
            // which the API server may also do.
            let (api_version, kind) = if request.metadata_only {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (
                    resource_type.api_version(),
                    format!("{}List", resource_type.kind),
                )
            };
            let list = json!({
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": store.resource_version().to_string()},
                "items": items,
            });
            Ok(json_response(StatusCode::OK, &list))
        }
        Method::POST => {
            let mut store = shared.store();
            let Some(namespace) =
                namespace.or_else(|| (!store.resource(resource).namespaced).then(String::new))
            else {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "create a namespaced object under /namespaces/NAMESPACE/",
                ));
            };
            let body = request.json_body()?;
            if let Some(identity) = &request.identity {
                let key = ObjectKey {
                    resource,
                    namespace: namespace.clone(),
                    name: String::new(),
                };
                access::admit_owner_references(shared, &store, identity, &key, &body)?;
            }
            let created = store.create(
                resource,
                &namespace,
                body,
                WriteTarget::Main,
                request.dry_run(),
                Ownership::Update(&request.manager()),
            )?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Method::DELETE => {
            let selection = request.selection(resource, namespace.clone())?;
            let options = delete_options(request)?;
            let mut store = shared.store();
            let resource_type = store.resource(resource).clone();
            let keys: Vec<ObjectKey> = store
                .list(resource, namespace.as_deref(), |o| selection.matches(o))
                .iter()
                .map(|object| ObjectKey {
                    resource,
                    namespace: object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect();
            let mut deleted = Vec::new();
            for key in keys {
                deleted.push(store.delete(&key, &options)?);
            }
            let list = json!({
                "kind": format!("{}List", resource_type.kind),
                "apiVersion": resource_type.api_version(),
                "metadata": {"resourceVersion": store.resource_version().to_string()},
                "items": deleted,
            });
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(method_not_allowed(&request.method)),
    }
}

fn serve_object(
    shared: &Arc<Shared>,
    key: ObjectKey,
    status: bool,
    request: &ParsedRequest,
) -> Result<Response<ResponseBody>, ApiError> {
    let target = if status {
        WriteTarget::Status
    } else {
        WriteTarget::Main
    };
    let mut store = shared.store();
    let resource_type = store.resource(key.resource).clone();
    match request.method {
        Method::GET => {
            let object = store
                .get(&key)
                .ok_or_else(|| ApiError::not_found(&resource_type, &key.name))?;
            let presented = if request.metadata_only {
                partial_object_metadata(object)
            } else {
                object.clone()
            };
            Ok(json_response(StatusCode::OK, &presented))
        }
        Method::PUT => {
            if let Some(identity) = &request.identity {
                let would_be = store.update(
                    &key,
                    request.json_body()?,
                    target,
                    true,
                    Ownership::Update(&request.manager()),
                )?;
                access::admit_owner_references(shared, &store, identity, &key, &would_be)?;
            }
            let updated = store.update(
                &key,
                request.json_body()?,
                target,
                request.dry_run(),
                Ownership::Update(&request.manager()),
            )?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        Method::PATCH => {
            let patch = PatchBody::parse(
                &request.content_type,
                &request.body,
                request.query.get("fieldManager").map(String::as_str),
                request.flag("force"),
            )?;
            if let Some(identity) = &request.identity {
                let (would_be, _) = store.patch(&key, &patch, target, true, &request.manager())?;
                access::admit_owner_references(shared, &store, identity, &key, &would_be)?;
            }
            let (object, created) =
                store.patch(&key, &patch, target, request.dry_run(), &request.manager())?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &object))
        }
        Method::DELETE if !status => {
            let deleted = store.delete(&key, &delete_options(request)?)?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        _ => Err(method_not_allowed(&request.method)),
    }
}

fn start_watch(
    shared: &Arc<Shared>,
    resource: ResourceId,
    namespace: Option<String>,
    request: &ParsedRequest,
) -> Result<Response<ResponseBody>, ApiError> {
    let selection = request.selection(resource, namespace.clone())?;
    let requested_version = request
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or_default();
    let timeout =
        match request.query.get("timeoutSeconds") {
            Some(seconds) => Duration::from_secs(seconds.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {seconds:?}"))
            })?),
            // The API server's default is a randomised half hour or so.
            None => Duration::from_secs(1800),
        };
    let (lines_sender, lines) = mpsc::channel(64);
    let stream = {
        let store = shared.store();
        let resource_type = store.resource(resource);
        let mut stream = WatchStream {
            selection: selection.clone(),
            kind: resource_type.kind.clone(),
            api_version: resource_type.api_version(),
            initial_lines: Vec::new(),
            backlog: Vec::new(),
            changes: store.subscribe(),
            start_version: store.resource_version(),
            bookmark_interval: request
                .flag("allowWatchBookmarks")
                .then_some(shared.bookmark_interval),
            timeout,
            closed_by_server: shared.watch_epoch.subscribe(),
        };
        if requested_version.is_empty() || requested_version == "0" {
            // Without a resourceVersion, a watch starts with the current state as synthetic
            // ADDED events (`sendInitialEvents=true` then adds the end-of-initial-events bookmark).
            stream.initial_lines = store
                .list(resource, namespace.as_deref(), |o| selection.matches(o))
                .iter()
                .map(|o| super::watch::encode_event("ADDED", &selection.present(o)))
                .collect();
            if request.flag("sendInitialEvents") {
                let end = stream.bookmark(store.resource_version(), true);
                stream.initial_lines.push(end);
            }
        } else {
            let since: u64 = requested_version.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version {requested_version:?}"))
            })?;
            match store.watch_from(since) {
                Ok(resumed) => {
                    stream.backlog = resumed.backlog;
                    stream.changes = resumed.changes;
                    stream.start_version = since;
                }
                Err(gone) => {
                    // The API server answers 200 and reports the expiry as the stream's only event.
                    return Ok(streaming_response(
                        lines,
                        vec![error_event(&gone)],
                        lines_sender,
                    ));
                }
            }
        }
        stream
    };
    match shared.watch_lag {
        None => {
            tokio::spawn(stream.run(lines_sender));
        }
        Some(lag) => {
            // A lagging watch: each event arrives up to `lag` late, in order, and every watch
            // lags on its own, so different caches see the same changes at different times.
            let (direct, mut delayed) = mpsc::channel::<Bytes>(64);
            tokio::spawn(stream.run(direct));
            tokio::spawn(async move {
                let mut due = tokio::time::Instant::now();
                while let Some(line) = delayed.recv().await {
                    due = due.max(tokio::time::Instant::now() + random_below(lag));
                    tokio::time::sleep_until(due).await;
                    if lines_sender.send(line).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::Streaming(lines))
        .expect("static response parts are valid"))
}

/// A random duration below `limit`.
fn random_below(limit: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = limit.as_nanos().max(1) as u64;
    Duration::from_nanos(random % nanos)
}

/// A watch response made of `events` only, ending right after them.
fn streaming_response(
    lines: mpsc::Receiver<Bytes>,
    events: Vec<Bytes>,
    sender: mpsc::Sender<Bytes>,
) -> Response<ResponseBody> {
    for event in events {
        // The channel has room for these and the receiver is right here.
        let _ = sender.try_send(event);
    }
    drop(sender);
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::Streaming(lines))
        .expect("static response parts are valid")
}

fn delete_options(request: &ParsedRequest) -> Result<DeleteOptions, ApiError> {
    let body: Value = if request.body.is_empty() {
        json!({})
    } else {
        request.json_body()?
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| request.query.get("propagationPolicy").map(String::as_str));
    let propagation = match policy {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {other:?}"
            )));
        }
    };
    let body_dry_run = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|m| m == "All"));
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: request.dry_run() || body_dry_run,
        grace_period_seconds: body
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| {
                request
                    .query
                    .get("gracePeriodSeconds")
                    .and_then(|v| v.parse().ok())
            }),
    })
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec(body).expect("a JSON value always serializes");
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::Complete(Some(Bytes::from(bytes))))
        .expect("static response parts are valid")
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-schism-test-double",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "",
        "platform": "linux/amd64",
    })
}

fn group_list(store: &Store) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for resource in store.resources().iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(name, _)| *name == resource.group) {
            Some((_, versions)) if !versions.contains(&resource.version) => {
                versions.push(resource.version.clone())
            }
            Some(_) => {}
            None => groups.push((resource.group.clone(), vec![resource.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store
        .resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| r.discovery_entries())
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// Decodes `application/x-www-form-urlencoded` query parameters.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or_default();
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    Err(_) => decoded.push(b'%'),
                }
            }
            other => decoded.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
