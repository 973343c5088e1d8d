//! The experiment engine, the same for every backend: the seeded timeline of faults, the
//! client workload and its history, the availability probe, and the verdict.

pub mod consistency;
pub mod experiment;
pub mod generator;
pub mod guards;
pub mod probe;
pub mod prometheus;
pub mod recorded;
pub mod roles;
pub mod suspend;
pub mod timeline;
pub mod transactions;
pub mod verdict;
