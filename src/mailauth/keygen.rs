//! `pigeonpost dkim keygen` (what opendkim-genkey does: a private key file,
//! mode 0600, and the TXT record to publish) and `pigeonpost dns-records`
//! (every record a domain served by pigeonpost needs, as zone-file lines).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

/// A DKIM key algorithm (RFC 6376 rsa-sha256, RFC 8463 ed25519-sha256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Algorithm, String> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Ok(Algorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519),
            other => Err(format!("unknown algorithm '{other}': use rsa or ed25519")),
        }
    }

    /// `k=` of the DNS record.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// A new key: the private key as PEM, the public key as DKIM's `p=` bytes.
pub struct KeyPair {
    pub private_pem: String,
    pub public: Vec<u8>,
}

/// Makes a key. RSA: PKCS#1 PEM (`RSA PRIVATE KEY`, as opendkim-genkey
/// writes it) and a SubjectPublicKeyInfo public key; ed25519: PKCS#8 PEM
/// and the raw 32-byte public key (RFC 8463 §4).
pub fn generate(algorithm: Algorithm, bits: usize) -> Result<KeyPair, String> {
    match algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePublicKey;
            if !(2048..=4096).contains(&bits) {
                return Err(format!(
                    "{bits} bits: use 2048 to 4096 (RFC 8301 §3.2 asks signers for at least 2048)"
                ));
            }
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .map_err(|e| format!("RSA key generation: {e}"))?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| e.to_string())?;
            let public = rsa::RsaPublicKey::from(&key)
                .to_public_key_der()
                .map_err(|e| e.to_string())?;
            Ok(KeyPair {
                private_pem: pem.to_string(),
                public: public.as_bytes().to_vec(),
            })
        }
        Algorithm::Ed25519 => {
            use ring::signature::{Ed25519KeyPair, KeyPair as _};
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
            Ok(KeyPair {
                private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
                public: pair.public_key().as_ref().to_vec(),
            })
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The TXT record value: `v=DKIM1; k=rsa; p=…`.
pub fn dkim_record(algorithm: &str, public: &[u8]) -> String {
    format!(
        "v=DKIM1; k={algorithm}; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

/// A TXT value as zone-file text: quoted strings of at most 255 bytes
/// (RFC 1035 §3.3.14), in parentheses when there are several.
pub fn zone_txt(value: &str) -> String {
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("( {} )", parts.join("\n\t"))
    }
}

/// Writes `<dir>/<selector>.private` (0600) and `<dir>/<selector>.txt`
/// (the zone line), refusing to overwrite a key. Returns both paths and
/// the zone line.
pub fn write_key(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    bits: usize,
) -> Result<(PathBuf, PathBuf, String), String> {
    let pair = generate(algorithm, bits)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let private = dir.join(format!("{selector}.private"));
    let txt = dir.join(format!("{selector}.txt"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(|e| format!("{}: {e}", private.display()))?;
    f.write_all(pair.private_pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", private.display()))?;
    let line = format!(
        "{selector}._domainkey\tIN\tTXT\t{}\t; ----- DKIM key {selector} for {domain}\n",
        zone_txt(&dkim_record(algorithm.tag(), &pair.public))
    );
    std::fs::write(&txt, &line).map_err(|e| format!("{}: {e}", txt.display()))?;
    Ok((private, txt, line))
}

/// One record a domain needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Fully qualified owner name, with the trailing dot.
    pub name: String,
    /// "MX", "TXT", "SRV", "CNAME".
    pub rtype: &'static str,
    /// The record data as a zone file writes it (TXT unquoted here).
    pub data: String,
    /// For `--check`: TXT records are matched by this prefix (a domain may
    /// have other TXT records), the rest whole.
    pub match_prefix: Option<&'static str>,
    pub comment: &'static str,
}

impl Record {
    pub fn zone_line(&self) -> String {
        let data = if self.rtype == "TXT" {
            zone_txt(&self.data)
        } else {
            self.data.clone()
        };
        format!(
            "{}\tIN\t{}\t{}\t; {}",
            self.name, self.rtype, data, self.comment
        )
    }
}

/// Everything `domain` needs when its mail is on `hostname`: MX, SPF,
/// one DKIM record per key (selector, algorithm, public key), DMARC to
/// start with (`p=none`, reports to postmaster), MTA-STS and TLS-RPT,
/// RFC 6186/8314 SRV records, and autoconfig names.
pub fn records(
    domain: &str,
    hostname: &str,
    keys: &[(String, &str, Vec<u8>)],
    today: &str,
) -> Vec<Record> {
    let d = format!("{}.", domain.trim_end_matches('.'));
    let h = format!("{}.", hostname.trim_end_matches('.'));
    let mut out = vec![
        Record {
            name: d.clone(),
            rtype: "MX",
            data: format!("10 {h}"),
            match_prefix: None,
            comment: "mail for the domain goes to this server",
        },
        Record {
            name: d.clone(),
            rtype: "TXT",
            data: "v=spf1 mx ~all".into(),
            match_prefix: Some("v=spf1"),
            comment: "SPF: the MX hosts send its mail; add ip4:/ip6: for other senders, then -all",
        },
    ];
    for (selector, algorithm, public) in keys {
        out.push(Record {
            name: format!("{selector}._domainkey.{d}"),
            rtype: "TXT",
            data: dkim_record(algorithm, public),
            match_prefix: None,
            comment: "DKIM public key",
        });
    }
    out.extend([
        Record {
            name: format!("_dmarc.{d}"),
            rtype: "TXT",
            data: format!(
                "v=DMARC1; p=none; rua=mailto:postmaster@{}",
                d.trim_end_matches('.')
            ),
            match_prefix: Some("v=DMARC1"),
            comment: "DMARC: start with p=none, read the reports, then quarantine or reject",
        },
        Record {
            name: format!("_mta-sts.{d}"),
            rtype: "TXT",
            data: format!("v=STSv1; id={today}"),
            match_prefix: Some("v=STSv1"),
            comment:
                "MTA-STS (RFC 8461): also serve https://mta-sts.<domain>/.well-known/mta-sts.txt",
        },
        Record {
            name: format!("_smtp._tls.{d}"),
            rtype: "TXT",
            data: format!(
                "v=TLSRPTv1; rua=mailto:postmaster@{}",
                d.trim_end_matches('.')
            ),
            match_prefix: Some("v=TLSRPTv1"),
            comment: "TLS-RPT (RFC 8460): TLS failure reports",
        },
        Record {
            name: format!("_submissions._tcp.{d}"),
            rtype: "SRV",
            data: format!("0 1 465 {h}"),
            match_prefix: None,
            comment: "RFC 8314: submission with implicit TLS",
        },
        Record {
            name: format!("_submission._tcp.{d}"),
            rtype: "SRV",
            data: format!("0 1 587 {h}"),
            match_prefix: None,
            comment: "RFC 6186: submission with STARTTLS",
        },
        Record {
            name: format!("_imaps._tcp.{d}"),
            rtype: "SRV",
            data: format!("0 1 993 {h}"),
            match_prefix: None,
            comment: "RFC 8314: IMAP with implicit TLS",
        },
        Record {
            name: format!("_pop3s._tcp.{d}"),
            rtype: "SRV",
            data: format!("0 1 995 {h}"),
            match_prefix: None,
            comment: "RFC 8314: POP3 with implicit TLS",
        },
        Record {
            name: format!("autoconfig.{d}"),
            rtype: "CNAME",
            data: h.clone(),
            match_prefix: None,
            comment: "mail client autoconfiguration (Thunderbird) looks here",
        },
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_values_are_split_into_255_byte_strings() {
        let v = "p=".to_string() + &"A".repeat(400);
        let z = zone_txt(&v);
        assert!(z.starts_with("( \"p=AAA"));
        let parts: Vec<&str> = z
            .split('"')
            .filter(|p| p.starts_with('p') || p.starts_with('A'))
            .collect();
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), v.len());
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(zone_txt("v=spf1 mx ~all"), "\"v=spf1 mx ~all\"");
    }

    #[test]
    fn generated_keys_load_and_match_their_records() {
        for (alg, bits) in [(Algorithm::Ed25519, 0), (Algorithm::Rsa, 2048)] {
            let pair = generate(alg, bits).unwrap();
            let key = super::super::sign::parse_key(pair.private_pem.as_bytes()).unwrap();
            let loaded = super::super::sign::LoadedKey {
                domain: "example.com".into(),
                selector: "s".into(),
                key,
            };
            assert_eq!(loaded.algorithm(), alg.tag());
            assert_eq!(loaded.public_key(), pair.public, "{alg:?}");
        }
        assert!(generate(Algorithm::Rsa, 1024).is_err());
    }

    #[test]
    fn a_domain_gets_every_record() {
        let r = records(
            "example.com",
            "mail.example.com",
            &[("s1".into(), "ed25519", vec![1, 2, 3])],
            "20261205",
        );
        let names: Vec<String> = r
            .iter()
            .map(|r| format!("{} {}", r.name, r.rtype))
            .collect();
        for want in [
            "example.com. MX",
            "example.com. TXT",
            "s1._domainkey.example.com. TXT",
            "_dmarc.example.com. TXT",
            "_mta-sts.example.com. TXT",
            "_smtp._tls.example.com. TXT",
            "_submissions._tcp.example.com. SRV",
            "_imaps._tcp.example.com. SRV",
            "_pop3s._tcp.example.com. SRV",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(r[0].zone_line().contains("10 mail.example.com."));
    }
}

/// What DNS has for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Ok,
    Missing,
    /// Other data under the name: what it is.
    Different(Vec<String>),
    Error(String),
}

/// Looks every record up through `dns_servers` and says whether DNS has it.
pub async fn check(
    records: &[Record],
    dns_servers: &[std::net::SocketAddr],
) -> Result<Vec<(Record, Found)>, String> {
    use mail_auth::hickory_resolver::proto::rr::RecordType;
    let auth = super::verify::authenticator(dns_servers)?;
    let resolver = auth.resolver();
    let mut out = Vec::new();
    for r in records {
        let rtype = match r.rtype {
            "MX" => RecordType::MX,
            "TXT" => RecordType::TXT,
            "SRV" => RecordType::SRV,
            _ => RecordType::CNAME,
        };
        let found = match resolver.lookup(r.name.as_str(), rtype).await {
            Ok(lookup) => {
                let have: Vec<String> = if rtype == RecordType::TXT {
                    super::verify::txt_values(lookup.answers())
                } else {
                    lookup
                        .answers()
                        .iter()
                        .filter(|rec| rec.record_type() == rtype)
                        .map(|rec| rec.data.to_string())
                        .collect()
                };
                compare(r, &have)
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Found::Missing,
            Err(e) => Found::Error(e.to_string()),
        };
        out.push((r.clone(), found));
    }
    Ok(out)
}

fn compare(r: &Record, have: &[String]) -> Found {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase()
    };
    let relevant: Vec<&String> = match r.match_prefix {
        Some(p) => have
            .iter()
            .filter(|h| h.trim_start().starts_with(p))
            .collect(),
        None => have.iter().collect(),
    };
    if relevant.is_empty() {
        Found::Missing
    } else if relevant.iter().any(|h| norm(h) == norm(&r.data)) {
        Found::Ok
    } else {
        Found::Different(relevant.into_iter().cloned().collect())
    }
}
