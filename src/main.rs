use clap::Parser;

fn main() {
    let cli = schism::cli::Cli::parse();
    std::process::exit(schism::cli::run(cli));
}
