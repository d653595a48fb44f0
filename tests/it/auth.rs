//! Authentication end to end: `pigeonpost pw` against the real `doveadm pw`
//! both ways, passdb/userdb lookups, and SASL exchanges checked against a
//! passwd-file.

use pigeonpost::auth::sasl::{Mechanism, SaslExchange, SaslStep};
use pigeonpost::auth::{Auth, Verdict};
use pigeonpost::config::{load, LoadOptions};

use crate::util::{require_tool, run, stderr, stdout, Tree};

/// Schemes `pigeonpost pw -s` makes and `doveadm pw -t` must accept.
const SCHEMES: &[&str] = &[
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "BLF-CRYPT",
    "MD5-CRYPT",
    "CRYPT",
    "ARGON2ID",
    "ARGON2I",
    "CRAM-MD5",
    "SSHA512",
    "SSHA256",
    "SSHA",
    "SHA512",
    "SHA256",
    "SHA",
    "PLAIN-MD5",
    "PLAIN",
    "SHA512.HEX",
    "PLAIN.B64",
];

#[test]
fn pw_hashes_are_accepted_by_doveadm() {
    if !require_tool("doveadm") {
        return;
    }
    for scheme in SCHEMES {
        for password in ["secret", "pässwörd ü", "p@ss:w0rd$!{x}"] {
            let out = run(&["pw", "-s", scheme, "-p", password], &[]);
            assert!(out.status.success(), "{scheme}: {}", stderr(&out));
            let hash = stdout(&out).trim().to_string();
            let scheme_name = scheme.split('.').next().unwrap();
            assert!(
                hash.starts_with(&format!("{{{scheme_name}")),
                "{scheme}: {hash}"
            );
            let ok = std::process::Command::new("doveadm")
                .args(["pw", "-t", &hash, "-p", password])
                .output()
                .unwrap();
            assert!(
                ok.status.success(),
                "doveadm rejects {scheme} {hash}: {}",
                String::from_utf8_lossy(&ok.stderr)
            );
            assert!(String::from_utf8_lossy(&ok.stdout).contains("(verified)"));
            let bad = std::process::Command::new("doveadm")
                .args(["pw", "-t", &hash, "-p", "wrong"])
                .output()
                .unwrap();
            assert!(
                !bad.status.success(),
                "doveadm accepts a wrong password for {scheme}"
            );
        }
    }
}

#[test]
fn pw_verifies_hashes_doveadm_made() {
    // The committed fixture was made by doveadm (see its header); check a
    // sample of schemes through the binary's -t (the unit tests in
    // src/auth/scheme.rs check every line).
    let fixture = include_str!("../fixtures/doveadm/hashes.txt");
    let mut checked = 0;
    for line in fixture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut f = line.splitn(3, '\t');
        let (scheme, password, hash) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if scheme.contains(" -r ") || password.is_empty() || scheme.starts_with("ARGON2") {
            continue; // slow variants are covered by the unit tests
        }
        let out = run(&["pw", "-t", hash, "-p", password], &[]);
        assert!(out.status.success(), "{scheme} {hash}: {}", stderr(&out));
        assert!(stdout(&out).contains("(verified)"));
        let out = run(&["pw", "-t", hash, "-p", "not it"], &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{scheme}: wrong password must fail"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} fixture lines checked");
}

