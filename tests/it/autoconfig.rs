//! Mail client autoconfiguration on `listen.http` (server/autoconfig.rs):
//! fetched with curl as the clients fetch it, checked with independent
//! parsers (xmllint against Thunderbird's documented format, Python's
//! ElementTree for Outlook's Autodiscover, Python's plistlib for Apple's
//! profile), and every value compared with the listeners the server
//! actually bound.

use std::process::Command;

use crate::util::{free_port, output_with_stdin, require_tool, MailFixture, Server};

/// curl's body for `args` (which end in the URL); panics on a transport error.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// Runs a Python snippet with `input` on stdin; returns its stdout.
fn python(code: &str, input: &str) -> String {
    let out = output_with_stdin(Command::new("python3").args(["-c", code]), input.as_bytes());
    assert!(out.status.success(), "python: {out:?}\ninput:\n{input}");
    String::from_utf8(out.stdout).unwrap()
}

/// A server with TLS, IMAP on 993-style and 143-style ports, POP3 with
/// STLS only, and both submission ports: fixed free ports, since the
/// documents carry them.
fn server() -> (MailFixture, Server, [u16; 5]) {
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let (imaps, imap, pop3, submissions, submission) =
        (addr(0), addr(1), addr(2), addr(3), addr(4));
    let fixture = MailFixture::new(
        &[
            ("imaps", &imaps),
            ("imap", &imap),
            ("pop3", &pop3),
            ("submissions", &submissions),
            ("submission", &submission),
        ],
        "autoconfig_hostname = \"imap.example.com\"\nvirtual_alias_domains = \"example.net\"",
    );
    let server = fixture.start();
    (fixture, server, ports)
}

#[test]
fn thunderbird_gets_a_valid_client_config_with_the_bound_ports() {
    if !require_tool("curl") || !require_tool("xmllint") || !require_tool("python3") {
        return;
    }
    let (_f, server, [imaps, imap, pop3, submissions, submission]) = server();
    let http = server.addr("http");
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        "/mail/config-v1.1.xml",
    ] {
        let url = format!("http://{http}{path}?emailaddress=john%40example.com");
        let (code, body) = curl(&[&url]);
        assert_eq!(code, 200, "{body}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &body).unwrap();
        let check = Command::new("xmllint")
            .args([
                "--noout",
                "--schema",
                "tests/fixtures/autoconfig/config-v1.1.xsd",
            ])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(check.status.success(), "xmllint: {check:?}\n{body}");
        let servers = python(
            r#"
import sys, xml.etree.ElementTree as ET
p = ET.parse(sys.stdin).getroot().find("emailProvider")
print(p.get("id"), p.findtext("domain"))
for s in p:
    if s.tag.endswith("Server"):
        print(s.tag, s.get("type"), s.findtext("hostname"), s.findtext("port"),
              s.findtext("socketType"), s.findtext("username"))
"#,
            &body,
        );
        assert_eq!(
            servers,
            format!(
                "example.com example.com\n\
                 incomingServer imap imap.example.com {imaps} SSL %EMAILADDRESS%\n\
                 incomingServer imap imap.example.com {imap} STARTTLS %EMAILADDRESS%\n\
                 incomingServer pop3 imap.example.com {pop3} STARTTLS %EMAILADDRESS%\n\
                 outgoingServer smtp imap.example.com {submissions} SSL %EMAILADDRESS%\n\
                 outgoingServer smtp imap.example.com {submission} STARTTLS %EMAILADDRESS%\n"
            )
        );
    }
    // An alias-only domain is one of ours too; a foreign one is not.
    let ours = format!("http://{http}/mail/config-v1.1.xml?emailaddress=x%40example.net");
    let (code, body) = curl(&[&ours]);
    assert_eq!(code, 200);
    assert!(body.contains("<domain>example.net</domain>"), "{body}");
    let foreign = format!("http://{http}/mail/config-v1.1.xml?emailaddress=x%40example.org");
    assert_eq!(curl(&[&foreign]).0, 404);
}

#[test]
fn outlook_autodiscover_answers_the_address_it_was_asked_about() {
    if !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let (_f, server, [imaps, imap, pop3, submissions, submission]) = server();
    let url = format!(
        "http://{}/Autodiscover/Autodiscover.xml",
        server.addr("http")
    );
    let request = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>jane@example.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;
    let (code, body) = curl(&[
        "-H",
        "Content-Type: text/xml",
        "--data-binary",
        request,
        &url,
    ]);
    assert_eq!(code, 200, "{body}");
    let protocols = python(
        r#"
import sys, xml.etree.ElementTree as ET
ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
      "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
root = ET.parse(sys.stdin).getroot()
assert root.tag == "{%s}Autodiscover" % ns["a"], root.tag
acct = root.find("o:Response/o:Account", ns)
print(acct.findtext("o:AccountType", namespaces=ns), acct.findtext("o:Action", namespaces=ns))
for p in acct.findall("o:Protocol", ns):
    print(*(p.findtext("o:" + k, namespaces=ns) for k in
            ("Type", "Server", "Port", "LoginName", "SSL", "Encryption", "SPA")))
"#,
        &body,
    );
    assert_eq!(
        protocols,
        format!(
            "email settings\n\
             IMAP imap.example.com {imaps} jane@example.com on SSL off\n\
             IMAP imap.example.com {imap} jane@example.com on TLS off\n\
             POP3 imap.example.com {pop3} jane@example.com on TLS off\n\
             SMTP imap.example.com {submissions} jane@example.com on SSL off\n\
             SMTP imap.example.com {submission} jane@example.com on TLS off\n"
        )
    );
    let foreign = request.replace("jane@example.com", "jane@elsewhere.example");
    assert_eq!(curl(&["--data-binary", &foreign, &url]).0, 404);
}

#[test]
fn apple_profile_is_a_plist_with_the_first_incoming_and_outgoing_endpoints() {
    if !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let (_f, server, [imaps, _, _, submissions, _]) = server();
    let url = format!(
        "http://{}/apple.mobileconfig?emailaddress=john%40example.com",
        server.addr("http")
    );
    let (code, body) = curl(&[&url]);
    assert_eq!(code, 200, "{body}");
    let fields = python(
        r#"
import sys, plistlib
p = plistlib.loads(sys.stdin.buffer.read())
assert p["PayloadType"] == "Configuration"
(a,) = p["PayloadContent"]
print(a["PayloadType"], a["EmailAccountType"], a["EmailAddress"])
print(a["IncomingMailServerHostName"], a["IncomingMailServerPortNumber"],
      a["IncomingMailServerUseSSL"], a["IncomingMailServerUsername"])
print(a["OutgoingMailServerHostName"], a["OutgoingMailServerPortNumber"],
      a["OutgoingMailServerUseSSL"], a["OutgoingMailServerUsername"])
print(a["PayloadUUID"] != p["PayloadUUID"])
"#,
        &body,
    );
    assert_eq!(
        fields,
        format!(
            "com.apple.mail.managed EmailTypeIMAP john@example.com\n\
             imap.example.com {imaps} True john@example.com\n\
             imap.example.com {submissions} True john@example.com\n\
             True\n"
        )
    );
}
