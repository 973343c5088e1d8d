//! API objects as the controller, the runner and the agent decode them from the API server,
//! each then taken through the decision that reads it: a `Chaos` through validation and the
//! controller's next step, a `FaultLease` through the agent's, a `ChaosSchedule` through the
//! schedule's plan, Pods through target resolution. The first byte picks the kind.
#![no_main]

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use schism::api::{Chaos, ChaosSchedule, FaultLease};
use schism::operator::agent::decide::{LocalState, decide, is_live, plan_fault, recheck_after};

/// A fixed "now", so that every run of an input takes the same path.
const NOW: Timestamp = Timestamp::constant(1_780_000_000, 0);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            let Ok(chaos) = serde_json::from_slice::<Chaos>(json) else {
                return;
            };
            let problems: Vec<String> = schism::api::validate::semantic::check_spec(&chaos.spec)
                .iter()
                .map(|p| format!("{p:?}"))
                .collect();
            if let Ok(object) = serde_json::to_value(&chaos) {
                let _ = schism::api::validate::cel_problems(&object);
            }
            let _ = chaos.spec.run_identity();
            let step =
                schism::operator::controller::decide::decide(&chaos, &problems, None, &[], NOW);
            let _ = format!("{step:?}");
        }
        1 => {
            let Ok(lease) = serde_json::from_slice::<FaultLease>(json) else {
                return;
            };
            let node = lease.spec.pod.node_name.clone();
            for (holds_fault, pod_found) in [(false, false), (false, true), (true, true)] {
                let local = LocalState {
                    node_name: &node,
                    holds_fault,
                    pod_found,
                };
                let _ = format!("{:?}", decide(&lease, NOW, &local));
            }
            let _ = is_live(&lease, NOW, &node);
            let _ = recheck_after(&lease, NOW, &node);
            let _ = plan_fault(&lease.spec.fault_id, &lease.spec.fault);
        }
        2 => {
            let Ok(schedule) = serde_json::from_slice::<ChaosSchedule>(json) else {
                return;
            };
            let plan = schism::operator::schedule::decide::plan(&schedule, &[], &[], NOW);
            let _ = format!("{plan:?}");
        }
        3 => {
            let Ok(pods) = serde_json::from_slice::<Vec<Pod>>(json) else {
                return;
            };
            let _ = schism::operator::targets::ready_pods(&LabelSelector::default(), &pods);
        }
        _ => {
            let _ = serde_json::from_slice::<Job>(json);
            let _ = serde_json::from_slice::<Deployment>(json);
            let _ = serde_json::from_slice::<StatefulSet>(json);
        }
    }
});
