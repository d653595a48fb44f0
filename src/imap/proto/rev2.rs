//! IMAP4rev2 syntax that imap-codec 2.0.0-alpha.10 does not parse,
//! rewritten into syntax it does:
//!
//! * `SEARCH RETURN (MIN MAX ALL COUNT SAVE PARTIAL n:m)` (RFC 4731,
//!   RFC 9051 §6.4.4, RFC 5267 §4.4 and RFC 9394 for PARTIAL) and the same
//!   for `SORT RETURN (…)` (ESORT, RFC 5267 §3): the clause is cut out and
//!   handed on as [`SearchReturn`]; with CONTEXT=SEARCH/SORT (RFC 5267
//!   §4.2, §4.3) also `CONTEXT` (a hint, ignored) and `UPDATE`.
//! * the saved search result `$` (RFC 5182) as a sequence set: replaced by
//!   [`SAVED_PLACEHOLDER`], and the command is flagged, so the backend puts
//!   the saved messages in its place.
//!
//! The tokenizer in [`super::tokens`], which skips quoted strings and
//! literals, finds these; the rest of the command is left byte for byte as
//! it came.

use super::tokens::{tokenize, Kind, Token};

/// Stands in for `$`. RFC 5182 allows `$` only as a whole sequence set,
/// so the backend replaces every set that is just this number.
pub const SAVED_PLACEHOLDER: u32 = u32::MAX;

/// RFC 4731 §3.1 result options. `RETURN ()` means ALL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    /// RFC 5182: keep the result for `$`.
    pub save: bool,
    /// RFC 5267 §4.4, RFC 9394 §3.1: only the results at these positions
    /// (1-based; negative ones count from the end), as the client wrote
    /// them.
    pub partial: Option<(i64, i64)>,
    /// RFC 5267 §4.3: keep the search and report changes to its result
    /// (ADDTO / REMOVEFROM) until CANCELUPDATE or the mailbox is left.
    pub update: bool,
}

impl SearchReturn {
    /// ESEARCH's answer when IMAP4rev2 is enabled and no RETURN was given.
    pub const ALL: SearchReturn = SearchReturn {
        min: false,
        max: false,
        all: true,
        count: false,
        save: false,
        partial: None,
        update: false,
    };
}

/// A PARTIAL range `n:m` (RFC 9394 §3.1): both non-zero, of one sign.
fn partial_range(t: &[u8]) -> Option<(i64, i64)> {
    let t = std::str::from_utf8(t).ok()?;
    let (a, b) = t.split_once(':')?;
    let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
    let ok = |n: i64| n != 0 && n.unsigned_abs() <= u64::from(u32::MAX);
    (ok(a) && ok(b) && (a > 0) == (b > 0)).then_some((a, b))
}

/// A command after rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub bytes: Vec<u8>,
    pub search_return: Option<SearchReturn>,
    /// `$` was used (and replaced by [`SAVED_PLACEHOLDER`]).
    pub saved: bool,
}

/// Search keys followed by arguments that are strings, dates or numbers
/// (a `$` there is text, not the saved result), and how many.
fn string_args(key: &[u8]) -> usize {
    const ONE: &[&str] = &[
        "BCC",
        "BODY",
        "CC",
        "FROM",
        "SUBJECT",
        "TEXT",
        "TO",
        "KEYWORD",
        "UNKEYWORD",
        "BEFORE",
        "ON",
        "SINCE",
        "SENTBEFORE",
        "SENTON",
        "SENTSINCE",
        "LARGER",
        "SMALLER",
        "CHARSET",
    ];
    let k = String::from_utf8_lossy(key).to_ascii_uppercase();
    if k == "HEADER" {
        2
    } else if ONE.contains(&k.as_str()) {
        1
    } else {
        0
    }
}

