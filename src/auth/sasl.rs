//! Sans-IO SASL server mechanisms: PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login) and CRAM-MD5 (RFC 2195).
//!
//! SMTP AUTH (RFC 4954), IMAP AUTHENTICATE (RFC 3501) and POP3 AUTH (RFC 5034)
//! all carry SASL messages as base64 text, so the exchange works on that text
//! directly: the protocol layer hands over the client's line (base64, `*` to
//! cancel, possibly empty) and sends back the base64 challenge after `334 `
//! (SMTP) or `+ ` (IMAP/POP3). It never touches a socket.
//!
//! ```text
//! let (mut ex, mut step) = SaslExchange::start(mech, initial, "mail.example.org");
//! loop {
//!     match step {
//!         SaslStep::Challenge(c) => { send(c); step = ex.step(&read_line()); }
//!         SaslStep::Done(creds) => break creds.verify(&stored, default_scheme),
//!         SaslStep::Failed(e) => break false,
//!     }
//! }
//! ```

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::RngCore;

use super::scheme::{self, Scheme};

/// Client-side base64: padding optional (some clients omit it).
const B64_CLIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A SASL mechanism the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// The de-facto LOGIN mechanism (Outlook & co.).
    Login,
    /// RFC 2195 CRAM-MD5.
    CramMd5,
}

impl Mechanism {
    /// All mechanisms, in the order usually advertised.
    pub const ALL: &'static [Mechanism] = &[Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5];

