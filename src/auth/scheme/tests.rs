//! Tests of `scheme`.

use super::*;

const FIXTURE: &str = include_str!("../../../tests/fixtures/doveadm/hashes.txt");

fn fixture() -> Vec<(&'static str, &'static str, &'static str)> {
    FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let s = f.next().unwrap();
            let p = f.next().expect("password column");
            let h = f.next().expect("hash column");
            assert!(f.next().is_none(), "extra column in {l:?}");
            (s, p, h)
        })
        .collect()
}

#[test]
fn doveadm_fixture_verifies() {
    let lines = fixture();
    assert!(lines.len() > 100, "fixture too small");
    for (spec, pw, stored) in lines {
        assert_eq!(
            verify(stored, Scheme::Plain, pw.as_bytes()),
            Ok(true),
            "{spec} {stored}"
        );
        let wrong = format!("{pw}x");
        assert_eq!(
            verify(stored, Scheme::Plain, wrong.as_bytes()),
            Ok(false),
            "{spec} {stored} wrong password"
        );
        // Same value without braces under its scheme as default, when the
        // scheme's default encoding is used.
        let name = spec.split(' ').next().unwrap();
        // (A bare "$1$..." is always MD5-CRYPT in Dovecot, so PBKDF2's
        // "$1$salt$rounds$hex" only works with its {PBKDF2} prefix.)
        if let Some((scheme, None)) = parse_spec(name).filter(|s| s.0 != Scheme::Pbkdf2) {
            let close = stored.find('}').unwrap();
            let bare = &stored[close + 1..];
            if !bare.starts_with('{') {
                assert_eq!(verify(bare, scheme, pw.as_bytes()), Ok(true), "{spec} bare");
            }
        }
    }
}

#[test]
fn doveadm_fixture_covers_required_schemes() {
    let specs: Vec<&str> = fixture().iter().map(|l| l.0).collect();
    for s in [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2ID",
        "ARGON2I",
        "CRAM-MD5",
        "SSHA512",
        "SSHA256",
        "SSHA",
        "SHA512",
        "SHA256",
        "SHA",
        "MD5-CRYPT",
        "PLAIN-MD5",
        "PLAIN",
        "CRYPT",
        "SHA512.HEX",
        "PLAIN.B64",
    ] {
        assert!(specs.contains(&s), "fixture lacks {s}");
    }
}

#[test]
fn round_trip_every_scheme() {
    for &scheme in Scheme::ALL {
        if !scheme.can_hash() {
            assert!(matches!(
                hash(scheme, b"x", None, None),
                Err(SchemeError::Unsupported(_))
            ));
            continue;
        }
        let pws: &[&[u8]] = if scheme.is_slow() {
            &["pässwörd".as_bytes(), b""]
        } else {
            &[b"secret", "pässwörd".as_bytes(), b"", &[b'a'; 100]]
        };
        for pw in pws {
            let h = hash(scheme, pw, Some("user"), None).unwrap();
            assert!(h.starts_with(&format!("{{{}}}", scheme.name())), "{h}");
            assert_eq!(verify(&h, Scheme::Plain, pw), Ok(true), "{h}");
            assert_eq!(verify(&h, Scheme::Plain, b"wrong"), Ok(false), "{h}");
        }
    }
}

#[test]
fn round_trip_encodings() {
    for &scheme in Scheme::ALL {
        if !scheme.can_hash() || scheme.is_slow() {
            continue;
        }
        for enc in [Encoding::Base64, Encoding::Hex] {
            let h = hash_encoded(scheme, Some(enc), b"secret", None, None).unwrap();
            assert_eq!(verify(&h, Scheme::Plain, b"secret"), Ok(true), "{h}");
            assert_eq!(verify(&h, Scheme::Plain, b"secreT"), Ok(false), "{h}");
        }
    }
    let h = hash_spec("sha512-crypt.b64", b"secret", None, None).unwrap();
    assert!(h.starts_with("{SHA512-CRYPT.B64}"), "{h}");
    assert_eq!(verify(&h, Scheme::Plain, b"secret"), Ok(true));
    assert_eq!(
        hash_spec("SHA512.HEX", b"secret", None, None).unwrap(),
        "{SHA512.HEX}bd2b1aaf7ef4f09be9f52ce2d8d599674d81aa9d6a4421696dc4d93dd0619d682ce56b4d64a9ef097761ced99e0f67265b5f76085e5b0ee7ca4696b2ad6fe2b2"
    );
    assert_eq!(
        hash(Scheme::Sha512, b"secret", None, None).unwrap(),
        "{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg=="
    );
}

