//! POP3 UIDLs exactly as Dovecot 2.3 builds them from `pop3_uidl_format`
//! (pop3/pop3-commands.c `pop3_get_uid`, lib/var-expand.c).
//!
//! A `P<uidl>` field in the message's uidlist record (left by a migration,
//! or `pop3_save_uidl`) wins; an empty one means the base file name.
//! Otherwise the format is expanded with `%u` UID, `%v` UIDVALIDITY, `%m`
//! MD5 of the header (hex), `%f` base file name, `%g` GUID (the `G` field or
//! else the base file name), or the long forms `%{uid}` …; each may carry
//! Dovecot's `%[-][0][width][.[0][-]width]<modifiers>` prefix. Note that
//! Dovecot's `X` modifier prints *lowercase* hex: the HOWTO's `%08Xu%08Xv`
//! gives `000000016b029b09`.

use md5::{Digest, Md5};

use super::MessageInfo;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Dovecot's `str_hash` (the ASU/glib string hash).
fn str_hash(s: &str) -> u32 {
    let mut h: u32 = 0;
    for &b in s.as_bytes() {
        h = (h << 4).wrapping_add(u32::from(b));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
            h ^= g;
        }
    }
    h
}

struct Ctx {
    offset: i64,
    width: i64,
}

fn apply_modifier(m: u8, s: String, ctx: &mut Ctx) -> String {
    match m {
        b'L' => s.to_lowercase(),
        b'U' => s.to_uppercase(),
        b'E' => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if matches!(c, '"' | '\\' | '\'') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        b'X' => format!("{:x}", s.parse::<u64>().unwrap_or(0)),
        b'R' => s.chars().rev().collect(),
        b'H' | b'N' => {
            let mut value: u64 = if m == b'H' {
                u64::from(str_hash(&s))
            } else {
                let d = Md5::digest(s.as_bytes());
                u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
            };
            if ctx.width != 0 {
                value %= ctx.width.unsigned_abs();
                ctx.width = 0;
            }
            let mut out = format!("{:x}", value as u32);
            while (out.len() as i64) < ctx.offset {
                out.insert(0, '0');
            }
            ctx.offset = 0;
            out
        }
        b'M' => hex(&Md5::digest(s.as_bytes())),
        b'D' => s.replace('.', ",dc="),
        b'T' => s.trim_end().to_string(),
        _ => s,
    }
}

const MODIFIERS: &[u8] = b"LUEXRHNMDT";

