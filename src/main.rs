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
    Serve {
        /// A complete development server with its state in ./pigeonpost-dev/
        #[arg(long)]
        dev: bool,
    },
    /// Print the effective configuration and where each value came from
    Config {
        /// Only these keys
        keys: Vec<String>,
    },
    /// Make a password hash for a passwd-file (like `doveadm pw`), or test one with -t
    Pw {
        /// Password scheme, e.g. SHA512-CRYPT, BLF-CRYPT, ARGON2ID, SSHA512, CRAM-MD5 (suffix .B64/.HEX to pick the encoding)
        #[arg(short = 's', long = "scheme", default_value = "SHA512-CRYPT")]
        scheme: String,
        /// The password (default: read it from the terminal, twice, or one line from stdin)
        #[arg(short = 'p', long = "password")]
        password: Option<String>,
        /// User name, for schemes that use it
        #[arg(short = 'u', long = "user")]
        user: Option<String>,
        /// Rounds / cost for the crypt and Argon2 schemes
        #[arg(short = 'r', long = "rounds")]
        rounds: Option<u32>,
        /// Test that the password matches this stored hash instead of making one
        #[arg(short = 't', long = "test", value_name = "HASH")]
        test: Option<String>,
    },
    /// Show, retry or delete queued outbound mail (mailq, postqueue -f, postsuper -d)
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// DKIM keys: `dkim keygen` makes one and prints its DNS record (like opendkim-genkey)
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
    },
    /// Print the DNS records DOMAIN needs as zone-file lines (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV); --check compares them with DNS
    DnsRecords {
        /// The mail domain, e.g. example.com
        domain: String,
        /// Look each record up (through dns_servers) and say what is missing or different
        #[arg(long)]
        check: bool,
    },
    /// Virtual users: the passwd-file line, the virtual_mailbox_maps entry and the Maildir
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Virtual aliases: entries of the first virtual_alias_maps table
    Alias {
        #[command(subcommand)]
        action: AliasAction,
    },
    /// Check the alias tables (newaliases(1)): they are read as they are
    /// and reloaded on change, so there is nothing to rebuild
    Newaliases,
    /// Turn a Postfix + Dovecot configuration into a pigeonpost.toml; the report (one line per setting) goes to stderr
    Import {
        /// Where main.cf and master.cf are (`postconf -n` / `postconf -M` output saved as those names works too)
        #[arg(long, default_value = "/etc/postfix", value_name = "DIR")]
        postfix_dir: PathBuf,
        /// Where dovecot.conf is (with its conf.d includes, or `doveconf -n` output saved as dovecot.conf)
        #[arg(long, default_value = "/etc/dovecot", value_name = "DIR")]
        dovecot_dir: PathBuf,
        /// Write the TOML here instead of stdout
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Send a message read from stdin (sendmail(1): -t, -f FROM, -i, recipients)
    #[command(disable_help_flag = true)]
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DkimAction {
    /// Make a signing key (mode 0600) in DIR/SELECTOR.private and print its DNS TXT record (also in DIR/SELECTOR.txt)
    Keygen {
        /// The signing domain (d=)
        #[arg(long)]
        domain: String,
        /// The selector (s=): the key's name in DNS, SELECTOR._domainkey.DOMAIN
        #[arg(long)]
        selector: String,
        /// rsa (rsa-sha256) or ed25519 (ed25519-sha256)
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// RSA key size
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the key
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user: password from the terminal (asked twice) or one line of stdin
    Add {
        /// user@domain, in one of virtual_mailbox_domains
        address: String,
        /// Password scheme of the hash (as for `pw -s`)
        #[arg(short = 's', long = "scheme", default_value = pigeonpost::admin::users::DEFAULT_SCHEME)]
        scheme: String,
    },
    /// Change a user's password (terminal or one line of stdin)
    Passwd {
        address: String,
        #[arg(short = 's', long = "scheme", default_value = pigeonpost::admin::users::DEFAULT_SCHEME)]
        scheme: String,
    },
    /// Delete a user's login and mailbox entry (the mail stays on disk)
    Del { address: String },
    /// List users with their mailbox entries
    List {
        /// Only this domain
        domain: Option<String>,
    },
    /// Show what the files say about a user
    Show { address: String },
}

#[derive(Subcommand)]
enum AliasAction {
    /// Make ADDRESS (or @domain) go to TARGETs, added to its existing targets
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Delete an alias, or only some of its targets
    Del {
        address: String,
        targets: Vec<String>,
    },
    /// List aliases
    List {
        /// Only this domain
        domain: Option<String>,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// List queued messages with their recipients and last errors (like mailq)
    List,
    /// Ask the running server to retry every deferred message now
    Flush,
    /// Release a message a milter held (quarantined) by id, or ALL of them (postsuper -H)
    Release { id: String },
    /// Delete a queued message by id, or ALL of them
    Delete {
        /// Queue id (from `queue list`) or ALL
        id: String,
    },
}

/// The command line, read the way Postfix's compatibility links are: the
/// binary installed (or symlinked) as `sendmail`, `mailq` or `newaliases`
/// is that command, since programs call those names with their own flags
/// (`/usr/sbin/sendmail -oi -t`). The configuration then comes from
/// `$PIGEONPOST_CONFIG` or the default path.
fn command_line() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let insert: &[&str] = match name {
        "sendmail" => &["sendmail"],
        "mailq" => &["queue", "list"],
        "newaliases" => &["newaliases"],
        _ => &[],
    };
    args.splice(1..1, insert.iter().map(Into::into));
    args
}

/// Fixed heap thresholds instead of glibc's moving ones. By default glibc
/// raises its mmap threshold to the size of the largest block freed (up to
/// 32 MiB) and its trim threshold to twice that, so after one big open (a
/// 100,000-message folder's list file read whole, ~10 MB) every later
/// temporary of that size stays on a thread's heap, and a thread heap's
/// free top is never handed back (`malloc_trim` trims only the main
/// heap's): measured, ~80 bytes per message of such a folder stayed
/// resident after its open. Fixed at 4 MiB both, blocks that big are
/// mapped and unmapped, a heap's free top above 4 MiB is returned, and
/// smaller temporaries (a FETCH's reply buffer) keep their pages.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters, before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse_from(command_line());
    match cli.command {
        Command::Import {
            postfix_dir,
            dovecot_dir,
            output,
        } => admin_result(import(&postfix_dir, &dovecot_dir, output.as_deref())),
        Command::Config { keys } => {
            let loaded = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            // Like `postfix check`: every table the configuration names must load.
            if let Err(e) = pigeonpost::tables::Tables::open(&loaded.config)
                .and_then(|_| pigeonpost::auth::Auth::open(&loaded.config))
            {
                return config_failure(&e);
            }
            // ... and the key must be the certificate's.
            // (With ACME the files may not exist yet: `serve` makes them.)
            if let (Some(cert), Some(key), None) = (
                &loaded.config.ssl_cert,
                &loaded.config.ssl_key,
                &loaded.config.acme,
            ) {
                if let Err(e) = pigeonpost::tls::load_certified_key(cert, key) {
                    return config_failure(&config::ConfigError {
                        key: Some("ssl_key".into()),
                        source: loaded.config.source_of("ssl_key").to_string(),
                        reason: e.to_string(),
                    });
                }
            }
            for w in loaded.config.warnings() {
                eprintln!("pigeonpost: warning: {w}");
            }
            for n in &loaded.config.notices {
                eprintln!("pigeonpost: note: {n}");
            }
            match config::print::render(&loaded.entries, &keys) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => config_failure(&e),
            }
        }
        Command::Pw {
            scheme,
            password,
            user,
            rounds,
            test,
        } => pw(&scheme, password, user, rounds, test),
        Command::Queue { action } => {
            let config = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l.config,
                Err(e) => return config_failure(&e),
            };
            use pigeonpost::smtp::queue::cli;
            let result = match action {
                QueueAction::List => cli::list(&config),
                QueueAction::Flush => cli::flush(&config),
                QueueAction::Delete { id } => cli::delete(&config, &id),
                QueueAction::Release { id } => cli::release(&config, &id),
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pigeonpost: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Dkim {
            action:
                DkimAction::Keygen {
                    domain,
                    selector,
                    algorithm,
                    bits,
                    dir,
                },
        } => dkim_keygen(&domain, &selector, &algorithm, bits, &dir),
        Command::DnsRecords { domain, check } => {
            let config = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l.config,
                Err(e) => return config_failure(&e),
            };
            dns_records(&config, &domain, check)
        }
        Command::User { action } => {
            let config = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l.config,
                Err(e) => return config_failure(&e),
            };
            use pigeonpost::admin::users;
            let password = |confirm: bool| -> Result<String, pigeonpost::admin::AdminError> {
                read_password(confirm).map_err(pigeonpost::admin::AdminError::usage)
            };
            let result = match action {
                UserAction::Add { address, scheme } => {
                    password(true).and_then(|p| users::user_add(&config, &address, &p, &scheme))
                }
                UserAction::Passwd { address, scheme } => {
                    password(true).and_then(|p| users::user_passwd(&config, &address, &p, &scheme))
                }
                UserAction::Del { address } => users::user_del(&config, &address),
                UserAction::List { domain } => users::user_list(&config, domain.as_deref()),
                UserAction::Show { address } => users::user_show(&config, &address),
            };
            admin_result(result)
        }
        Command::Alias { action } => {
            let config = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l.config,
                Err(e) => return config_failure(&e),
            };
            use pigeonpost::admin::users;
            let result = match action {
                AliasAction::Add { address, targets } => {
                    users::alias_add(&config, &address, &targets)
                }
                AliasAction::Del { address, targets } => {
                    users::alias_del(&config, &address, &targets)
                }
                AliasAction::List { domain } => users::alias_list(&config, domain.as_deref()),
            };
            admin_result(result)
        }
        Command::Newaliases => {
            let loaded = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            if let Err(e) = pigeonpost::tables::Tables::open(&loaded.config) {
                return config_failure(&e);
            }
            let maps = loaded
                .entries
                .iter()
                .find(|e| e.key == "alias_maps")
                .map(|e| e.value.as_str())
                .unwrap_or("");
            eprintln!(
                "pigeonpost newaliases: alias_maps = {maps:?} read fine; tables are used as \
                 they are and a running server reloads them on change: nothing to rebuild"
            );
            ExitCode::SUCCESS
        }
        Command::Sendmail { args } => {
            let config = match config::load(&config::LoadOptions::from_process(cli.config)) {
                Ok(l) => l.config,
                Err(e) => return config_failure(&e),
            };
            let mut stdin = std::io::stdin().lock();
            let mut stdout = std::io::stdout().lock();
            match pigeonpost::smtp::queue::cli::sendmail(&config, &args, &mut stdin, &mut stdout) {
                Ok(notice) => {
                    if !notice.is_empty() {
                        eprintln!("{notice}");
                    }
                    ExitCode::SUCCESS
                }
                Err((code, e)) => {
                    eprintln!("pigeonpost sendmail: {e}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Serve { dev } => {
            let mut config_path = cli.config;
            if dev {
                if config_path.is_some() {
                    eprintln!("pigeonpost: --dev uses ./{}/pigeonpost.toml; do not combine it with --config", pigeonpost::dev::DEV_DIR);
                    return ExitCode::from(EXIT_CONFIG);
                }
                let setup = match pigeonpost::dev::prepare(std::path::Path::new(".")) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!(
                            "pigeonpost: cannot prepare ./{}: {e}",
                            pigeonpost::dev::DEV_DIR
                        );
                        return ExitCode::from(EXIT_RUNTIME);
                    }
                };
                eprintln!("{}", pigeonpost::dev::banner(&setup));
                config_path = Some(setup.config);
            }
            let loaded = match config::load(&config::LoadOptions::from_process(config_path)) {
                Ok(l) => l,
                Err(e) => return config_failure(&e),
            };
            serve(loaded.config)
        }
    }
}

