//! The public API: the `Chaos` custom resource, its CRD, and how manifests are validated.
//!
//! This is the one place that knows the CRD group and version.

pub mod chaos;
pub mod crd;
pub mod cron;
pub mod duration;
pub mod expectation;
pub mod fault_lease;
pub mod schedule;
pub mod status;
pub mod validate;

pub use chaos::*;
pub use duration::KubeDuration;
pub use expectation::{Comparator, Expectation};
pub use fault_lease::*;
pub use schedule::*;
pub use status::*;

/// The API group of every Schism resource.
pub const GROUP: &str = "schism.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "schism.dev/v1alpha1";
