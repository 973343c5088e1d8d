use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = schism::cli::Cli::parse();
    // RUST_LOG picks what is logged; warnings and errors by default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    std::process::exit(schism::cli::run(cli));
}