fn dkim_keygen(
    domain: &str,
    selector: &str,
    algorithm: &str,
    bits: usize,
    dir: &std::path::Path,
) -> ExitCode {
    use pigeonpost::mailauth::keygen;
    let algorithm = match keygen::Algorithm::parse(algorithm) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pigeonpost dkim keygen: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match keygen::write_key(dir, domain, selector, algorithm, bits) {
        Ok((private, _txt, line)) => {
            // The KeyTable resolves relative paths from its own directory.
            let private = std::fs::canonicalize(&private).unwrap_or(private);
            eprintln!(
                "pigeonpost dkim keygen: key in {} (for dkim_key_table: {selector}._domainkey.{domain} {domain}:{selector}:{})",
                private.display(),
                private.display()
            );
            print!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pigeonpost dkim keygen: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn dns_records(config: &config::Config, domain: &str, check: bool) -> ExitCode {
    use pigeonpost::mailauth::{keygen, sign::Signer};
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut keys = Vec::new();
    if let (Some(k), Some(s)) = (&config.dkim_key_table, &config.dkim_signing_table) {
        match Signer::open(k, s) {
            Ok(signer) => {
                for (_, key) in signer.all_keys() {
                    if key.domain == domain {
                        keys.push((key.selector.clone(), key.algorithm(), key.public_key()));
                    }
                }
            }
            Err(e) => {
                eprintln!("pigeonpost: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    // MTA-STS policy id: anything alphanumeric that changes with the policy.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400).to_string())
        .unwrap_or_default();
    let records = keygen::records(&domain, &config.myhostname, &keys, &today);
    if !check {
        println!("; DNS records for {domain}, mail on {}", config.myhostname);
        if keys.is_empty() {
            println!("; no DKIM key for {domain} in dkim_key_table: make one with pigeonpost dkim keygen");
        }
        for r in &records {
            println!("{}", r.zone_line());
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pigeonpost: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(keygen::check(&records, &config.dns_servers)) {
        Ok(results) => {
            let mut all_ok = true;
            for (r, found) in results {
                let (word, detail) = match found {
                    keygen::Found::Ok => ("ok", String::new()),
                    keygen::Found::Missing => ("missing", String::new()),
                    keygen::Found::Different(have) => {
                        ("different", format!(" (DNS has: {})", have.join(" | ")))
                    }
                    keygen::Found::Error(e) => ("error", format!(" ({e})")),
                };
                all_ok &= word == "ok";
                println!("{word:9} {} {} {}{detail}", r.name, r.rtype, r.data);
            }
            if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Err(e) => {
            eprintln!("pigeonpost: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn serve(config: config::Config) -> ExitCode {
    pigeonpost::observe::init_logging(&config);
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    for n in &config.notices {
        tracing::info!("{n}");
    }
    if let Some((before, after)) = server::raise_open_files_limit() {
        tracing::info!(before, after, "open files limit raised to the hard limit");
    }
    let (state, reloadables) = match server::build_state(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pigeonpost: {e}");
            return ExitCode::from(if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            });
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

/// `pigeonpost pw`: prints a `{SCHEME}hash` line, or with `-t` checks one.
fn pw(
    scheme: &str,
    password: Option<String>,
    user: Option<String>,
    rounds: Option<u32>,
    test: Option<String>,
) -> ExitCode {
    use pigeonpost::auth::scheme;
    let password = match password {
        Some(p) => p,
        None => match read_password(test.is_none()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pigeonpost: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    if password.is_empty() {
        // As doveadm pw: a hash of nothing would let anyone log in.
        eprintln!("pigeonpost: empty passwords are not allowed");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(stored) = test {
        let default = scheme::parse_spec(scheme)
            .map(|(s, _)| s)
            .unwrap_or(scheme::Scheme::Plain);
        return match scheme::verify(&stored, default, password.as_bytes()) {
            Ok(true) => {
                println!("{stored} (verified)");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!("pigeonpost: password does not match");
                ExitCode::from(EXIT_RUNTIME)
            }
            Err(e) => {
                eprintln!("pigeonpost: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    match scheme::hash_spec(scheme, password.as_bytes(), user.as_deref(), rounds) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pigeonpost: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Reads a password: from a terminal without echo (twice when making a hash), else one line of stdin.
fn read_password(confirm: bool) -> Result<String, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // SAFETY: termios calls on fd 0, which is a terminal; echo is restored below.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        let saved = unsafe { libc::tcgetattr(0, &mut term) } == 0;
        let original = term;
        if saved {
            term.c_lflag &= !libc::ECHO;
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &term) };
        }
        let mut line = String::new();
        let r = std::io::stdin().lock().read_line(&mut line);
        if saved {
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &original) };
        }
        eprintln!();
        r.map_err(|e| e.to_string())?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("Enter new password: ")?;
    if confirm && ask("Retype new password: ")? != first {
        return Err("passwords don't match".into());
    }
    Ok(first)
}

fn admin_result(result: Result<String, pigeonpost::admin::AdminError>) -> ExitCode {
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pigeonpost: {e}");
            ExitCode::from(e.code)
        }
    }
}

fn config_failure(e: &config::ConfigError) -> ExitCode {
    eprintln!("pigeonpost: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// `pigeonpost import`: the TOML to stdout or `-o FILE`, the report to stderr.
fn import(
    postfix_dir: &std::path::Path,
    dovecot_dir: &std::path::Path,
    output: Option<&std::path::Path>,
) -> Result<String, pigeonpost::admin::AdminError> {
    use pigeonpost::admin::{import::import as run, AdminError};
    let imported = run(postfix_dir, dovecot_dir)?;
    for line in &imported.report {
        eprintln!("{line}");
    }
    match output {
        Some(path) => {
            std::fs::write(path, &imported.toml)
                .map_err(|e| AdminError::runtime(format!("{}: {e}", path.display())))?;
            Ok(String::new())
        }
        None => Ok(imported.toml),
    }
}
