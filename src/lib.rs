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

/// Every program built on this library counts its heap, so a consistency check can keep to
/// a memory budget that covers everything it allocates (see [`check::memory`]).
#[global_allocator]
static ALLOCATOR: check::memory::CountingAllocator = check::memory::CountingAllocator;
