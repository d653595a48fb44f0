//! Postfix lookup tables, aliases(5) and Dovecot passwd-files, read as text
//! and reloaded when they change (`reload.rs`). Each file is held in its own
//! [`TableFile`], swapped atomically, so readers never see half a table.

pub mod access;
pub mod aliases;
pub mod cidr;
pub mod edit;
pub mod lookup;
pub mod map;
pub mod opendkim;
pub mod passwd_file;
pub mod regexp;
pub mod reload;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use self::access::{AccessTable, PcreFile, RegexpFile};
use self::aliases::Aliases;
use self::cidr::CidrTable;
use self::map::{Map, ParseError, TableKind, TableRef};
use self::passwd_file::PasswdFile;
use self::reload::Reloadable;
use crate::config::{Config, ConfigError, IdMap};

/// A file format that can be (re)loaded from a path.
pub trait TableFormat: Sized + Send + Sync + 'static {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError>;
}

impl TableFormat for Map {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        Map::load(path)
    }
}

impl TableFormat for Aliases {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        Aliases::load(path)
    }
}

impl TableFormat for PasswdFile {
    fn load(path: &Path) -> Result<(Self, Vec<String>), ParseError> {
        PasswdFile::load(path)
    }
}

/// One file's current contents, swappable at run time.
pub struct TableFile<T> {
    /// How the configuration names it, e.g. "virtual_alias_maps hash:/etc/postfix/virtual".
    label: String,
    path: PathBuf,
    current: ArcSwap<T>,
}

impl<T: TableFormat> TableFile<T> {
    /// Loads the file; parse warnings (e.g. duplicate keys) are logged.
    pub fn open(label: String, path: &Path) -> Result<Arc<Self>, ParseError> {
        let (table, warnings) = T::load(path)?;
        for w in warnings {
            tracing::warn!(what = %label, "{w}");
        }
        Ok(Arc::new(TableFile {
            label,
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(table),
        }))
    }

    /// The current version. Cheap; hold it for the length of one lookup.
    pub fn get(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: TableFormat> Reloadable for TableFile<T> {
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn reload(&self) -> Result<(), String> {
        let (table, warnings) = T::load(&self.path).map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!(what = %self.label, "{w}");
        }
        self.current.store(Arc::new(table));
        Ok(())
    }
}

/// A Postfix domain list (`mydestination`, `relay_domains`, …): literal
/// names and `type:table` entries in which the domain is looked up as a key.
#[derive(Default)]
pub struct DomainList {
    names: HashSet<String>,
    tables: Vec<Arc<TableFile<Map>>>,
}

impl DomainList {
    /// Case-insensitive membership (domains are case-insensitive, RFC 5321 §2.4).
    pub fn contains(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&d) || self.tables.iter().any(|t| t.get().contains_key(&d))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.tables.is_empty()
    }
}

/// A uid/gid source: `static:N` or tables keyed by recipient address.
pub enum IdSource {
    Static(u32),
    Table(Arc<TableFile<Map>>),
}

/// Every table the configuration names, each file opened once.
pub struct Tables {
    pub mydestination: DomainList,
    pub relay_domains: DomainList,
    pub virtual_mailbox_domains: DomainList,
    pub virtual_alias_domains: DomainList,
    pub virtual_mailbox_maps: Vec<Arc<TableFile<Map>>>,
    pub virtual_alias_maps: Vec<Arc<TableFile<Map>>>,
    pub virtual_uid_maps: Vec<IdSource>,
    pub virtual_gid_maps: Vec<IdSource>,
    pub alias_maps: Vec<Arc<TableFile<Aliases>>>,
    pub transport_maps: Vec<Arc<TableFile<Map>>>,
    pub smtp_sasl_password_maps: Vec<Arc<TableFile<Map>>>,
    /// Every table a `check_*_access` restriction names, by its spec as
    /// written (`cidr:/etc/postfix/access.cidr`).
    pub access: HashMap<String, AccessTable>,
    pub smtpd_sender_login_maps: Vec<Arc<TableFile<Map>>>,
    pub rbl_reply_maps: Vec<Arc<TableFile<Map>>>,
    reloadables: Vec<Arc<dyn Reloadable>>,
}

/// Opens each file once even when several keys name it
/// (`virtual_mailbox_domains = $virtual_mailbox_maps` is Postfix's default).
struct Opener<'c> {
    config: &'c Config,
    maps: HashMap<PathBuf, Arc<TableFile<Map>>>,
    aliases: HashMap<PathBuf, Arc<TableFile<Aliases>>>,
    reloadables: Vec<Arc<dyn Reloadable>>,
}

