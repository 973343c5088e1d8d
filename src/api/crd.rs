//! Rendering the CRDs as the YAML that `crds/` holds and `schism crd` prints.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::chaos::Chaos;
use super::fault_lease::FaultLease;
use super::schedule::ChaosSchedule;

/// Every CRD Schism installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Chaos::crd(), ChaosSchedule::crd(), FaultLease::crd()]
}

/// The CRDs as one multi-document YAML file, byte-for-byte what `crds/schism.yaml` holds.
pub fn render_yaml() -> String {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML"));
    }
    out
}
