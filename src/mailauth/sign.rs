//! DKIM signing of mail that leaves through us (RFC 6376 §5; ed25519 per
//! RFC 8463): the key comes from OpenDKIM's KeyTable and SigningTable
//! (`dkim_key_table`, `dkim_signing_table`), chosen by the `From:` address
//! as OpenDKIM chooses it. relaxed/relaxed; the headers RFC 6376 §5.4.1
//! recommends that are present are signed, and `From` once more
//! ("oversigned"), so nobody can add a second `From:` later.
//!
//! Both tables reload like every other table; a key file that can't be
//! read or parsed fails the reload (the old keys stay, and the log says
//! which line and why).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::headers::Writable;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::headers::{field_names, from_address};
use crate::tables::map::ParseError;
use crate::tables::opendkim::{DataSet, KeyTable, SigningTable};
use crate::tables::reload::Reloadable;
use crate::tables::{TableFile, TableFormat};

/// RFC 6376 §5.4.1: the fields worth signing, where present.
const SIGNED: &[&str] = &[
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "resent-date",
    "resent-from",
    "resent-to",
    "resent-cc",
    "in-reply-to",
    "references",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

pub enum Key {
    Rsa(RsaKey<Sha256>),
    /// An RSA key ring won't sign with (1024 to 2047 bits: RFC 8301 §3.2
    /// allows 1024, and older OpenDKIM setups have them), signed with the
    /// `rsa` crate instead.
    ShortRsa(ShortRsaKey),
    Ed25519(Ed25519Key),
}

pub struct ShortRsaKey(rsa::RsaPrivateKey);

impl SigningKey for ShortRsaKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        use sha2::Digest;
        let mut data = Vec::with_capacity(256);
        input.write(&mut data);
        let digest = sha2::Sha256::digest(&data);
        self.0
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .map_err(|e| {
                mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                    e.to_string(),
                ))
            })
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}

/// A 1024-2047-bit RSA key from PKCS#1 or PKCS#8 DER.
fn short_rsa(der: &[u8], pkcs8: bool) -> Result<Key, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = if pkcs8 {
        rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string())?
    } else {
        rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| e.to_string())?
    };
    let bits = key.size() * 8;
    if bits < 1024 {
        return Err(format!(
            "RSA key of {bits} bits: RFC 8301 §3.2 requires at least 1024 (2048 recommended)"
        ));
    }
    tracing::warn!(bits, "a DKIM key shorter than 2048 bits: RFC 8301 recommends 2048; make a new one with pigeonpost dkim keygen");
    Ok(Key::ShortRsa(ShortRsaKey(key)))
}

/// A key of the KeyTable, read and parsed.
pub struct LoadedKey {
    pub domain: String,
    pub selector: String,
    pub key: Key,
}

impl LoadedKey {
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) | Key::ShortRsa(_) => "rsa",
            Key::Ed25519(_) => "ed25519",
        }
    }

    /// The public key as DKIM's `p=` wants it: SubjectPublicKeyInfo for
    /// RSA (what opendkim-genkey publishes), the raw 32 bytes for ed25519.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.key {
            Key::Rsa(k) => spki_rsa(&k.public_key()),
            Key::ShortRsa(k) => {
                use rsa::pkcs8::EncodePublicKey;
                rsa::RsaPublicKey::from(&k.0)
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }
            Key::Ed25519(k) => k.public_key(),
        }
    }
}

/// Parses a private key file as opendkim-genkey (`RSA PRIVATE KEY`) or
/// `pigeonpost dkim keygen` (`PRIVATE KEY`, PKCS#8, also for ed25519)
/// writes it.
pub fn parse_key(pem: &[u8]) -> Result<Key, String> {
    let der =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))?;
    // ring signs only with RSA keys of 2048 bits or more; shorter ones
    // (down to RFC 8301's 1024) go to the rsa crate.
    let too_small = |e: &mail_auth::Error| e.to_string().contains("TooSmall");
    match der {
        PrivateKeyDer::Pkcs1(ref p1) => {
            let bytes = p1.secret_pkcs1_der().to_vec();
            match RsaKey::<Sha256>::from_key_der(der) {
                Ok(k) => Ok(Key::Rsa(k)),
                Err(e) if too_small(&e) => short_rsa(&bytes, false),
                Err(e) => Err(format!("RSA key: {e}")),
            }
        }
        PrivateKeyDer::Pkcs8(p8) => {
            let bytes = p8.secret_pkcs8_der().to_vec();
            match RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(p8)) {
                Ok(k) => return Ok(Key::Rsa(k)),
                Err(e) if too_small(&e) => return short_rsa(&bytes, true),
                Err(_) => {}
            }
            Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes)
                .map(Key::Ed25519)
                .map_err(|e| format!("neither an RSA nor an ed25519 key: {e}"))
        }
        _ => Err("unsupported key type (use RSA or ed25519)".into()),
    }
}