#[test]
fn output_formats_match_doveadm() {
    let h = hash(Scheme::Sha512Crypt, b"x", None, None).unwrap();
    let parts: Vec<&str> = h.split('$').collect();
    assert_eq!(parts[0], "{SHA512-CRYPT}");
    assert_eq!(parts[1], "6");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3].len(), 86);
    let h = hash(Scheme::Sha512Crypt, b"x", None, Some(5000)).unwrap();
    assert!(!h.contains("rounds="), "{h}");
    let h = hash(Scheme::Sha512Crypt, b"x", None, Some(999)).unwrap();
    assert!(h.starts_with("{SHA512-CRYPT}$6$rounds=1000$"), "{h}");
    let h = hash(Scheme::Sha256Crypt, b"x", None, Some(6000)).unwrap();
    assert!(h.starts_with("{SHA256-CRYPT}$5$rounds=6000$"), "{h}");
    let h = hash(Scheme::BlfCrypt, b"x", None, None).unwrap();
    assert!(
        h.starts_with("{BLF-CRYPT}$2y$05$") && h.len() == 11 + 60,
        "{h}"
    );
    let h = hash(Scheme::BlfCrypt, b"x", None, Some(1)).unwrap();
    assert!(h.starts_with("{BLF-CRYPT}$2y$04$"), "{h}");
    assert!(hash(Scheme::BlfCrypt, b"x", None, Some(32)).is_err());
    let h = hash(Scheme::Crypt, b"x", None, None).unwrap();
    assert!(h.starts_with("{CRYPT}$2y$05$"), "{h}");
    let h = hash(Scheme::Md5Crypt, b"x", None, None).unwrap();
    assert!(
        h.starts_with("{MD5-CRYPT}$1$") && h.len() == 11 + 3 + 8 + 1 + 22,
        "{h}"
    );
    let h = hash(Scheme::Argon2id, b"x", None, None).unwrap();
    assert!(
        h.starts_with("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"),
        "{h}"
    );
    let h = hash(Scheme::Argon2i, b"x", None, None).unwrap();
    assert!(
        h.starts_with("{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$"),
        "{h}"
    );
    assert_eq!(argon2_params(Scheme::Argon2id, Some(3)), Ok((262_144, 3)));
    assert_eq!(argon2_params(Scheme::Argon2id, Some(5)), Ok((1_048_576, 5)));
    assert_eq!(argon2_params(Scheme::Argon2i, Some(6)), Ok((131_072, 6)));
    assert_eq!(argon2_params(Scheme::Argon2i, Some(8)), Ok((524_288, 8)));
    assert!(argon2_params(Scheme::Argon2i, Some(2)).is_err());
    let h = hash(Scheme::Pbkdf2, b"x", None, None).unwrap();
    assert!(h.starts_with("{PBKDF2}$1$") && h.contains("$5000$"), "{h}");
    let h = hash(Scheme::ScramSha256, b"x", None, None).unwrap();
    assert!(h.starts_with("{SCRAM-SHA-256}4096,"), "{h}");
    let raw = B64_LENIENT
        .decode(&hash(Scheme::Ssha512, b"x", None, None).unwrap().as_bytes()["{SSHA512}".len()..])
        .unwrap();
    assert_eq!(raw.len(), 64 + 4);
    assert_eq!(
        hash(Scheme::Plain, b"secret", None, None).unwrap(),
        "{PLAIN}secret"
    );
    assert_eq!(
        hash(Scheme::CramMd5, b"secret", None, None).unwrap(),
        "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
    );
    assert!(matches!(
        hash(Scheme::Plain, &[0xff, 0xfe], None, None),
        Err(SchemeError::InvalidParameter(_))
    ));
    assert_eq!(
        hash_encoded(
            Scheme::Plain,
            Some(Encoding::Base64),
            &[0xff, 0xfe],
            None,
            None
        ),
        Ok("{PLAIN.B64}//4=".to_string())
    );
}

