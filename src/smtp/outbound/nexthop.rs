//! Where a recipient's mail goes next: `transport_maps`, then `relayhost`,
//! then the recipient domain's MX hosts (RFC 5321 §5.1), and the
//! addresses to connect to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

use crate::tables::map::Map;
use crate::tables::TableFile;

/// A next hop in Postfix's syntax: `[host]:port` (no MX lookup) or
/// `host:port` / `host` (MX lookup of `host`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// Look up MX records for `host` (false for `[host]`).
    pub mx: bool,
}

impl NextHop {
    pub fn parse(s: &str) -> Result<NextHop, String> {
        let s = s.trim();
        let (host, port, mx) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': missing ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("'{s}': junk after ']'")),
            };
            (host, port, false)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p), true),
                _ => (s, None, true),
            }
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("'{s}': empty host name"));
        }
        let port = match port {
            None => 25,
            Some("smtp") => 25,
            Some("submission") => 587,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{s}': bad port '{p}'"))?,
        };
        Ok(NextHop { host, port, mx })
    }

    pub fn domain(domain: &str) -> NextHop {
        NextHop {
            host: domain.to_ascii_lowercase(),
            port: 25,
            mx: true,
        }
    }

    /// `[host]:port` / `host:port` / `host`, as Postfix logs and keys
    /// `smtp_sasl_password_maps` with it.
    pub fn label(&self) -> String {
        match (self.mx, self.port) {
            (false, 25) => format!("[{}]", self.host),
            (false, p) => format!("[{}]:{p}", self.host),
            (true, 25) => self.host.clone(),
            (true, p) => format!("{}:{p}", self.host),
        }
    }
}

/// Routing for one recipient: a next hop, or a transport_maps `error:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Hop(NextHop),
    /// `error:text` in transport_maps: bounce with this text.
    Refuse(String),
}

