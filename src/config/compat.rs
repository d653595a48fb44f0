//! Value syntax of the Postfix and Dovecot TLS and login keys pigeonpost
//! reads under their own names: `smtpd_tls_protocols` (Postfix's
//! exclusion, inclusion and `>=`/`<=` range forms), `ssl_min_protocol`,
//! `ssl`, and `smtpd_tls_security_level` for the server side.

/// The protocol names both programs use, oldest first (postconf(5)
/// "smtpd_tls_protocols", Dovecot "ssl_min_protocol").
const VERSIONS: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
/// Index of TLSv1.2 in [`VERSIONS`]: rustls speaks 1.2 and 1.3 only.
const TLS12: usize = 4;

/// The TLS versions a listener accepts (rustls has TLS 1.2 and 1.3 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub tls12: bool,
    pub tls13: bool,
}

impl TlsVersions {
    pub const ALL: TlsVersions = TlsVersions {
        tls12: true,
        tls13: true,
    };
}

/// What a version list asked for: the versions rustls will use, and the
/// older ones that were asked for but cannot be offered (for a notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub versions: TlsVersions,
    pub unavailable: Vec<&'static str>,
}

fn index_of(name: &str) -> Option<usize> {
    VERSIONS.iter().position(|v| v.eq_ignore_ascii_case(name))
}

fn result(enabled: [bool; 6]) -> Result<Versions, String> {
    let versions = TlsVersions {
        tls12: enabled[TLS12],
        tls13: enabled[TLS12 + 1],
    };
    if !versions.tls12 && !versions.tls13 {
        return Err(
            "leaves neither TLSv1.2 nor TLSv1.3, the only versions pigeonpost (rustls) speaks"
                .into(),
        );
    }
    let unavailable = (0..TLS12)
        .filter(|&i| enabled[i])
        .map(|i| VERSIONS[i])
        .collect();
    Ok(Versions {
        versions,
        unavailable,
    })
}

/// Postfix `smtpd_tls_protocols`: `!SSLv2, !SSLv3` (exclusions),
/// `TLSv1.2 TLSv1.3` (inclusions), `>=TLSv1.2` / `<=TLSv1.3` (a range,
/// Postfix 3.6), separated by commas, colons or white space; empty means
/// every version.
pub fn postfix_protocols(text: &str) -> Result<Versions, String> {
    let words: Vec<&str> = text
        .split(|c: char| c == ',' || c == ':' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let unknown = |w: &str| {
        format!(
            "'{w}' is not a protocol (use {}, with ! to exclude or >= / <= for a range)",
            VERSIONS.join(" ")
        )
    };
    let inclusions: Vec<usize> = words
        .iter()
        .filter(|w| !w.starts_with(['!', '>', '<']))
        .map(|w| index_of(w).ok_or_else(|| unknown(w)))
        .collect::<Result<_, _>>()?;
    let mut enabled = [inclusions.is_empty(); 6];
    for i in inclusions {
        enabled[i] = true;
    }
    for w in &words {
        if let Some(v) = w.strip_prefix('!') {
            enabled[index_of(v).ok_or_else(|| unknown(w))?] = false;
        } else if let Some(v) = w.strip_prefix(">=") {
            let min = index_of(v).ok_or_else(|| unknown(w))?;
            enabled[..min].iter_mut().for_each(|e| *e = false);
        } else if let Some(v) = w.strip_prefix("<=") {
            let max = index_of(v).ok_or_else(|| unknown(w))?;
            enabled[max + 1..].iter_mut().for_each(|e| *e = false);
        } else if w.starts_with(['>', '<']) {
            return Err(unknown(w));
        }
    }
    result(enabled)
}

/// Dovecot `ssl_min_protocol`: one version name, or `ANY`.
pub fn dovecot_min_protocol(text: &str) -> Result<Versions, String> {
    let min = if text.eq_ignore_ascii_case("ANY") {
        0
    } else {
        index_of(text).ok_or_else(|| {
            format!(
                "'{text}' is not a protocol (use ANY or one of {})",
                VERSIONS.join(" ")
            )
        })?
    };
    let mut enabled = [true; 6];
    enabled[..min].iter_mut().for_each(|e| *e = false);
    result(enabled)
}

/// Dovecot `ssl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS for IMAP and POP3: no STARTTLS/STLS, no 993/995.
    No,
    /// TLS offered (the default).
    Yes,
    /// No authentication at all before TLS, not even a non-plaintext
    /// mechanism, not even from this host.
    Required,
}