#[test]
fn md5_crypt_known_vector() {
    // Dovecot-generated (doveadm pw -s MD5-CRYPT -p secret).
    let h = "$1$otUuu6HT$6MuDCUehQ6CZy79MgtOpm1";
    assert_eq!(md5_crypt(b"secret", b"otUuu6HT"), h.as_bytes());
    assert_eq!(verify(h, Scheme::Plain, b"secret"), Ok(true));
    // Trailing "$junk" is ignored for bare $1$ values, like Dovecot.
    let junk = format!("{h}$whatever");
    assert_eq!(verify(&junk, Scheme::Plain, b"secret"), Ok(true));
}

#[test]
fn md5_compression_matches_md5_crate() {
    for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let want = Md5::digest(&data);
        assert_eq!(&md5_finish(MD5_INIT, 0, &data)[..], &want[..], "len {len}");
    }
}

#[test]
fn cram_md5_rfc2195() {
    let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
    for stored in [
        "{PLAIN}tanstaaftanstaaf",
        "tanstaaftanstaaf",
        "{PLAIN.B64}dGFuc3RhYWZ0YW5zdGFhZg==",
    ] {
        let ctx = cram_md5_context(stored, Scheme::Plain).unwrap();
        assert!(cram_md5_verify(
            &ctx,
            challenge,
            "b913a602c7eda7a495b4e6e7334d3890"
        ));
        assert!(cram_md5_verify(
            &ctx,
            challenge,
            "B913A602C7EDA7A495B4E6E7334D3890"
        ));
        assert!(!cram_md5_verify(
            &ctx,
            challenge,
            "b913a602c7eda7a495b4e6e7334d3891"
        ));
        assert!(!cram_md5_verify(
            &ctx,
            b"<other@x>",
            "b913a602c7eda7a495b4e6e7334d3890"
        ));
        assert!(!cram_md5_verify(&ctx, challenge, "zz"));
        let stored_ctx = hash(Scheme::CramMd5, b"tanstaaftanstaaf", None, None).unwrap();
        assert_eq!(cram_md5_context(&stored_ctx, Scheme::Plain), Some(ctx));
    }
    assert_eq!(
        cram_md5_context("{SHA512-CRYPT}$6$abc$def", Scheme::Plain),
        None
    );
    assert_eq!(cram_md5_context("{CRAM-MD5}abcd", Scheme::Plain), None);
}

#[test]
fn cram_md5_long_key_and_long_challenge() {
    let key = [b'k'; 100];
    let ctx = cram_md5_context(
        &hash(Scheme::CramMd5, &key, None, None).unwrap(),
        Scheme::Plain,
    )
    .unwrap();
    let challenge = [b'c'; 150];
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&challenge);
    let want = hex_encode(&mac.finalize().into_bytes());
    assert!(cram_md5_verify(&ctx, &challenge, &want));
}

#[test]
fn names_and_specs() {
    for &s in Scheme::ALL {
        assert_eq!(Scheme::from_name(s.name()), Some(s));
        assert_eq!(Scheme::from_name(&s.name().to_lowercase()), Some(s));
    }
    assert_eq!(Scheme::from_name("SHA1"), Some(Scheme::Sha1));
    assert_eq!(Scheme::from_name("CLEARTEXT"), Some(Scheme::Plain));
    assert_eq!(Scheme::from_name("MD5"), Some(Scheme::Md5Crypt));
    assert_eq!(Scheme::from_name("HMAC-MD5"), Some(Scheme::CramMd5));
    assert_eq!(Scheme::from_name("NOPE"), None);
    assert_eq!(
        parse_spec("ssha512.base64"),
        Some((Scheme::Ssha512, Some(Encoding::Base64)))
    );
    assert_eq!(
        parse_spec("SHA.HEX"),
        Some((Scheme::Sha1, Some(Encoding::Hex)))
    );
    assert_eq!(parse_spec("SHA.ROT13"), None);
    assert!(Scheme::Argon2id.is_slow() && !Scheme::Sha512.is_slow());
}