/// The KeyTable with every key it names loaded.
#[derive(Default)]
pub struct KeySet {
    pub table: KeyTable,
    keys: HashMap<String, Arc<LoadedKey>>,
}

impl KeySet {
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedKey>> {
        self.keys.get(name)
    }
}

impl TableFormat for KeySet {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        let (table, warnings) = KeyTable::load(path)?;
        let mut keys = HashMap::new();
        for (name, e) in &table.entries {
            let line = 0;
            let pem = std::fs::read(&e.key_path).map_err(|err| {
                ParseError::new(
                    path,
                    line,
                    format!("key '{name}': cannot read {}: {err}", e.key_path.display()),
                )
            })?;
            let key = parse_key(&pem).map_err(|err| {
                ParseError::new(
                    path,
                    line,
                    format!("key '{name}' in {}: {err}", e.key_path.display()),
                )
            })?;
            keys.insert(
                name.clone(),
                Arc::new(LoadedKey {
                    domain: e.domain.clone(),
                    selector: e.selector.clone(),
                    key,
                }),
            );
        }
        Ok((KeySet { table, keys }, warnings))
    }
}

/// A SigningTable read as a plain file (`file:` or a bare path).
pub struct PlainSigningTable(pub SigningTable);
/// A SigningTable read as `refile:` (glob patterns).
pub struct PatternSigningTable(pub SigningTable);

impl TableFormat for PlainSigningTable {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        let text = crate::tables::map::read_text(path)?;
        SigningTable::parse(path, &text, false).map(|(t, w)| (PlainSigningTable(t), w))
    }
}

impl TableFormat for PatternSigningTable {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        let text = crate::tables::map::read_text(path)?;
        SigningTable::parse(path, &text, true).map(|(t, w)| (PatternSigningTable(t), w))
    }
}

enum Table {
    Plain(Arc<TableFile<PlainSigningTable>>),
    Pattern(Arc<TableFile<PatternSigningTable>>),
}

/// Chooses keys and signs.
pub struct Signer {
    keys: Arc<TableFile<KeySet>>,
    table: Table,
}

/// A signature header for a message, and what made it.
pub struct Signed {
    pub header: String,
    pub domain: String,
    pub selector: String,
    pub algorithm: &'static str,
}

impl Signer {
    /// Opens both tables; `None` when signing isn't configured.
    pub fn open(key_table: &str, signing_table: &str) -> Result<Signer, String> {
        let k = DataSet::parse(key_table)?;
        let keys = TableFile::<KeySet>::open(format!("dkim_key_table {key_table}"), &k.path)
            .map_err(|e| e.to_string())?;
        let s = DataSet::parse(signing_table)?;
        let label = format!("dkim_signing_table {signing_table}");
        let table = if s.regex {
            Table::Pattern(TableFile::open(label, &s.path).map_err(|e| e.to_string())?)
        } else {
            Table::Plain(TableFile::open(label, &s.path).map_err(|e| e.to_string())?)
        };
        let signer = Signer { keys, table };
        signer.check_names()?;
        Ok(signer)
    }