    /// Looks a mechanism up by its SASL name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "CRAM-MD5" => Some(Mechanism::CramMd5),
            _ => None,
        }
    }

    /// The SASL name as advertised (`AUTH PLAIN LOGIN CRAM-MD5`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }

    /// Whether the client sends the password itself (PLAIN, LOGIN): such
    /// mechanisms are subject to `disable_plaintext_auth`.
    pub fn is_plaintext(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange failed. Messages never contain client data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*`.
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// The client's line is not valid base64.
    #[error("invalid base64 data")]
    BadBase64,
    /// The decoded message is not what the mechanism expects.
    #[error("malformed SASL message: {0}")]
    Malformed(&'static str),
    /// PLAIN with an authorization identity different from the
    /// authentication identity (no proxy authorization).
    #[error("authorization identity differs from authentication identity")]
    AuthzidNotAllowed,
}

/// What the protocol layer does next.
#[derive(Debug)]
pub enum SaslStep {
    /// Send this base64 text after `334 ` / `+ ` and pass the reply to
    /// [`SaslExchange::step`]. May be empty (PLAIN without initial response).
    Challenge(String),
    /// The client finished; check the credentials against the passdb.
    Done(Credentials),
    /// The exchange is over and failed (RFC 4954: 501 for syntax, etc.).
    Failed(SaslError),
}

/// What the client proved it knows, to be checked against the stored password.
#[derive(Clone)]
pub enum Credentials {
    /// From PLAIN or LOGIN.
    Plain {
        /// Authorization identity, only ever `None` or equal to `authcid`.
        authzid: Option<String>,
        /// Authentication identity (the user name).
        authcid: String,
        /// The password as sent.
        password: Vec<u8>,
    },
    /// From CRAM-MD5.
    CramMd5 {
        /// The user name.
        user: String,
        /// The challenge the server sent (decoded).
        challenge: Vec<u8>,
        /// The client's HMAC-MD5 digest, lower-case hex.
        response_hex: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Plain {
                authzid, authcid, ..
            } => f
                .debug_struct("Plain")
                .field("authzid", authzid)
                .field("authcid", authcid)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::CramMd5 {
                user, challenge, ..
            } => f
                .debug_struct("CramMd5")
                .field("user", user)
                .field("challenge", &String::from_utf8_lossy(challenge))
                .field("response_hex", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    /// The user name to look up in the passdb.
    pub fn username(&self) -> &str {
        match self {
            Credentials::Plain { authcid, .. } => authcid,
            Credentials::CramMd5 { user, .. } => user,
        }
    }

    /// Checks the credentials against a stored password (passdb value, see
    /// [`scheme::verify`]). CRAM-MD5 needs a `{CRAM-MD5}` or `{PLAIN}` stored
    /// value; anything else, or any malformed value, is `false`.
    ///
    /// Slow schemes (see [`Scheme::is_slow`]) make this expensive: call it
    /// from a blocking thread.
    pub fn verify(&self, stored: &str, default: Scheme) -> bool {
        match self {
            Credentials::Plain { password, .. } => {
                scheme::verify(stored, default, password).unwrap_or(false)
            }
            Credentials::CramMd5 {
                challenge,
                response_hex,
                ..
            } => scheme::cram_md5_context(stored, default)
                .is_some_and(|ctx| scheme::cram_md5_verify(&ctx, challenge, response_hex)),
        }
    }
}

#[derive(Debug)]
enum State {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
    CramResponse { challenge: Vec<u8> },
    Finished,
}

/// One server-side SASL exchange.
#[derive(Debug)]
pub struct SaslExchange {
    mech: Mechanism,
    state: State,
}

/// Decodes a client line; `*` cancels.
fn decode_line(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_matches(|c: char| c == '\r' || c == '\n' || c == ' ' || c == '\t');
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    B64_CLIENT.decode(line).map_err(|_| SaslError::BadBase64)
}

fn utf8(bytes: Vec<u8>, what: &'static str) -> Result<String, SaslError> {
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed(what))
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn parse_plain(msg: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN message must be authzid NUL authcid NUL password",
        ));
    };
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty PLAIN authentication identity"));
    }
    let authcid = utf8(authcid.to_vec(), "PLAIN user name is not UTF-8")?;
    let authzid = utf8(
        authzid.to_vec(),
        "PLAIN authorization identity is not UTF-8",
    )?;
    let authzid = if authzid.is_empty() {
        None
    } else if authzid == authcid {
        Some(authzid)
    } else {
        return Err(SaslError::AuthzidNotAllowed);
    };
    Ok(Credentials::Plain {
        authzid,
        authcid,
        password: password.to_vec(),
    })
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

impl SaslExchange {
    /// Starts an exchange. `initial` is the initial response (SASL-IR,
    /// `AUTH PLAIN <b64>`); `Some("=")` is an empty initial response (RFC
    /// 4954), `None` or `Some("")` none at all. `challenge_domain` goes into
    /// the CRAM-MD5 challenge `<random.timestamp@domain>`.
    pub fn start(
        mech: Mechanism,
        initial: Option<&str>,
        challenge_domain: &str,
    ) -> (Self, SaslStep) {
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let nonce = format!("{}.{}", u64::from_le_bytes(r), now);
        Self::start_with_nonce(mech, initial, challenge_domain, &nonce)
    }

    /// Like [`start`](Self::start) with a fixed CRAM-MD5 nonce: the challenge
    /// is `<{nonce}@{challenge_domain}>`. For deterministic tests.
    pub fn start_with_nonce(
        mech: Mechanism,
        initial: Option<&str>,
        challenge_domain: &str,
        nonce: &str,
    ) -> (Self, SaslStep) {
        let mut ex = SaslExchange {
            mech,
            state: State::Finished,
        };
        let initial = initial.filter(|s| !s.is_empty());
        let step = match mech {
            Mechanism::Plain => {
                ex.state = State::PlainResponse;
                match initial {
                    Some(line) => ex.step_inner(line),
                    None => SaslStep::Challenge(String::new()),
                }
            }
            Mechanism::Login => {
                ex.state = State::LoginUser;
                match initial {
                    // An empty initial response means "no user name yet",
                    // as in Dovecot's mech-login.
                    Some("=") | None => SaslStep::Challenge(b64("Username:")),
                    Some(line) => ex.step_inner(line),
                }
            }
            Mechanism::CramMd5 => match initial {
                Some("=") | None => {
                    let challenge = format!("<{nonce}@{challenge_domain}>").into_bytes();
                    let c = STANDARD.encode(&challenge);
                    ex.state = State::CramResponse { challenge };
                    SaslStep::Challenge(c)
                }
                Some(_) => SaslStep::Failed(SaslError::Malformed(
                    "CRAM-MD5 does not take an initial response",
                )),
            },
        };
        if !matches!(step, SaslStep::Challenge(_)) {
            ex.state = State::Finished;
        }
        (ex, step)
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Whether the exchange has ended (Done or Failed was returned).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Feeds the client's reply to the last challenge. `*` cancels.
    pub fn step(&mut self, client_line: &str) -> SaslStep {
        let step = self.step_inner(client_line);
        if !matches!(step, SaslStep::Challenge(_)) {
            self.state = State::Finished;
        }
        step
    }

    fn step_inner(&mut self, line: &str) -> SaslStep {
        if matches!(self.state, State::Finished) {
            return SaslStep::Failed(SaslError::Malformed("exchange already finished"));
        }
        let data = if line == "=" {
            Ok(Vec::new())
        } else {
            decode_line(line)
        };
        let data = match data {
            Ok(d) => d,
            Err(e) => return SaslStep::Failed(e),
        };
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainResponse => match parse_plain(&data) {
                Ok(c) => SaslStep::Done(c),
                Err(e) => SaslStep::Failed(e),
            },
            State::LoginUser => {
                if data.is_empty() {
                    return SaslStep::Failed(SaslError::Malformed("empty LOGIN user name"));
                }
                if data.contains(&0) {
                    return SaslStep::Failed(SaslError::Malformed("NUL in LOGIN user name"));
                }
                match utf8(data, "LOGIN user name is not UTF-8") {
                    Ok(user) => {
                        self.state = State::LoginPassword { user };
                        SaslStep::Challenge(b64("Password:"))
                    }
                    Err(e) => SaslStep::Failed(e),
                }
            }
            State::LoginPassword { user } => SaslStep::Done(Credentials::Plain {
                authzid: None,
                authcid: user,
                password: data,
            }),
            State::CramResponse { challenge } => {
                // "user SP digest"; the user name may itself contain spaces.
                let Some(sp) = data.iter().rposition(|&b| b == b' ') else {
                    return SaslStep::Failed(SaslError::Malformed(
                        "CRAM-MD5 response must be user SP digest",
                    ));
                };
                let (user, digest) = (&data[..sp], &data[sp + 1..]);
                if user.is_empty() || user.contains(&0) {
                    return SaslStep::Failed(SaslError::Malformed("bad CRAM-MD5 user name"));
                }
                if digest.len() != 32 || !digest.iter().all(u8::is_ascii_hexdigit) {
                    return SaslStep::Failed(SaslError::Malformed(
                        "CRAM-MD5 digest must be 32 hex digits",
                    ));
                }
                match utf8(user.to_vec(), "CRAM-MD5 user name is not UTF-8") {
                    Ok(user) => SaslStep::Done(Credentials::CramMd5 {
                        user,
                        challenge,
                        response_hex: String::from_utf8_lossy(digest).to_ascii_lowercase(),
                    }),
                    Err(e) => SaslStep::Failed(e),
                }
            }
            State::Finished => unreachable!("checked above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(b: &[u8]) -> String {
        STANDARD.encode(b)
    }

    fn done(step: SaslStep) -> Credentials {
        match step {
            SaslStep::Done(c) => c,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn challenge(step: SaslStep) -> String {
        match step {
            SaslStep::Challenge(c) => c,
            other => panic!("expected Challenge, got {other:?}"),
        }
    }

    fn failed(step: SaslStep) -> SaslError {
        match step {
            SaslStep::Failed(e) => e,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn assert_plain(c: &Credentials, user: &str, authzid: Option<&str>, pw: &[u8]) {
        match c {
            Credentials::Plain {
                authzid: z,
                authcid,
                password,
            } => {
                assert_eq!(authcid, user);
                assert_eq!(z.as_deref(), authzid);
                assert_eq!(password, pw);
            }
            other => panic!("expected Plain, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        for &m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(Mechanism::from_name(&m.name().to_lowercase()), Some(m));
        }
        assert_eq!(Mechanism::from_name("cram-md5"), Some(Mechanism::CramMd5));
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert!(Mechanism::Login.is_plaintext() && !Mechanism::CramMd5.is_plaintext());
    }

    #[test]
    fn plain_with_initial_response() {
        // AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm
        let ir = enc(b"\0tim\0tanstaaftanstaaf");
        let (ex, step) = SaslExchange::start(Mechanism::Plain, Some(&ir), "example.org");
        let c = done(step);
        assert!(ex.is_finished());
        assert_plain(&c, "tim", None, b"tanstaaftanstaaf");
        assert_eq!(c.username(), "tim");
        assert!(c.verify("{PLAIN}tanstaaftanstaaf", Scheme::Plain));
        assert!(c.verify("tanstaaftanstaaf", Scheme::Plain));
        assert!(!c.verify("{PLAIN}other", Scheme::Plain));
        assert!(!c.verify("{NOPE}x", Scheme::Plain));
        let stored = scheme::hash(Scheme::Sha512Crypt, b"tanstaaftanstaaf", None, None).unwrap();
        assert!(c.verify(&stored, Scheme::Crypt));
    }

    #[test]
    fn plain_without_initial_response() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Plain, None, "example.org");
        assert_eq!(challenge(step), "");
        let c = done(ex.step(&enc("tim\0tim\0pässwörd".as_bytes())));
        assert_plain(&c, "tim", Some("tim"), "pässwörd".as_bytes());
        // Anything after the end fails.
        assert!(matches!(failed(ex.step("AAAA")), SaslError::Malformed(_)));
    }

    #[test]
    fn plain_empty_initial_response() {
        // "AUTH PLAIN =": an empty message is not a valid PLAIN message.
        let (ex, step) = SaslExchange::start(Mechanism::Plain, Some("="), "example.org");
        assert!(matches!(failed(step), SaslError::Malformed(_)));
        assert!(ex.is_finished());
        // Some("") is no initial response at all.
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(""), "example.org");
        assert_eq!(challenge(step), "");
        // An empty line after the empty challenge is also malformed.
        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None, "example.org");
        assert!(matches!(failed(ex.step("")), SaslError::Malformed(_)));
    }

    #[test]
    fn plain_malformed() {
        for msg in [&b"tim\0secret"[..], b"\0\0secret", b"a\0b\0c\0d", b"nonuls"] {
            let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&enc(msg)), "x");
            assert!(matches!(failed(step), SaslError::Malformed(_)), "{msg:?}");
        }
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&enc(b"\0t\xffm\0pw")), "x");
        assert!(matches!(failed(step), SaslError::Malformed(_)));
        // An empty password is a well-formed message; verification decides.
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&enc(b"\0tim\0")), "x");
        assert_plain(&done(step), "tim", None, b"");
    }

    #[test]
    fn plain_authzid_mismatch() {
        let (_, step) = SaslExchange::start(
            Mechanism::Plain,
            Some(&enc(b"admin\0tim\0secret")),
            "example.org",
        );
        assert_eq!(failed(step), SaslError::AuthzidNotAllowed);
    }

    #[test]
    fn login_two_steps() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, None, "example.org");
        assert_eq!(challenge(step), "VXNlcm5hbWU6"); // "Username:"
        assert_eq!(challenge(ex.step("dGlt")), "UGFzc3dvcmQ6"); // "tim" → "Password:"
        let c = done(ex.step(&enc(b"tanstaaftanstaaf")));
        assert_plain(&c, "tim", None, b"tanstaaftanstaaf");
        assert!(ex.is_finished());
    }

    #[test]
    fn login_with_initial_response() {
        // AUTH LOGIN dGlt: the user name comes with the command.
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, Some("dGlt"), "example.org");
        assert_eq!(challenge(step), enc(b"Password:"));
        assert_plain(&done(ex.step("c2VjcmV0\r\n")), "tim", None, b"secret");
        // "=" is an empty initial response: ask for the user name.
        let (_, step) = SaslExchange::start(Mechanism::Login, Some("="), "example.org");
        assert_eq!(challenge(step), enc(b"Username:"));
        // An empty password is passed on (and will not verify).
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, Some("dGlt"), "x");
        assert_plain(&done(ex.step("")), "tim", None, b"");
        // An empty user name is refused.
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "x");
        assert!(matches!(failed(ex.step("")), SaslError::Malformed(_)));
    }

    #[test]
    fn cram_md5_rfc2195() {
        let (mut ex, step) = SaslExchange::start_with_nonce(
            Mechanism::CramMd5,
            None,
            "postoffice.reston.mci.net",
            "1896.697170952",
        );
        // RFC 2195's example challenge, base64 as on the wire.
        assert_eq!(
            challenge(step),
            "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        );
        let c = done(ex.step("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"));
        assert_eq!(c.username(), "tim");
        match &c {
            Credentials::CramMd5 {
                challenge,
                response_hex,
                ..
            } => {
                assert_eq!(challenge, b"<1896.697170952@postoffice.reston.mci.net>");
                assert_eq!(response_hex, "b913a602c7eda7a495b4e6e7334d3890");
            }
            other => panic!("{other:?}"),
        }
        assert!(c.verify("{PLAIN}tanstaaftanstaaf", Scheme::Plain));
        let ctx = scheme::hash(Scheme::CramMd5, b"tanstaaftanstaaf", None, None).unwrap();
        assert!(c.verify(&ctx, Scheme::Plain));
        assert!(!c.verify("{PLAIN}tanstaaf", Scheme::Plain));
        // A hashed stored password cannot serve CRAM-MD5.
        let h = scheme::hash(Scheme::Sha512Crypt, b"tanstaaftanstaaf", None, None).unwrap();
        assert!(!c.verify(&h, Scheme::Plain));
    }

    #[test]
    fn cram_md5_random_challenge_and_errors() {
        let (mut ex, step) = SaslExchange::start(Mechanism::CramMd5, None, "mail.example.org");
        let ch = STANDARD.decode(challenge(step)).unwrap();
        let ch = String::from_utf8(ch).unwrap();
        assert!(
            ch.starts_with('<') && ch.ends_with("@mail.example.org>"),
            "{ch}"
        );
        let (_, step2) = SaslExchange::start(Mechanism::CramMd5, None, "mail.example.org");
        assert_ne!(STANDARD.decode(challenge(step2)).unwrap(), ch.as_bytes());
        assert!(matches!(
            failed(ex.step(&enc(b"tim nothex"))),
            SaslError::Malformed(_)
        ));

        let (_, step) = SaslExchange::start(Mechanism::CramMd5, Some("dGlt"), "x");
        assert!(matches!(failed(step), SaslError::Malformed(_)));
        let (mut ex, step) =
            SaslExchange::start_with_nonce(Mechanism::CramMd5, Some("="), "x", "1.2");
        challenge(step);
        assert!(matches!(
            failed(ex.step(&enc(b"nospace"))),
            SaslError::Malformed(_)
        ));
        // Upper-case digests are normalised.
        let (mut ex, _) = SaslExchange::start_with_nonce(Mechanism::CramMd5, None, "x", "1.2");
        let c = done(ex.step(&enc(b"tim B913A602C7EDA7A495B4E6E7334D3890")));
        match c {
            Credentials::CramMd5 { response_hex, .. } => {
                assert_eq!(response_hex, "b913a602c7eda7a495b4e6e7334d3890")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cancel() {
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "x");
        assert_eq!(failed(ex.step("*")), SaslError::Cancelled);
        assert!(ex.is_finished());
        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None, "x");
        assert_eq!(failed(ex.step("*\r\n")), SaslError::Cancelled);
        let (mut ex, _) = SaslExchange::start(Mechanism::CramMd5, None, "x");
        assert_eq!(failed(ex.step("*")), SaslError::Cancelled);
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some("*"), "x");
        assert_eq!(failed(step), SaslError::Cancelled);
    }

    #[test]
    fn bad_base64() {
        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None, "x");
        assert_eq!(failed(ex.step("not base64!")), SaslError::BadBase64);
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some("@@@"), "x");
        assert_eq!(failed(step), SaslError::BadBase64);
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "x");
        assert_eq!(failed(ex.step("dGlt=x")), SaslError::BadBase64);
        // Missing padding is tolerated.
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "x");
        assert_eq!(challenge(ex.step("dGltMQ")), enc(b"Password:"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&enc(b"\0tim\0hunter2")), "x");
        let s = format!("{step:?}");
        assert!(s.contains("tim") && !s.contains("hunter2"), "{s}");
        let (mut ex, _) = SaslExchange::start_with_nonce(Mechanism::CramMd5, None, "x", "1.2");
        let c = done(ex.step(&enc(b"tim b913a602c7eda7a495b4e6e7334d3890")));
        let s = format!("{c:?}");
        assert!(!s.contains("b913a602"), "{s}");
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, Some("dGlt"), "x");
        let _ = ex.step(&enc(b"hunter2"));
        assert!(!format!("{ex:?}").contains("hunter2"));
    }
}
