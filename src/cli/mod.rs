//! The `schism` command line: one subcommand per job, each a thin layer over the library.

pub mod validate;

use clap::{Parser, Subcommand};

/// Chaos experiments for replicated systems that end in a verdict: did the system stay
/// consistent and available while Schism broke it on purpose?
#[derive(Parser, Debug)]
#[command(name = "schism", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Validate Chaos manifests offline: schema, CEL rules and semantic checks.
    /// Exit 0 when all are valid, 1 when any is invalid, 2 when a file cannot be read.
    Validate(validate::ValidateArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crd::render_yaml());
            0
        }
        Command::Validate(args) => validate::run(&args),
    }
}
