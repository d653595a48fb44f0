use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pigeonpost::config;

/// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pigeonpost",
    version,
    about = "One mail server binary: SMTP, Maildir, IMAP, POP3 (replaces Postfix + Dovecot)"
)]
struct Cli {
    /// Configuration file (default: $PIGEONPOST_CONFIG or /etc/pigeonpost/pigeonpost.toml)
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server
    Serve,
    /// Print the effective configuration and where each value came from
    Config {
        /// Only these keys
        keys: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { keys } => {
            let loaded = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            match config::print::render(&loaded.entries, &keys) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => config_failure(&e),
            }
        }
        Command::Serve => {
            let _loaded = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            eprintln!("pigeonpost: serve is not implemented yet");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn config_failure(e: &config::ConfigError) -> ExitCode {
    eprintln!("pigeonpost: {e}");
    ExitCode::from(EXIT_CONFIG)
}