pub fn ssl_mode(text: &str) -> Result<SslMode, String> {
    match text.to_ascii_lowercase().as_str() {
        "no" => Ok(SslMode::No),
        "yes" => Ok(SslMode::Yes),
        "required" => Ok(SslMode::Required),
        other => Err(format!("'{other}': use yes, no or required")),
    }
}

/// Postfix `smtpd_tls_security_level` for the `smtp` listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// No STARTTLS offered.
    None,
    /// STARTTLS offered (the default when a certificate is set).
    May,
    /// Nothing but EHLO/HELO, STARTTLS, NOOP, RSET and QUIT before TLS.
    Encrypt,
}

pub fn server_tls_level(text: &str) -> Result<ServerTls, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "none" => Ok(ServerTls::None),
        "may" => Ok(ServerTls::May),
        "encrypt" => Ok(ServerTls::Encrypt),
        other => Err(format!("'{other}': use none, may or encrypt")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tls12: bool, tls13: bool) -> TlsVersions {
        TlsVersions { tls12, tls13 }
    }

    #[test]
    fn postfix_protocol_forms() {
        let p = |t| postfix_protocols(t).unwrap();
        // Debian's and the HOWTOs' exclusion lists.
        let r = p("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1");
        assert_eq!(r.versions, v(true, true));
        assert!(r.unavailable.is_empty());
        let r = p("!SSLv2,!SSLv3");
        assert_eq!(r.versions, v(true, true));
        assert_eq!(r.unavailable, ["TLSv1", "TLSv1.1"]);
        assert_eq!(p(">=TLSv1.2").versions, v(true, true));
        assert_eq!(p(">=TLSv1.3").versions, v(false, true));
        assert_eq!(p("<=TLSv1.2").versions, v(true, false));
        assert_eq!(p("TLSv1.3").versions, v(false, true));
        assert_eq!(p("TLSv1.2 TLSv1.3").unavailable, Vec::<&str>::new());
        assert_eq!(p("").unavailable, ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"]);
        assert_eq!(p(">=TLSv1").unavailable, ["TLSv1", "TLSv1.1"]);
        assert!(postfix_protocols("<=TLSv1.1")
            .unwrap_err()
            .contains("neither"));
        assert!(postfix_protocols("!TLSv1.2:!TLSv1.3").is_err());
        assert!(postfix_protocols("TLSv9").unwrap_err().contains("'TLSv9'"));
        assert!(postfix_protocols("=>TLSv1.2").is_err());
    }

    #[test]
    fn dovecot_min_protocol_values() {
        assert_eq!(
            dovecot_min_protocol("TLSv1.2").unwrap().versions,
            v(true, true)
        );
        assert_eq!(
            dovecot_min_protocol("TLSv1.3").unwrap().versions,
            v(false, true)
        );
        assert_eq!(
            dovecot_min_protocol("TLSv1").unwrap().unavailable,
            ["TLSv1", "TLSv1.1"]
        );
        assert_eq!(dovecot_min_protocol("ANY").unwrap().unavailable.len(), 4);
        assert!(dovecot_min_protocol("TLSv2").is_err());
    }

    #[test]
    fn ssl_and_levels() {
        assert_eq!(ssl_mode("required"), Ok(SslMode::Required));
        assert_eq!(ssl_mode("No"), Ok(SslMode::No));
        assert!(ssl_mode("maybe").is_err());
        assert_eq!(server_tls_level("encrypt"), Ok(ServerTls::Encrypt));
        assert_eq!(server_tls_level(""), Ok(ServerTls::None));
        assert!(server_tls_level("verify")
            .unwrap_err()
            .contains("none, may or encrypt"));
    }
}
