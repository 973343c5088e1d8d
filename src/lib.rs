//! Schism: chaos experiments for replicated systems that end in a verdict — were the system's
//! answers consistent, and did it stay available?

pub mod api;
pub mod check;
pub mod cli;
pub mod dataplane;
pub mod engine;
pub mod faultplan;
pub mod local;
pub mod operator;
pub mod report;
pub mod workload;