/// Rewrites `raw` if it uses `RETURN` or `$`; `Ok(None)` if it doesn't,
/// `Err` for a RETURN clause that is malformed or names an unknown option.
pub fn rewrite(raw: &[u8]) -> Result<Option<Rewrite>, String> {
    // Malformed input: what comes before it is looked at; imap-codec
    // reports the error.
    let (Ok(toks) | Err(toks)) = tokenize(raw);
    let text = |t: &Token| t.raw(raw);
    let is = |t: &Token, word: &str| {
        t.kind == Kind::Atom && text(t).eq_ignore_ascii_case(word.as_bytes())
    };
    // tag [UID] name args…
    let mut at = 1;
    if toks.get(at).is_some_and(|t| is(t, "UID")) {
        at += 1;
    }
    let Some(name) = toks.get(at) else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(text(name)).to_ascii_uppercase();
    let args = &toks[at + 1..];
    // Byte ranges to cut out, and the `$` atoms to replace.
    let mut cut: Option<(usize, usize)> = None;
    let mut dollars: Vec<&Token> = Vec::new();
    let mut search_return = None;
    let is_dollar = |t: &Token| t.kind == Kind::Atom && text(t) == b"$";
    match name.as_str() {
        "FETCH" | "STORE" | "COPY" | "MOVE" | "EXPUNGE" => {
            if let Some(first) = args.first().filter(|t| is_dollar(t)) {
                dollars.push(first);
            }
        }
        "SEARCH" | "SORT" | "THREAD" => {
            let mut rest = args;
            if name != "THREAD" && rest.first().is_some_and(|t| is(t, "RETURN")) {
                if rest.get(1).map(|t| t.kind) != Some(Kind::Open) {
                    return Err("RETURN needs a list of options".into());
                }
                let mut ret = SearchReturn::default();
                let mut j = 2;
                loop {
                    let Some(t) = rest.get(j) else {
                        return Err("unterminated RETURN options".into());
                    };
                    if t.kind == Kind::Close {
                        break;
                    }
                    match String::from_utf8_lossy(text(t))
                        .to_ascii_uppercase()
                        .as_str()
                    {
                        "MIN" => ret.min = true,
                        "MAX" => ret.max = true,
                        "ALL" => ret.all = true,
                        "COUNT" => ret.count = true,
                        "SAVE" => ret.save = true,
                        // RFC 5267 §4.2: a hint the server may ignore.
                        "CONTEXT" => {}
                        "UPDATE" => ret.update = true,
                        "PARTIAL" => {
                            j += 1;
                            let range = rest
                                .get(j)
                                .filter(|t| t.kind == Kind::Atom)
                                .and_then(|t| partial_range(text(t)));
                            match range {
                                Some(r) => ret.partial = Some(r),
                                None => return Err("PARTIAL needs a range n:m".into()),
                            }
                        }
                        other => return Err(format!("unknown RETURN option {other}")),
                    }
                    j += 1;
                }
                // RFC 4731 §3.1: no result option means ALL. CONTEXT, a
                // hint, counts for nothing (`RETURN (CONTEXT)` is ALL);
                // UPDATE is an option (RFC 5267 §4.3: with no interaction
                // with the others), so `RETURN (UPDATE)` answers no ALL,
                // as Dovecot does.
                if !(ret.min
                    || ret.max
                    || ret.count
                    || ret.save
                    || ret.partial.is_some()
                    || ret.update)
                {
                    ret.all = true;
                }
                let end = rest[j].end;
                // Up to the next token, so no double space is left.
                let next = rest.get(j + 1).map_or(end, |t| t.start);
                cut = Some((rest[0].start, next));
                search_return = Some(ret);
                rest = &rest[j + 1..];
            }
            // SORT's criteria list and THREAD's algorithm, then the charset,
            // come before the search keys.
            if name == "SORT" {
                let close = rest.iter().position(|t| t.kind == Kind::Close);
                rest = close.map_or(&[], |c| &rest[(c + 2).min(rest.len())..]);
            } else if name == "THREAD" {
                rest = &rest[2.min(rest.len())..];
            }
            let mut skip = 0;
            for t in rest {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if is_dollar(t) {
                    dollars.push(t);
                } else if t.kind == Kind::Atom {
                    skip = string_args(text(t));
                }
            }
        }
        _ => {}
    }
    if cut.is_none() && dollars.is_empty() {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(raw.len() + 16);
    let mut pos = 0;
    let mut edits: Vec<(usize, usize, &[u8])> = Vec::new();
    let placeholder = SAVED_PLACEHOLDER.to_string();
    if let Some((s, e)) = cut {
        edits.push((s, e, b""));
    }
    for d in &dollars {
        edits.push((d.start, d.end, placeholder.as_bytes()));
    }
    edits.sort_by_key(|e| e.0);
    for (s, e, with) in edits {
        bytes.extend_from_slice(&raw[pos..s]);
        bytes.extend_from_slice(with);
        pos = e;
    }
    bytes.extend_from_slice(&raw[pos..]);
    Ok(Some(Rewrite {
        bytes,
        search_return,
        saved: !dollars.is_empty(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> Option<(String, Option<SearchReturn>, bool)> {
        rewrite(s.as_bytes()).unwrap().map(|r| {
            (
                String::from_utf8(r.bytes).unwrap(),
                r.search_return,
                r.saved,
            )
        })
    }

    #[test]
    fn return_options_are_cut_out() {
        let (bytes, ret, saved) = rw("a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(bytes, "a UID SEARCH UNSEEN\r\n");
        let ret = ret.unwrap();
        assert!(ret.min && ret.count && !ret.all && !ret.max && !ret.save);
        assert!(!saved);
        let (bytes, ret, _) = rw("a search return () all\r\n").unwrap();
        assert_eq!(bytes, "a search all\r\n");
        assert_eq!(ret, Some(SearchReturn::ALL), "RETURN () means ALL");
        assert!(rewrite(b"a SEARCH RETURN (MIN BOGUS) ALL\r\n").is_err());
        assert!(rewrite(b"a SEARCH RETURN MIN ALL\r\n").is_err());
    }

    #[test]
    fn return_update_and_context() {
        let (bytes, ret, _) = rw("a SEARCH RETURN (UPDATE) UNSEEN\r\n").unwrap();
        assert_eq!(bytes, "a SEARCH UNSEEN\r\n");
        let ret = ret.unwrap();
        assert!(ret.update && !ret.all, "UPDATE is a return option");
        let (bytes, ret, _) =
            rw("a UID SORT RETURN (context COUNT update) (SUBJECT) UTF-8 ALL\r\n").unwrap();
        assert_eq!(bytes, "a UID SORT (SUBJECT) UTF-8 ALL\r\n");
        let ret = ret.unwrap();
        assert!(ret.update && ret.count && !ret.all);
        let (_, ret, _) = rw("a SEARCH RETURN (CONTEXT) ALL\r\n").unwrap();
        assert_eq!(ret, Some(SearchReturn::ALL), "CONTEXT is only a hint");
        assert!(rewrite(b"a SEARCH RETURN (UPDATES) ALL\r\n").is_err());
    }

    #[test]
    fn sort_return_partial_and_dollar() {
        let (bytes, ret, saved) =
            rw("a UID SORT RETURN (MIN COUNT PARTIAL -1:-10) (REVERSE DATE) UTF-8 UID $\r\n")
                .unwrap();
        let p = SAVED_PLACEHOLDER;
        assert_eq!(
            bytes,
            format!("a UID SORT (REVERSE DATE) UTF-8 UID {p}\r\n")
        );
        let ret = ret.unwrap();
        assert!(ret.min && ret.count && !ret.all);
        assert_eq!(ret.partial, Some((-1, -10)));
        assert!(saved);
        let (_, ret, _) = rw("a SORT RETURN () (SUBJECT) UTF-8 ALL\r\n").unwrap();
        assert_eq!(ret, Some(SearchReturn::ALL));
        let (_, ret, _) = rw("a SEARCH RETURN (PARTIAL 1:5) ALL\r\n").unwrap();
        assert_eq!(ret.unwrap().partial, Some((1, 5)));
        assert!(!ret.unwrap().all);
        for bad in ["0:5", "-1:5", "x", "1:"] {
            let line = format!("a SEARCH RETURN (PARTIAL {bad}) ALL\r\n");
            assert!(rewrite(line.as_bytes()).is_err(), "{bad}");
        }
        // SORT's FROM and THREAD's algorithm aren't search keys.
        assert_eq!(
            rw("a SORT (FROM) UTF-8 $\r\n").unwrap().0,
            format!("a SORT (FROM) UTF-8 {p}\r\n")
        );
        assert_eq!(
            rw("a THREAD REFERENCES UTF-8 FROM $ $\r\n").unwrap().0,
            format!("a THREAD REFERENCES UTF-8 FROM $ {p}\r\n")
        );
        assert_eq!(rw("a SORT (SUBJECT) UTF-8 ALL\r\n"), None);
    }

    #[test]
    fn dollar_is_the_saved_result_only_where_a_set_goes() {
        let p = SAVED_PLACEHOLDER;
        assert_eq!(
            rw("a UID FETCH $ (FLAGS)\r\n").unwrap().0,
            format!("a UID FETCH {p} (FLAGS)\r\n")
        );
        assert_eq!(
            rw("a SEARCH RETURN (SAVE) UID $ SUBJECT $ OR $ HEADER X $\r\n").unwrap(),
            (
                format!("a SEARCH UID {p} SUBJECT $ OR {p} HEADER X $\r\n"),
                Some(SearchReturn {
                    save: true,
                    ..Default::default()
                }),
                true
            )
        );
        assert_eq!(
            rw("a STORE $ +FLAGS ($)\r\n").unwrap().0,
            format!("a STORE {p} +FLAGS ($)\r\n")
        );
        // Quoted strings, literals and keywords that start with $ are left.
        assert_eq!(rw("a SEARCH SUBJECT \"$\" KEYWORD $Forwarded\r\n"), None);
        assert_eq!(rw("a SEARCH TEXT {1}\r\n$\r\n"), None);
        assert_eq!(rw("a LOGIN $ $\r\n"), None);
        assert_eq!(rw("a FETCH 1:* BODY.PEEK[HEADER.FIELDS (A $)]\r\n"), None);
        // An unmatched [ doesn't hide what follows.
        assert_eq!(
            rw("a SEARCH SUBJECT a[b TEXT \"]\" UID $\r\n").unwrap().0,
            format!("a SEARCH SUBJECT a[b TEXT \"]\" UID {p}\r\n")
        );
        assert_eq!(rw("a APPEND INBOX ~{3}\r\n$ $\r\n"), None);
    }
}