impl Opener<'_> {
    fn err(&self, key: &str, reason: String) -> ConfigError {
        ConfigError {
            key: Some(key.to_string()),
            source: self.config.source_of(key).to_string(),
            reason,
        }
    }

    fn map(&mut self, key: &str, spec: &str) -> Result<Arc<TableFile<Map>>, ConfigError> {
        let r = TableRef::parse(spec).map_err(|e| self.err(key, e.to_string()))?;
        if r.kind.is_pattern() {
            return Err(self.err(
                key,
                format!(
                    "table '{spec}': {}: tables are supported only in access restrictions \
                     (check_*_access); use a hash: table here",
                    r.kind.name()
                ),
            ));
        }
        if let Some(t) = self.maps.get(&r.path) {
            return Ok(t.clone());
        }
        let t = TableFile::<Map>::open(format!("{key} {r}"), &r.path)
            .map_err(|e| self.err(key, e.to_string()))?;
        self.maps.insert(r.path.clone(), t.clone());
        self.reloadables.push(t.clone());
        Ok(t)
    }

    /// Opens every access table the restriction lists and classes name,
    /// each reported under the list that names it.
    fn access_tables(
        &mut self,
        config: &Config,
    ) -> Result<HashMap<String, AccessTable>, ConfigError> {
        let mut out = HashMap::new();
        let lists = &config.smtpd_access.lists;
        for spec in lists.access_tables() {
            let key = lists.key_naming(spec);
            let r = TableRef::parse(spec).map_err(|e| self.err(key, e.to_string()))?;
            let label = format!("{key} {r}");
            let fail = |e: map::ParseError| self.err(key, e.to_string());
            let table = match r.kind {
                TableKind::Cidr => {
                    let t = TableFile::<CidrTable>::open(label, &r.path).map_err(fail)?;
                    self.reloadables.push(t.clone());
                    AccessTable::Cidr(t)
                }
                TableKind::Regexp => {
                    let t = TableFile::<RegexpFile>::open(label, &r.path).map_err(fail)?;
                    self.reloadables.push(t.clone());
                    AccessTable::Regexp(t)
                }
                TableKind::Pcre => {
                    let t = TableFile::<PcreFile>::open(label, &r.path).map_err(fail)?;
                    self.reloadables.push(t.clone());
                    AccessTable::Pcre(t)
                }
                _ => AccessTable::Keyed(self.map(key, spec)?),
            };
            out.insert(spec.to_string(), table);
        }
        Ok(out)
    }

    fn maps(
        &mut self,
        key: &str,
        specs: &[String],
    ) -> Result<Vec<Arc<TableFile<Map>>>, ConfigError> {
        specs.iter().map(|s| self.map(key, s)).collect()
    }

    fn domains(&mut self, key: &str, items: &[String]) -> Result<DomainList, ConfigError> {
        let mut list = DomainList::default();
        for item in items {
            if item.contains(":/") || item.starts_with('/') {
                list.tables.push(self.map(key, item)?);
            } else {
                list.names
                    .insert(item.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        Ok(list)
    }

    fn ids(&mut self, key: &str, items: &[IdMap]) -> Result<Vec<IdSource>, ConfigError> {
        items
            .iter()
            .map(|i| match i {
                IdMap::Static(n) => Ok(IdSource::Static(*n)),
                IdMap::Table(spec) => self.map(key, spec).map(IdSource::Table),
            })
            .collect()
    }

    fn aliases(
        &mut self,
        key: &str,
        specs: &[String],
        optional: bool,
    ) -> Result<Vec<Arc<TableFile<Aliases>>>, ConfigError> {
        let mut out = Vec::new();
        for spec in specs {
            let r = TableRef::parse(spec).map_err(|e| self.err(key, e.to_string()))?;
            if r.kind.is_pattern() {
                return Err(self.err(
                    key,
                    format!("table '{spec}': alias tables must be hash: or plain files"),
                ));
            }
            if let Some(t) = self.aliases.get(&r.path) {
                out.push(t.clone());
                continue;
            }
            if optional && !r.path.exists() {
                tracing::info!(table = %r, "alias_maps default file does not exist; no local aliases");
                continue;
            }
            let t = TableFile::<Aliases>::open(format!("{key} {r}"), &r.path)
                .map_err(|e| self.err(key, e.to_string()))?;
            self.aliases.insert(r.path.clone(), t.clone());
            self.reloadables.push(t.clone());
            out.push(t);
        }
        Ok(out)
    }
}

impl Tables {
    /// Opens every table the configuration names. A missing or broken file
    /// is a configuration error naming the key, file and line.
    pub fn open(config: &Config) -> Result<Tables, ConfigError> {
        let mut o = Opener {
            config,
            maps: HashMap::new(),
            aliases: HashMap::new(),
            reloadables: Vec::new(),
        };
        // Postfix's default alias_maps names /etc/aliases, which minimal
        // systems and containers lack; only an explicit setting must exist.
        let aliases_optional = config.is_default("alias_maps");
        // The maps first, so a broken file is reported under the key that
        // names it rather than a domain list that defaults to it.
        let virtual_mailbox_maps = o.maps("virtual_mailbox_maps", &config.virtual_mailbox_maps)?;
        let virtual_alias_maps = o.maps("virtual_alias_maps", &config.virtual_alias_maps)?;
        Ok(Tables {
            mydestination: o.domains("mydestination", &config.mydestination)?,
            relay_domains: o.domains("relay_domains", &config.relay_domains)?,
            virtual_mailbox_domains: o
                .domains("virtual_mailbox_domains", &config.virtual_mailbox_domains)?,
            virtual_alias_domains: o
                .domains("virtual_alias_domains", &config.virtual_alias_domains)?,
            virtual_mailbox_maps,
            virtual_alias_maps,
            virtual_uid_maps: o.ids("virtual_uid_maps", &config.virtual_uid_maps)?,
            virtual_gid_maps: o.ids("virtual_gid_maps", &config.virtual_gid_maps)?,
            alias_maps: o.aliases("alias_maps", &config.alias_maps, aliases_optional)?,
            transport_maps: o.maps("transport_maps", &config.transport_maps)?,
            smtp_sasl_password_maps: o
                .maps("smtp_sasl_password_maps", &config.smtp_sasl_password_maps)?,
            access: o.access_tables(config)?,
            smtpd_sender_login_maps: o.maps(
                "smtpd_sender_login_maps",
                &config.smtpd_access.sender_login_maps,
            )?,
            rbl_reply_maps: o.maps("rbl_reply_maps", &config.smtpd_access.rbl_reply_maps)?,
            reloadables: o.reloadables,
        })
    }

    /// Everything to watch for changes.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        self.reloadables.clone()
    }
}