#[test]
fn defaults_and_errors() {
    // Bare values use the default scheme.
    let made = sha_crypt(true, b"secret", b"saltsalt", 5000, false).unwrap();
    assert_eq!(
        verify(
            std::str::from_utf8(&made).unwrap(),
            Scheme::Crypt,
            b"secret"
        ),
        Ok(true)
    );
    assert_eq!(
        verify(std::str::from_utf8(&made).unwrap(), Scheme::Crypt, b"nope"),
        Ok(false)
    );
    assert_eq!(verify("secret", Scheme::Plain, b"secret"), Ok(true));
    assert_eq!(verify("secret", Scheme::Plain, b"secreT"), Ok(false));
    // A hex-looking bare SHA256 is guessed as hex, like Dovecot.
    let hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    assert_eq!(verify(hex, Scheme::Sha256, b"secret"), Ok(true));
    // Unknown schemes and encodings.
    assert_eq!(
        verify("{FOO}x", Scheme::Plain, b"x"),
        Err(SchemeError::UnknownScheme("{FOO}".into()))
    );
    assert!(matches!(
        verify("{SHA.ROT13}x", Scheme::Plain, b"x"),
        Err(SchemeError::UnknownScheme(_))
    ));
    // Never echo something that might be a password.
    let e = verify("{hunter2 is my pw}", Scheme::Plain, b"x").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // Malformed values.
    assert!(matches!(
        verify("{SHA256}abc", Scheme::Plain, b"x"),
        Err(SchemeError::Malformed(_))
    ));
    assert!(matches!(
        verify("{PLAIN-MD5.HEX}zz", Scheme::Plain, b"x"),
        Err(SchemeError::Malformed(_))
    ));
    assert!(matches!(
        verify("{SSHA}AAAA", Scheme::Plain, b"x"),
        Err(SchemeError::Malformed(_))
    ));
    assert!(matches!(
        verify("{BLF-CRYPT}$2y$05$short", Scheme::Plain, b"x"),
        Err(SchemeError::Malformed(_))
    ));
    assert!(matches!(
        verify("{ARGON2ID}$argon2id$garbage", Scheme::Plain, b"x"),
        Err(SchemeError::Malformed(_))
    ));
    // DES crypt is recognised but unsupported.
    assert!(matches!(
        verify("{DES-CRYPT}A/j00v/uazoLY", Scheme::Plain, b"secret"),
        Err(SchemeError::Unsupported(_))
    ));
    assert!(matches!(
        verify("A/j00v/uazoLY", Scheme::Crypt, b"secret"),
        Err(SchemeError::Unsupported(_))
    ));
    assert!(matches!(
        verify("$y$j9T$abc$def", Scheme::Crypt, b"secret"),
        Err(SchemeError::Unsupported(_))
    ));
    // CRYPT recognises every supported prefix.
    for s in [
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::BlfCrypt,
        Scheme::Md5Crypt,
    ] {
        let h = hash(s, b"pw", None, None).unwrap();
        let bare = &h[h.find('}').unwrap() + 1..];
        assert_eq!(verify(bare, Scheme::Crypt, b"pw"), Ok(true), "{h}");
        assert_eq!(
            verify(&format!("{{CRYPT}}{bare}"), Scheme::Plain, b"pw"),
            Ok(true)
        );
    }
    assert_eq!(scheme_of("{ssha512}x", Scheme::Plain), Ok(Scheme::Ssha512));
    assert_eq!(scheme_of("$1$a$b", Scheme::Plain), Ok(Scheme::Md5Crypt));
    assert_eq!(scheme_of("x", Scheme::Crypt), Ok(Scheme::Crypt));
}
