//! `pigeonpost serve --dev`: a complete server for trying pigeonpost out,
//! with all state in `./pigeonpost-dev/` (Maildirs, queue, a passwd-file
//! with a demo user, a self-signed certificate). Running it again reuses
//! that state; the generated `pigeonpost.toml` there can be edited.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::auth::scheme::{self, Scheme};

pub const DEV_DIR: &str = "pigeonpost-dev";
pub const DEMO_USER: &str = "demo@example.com";

/// The dev listeners: the standard ports plus 2500 (HTTP stays on 8080).
pub const DEV_PORTS: [(&str, u16); 8] = [
    ("smtp", 2525),
    ("submission", 2587),
    ("submissions", 2465),
    ("imap", 2143),
    ("imaps", 2993),
    ("pop3", 2110),
    ("pop3s", 2995),
    ("http", 8080),
];

/// What `prepare` made or found.
pub struct DevSetup {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub password: String,
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Creates `./pigeonpost-dev/` on first use; afterwards only reads it.
pub fn prepare(base: &Path) -> std::io::Result<DevSetup> {
    let dir = std::path::absolute(base.join(DEV_DIR))?;
    for sub in ["", "mail", "queue", "tls"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;

    let cert = dir.join("tls/cert.pem");
    let key = dir.join("tls/key.pem");
    if !cert.exists() || !key.exists() {
        let (cert_pem, key_pem) = crate::tls::self_signed(&["localhost", "127.0.0.1", "::1"]);
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(&cert);
        write_private(&key, &key_pem)?;
        write_private(&cert, &cert_pem)?;
    }

    let password_file = dir.join("demo-password.txt");
    let users = dir.join("users");
    let password = match fs::read_to_string(&password_file) {
        Ok(p) if users.exists() => p.trim().to_string(),
        _ => {
            let password: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(16)
                .map(char::from)
                .collect();
            let hash = scheme::hash(
                Scheme::Sha512Crypt,
                password.as_bytes(),
                Some(DEMO_USER),
                None,
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let _ = fs::remove_file(&password_file);
            let _ = fs::remove_file(&users);
            write_private(&password_file, &format!("{password}\n"))?;
            write_private(&users, &format!("# Dovecot passwd-file: user:{{SCHEME}}hash:uid:gid::home::extra\n{DEMO_USER}:{hash}::::::\n"))?;
            password
        }
    };

    let vmailbox = dir.join("vmailbox");
    if !vmailbox.exists() {
        write_private(&vmailbox, &format!("# virtual_mailbox_maps: address -> Maildir under virtual_mailbox_base\n{DEMO_USER} example.com/demo/\n"))?;
    }
    let valias = dir.join("virtual");
    if !valias.exists() {
        write_private(
            &valias,
            &format!(
                "# virtual_alias_maps: address -> addresses\npostmaster@example.com {DEMO_USER}\n"
            ),
        )?;
    }

    let config = dir.join("pigeonpost.toml");
    if !config.exists() {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let d = dir.display();
        let mut listen = String::new();
        for (name, port) in DEV_PORTS {
            listen.push_str(&format!("{name} = \"127.0.0.1:{port}\"\n"));
        }
        let text = format!(
            r#"# Written by `pigeonpost serve --dev`; edit freely, delete to regenerate.
myhostname = "localhost"
mydomain = "example.com"
mydestination = "localhost"
mynetworks = "127.0.0.0/8 [::1]/128"
alias_maps = ""
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "{d}/mail"
virtual_mailbox_maps = "hash:{d}/vmailbox"
virtual_alias_maps = "hash:{d}/virtual"
virtual_uid_maps = "static:{uid}"
virtual_gid_maps = "static:{gid}"
virtual_minimum_uid = {min_uid}
recipient_delimiter = "+"
queue_directory = "{d}/queue"
mail_location = "maildir:{d}/mail/%d/%n"
auth_mechanisms = "plain login"
passdb = "passwd-file:{d}/users"
userdb = "static:uid={uid} gid={gid} home={d}/mail/%d/%n"
ssl_cert = "<{d}/tls/cert.pem"
ssl_key = "<{d}/tls/key.pem"

[listen]
{listen}lmtp = ""
"#,
            min_uid = uid.min(100),
        );
        write_private(&config, &text)?;
    }
    Ok(DevSetup {
        dir,
        config,
        password,
    })
}

/// The text printed at start: where things are and how to connect.
pub fn banner(setup: &DevSetup) -> String {
    format!(
        "\npigeonpost dev server — state in {dir}\n\
         \n  user      {DEMO_USER}\n  password  {pw}\n\
         \n  SMTP      localhost:2525 (STARTTLS), submission localhost:2587 (STARTTLS), localhost:2465 (TLS)\
         \n  IMAP      localhost:2143 (STARTTLS), localhost:2993 (TLS)\
         \n  POP3      localhost:2110 (STLS), localhost:2995 (TLS)\
         \n  health    http://127.0.0.1:8080/healthz  /readyz  /metrics\
         \n\n  The certificate is self-signed ({dir}/tls/cert.pem): tell your client to accept it.\
         \n  Settings: {cfg} (PIGEONPOST_* variables override it). Stop with Ctrl-C.\n",
        dir = setup.dir.display(),
        pw = setup.password,
        cfg = setup.config.display(),
    )
}
