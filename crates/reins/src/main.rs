use clap::Parser;

/// reins: learning from human feedback in one binary.
#[derive(Parser)]
#[command(name = "reins", version, about)]
enum Cli {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli {}
}
