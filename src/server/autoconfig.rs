//! Mail client autoconfiguration on the `listen.http` endpoint: the settings
//! a client needs (host name, ports, TLS, login name) in the three formats
//! clients fetch when a user types only an address and a password.
//!
//! - Thunderbird (also K-9/Thunderbird for Android, Evolution, KMail):
//!   `GET /.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ADDR`
//!   and `GET /mail/config-v1.1.xml` (the `autoconfig.DOMAIN` host form).
//! - Outlook: `POST /autodiscover/autodiscover.xml` with the address in the
//!   request's `<EMailAddress>` (the "POX" Autodiscover protocol).
//! - Apple Mail (macOS, iOS): `GET /apple.mobileconfig?emailaddress=ADDR`,
//!   an unsigned configuration profile the user opens to add the account.
//!
//! Everything here is computed from the listeners and `autoconfig_hostname`:
//! what is offered is what the server actually listens on. Pure functions,
//! no I/O; `server/http.rs` routes the requests.

use sha2::{Digest, Sha256};

use crate::config::{Config, Listener, Protocol};

/// How a client secures one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (RFC 8314).
    Tls,
    /// STARTTLS / STLS on a plain port.
    StartTls,
    /// No TLS at all (no certificate configured).
    Plain,
}

/// One place a client can connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub port: u16,
    pub security: Security,
}

/// What the server offers clients, best first within each direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The name clients connect to (`autoconfig_hostname`).
    pub hostname: String,
    /// IMAP before POP3, implicit TLS before STARTTLS.
    pub incoming: Vec<Endpoint>,
    /// Submission only (465 before 587): port 25 is for other servers.
    pub outgoing: Vec<Endpoint>,
}

impl Offer {
    /// The endpoints of the enabled listeners. `smtp_tls` and `mail_tls`
    /// say whether SMTP and IMAP/POP3 have TLS (a certificate, and not
    /// `ssl = no`): without it, implicit-TLS listeners cannot work and are
    /// left out, and the STARTTLS ones are plain.
    pub fn from_config(config: &Config, smtp_tls: bool, mail_tls: bool) -> Offer {
        let endpoint = |listener: Listener| {
            let port = config
                .listen
                .all()
                .iter()
                .find(|(l, _)| *l == listener)
                .and_then(|(_, addrs)| addrs.first())
                .map(|a| a.port())?;
            let tls = match listener.protocol() {
                Protocol::Smtp => smtp_tls,
                _ => mail_tls,
            };
            let security = match (listener.implicit_tls(), tls) {
                (true, true) => Security::Tls,
                (true, false) => return None,
                (false, true) => Security::StartTls,
                (false, false) => Security::Plain,
            };
            Some(Endpoint {
                protocol: listener.protocol(),
                port,
                security,
            })
        };
        let pick = |listeners: &[Listener]| listeners.iter().filter_map(|&l| endpoint(l)).collect();
        Offer {
            hostname: config.autoconfig_hostname.clone(),
            incoming: pick(&[
                Listener::Imaps,
                Listener::Imap,
                Listener::Pop3s,
                Listener::Pop3,
            ]),
            outgoing: pick(&[Listener::Submissions, Listener::Submission]),
        }
    }
}

/// An address a client may ask about: `local@domain` with a domain this
/// server receives mail for. `hosted` decides the domain. Anything else is
/// refused (404), so the endpoint does not configure clients for domains it
/// does not serve.
pub fn checked_address(raw: &str, hosted: impl Fn(&str) -> bool) -> Option<String> {
    let raw = raw.trim();
    let (local, domain) = raw.rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    let sane = |s: &str, extra: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c) || extra.contains(c))
    };
    if !sane(local, "_+=!#$%&'*/?^`{|}~") || !sane(&domain, "") || !hosted(&domain) {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// `emailaddress=` from a query string (`a=b&c=d`, percent-encoded).
pub fn query_address(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("emailaddress"))
        .map(|(_, v)| v.into_owned())
}

