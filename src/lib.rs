//! Schism: chaos experiments for replicated systems that end in a verdict — were the system's
//! answers consistent, and did it stay available?

pub mod api;
pub mod cli;
