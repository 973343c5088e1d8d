//! The `schism` command line: one subcommand per job, each a thin layer over the library.

pub mod check;
mod check_txn;
pub mod controller;
pub mod halt;
pub mod run;
pub mod validate;
pub mod wait;

use clap::{Parser, Subcommand};

/// Chaos experiments for replicated systems that end in a verdict: did the system stay
/// consistent and available while Schism broke it on purpose?
#[derive(Parser, Debug)]
#[command(name = "schism", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment against local processes in network namespaces (root; no cluster).
    /// Exit 0 Pass, 1 Fail, 2 Inconclusive, 3 error.
    Run(run::RunArgs),
    /// Check recorded histories for linearizability (native JSONL, Jepsen etcd logs, kv logs).
    /// Exit 0 all linearizable, 1 any not, 2 any unknown, 3 unreadable input.
    Check(check::CheckArgs),
    /// Validate Chaos manifests offline: schema, CEL rules and semantic checks.
    /// Exit 0 when all are valid, 1 when any is invalid, 2 when a file cannot be read.
    Validate(validate::ValidateArgs),
    /// Remove what crashed `schism run`s left behind: namespaces, rules, qdiscs, processes.
    Cleanup,
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Run the operator's controller (in the cluster).
    Controller(Box<controller::ControllerArgs>),
    /// Run one experiment in a cluster, end to end (the controller's runner Jobs run this).
    Runner(crate::operator::runner::RunnerArgs),
    /// Run the node agent (DaemonSet, hostPID, privileged): applies this node's FaultLeases.
    Agent(crate::operator::agent::AgentArgs),
    /// Wait for a Chaos's verdict and print a summary: exit 0 Pass, 1 Fail, 2 Inconclusive,
    /// timeout or error.
    Wait(wait::WaitArgs),
    /// Write a Chaos's stored report (JUnit XML, HTML, history) into a directory.
    Report(wait::ReportArgs),
    /// The emergency stop: every running experiment heals its faults at once and concludes
    /// Inconclusive, new ones wait; `--lift` clears it.
    Halt(halt::HaltArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(args),
        Command::Validate(args) => validate::run(&args),
        Command::Cleanup => match crate::local::cleanup_crashed_runs() {
            Ok(report) => {
                print!("{report}");
                0
            }
            Err(e) => {
                eprintln!("schism cleanup: {e}");
                1
            }
        },
        Command::Controller(args) => controller::run(&args, cli.log_json),
        Command::Runner(args) => crate::operator::runner::run(&args),
        Command::Agent(args) => crate::operator::agent::run(&args),
        Command::Wait(args) => wait::wait(&args),
        Command::Report(args) => wait::report(&args),
        Command::Halt(args) => halt::run(&args),
        Command::Crd => {
            print!("{}", crate::api::crd::render_yaml());
            0
        }
    }
}
