//! The Kubernetes backend: the controller that runs `Chaos` experiments, the node agent that
//! applies `FaultLease`s on its node, leader election and the operational endpoints.

pub mod agent;
pub mod controller;
pub mod leader;
pub mod metrics;
