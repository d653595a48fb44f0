//! The DNS questions restrictions ask: DNS lists (RFC 5782), whether a
//! domain or host exists, and the client's host names as Postfix's smtpd
//! finds them (reverse name from PTR; "verified" name when a forward lookup
//! of it gives the client's address back).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::TokioResolver;

/// Whether a name could be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Yes,
    /// NXDOMAIN or no usable records: a permanent answer.
    No,
    /// RFC 7505 null MX: the domain exists but takes no mail.
    NullMx,
    /// Timeout or server failure: try again later.
    TempFail,
}

/// The client's names (Postfix `client_name` and `reverse_client_name`):
/// "unknown" when not found, with whether that was permanent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNames {
    pub name: String,
    pub name_status: Found,
    pub reverse: String,
    pub reverse_status: Found,
}

impl ClientNames {
    /// For clients whose names are never looked up (no restriction needs them).
    pub fn unknown() -> ClientNames {
        ClientNames {
            name: "unknown".into(),
            name_status: Found::No,
            reverse: "unknown".into(),
            reverse_status: Found::No,
        }
    }
}

pub struct Lookups {
    resolver: TokioResolver,
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Lookups {
    pub fn new(servers: &[SocketAddr]) -> Result<Lookups, String> {
        Ok(Lookups {
            resolver: crate::smtp::outbound::nexthop::resolver(servers)?,
        })
    }

    /// The A records of a DNS list query name; empty when not listed.
    pub async fn list_answers(&self, query: &str) -> Result<Vec<Ipv4Addr>, ()> {
        match self.resolver.ipv4_lookup(fqdn(query)).await {
            Ok(l) => Ok(l.iter().map(|a| a.0).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => {
                tracing::warn!(query, "DNS list lookup failed: {e}");
                Err(())
            }
        }
    }

    /// The TXT text of a listing (the `$rbl_reason`), if any.
    pub async fn list_reason(&self, query: &str) -> String {
        match self.resolver.txt_lookup(fqdn(query)).await {
            Ok(l) => l
                .iter()
                .next()
                .map(|t| {
                    t.txt_data()
                        .iter()
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .collect::<String>()
                })
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Does `domain` take mail: MX records, else an address (Postfix
    /// reject_unknown_mailhost)?
    pub async fn mail_domain(&self, domain: &str) -> Found {
        match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(l) => {
                let null = l.iter().all(|mx| mx.exchange().is_root());
                if null && l.iter().next().is_some() {
                    Found::NullMx
                } else {
                    Found::Yes
                }
            }
            Err(e) if e.is_nx_domain() => Found::No,
            Err(e) if e.is_no_records_found() => self.host(domain).await,
            Err(_) => Found::TempFail,
        }
    }

    /// Has `host` an address (A or AAAA; Postfix reject_unknown_hostname
    /// also accepts MX)?
    pub async fn host(&self, host: &str) -> Found {
        match self.resolver.lookup_ip(fqdn(host)).await {
            Ok(l) if l.iter().next().is_some() => Found::Yes,
            Ok(_) => Found::No,
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                match self.resolver.mx_lookup(fqdn(host)).await {
                    Ok(_) => Found::Yes,
                    Err(e) if e.is_nx_domain() || e.is_no_records_found() => Found::No,
                    Err(_) => Found::TempFail,
                }
            }
            Err(_) => Found::TempFail,
        }
    }

    /// The client's reverse name (PTR) and verified name (the PTR name,
    /// when one of its addresses is the client's).
    pub async fn client_names(&self, ip: IpAddr) -> ClientNames {
        let mut names = ClientNames::unknown();
        let ptr = match self.resolver.reverse_lookup(ip).await {
            Ok(l) => l
                .iter()
                .next()
                .map(|n| n.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => None,
            Err(_) => {
                names.name_status = Found::TempFail;
                names.reverse_status = Found::TempFail;
                return names;
            }
        };
        let Some(ptr) = ptr else {
            return names;
        };
        names.reverse = ptr.clone();
        names.reverse_status = Found::Yes;
        match self.resolver.lookup_ip(fqdn(&ptr)).await {
            Ok(l) if l.iter().any(|a| a == ip) => {
                names.name = ptr;
                names.name_status = Found::Yes;
            }
            Ok(_) => {}
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
            Err(_) => names.name_status = Found::TempFail,
        }
        names
    }
}

/// The DNS list query name for a client address (RFC 5782 §2.1, §2.4):
/// reversed octets, or reversed nibbles for IPv6.
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reversed(IpAddr::V4(v4));
            }
            let mut out = String::with_capacity(63);
            for b in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            out.pop();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_per_rfc_5782() {
        assert_eq!(reversed("192.0.2.99".parse().unwrap()), "99.2.0.192");
        assert_eq!(
            reversed("2001:db8:1:2:3:4:567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
        assert_eq!(reversed("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192");
    }
}
