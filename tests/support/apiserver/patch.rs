//! The four PATCH content types and how each one changes a stored object.

use json_patch::PatchOperation;
use serde_json::Value;

use super::store::ApiError;

/// A PATCH request body, classified by its `Content-Type`.
#[derive(Debug, Clone)]
pub enum PatchBody {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902).
    Json(Vec<PatchOperation>),
    /// `application/strategic-merge-patch+json`. Approximated as a JSON merge patch: lists are
    /// replaced whole instead of merged by their patch-merge key, and `$patch` directives are
    /// not interpreted.
    Strategic(Value),
    /// `application/apply-patch+yaml` (server-side apply), with field ownership as
    /// `managed.rs` describes.
    Apply {
        /// The applied configuration.
        body: Value,
        /// `fieldManager` query parameter, required for apply.
        field_manager: String,
        /// `force=true`: take over fields other managers own instead of a 409 Conflict.
        force: bool,
    },
}

impl PatchBody {
    /// Parses a request body according to its content type (parameters after `;` ignored).
    pub fn parse(
        content_type: &str,
        body: &[u8],
        field_manager: Option<&str>,
        force: bool,
    ) -> Result<Self, ApiError> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        let json_body = || {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch body: {e}")))
        };
        match media_type {
            "application/merge-patch+json" => Ok(Self::Merge(json_body()?)),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic(json_body()?)),
            "application/json-patch+json" => {
                let operations = serde_json::from_slice::<Vec<PatchOperation>>(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                Ok(Self::Json(operations))
            }
            "application/apply-patch+yaml" => {
                let field_manager = field_manager.filter(|m| !m.is_empty()).ok_or_else(|| {
                    ApiError::bad_request(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: \
                         is required for apply patch",
                    )
                })?;
                // YAML is a superset of JSON, so this accepts what kube sends (JSON) too.
                let body: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid apply patch YAML: {e}")))?;
                Ok(Self::Apply {
                    body,
                    field_manager: field_manager.to_string(),
                    force,
                })
            }
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format: {other}"),
            )),
        }
    }

    /// True for server-side apply, which creates the object when it does not exist yet.
    pub fn creates_missing_object(&self) -> bool {
        matches!(self, Self::Apply { .. })
    }

    /// The applied configuration of a server-side apply.
    pub fn body(&self) -> Option<&Value> {
        match self {
            Self::Apply { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Applies the patch to a copy of `object` and returns the patched copy (server-side
    /// apply goes through `managed::apply` instead).
    pub fn apply_to(&self, object: &Value) -> Result<Value, ApiError> {
        let mut patched = object.clone();
        match self {
            Self::Merge(patch) | Self::Strategic(patch) | Self::Apply { body: patch, .. } => {
                json_patch::merge(&mut patched, patch);
            }
            Self::Json(operations) => {
                for operation in operations {
                    apply_json_patch_operation(&mut patched, operation)?;
                }
            }
        }
        Ok(patched)
    }
}

fn apply_json_patch_operation(
    document: &mut Value,
    operation: &PatchOperation,
) -> Result<(), ApiError> {
    // The API server's JSON patch library (evanphx/json-patch) treats a missing path as equal
    // to `null` in a `test` operation; kube's finalizer helper relies on this when it tests
    // `/metadata/finalizers` for `null` before adding the first finalizer.
    if let PatchOperation::Test(test) = operation
        && test.value.is_null()
        && document.pointer(test.path.as_str()).is_none()
    {
        return Ok(());
    }
    json_patch::patch(document, std::slice::from_ref(operation)).map_err(|error| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {error}"),
        )
    })
}