/// The `<EMailAddress>` of an Outlook Autodiscover request body.
pub fn autodiscover_request_address(body: &str) -> Option<String> {
    let start = body.find("<EMailAddress>")? + "<EMailAddress>".len();
    let len = body[start..].find("</EMailAddress>")?;
    Some(body[start..start + len].trim().to_string())
}

/// Escapes text for an XML element or attribute.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn protocol_word(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop3",
        _ => "smtp",
    }
}

/// Thunderbird's `clientConfig` version 1.1 for `domain`. The user name is
/// Thunderbird's `%EMAILADDRESS%` placeholder: logins are full addresses.
pub fn thunderbird(offer: &Offer, domain: &str) -> String {
    let server = |tag: &str, e: &Endpoint| {
        let socket = match e.security {
            Security::Tls => "SSL",
            Security::StartTls => "STARTTLS",
            Security::Plain => "plain",
        };
        format!(
            "    <{tag} type=\"{}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      \
             <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      \
             <username>%EMAILADDRESS%</username>\n    </{tag}>\n",
            protocol_word(e.protocol),
            xml(&offer.hostname),
            e.port,
        )
    };
    let domain = xml(domain);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
         <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    \
         <displayName>{domain}</displayName>\n    <displayShortName>{domain}</displayShortName>\n"
    );
    for e in &offer.incoming {
        out += &server("incomingServer", e);
    }
    for e in &offer.outgoing {
        out += &server("outgoingServer", e);
    }
    out += "  </emailProvider>\n</clientConfig>\n";
    out
}

/// Outlook's Autodiscover response (the 2006a "outlook" response schema),
/// one `<Protocol>` per endpoint, the login name being the address.
pub fn autodiscover(offer: &Offer, address: &str) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  \
         <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    \
         <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n",
    );
    for e in offer.incoming.iter().chain(&offer.outgoing) {
        let (ssl, encryption) = match e.security {
            Security::Tls => ("on", "SSL"),
            Security::StartTls => ("on", "TLS"),
            Security::Plain => ("off", "None"),
        };
        out += &format!(
            "      <Protocol>\n        <Type>{}</Type>\n        <Server>{}</Server>\n        \
             <Port>{}</Port>\n        <DomainRequired>off</DomainRequired>\n        \
             <LoginName>{}</LoginName>\n        <SPA>off</SPA>\n        <SSL>{ssl}</SSL>\n        \
             <Encryption>{encryption}</Encryption>\n        <AuthRequired>on</AuthRequired>\n      \
             </Protocol>\n",
            protocol_word(e.protocol).to_ascii_uppercase(),
            xml(&offer.hostname),
            e.port,
            xml(address),
        );
    }
    out += "    </Account>\n  </Response>\n</Autodiscover>\n";
    out
}

