use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    // Usage errors exit 64 (sysexits' EX_USAGE), not clap's 2: several commands give 2 a
    // meaning of their own (unknown, inconclusive), and a CI gate must tell them apart.
    let cli = match schism::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
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
