use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pigeonpost::{config, server};

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
            // Like `postfix check`: every table the configuration names must load.
            if let Err(e) = pigeonpost::tables::Tables::open(&loaded.config) {
                return config_failure(&e);
            }
            match config::print::render(&loaded.entries, &keys) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => config_failure(&e),
            }
        }
        Command::Serve => {
            let loaded = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            serve(loaded.config)
        }
    }
}

fn serve(config: config::Config) -> ExitCode {
    pigeonpost::observe::init_logging(&config);
    let (state, reloadables) = match server::build_state(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pigeonpost: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pigeonpost: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(server::run(state, reloadables)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            eprintln!("pigeonpost: {e}");
            ExitCode::from(if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

fn config_failure(e: &config::ConfigError) -> ExitCode {
    eprintln!("pigeonpost: {e}");
    ExitCode::from(EXIT_CONFIG)
}
