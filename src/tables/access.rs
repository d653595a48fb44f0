//! The tables `check_*_access` restrictions consult: keyed tables (`hash:`
//! and friends) and the pattern tables `cidr:`, `regexp:` and `pcre:`.
//!
//! Postfix asks a table first with the full key (an address, a host name,
//! an IP address) and then with *partial* keys (parent domains, shorter
//! network prefixes, `user@`, `domain`); pattern tables only answer the
//! full key (access(5), "REGULAR EXPRESSION TABLES", "CIDR TABLES").

use std::sync::Arc;

use super::cidr::CidrTable;
use super::map::Map;
use super::regexp::{Dialect, RegexpTable};
use super::TableFile;

/// A `regexp:` table file (POSIX dialect).
pub struct RegexpFile(pub RegexpTable);
/// A `pcre:` table file.
pub struct PcreFile(pub RegexpTable);

impl super::TableFormat for CidrTable {
    fn load(path: &std::path::Path) -> Result<(Self, Vec<String>), super::map::ParseError> {
        CidrTable::load(path)
    }
}

impl super::TableFormat for RegexpFile {
    fn load(path: &std::path::Path) -> Result<(Self, Vec<String>), super::map::ParseError> {
        RegexpTable::load(path, Dialect::Regexp).map(|(t, w)| (RegexpFile(t), w))
    }
}

impl super::TableFormat for PcreFile {
    fn load(path: &std::path::Path) -> Result<(Self, Vec<String>), super::map::ParseError> {
        RegexpTable::load(path, Dialect::Pcre).map(|(t, w)| (PcreFile(t), w))
    }
}

/// One access table, reloaded like every table.
#[derive(Clone)]
pub enum AccessTable {
    Keyed(Arc<TableFile<Map>>),
    Cidr(Arc<TableFile<CidrTable>>),
    Regexp(Arc<TableFile<RegexpFile>>),
    Pcre(Arc<TableFile<PcreFile>>),
}

impl AccessTable {
    /// The value for `key`; `partial` keys (parent domains, network
    /// prefixes, `user@`) are only looked up in keyed tables.
    pub fn find(&self, key: &str, partial: bool) -> Option<String> {
        match self {
            AccessTable::Keyed(t) => t.get().get(key).map(str::to_string),
            _ if partial => None,
            AccessTable::Cidr(t) => t.get().find(key).map(str::to_string),
            AccessTable::Regexp(t) => t.get().0.find(key),
            AccessTable::Pcre(t) => t.get().0.find(key),
        }
    }

    /// Only pattern tables see full keys alone; a lookup that must try
    /// several full keys (host name, then address) asks each.
    pub fn is_pattern(&self) -> bool {
        !matches!(self, AccessTable::Keyed(_))
    }
}