/// The domain part of an address (lower-cased; empty without '@').
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// transport(5) lookup order: the address, the domain, each parent domain as
/// `.parent`, then `*`.
fn transport_entry(maps: &[Arc<TableFile<Map>>], address: &str) -> Option<String> {
    let domain = domain_of(address);
    let mut keys = vec![address.to_ascii_lowercase(), domain.clone()];
    let mut rest = domain.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        keys.push(format!(".{parent}"));
        rest = parent;
    }
    keys.push("*".into());
    for key in &keys {
        for m in maps {
            if let Some(v) = m.get().get(key) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Chooses the next hop for `address`.
pub fn route(
    address: &str,
    relayhost: &str,
    transport_maps: &[Arc<TableFile<Map>>],
) -> Result<Route, String> {
    let default = || -> Result<Route, String> {
        if relayhost.trim().is_empty() {
            Ok(Route::Hop(NextHop::domain(&domain_of(address))))
        } else {
            NextHop::parse(relayhost)
                .map(Route::Hop)
                .map_err(|e| format!("relayhost {e}"))
        }
    };
    let Some(entry) = transport_entry(transport_maps, address) else {
        return default();
    };
    let (transport, hop) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
    match transport.trim() {
        "error" => Ok(Route::Refuse(if hop.is_empty() {
            "mail to this address is refused".into()
        } else {
            hop.trim().to_string()
        })),
        "smtp" | "relay" | "" => {
            if hop.trim().is_empty() {
                default()
            } else {
                NextHop::parse(hop)
                    .map(Route::Hop)
                    .map_err(|e| format!("transport_maps entry for {address}: {e}"))
            }
        }
        other => Err(format!(
            "transport_maps entry for {address}: transport '{other}' is not supported (smtp, relay, error)"
        )),
    }
}

/// One address to try, with the host name it came from (for TLS
/// verification and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

/// Why no addresses: `permanent` bounces (no such domain, null MX, loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure {
    pub text: String,
    pub permanent: bool,
}

/// Postfix's smtp_mx_address_limit.
const MAX_ADDRESSES: usize = 5;

pub struct Dns {
    resolver: TokioResolver,
}

/// A resolver for `dns_servers` (empty: /etc/resolv.conf), with the
/// timeouts every lookup of the server uses.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    let builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("DNS configuration: {e}"))?
    } else {
        let group: Vec<NameServerConfig> = servers
            .iter()
            .flat_map(|s| {
                [
                    NameServerConfig::new(*s, Protocol::Udp),
                    NameServerConfig::new(*s, Protocol::Tcp),
                ]
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
    };
    Ok(builder.with_options(opts).build())
}

impl Dns {
    /// `dns_servers` empty: /etc/resolv.conf.
    pub fn new(servers: &[SocketAddr]) -> Result<Dns, String> {
        Ok(Dns {
            resolver: resolver(servers)?,
        })
    }

    /// The addresses to try for `hop`, best first. `myhostname` is for
    /// RFC 5321 §5.1: MX hosts no better than ourselves are dropped.
    pub async fn targets(
        &self,
        hop: &NextHop,
        myhostname: &str,
    ) -> Result<Vec<Target>, DnsFailure> {
        let temp = |text: String| DnsFailure {
            text,
            permanent: false,
        };
        if let Ok(ip) = hop.host.parse::<IpAddr>() {
            return Ok(vec![Target {
                name: hop.host.clone(),
                addr: SocketAddr::new(ip, hop.port),
            }]);
        }
        let hosts: Vec<String> = if hop.mx {
            self.mx_hosts(&hop.host, myhostname).await?
        } else {
            vec![hop.host.clone()]
        };
        let mut targets = Vec::new();
        let mut last_err = None;
        for host in hosts {
            match self.resolver.lookup_ip(format!("{host}.")).await {
                Ok(ips) => targets.extend(ips.iter().map(|ip| Target {
                    name: host.clone(),
                    addr: SocketAddr::new(ip, hop.port),
                })),
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                    last_err = Some(DnsFailure {
                        text: format!("Host or domain name not found. Name service error for name={host} type=A: Host not found"),
                        permanent: !hop.mx,
                    });
                }
                Err(e) => last_err = Some(temp(format!("DNS lookup of {host} failed: {e}"))),
            }
            if targets.len() >= MAX_ADDRESSES {
                break;
            }
        }
        targets.truncate(MAX_ADDRESSES);
        if targets.is_empty() {
            return Err(last_err.unwrap_or_else(|| temp(format!("no address for {}", hop.host))));
        }
        Ok(targets)
    }

    async fn mx_hosts(&self, domain: &str, myhostname: &str) -> Result<Vec<String>, DnsFailure> {
        let lookup = match self.resolver.mx_lookup(format!("{domain}.")).await {
            Ok(l) => l,
            // No MX records: the domain itself is the implicit MX (§5.1).
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => {
                return Ok(vec![domain.to_string()])
            }
            Err(e) if e.is_nx_domain() => {
                return Err(DnsFailure {
                    text: format!("Host or domain name not found. Name service error for name={domain} type=MX: Host not found"),
                    permanent: true,
                })
            }
            Err(e) => {
                return Err(DnsFailure {
                    text: format!("DNS lookup of MX for {domain} failed: {e}"),
                    permanent: false,
                })
            }
        };
        let records: Vec<(u16, String)> = lookup
            .iter()
            .map(|mx| {
                (
                    mx.preference(),
                    mx.exchange()
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                )
            })
            .collect();
        order_mx(domain, records, myhostname)
    }
}