#[test]
fn pw_reads_the_password_from_stdin_and_rejects_unknown_schemes() {
    let out = crate::util::output_with_stdin(
        crate::util::pigeonpost().args(["pw", "-s", "SSHA512"]),
        b"from-stdin\n",
    );
    let hash = stdout(&out).trim().to_string();
    assert!(run(&["pw", "-t", &hash, "-p", "from-stdin"], &[])
        .status
        .success());
    let out = run(&["pw", "-s", "NOPE-CRYPT", "-p", "x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("NOPE-CRYPT"), "{}", stderr(&out));
}

fn auth_for(t: &Tree, extra: &str) -> Auth {
    let users = t.write(
        "dovecot/users",
        &format!(
            "# user:password:uid:gid:gecos:home:shell:extra\n\
             john@example.com:{}:5000:5000::/var/vmail/example.com/john::\n\
             carol@example.com:{{CRAM-MD5}}{}:5000:5000::::userdb_mail=maildir:/srv/carol\n\
             bob@example.com:{{PLAIN}}bob123::::::\n\
             nopw@example.com:{{PLAIN}}::::::\n",
            stdout(&run(&["pw", "-s", "SHA512-CRYPT", "-p", "john123"], &[])).trim(),
            stdout(&run(&["pw", "-s", "CRAM-MD5", "-p", "carol123"], &[]))
                .trim()
                .trim_start_matches("{CRAM-MD5}"),
        ),
    );
    let cfg = t.write(
        "pigeonpost.toml",
        &format!(
            "alias_maps = \"\"\npassdb = \"passwd-file:{}\"\n{extra}",
            users.display()
        ),
    );
    let loaded = load(&LoadOptions {
        config_path: Some(cfg),
        env: vec![],
    })
    .unwrap();
    Auth::open(&loaded.config).unwrap()
}

#[tokio::test]
async fn passwd_file_passdb_and_userdbs() {
    let t = Tree::new();
    let auth = auth_for(
        &t,
        "userdb = \"static:uid=5000 gid=5001 home=/var/vmail/%Ld/%Ln\"\n",
    );
    assert_eq!(
        auth.check_password("john@example.com", b"john123").await,
        Verdict::Ok("john@example.com".into())
    );
    assert_eq!(
        auth.check_password("john@example.com", b"john124").await,
        Verdict::Fail
    );
    assert_eq!(
        auth.check_password("nobody@example.com", b"john123").await,
        Verdict::Fail
    );
    assert_eq!(
        auth.check_password("bob@example.com", b"bob123").await,
        Verdict::Ok("bob@example.com".into())
    );
    let u = auth.user("John@Example.COM").unwrap().unwrap();
    assert_eq!((u.uid, u.gid), (5000, 5001));
    assert_eq!(
        u.home.unwrap().to_str(),
        Some("/var/vmail/example.com/john")
    );

    let t2 = Tree::new();
    let users_path = t2.path("dovecot/users");
    let auth = auth_for(
        &t2,
        &format!("userdb = \"passwd-file:{}\"\n", users_path.display()),
    );
    let john = auth.user("john@example.com").unwrap().unwrap();
    assert_eq!(
        john.home.unwrap().to_str(),
        Some("/var/vmail/example.com/john")
    );
    let carol = auth.user("carol@example.com").unwrap().unwrap();
    assert_eq!(carol.mail.as_deref(), Some("maildir:/srv/carol"));
    assert!(auth.user("ghost@example.com").unwrap().is_none());
}

/// Runs a SASL exchange with the client's lines, returning the final step.
fn exchange(mech: Mechanism, initial: Option<&str>, nonce: &str, lines: &[String]) -> SaslStep {
    let (mut ex, mut step) =
        SaslExchange::start_with_nonce(mech, initial, "mail.example.com", nonce);
    for l in lines {
        assert!(
            matches!(step, SaslStep::Challenge(_)),
            "unexpected {step:?}"
        );
        step = ex.step(l);
    }
    step
}

#[tokio::test]
async fn sasl_exchanges_check_against_the_passdb() {
    use base64::Engine;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let t = Tree::new();
    let auth = auth_for(&t, "userdb = \"static:uid=5000 gid=5000\"\n");

    let step = exchange(
        Mechanism::Plain,
        Some(&b64(b"\0john@example.com\0john123")),
        "",
        &[],
    );
    let SaslStep::Done(creds) = step else {
        panic!("{step:?}")
    };
    assert_eq!(
        auth.check_sasl(creds).await,
        Verdict::Ok("john@example.com".into())
    );

    let step = exchange(
        Mechanism::Login,
        None,
        "",
        &[b64(b"john@example.com"), b64(b"wrong")],
    );
    let SaslStep::Done(creds) = step else {
        panic!("{step:?}")
    };
    assert_eq!(auth.check_sasl(creds).await, Verdict::Fail);

    // CRAM-MD5 against a stored {CRAM-MD5} context and against a {PLAIN} password.
    for (user, password) in [
        ("carol@example.com", "carol123"),
        ("bob@example.com", "bob123"),
    ] {
        let creds = cram_md5_credentials(user, password.as_bytes());
        assert_eq!(
            auth.check_sasl(creds).await,
            Verdict::Ok(user.into()),
            "{user}"
        );
    }
}

#[tokio::test]
async fn cram_md5_cannot_log_in_to_an_account_with_an_empty_password() {
    let t = Tree::new();
    let auth = auth_for(&t, "");
    // The right digest for the (empty) password: still refused.
    let creds = cram_md5_credentials("nopw@example.com", b"");
    assert_eq!(auth.check_sasl(creds).await, Verdict::Fail);
    assert_eq!(
        auth.check_password("nopw@example.com", b"").await,
        Verdict::Fail
    );
}

/// A client's side of a CRAM-MD5 exchange for `user` with `password`.
fn cram_md5_credentials(user: &str, password: &[u8]) -> pigeonpost::auth::sasl::Credentials {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut ex, step) = SaslExchange::start_with_nonce(
        Mechanism::CramMd5,
        None,
        "mail.example.com",
        "<1.2@mail.example.com>",
    );
    let SaslStep::Challenge(ch) = step else {
        panic!("{step:?}")
    };
    let challenge = b64.decode(ch).unwrap();
    let digest = hmac_md5_hex(password, &challenge);
    let SaslStep::Done(creds) = ex.step(&b64.encode(format!("{user} {digest}"))) else {
        panic!()
    };
    creds
}

fn hmac_md5_hex(key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<md5::Md5>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn dev_server_reuses_its_state() {
    let t = Tree::new();
    let mut env: Vec<(String, String)> = [
        "smtp",
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "http",
    ]
    .iter()
    .map(|n| {
        (
            format!("PIGEONPOST_LISTEN__{}", n.to_uppercase()),
            "127.0.0.1:0".to_string(),
        )
    })
    .collect();
    env.push(("PIGEONPOST_LOG_FORMAT".into(), "json".into()));
    let start = || {
        let mut cmd = crate::util::pigeonpost();
        cmd.args(["serve", "--dev"])
            .current_dir(t.dir.path())
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let mut password = None;
        let mut listening = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(p) = line.trim().strip_prefix("password") {
                password = Some(p.trim().to_string());
            }
            listening += usize::from(line.contains("\"listening\""));
            if line.contains("pigeonpost ready") {
                break;
            }
        }
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success());
        (password.expect("banner prints the password"), listening)
    };
    let (first, listening) = start();
    assert_eq!(
        listening, 8,
        "every dev listener (TLS ones included) is bound"
    );
    let (second, _) = start();
    assert_eq!(first, second, "the second run reuses the demo user");
    let users = std::fs::read_to_string(t.path("pigeonpost-dev/users")).unwrap();
    let hash = users
        .lines()
        .find(|l| l.starts_with("demo@example.com:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    assert!(
        run(&["pw", "-t", hash, "-p", &first], &[]).status.success(),
        "printed password matches the passwd-file"
    );
    for f in ["tls/cert.pem", "tls/key.pem", "pigeonpost.toml", "vmailbox"] {
        assert!(t.path(&format!("pigeonpost-dev/{f}")).exists(), "{f}");
    }
}

/// An account whose stored password is empty never logs in, over IMAP,
/// POP3 or SMTP AUTH, and `pw` won't make such a hash (as Dovecot).
#[test]
fn an_empty_password_never_logs_in_and_pw_refuses_one() {
    use std::io::{BufRead, BufReader, Write};
    let fx = crate::util::MailFixture::new(&[("imap", "127.0.0.1:0"), ("pop3", "127.0.0.1:0")], "");
    let users = fx.tree.path("users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("nopw@example.com:{PLAIN}::::::\n");
    std::fs::write(&users, text).unwrap();
    let server = fx.start();
    // A line-based exchange: send `cmd`, return the first line that
    // starts with `tag` (or the first line when `tag` is empty).
    let talk = |addr: std::net::SocketAddr, lines: &[(&str, &str)]| -> Vec<String> {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut greeting = String::new();
        r.read_line(&mut greeting).unwrap();
        let mut out = Vec::new();
        for (cmd, tag) in lines {
            w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 {
                    break;
                }
                if tag.is_empty() || l.starts_with(tag) {
                    out.push(l.trim_end().to_string());
                    break;
                }
            }
        }
        out
    };
    let imap = talk(
        server.addr("imap"),
        &[
            ("a LOGIN nopw@example.com \"\"", "a "),
            ("b LOGIN john@example.com john123", "b "),
        ],
    );
    assert!(imap[0].starts_with("a NO"), "{imap:?}");
    assert!(imap[1].starts_with("b OK"), "{imap:?}");
    let pop = talk(
        server.addr("pop3"),
        &[("USER nopw@example.com", ""), ("PASS ", "")],
    );
    assert!(pop[1].starts_with("-ERR"), "{pop:?}");
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD.encode("\0nopw@example.com\0");
    let smtp = talk(
        server.addr("smtp"),
        &[
            ("EHLO client", "250 "),
            (&format!("AUTH PLAIN {plain}"), ""),
        ],
    );
    assert!(smtp[1].starts_with("535"), "{smtp:?}");
    // pw: from stdin (empty) and from -p "".
    let mut cmd = crate::util::pigeonpost();
    let out = cmd
        .args(["pw", "-s", "SHA512-CRYPT"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty passwords are not allowed"));
    let out = run(&["pw", "-p", ""], &[]);
    assert_eq!(out.status.code(), Some(2));
}