/// A stable UUID (RFC 9562 version 8 layout) for one payload of one address,
/// so installing the profile again replaces the account instead of adding
/// a second one.
fn payload_uuid(address: &str, what: &str) -> String {
    let digest = Sha256::digest(format!("pigeonpost {what} {address}").as_bytes());
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An Apple configuration profile (`com.apple.mail.managed` payload) for
/// `address`, or `None` when the server offers no incoming or no outgoing
/// endpoint (Apple Mail needs both). Apple's `UseSSL` means TLS either way:
/// implicit on 993/465, STARTTLS on 143/587.
pub fn mobileconfig(offer: &Offer, address: &str) -> Option<String> {
    let incoming = offer.incoming.first()?;
    let outgoing = offer.outgoing.first()?;
    let account_type = match incoming.protocol {
        Protocol::Pop3 => "EmailTypePOP",
        _ => "EmailTypeIMAP",
    };
    let tls = |e: &Endpoint| {
        if e.security == Security::Plain {
            "<false/>"
        } else {
            "<true/>"
        }
    };
    let reversed: Vec<&str> = offer.hostname.rsplit('.').collect();
    let id = xml(&format!("{}.pigeonpost.mail", reversed.join(".")));
    let (host, addr) = (xml(&offer.hostname), xml(address));
    Some(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>{addr}</string>
      <key>EmailAccountType</key><string>{account_type}</string>
      <key>EmailAddress</key><string>{addr}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{host}</string>
      <key>IncomingMailServerPortNumber</key><integer>{in_port}</integer>
      <key>IncomingMailServerUseSSL</key>{in_tls}
      <key>IncomingMailServerUsername</key><string>{addr}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{host}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{out_port}</integer>
      <key>OutgoingMailServerUseSSL</key>{out_tls}
      <key>OutgoingMailServerUsername</key><string>{addr}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDescription</key><string>Mail account {addr}</string>
      <key>PayloadDisplayName</key><string>{addr}</string>
      <key>PayloadIdentifier</key><string>{id}.account</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{account_uuid}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>Mail for {addr}</string>
  <key>PayloadIdentifier</key><string>{id}</string>
  <key>PayloadRemovalDisallowed</key><false/>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{profile_uuid}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#,
        in_port = incoming.port,
        in_tls = tls(incoming),
        out_port = outgoing.port,
        out_tls = tls(outgoing),
        account_uuid = payload_uuid(address, "account"),
        profile_uuid = payload_uuid(address, "profile"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        let e = |protocol, port, security| Endpoint {
            protocol,
            port,
            security,
        };
        Offer {
            hostname: "mail.example.org".into(),
            incoming: vec![
                e(Protocol::Imap, 993, Security::Tls),
                e(Protocol::Pop3, 110, Security::StartTls),
            ],
            outgoing: vec![e(Protocol::Smtp, 587, Security::StartTls)],
        }
    }

    #[test]
    fn addresses_of_other_domains_and_markup_are_refused() {
        let hosted = |d: &str| d == "example.org";
        assert_eq!(
            checked_address(" Alice@Example.ORG ", hosted).as_deref(),
            Some("Alice@example.org")
        );
        assert_eq!(checked_address("alice@example.com", hosted), None);
        assert_eq!(checked_address("<a>@example.org", hosted), None);
        assert_eq!(checked_address("example.org", hosted), None);
        assert_eq!(checked_address("@example.org", hosted), None);
    }

    #[test]
    fn query_and_request_addresses_are_found() {
        assert_eq!(
            query_address("x=1&emailaddress=a%2Bb%40example.org").as_deref(),
            Some("a+b@example.org")
        );
        assert_eq!(query_address("x=1"), None);
        let body = "<Autodiscover><Request><EMailAddress> bob@example.org </EMailAddress>\
                    </Request></Autodiscover>";
        assert_eq!(
            autodiscover_request_address(body).as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(autodiscover_request_address("<EMailAddress>x"), None);
    }

    #[test]
    fn every_endpoint_is_in_each_format() {
        let o = offer();
        let tb = thunderbird(&o, "example.org");
        assert!(tb.contains("<incomingServer type=\"imap\">"), "{tb}");
        assert!(tb.contains("<port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(tb.contains("<port>110</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(tb.contains("<outgoingServer type=\"smtp\">"));
        let ad = autodiscover(&o, "a&b@example.org");
        assert_eq!(ad.matches("<Protocol>").count(), 3);
        assert!(ad.contains("<LoginName>a&amp;b@example.org</LoginName>"));
        let mc = mobileconfig(&o, "a@example.org").unwrap();
        assert!(mc.contains("<integer>993</integer>"));
        assert!(mc.contains("org.example.mail.pigeonpost.mail"));
        // The same address gets the same payload UUIDs (profile replaced,
        // not duplicated); another address gets others.
        assert_eq!(mc, mobileconfig(&o, "a@example.org").unwrap());
        assert_ne!(
            payload_uuid("a@x", "account"),
            payload_uuid("b@x", "account")
        );
        let no_outgoing = Offer {
            outgoing: vec![],
            ..o
        };
        assert_eq!(mobileconfig(&no_outgoing, "a@example.org"), None);
    }
}