/// Sorts MX records by preference, shuffling equals; applies RFC 7505
/// (null MX) and RFC 5321 §5.1 (drop ourselves and anything worse).
pub fn order_mx(
    domain: &str,
    mut records: Vec<(u16, String)>,
    myhostname: &str,
) -> Result<Vec<String>, DnsFailure> {
    if records.len() == 1 && records[0].1.is_empty() {
        return Err(DnsFailure {
            text: format!("Domain {domain} does not accept mail (nullMX)"),
            permanent: true,
        });
    }
    records.retain(|(_, h)| !h.is_empty());
    records.shuffle(&mut rand::thread_rng());
    records.sort_by_key(|(p, _)| *p);
    if let Some(own) = records
        .iter()
        .find(|(_, h)| h.eq_ignore_ascii_case(myhostname))
        .map(|(p, _)| *p)
    {
        records.retain(|(p, _)| *p < own);
        if records.is_empty() {
            return Err(DnsFailure {
                text: format!("mail for {domain} loops back to myself"),
                permanent: true,
            });
        }
    }
    Ok(records.into_iter().map(|(_, h)| h).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexthop_syntax() {
        assert_eq!(
            NextHop::parse("[smtp.example.net]:587").unwrap(),
            NextHop {
                host: "smtp.example.net".into(),
                port: 587,
                mx: false
            }
        );
        assert_eq!(
            NextHop::parse("example.net").unwrap(),
            NextHop::domain("example.net")
        );
        let h = NextHop::parse("Example.NET:2525").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.mx), ("example.net", 2525, true));
        assert_eq!(NextHop::parse("[10.0.0.1]").unwrap().label(), "[10.0.0.1]");
        assert_eq!(
            NextHop::parse("[::1]:25").unwrap().host,
            "::1",
            "IPv6 literals in brackets"
        );
        assert!(NextHop::parse("[x").is_err());
        assert!(NextHop::parse("[x]:0").is_err());
        assert!(NextHop::parse("[x]:port").is_err());
        assert!(NextHop::parse("").is_err());
        assert_eq!(
            NextHop::parse("[relay.example]:587").unwrap().label(),
            "[relay.example]:587"
        );
    }

    fn map(text: &str) -> Vec<Arc<TableFile<Map>>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transport");
        std::fs::write(&path, text).unwrap();
        let t = TableFile::<Map>::open("transport_maps".into(), &path).unwrap();
        std::mem::forget(dir);
        vec![t]
    }

    #[test]
    fn transport_maps_then_relayhost_then_mx() {
        let maps = map("special.example smtp:[10.1.1.1]:2525\n.sub.example relay:[hub.example]\nblocked.example error:no mail for you\nuser@mx.example smtp:\n");
        let hop = |h: &str, p: u16, mx: bool| {
            Route::Hop(NextHop {
                host: h.into(),
                port: p,
                mx,
            })
        };
        assert_eq!(
            route("a@special.example", "", &maps).unwrap(),
            hop("10.1.1.1", 2525, false)
        );
        assert_eq!(
            route("a@x.sub.example", "", &maps).unwrap(),
            hop("hub.example", 25, false)
        );
        // `.sub.example` matches subdomains only, not sub.example itself.
        assert_eq!(
            route("a@sub.example", "", &maps).unwrap(),
            hop("sub.example", 25, true)
        );
        assert_eq!(
            route("a@blocked.example", "", &maps).unwrap(),
            Route::Refuse("no mail for you".into())
        );
        assert_eq!(
            route("b@other.example", "", &maps).unwrap(),
            hop("other.example", 25, true)
        );
        assert_eq!(
            route("b@other.example", "[smarthost.example]:587", &maps).unwrap(),
            hop("smarthost.example", 587, false)
        );
        // An entry with an empty next hop uses the default (relayhost here).
        assert_eq!(
            route("user@mx.example", "[smarthost.example]", &maps).unwrap(),
            hop("smarthost.example", 25, false)
        );
        assert!(route("a@b.example", "[bad", &[]).is_err());
        let maps = map("* smtp:[all.example]\n");
        assert_eq!(
            route("a@any.example", "", &maps).unwrap(),
            hop("all.example", 25, false)
        );
        let maps = map("weird.example lmtp:unix:/x\n");
        assert!(route("a@weird.example", "", &maps)
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn mx_ordering_null_mx_and_self() {
        let recs = vec![
            (20, "b.example".to_string()),
            (10, "a1.example".to_string()),
            (10, "a2.example".to_string()),
        ];
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..64 {
            let hosts = order_mx("d.example", recs.clone(), "me.example").unwrap();
            assert_eq!(hosts[2], "b.example");
            seen_first.insert(hosts[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");

        let e = order_mx("d.example", vec![(0, String::new())], "me.example").unwrap_err();
        assert!(e.permanent && e.text.contains("nullMX"));

        let hosts = order_mx(
            "d.example",
            vec![
                (10, "me.example".into()),
                (5, "backup.example".into()),
                (20, "c.example".into()),
            ],
            "ME.example",
        )
        .unwrap();
        assert_eq!(hosts, vec!["backup.example"]);
        let e = order_mx("d.example", vec![(10, "me.example".into())], "me.example").unwrap_err();
        assert!(e.permanent);
        assert_eq!(e.text, "mail for d.example loops back to myself");
    }
}