/// The UIDL of `msg` for `format` (Dovecot's `pop3_uidl_format`).
/// `header_md5` is called only if the format uses `%m`.
pub fn pop3_uidl(
    format: &str,
    msg: &MessageInfo,
    uidvalidity: u32,
    header_md5: impl FnOnce() -> [u8; 16],
) -> String {
    if let Some(p) = msg.pop3_uidl() {
        return if p.is_empty() {
            msg.basename().to_string()
        } else {
            p.to_string()
        };
    }
    let mut md5 = Some(header_md5);
    let mut md5_hex: Option<String> = None;
    let mut lookup = |key: &str| -> Option<String> {
        Some(match key {
            "u" | "uid" => msg.uid.to_string(),
            "v" | "uidvalidity" => uidvalidity.to_string(),
            "f" | "filename" => msg.basename().to_string(),
            "g" | "guid" => msg.guid().to_string(),
            "m" | "md5" => md5_hex
                .get_or_insert_with(|| hex(&(md5.take().expect("called once"))()))
                .clone(),
            _ => return None,
        })
    };

    let b = format.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            let start = i;
            while i < b.len() && b[i] != b'%' {
                i += 1;
            }
            out.push_str(&format[start..i]);
            continue;
        }
        i += 1;
        let mut ctx = Ctx {
            offset: 0,
            width: 0,
        };
        let mut zero_padding = false;
        let mut sign = 1i64;
        if b.get(i) == Some(&b'-') {
            sign = -1;
            i += 1;
        }
        if b.get(i) == Some(&b'0') {
            zero_padding = true;
            i += 1;
        }
        while let Some(d @ b'0'..=b'9') = b.get(i) {
            ctx.width = ctx.width * 10 + i64::from(d - b'0');
            i += 1;
        }
        if b.get(i) == Some(&b'.') {
            ctx.offset = sign * ctx.width;
            sign = 1;
            ctx.width = 0;
            i += 1;
            zero_padding = false;
            if b.get(i) == Some(&b'0') {
                zero_padding = true;
                i += 1;
            }
            if b.get(i) == Some(&b'-') {
                sign = -1;
                i += 1;
            }
            while let Some(d @ b'0'..=b'9') = b.get(i) {
                ctx.width = ctx.width * 10 + i64::from(d - b'0');
                i += 1;
            }
            ctx.width *= sign;
        }
        let mut mods = Vec::new();
        while mods.len() < 10 {
            match b.get(i) {
                Some(m) if MODIFIERS.contains(m) => {
                    mods.push(*m);
                    i += 1;
                }
                _ => break,
            }
        }
        if i >= b.len() {
            break;
        }
        let var: Option<String> = if b[i] == b'{' && format[i..].contains('}') {
            let mut depth = 1;
            let mut end = i + 1;
            while end < b.len() && depth > 0 {
                match b[end] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                end += 1;
            }
            let key = &format[i + 1..end - 1];
            i = end - 1;
            Some(lookup(key).unwrap_or_else(|| format!("UNSUPPORTED_VARIABLE_{key}")))
        } else {
            let key = &format[i..i + format[i..].chars().next().map_or(1, char::len_utf8)];
            i += key.len() - 1;
            lookup(key).or_else(|| (key == "%").then(|| "%".to_string()))
        };
        i += 1;
        let Some(mut var) = var else { continue };
        for m in mods {
            var = apply_modifier(m, var, &mut ctx);
        }
        let mut v: &str = &var;
        if ctx.offset < 0 {
            let cut = ctx.offset.unsigned_abs() as usize;
            if v.len() > cut {
                v = &v[v.len() - cut..];
            }
        } else {
            let skip = (ctx.offset as usize).min(v.len());
            v = &v[skip..];
        }
        if ctx.width == 0 {
            out.push_str(v);
        } else if !zero_padding {
            let w = if ctx.width < 0 {
                (v.len() as i64 + ctx.width).max(0) as usize
            } else {
                ctx.width as usize
            };
            out.push_str(&v[..w.min(v.len())]);
        } else {
            for _ in v.len() as i64..ctx.width {
                out.push('0');
            }
            out.push_str(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::maildir::Flags;

    fn msg(uid: u32, base: &str) -> MessageInfo {
        let mut m = MessageInfo::new(uid, &format!("{base}:2,S"), 10, 12, 0);
        assert_eq!(m.flags, Flags::SEEN);
        m.modseq = 1;
        m
    }

    #[test]
    fn dovecot_formats() {
        let m = msg(1, "1795332871.M679288P10660.vm,S=214,W=223");
        let never = || -> [u8; 16] { panic!("md5 not needed") };
        assert_eq!(
            pop3_uidl("%08Xu%08Xv", &m, 1795332873, never),
            "000000016b029b09"
        );
        assert_eq!(pop3_uidl("%u.%v", &m, 1795332873, never), "1.1795332873");
        assert_eq!(pop3_uidl("%f", &m, 1, never), m.basename());
        assert_eq!(pop3_uidl("%g", &m, 1, never), m.basename());
        assert_eq!(pop3_uidl("%v-%u-%04Xu", &m, 7, never), "7-1-0001");
        assert_eq!(pop3_uidl("%{uid}/%{uidvalidity}%%", &m, 9, never), "1/9%");
        assert_eq!(
            pop3_uidl("%3f|%-3f|%.3f|%3.2f|%-3.2f|%.-3f", &m, 9, never),
            "179|179|179|53|22|1795332871.M679288P10660.vm,S=214,W="
        );
        assert_eq!(
            pop3_uidl("%Uf%q", &m, 9, never),
            "1795332871.M679288P10660.VM,S=214,W=223"
        );
        assert_eq!(
            pop3_uidl("%Mu", &m, 9, never),
            "c4ca4238a0b923820dcc509a6f75849b"
        );
        let mut calls = 0;
        assert_eq!(
            pop3_uidl("%m-%m", &m, 9, || {
                calls += 1;
                [0xab; 16]
            }),
            format!("{0}-{0}", "ab".repeat(16))
        );
        assert_eq!(calls, 1);
    }

    #[test]
    fn uidlist_overrides() {
        let mut m = msg(5, "base");
        let mut extras = crate::store::maildir::Extras {
            guid: Some("GUID1".into()),
            ..Default::default()
        };
        m.set_extras(extras.clone());
        assert_eq!(pop3_uidl("%g", &m, 1, || [0; 16]), "GUID1");
        extras.pop3_uidl = Some("legacy-uidl".into());
        m.set_extras(extras.clone());
        assert_eq!(pop3_uidl("%08Xu%08Xv", &m, 1, || [0; 16]), "legacy-uidl");
        extras.pop3_uidl = Some(String::new());
        m.set_extras(extras);
        assert_eq!(pop3_uidl("%08Xu%08Xv", &m, 1, || [0; 16]), "base");
    }
}