    /// Every key name the SigningTable uses must be in the KeyTable.
    fn check_names(&self) -> Result<(), String> {
        let keys = self.keys.get();
        let missing: Vec<String> = self.with_table(|t| {
            t.key_names()
                .filter(|n| keys.get(n).is_none())
                .map(str::to_string)
                .collect()
        });
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "dkim_signing_table names keys that dkim_key_table lacks: {}",
                missing.join(", ")
            ))
        }
    }

    fn with_table<T>(&self, f: impl FnOnce(&SigningTable) -> T) -> T {
        match &self.table {
            Table::Plain(t) => f(&t.get().0),
            Table::Pattern(t) => f(&t.get().0),
        }
    }

    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        let table: Arc<dyn Reloadable> = match &self.table {
            Table::Plain(t) => t.clone(),
            Table::Pattern(t) => t.clone(),
        };
        vec![self.keys.clone(), table]
    }

    /// The keys (name, key) for mail from `address`.
    pub fn keys_for(&self, address: &str) -> Vec<Arc<LoadedKey>> {
        let keys = self.keys.get();
        self.with_table(|t| {
            t.lookup(address)
                .into_iter()
                .filter_map(|name| {
                    let k = keys.get(name).cloned();
                    if k.is_none() {
                        tracing::warn!(
                            key = name,
                            "dkim_signing_table names a key dkim_key_table lacks"
                        );
                    }
                    k
                })
                .collect()
        })
    }

    /// Every key of the KeyTable, for `dns-records`.
    pub fn all_keys(&self) -> Vec<(String, Arc<LoadedKey>)> {
        let keys = self.keys.get();
        keys.table
            .entries
            .iter()
            .filter_map(|(n, _)| keys.get(n).map(|k| (n.clone(), k.clone())))
            .collect()
    }

    /// DKIM-Signature headers for `message` (CRLF or LF line ends), one per
    /// matching key; empty when no key applies.
    pub fn sign(&self, message: &[u8]) -> Vec<Signed> {
        let Some(from) = from_address(message) else {
            return Vec::new();
        };
        let keys = self.keys_for(&from);
        if keys.is_empty() {
            return Vec::new();
        }
        let present = field_names(message);
        let mut headers: Vec<String> = SIGNED
            .iter()
            .filter(|h| present.iter().any(|p| p == *h))
            .map(|h| h.to_string())
            .collect();
        // Oversign From: a second From: added later breaks the signature.
        headers.push("from".into());
        let mut out = Vec::new();
        for k in keys {
            let result = match &k.key {
                Key::Rsa(key) => sign_with(key, &k, &headers, message),
                Key::ShortRsa(key) => sign_with(key, &k, &headers, message),
                Key::Ed25519(key) => sign_with(key, &k, &headers, message),
            };
            match result {
                Ok(header) => out.push(Signed {
                    header,
                    domain: k.domain.clone(),
                    selector: k.selector.clone(),
                    algorithm: k.algorithm(),
                }),
                Err(e) => {
                    tracing::error!(domain = %k.domain, selector = %k.selector, error = %e, "DKIM signing failed")
                }
            }
        }
        out
    }
}

/// A borrowed key: mail-auth's signer takes its key by value, and ring's
/// keys can't be cloned.
struct Borrowed<'k, K>(&'k K);

impl<K: SigningKey> SigningKey for Borrowed<'_, K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn sign_with<K: SigningKey>(
    key: &K,
    k: &LoadedKey,
    headers: &[String],
    message: &[u8],
) -> Result<String, String> {
    DkimSigner::from_key(Borrowed(key))
        .domain(k.domain.clone())
        .selector(k.selector.clone())
        .headers(headers.iter().cloned())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map(|s| s.to_header())
        .map_err(|e| e.to_string())
}

/// Wraps an RSAPublicKey (PKCS#1 DER) in a SubjectPublicKeyInfo.
fn spki_rsa(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier rsaEncryption with NULL parameters.
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bitstring = vec![0x00];
    bitstring.extend_from_slice(pkcs1);
    let mut body = ALG.to_vec();
    body.extend(der_tlv(0x03, &bitstring));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;

    fn rsa_pem(bits: usize) -> String {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).unwrap();
        key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn keys_under_2048_bits_sign_through_the_rsa_crate_and_under_1024_are_refused() {
        let key = parse_key(rsa_pem(1024).as_bytes()).unwrap();
        assert!(matches!(key, Key::ShortRsa(_)));
        let loaded = LoadedKey {
            domain: "example.com".into(),
            selector: "old".into(),
            key,
        };
        assert_eq!(loaded.algorithm(), "rsa");
        // A SubjectPublicKeyInfo, as opendkim-genkey publishes it.
        assert_eq!(loaded.public_key()[0], 0x30);
        let Key::ShortRsa(k) = &loaded.key else {
            unreachable!()
        };
        let header = sign_with(
            k,
            &loaded,
            &["from".to_string()],
            b"From: a@example.com\r\n\r\nbody\r\n",
        )
        .unwrap();
        assert!(
            header.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
            "{header}"
        );
        let e = parse_key(rsa_pem(768).as_bytes()).err().unwrap();
        assert!(e.contains("at least 1024"), "{e}");
        assert!(parse_key(b"not a key").is_err());
    }
}
