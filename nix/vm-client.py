"""Mail client for the NixOS VM test (nix/vm-test.nix), run inside the VM.

  vm-client.py deliver    port 25, no AUTH: mail for a virtual user is accepted
  vm-client.py submit     port 587, STARTTLS + AUTH PLAIN, to an alias of the user
  vm-client.py no-relay   port 25, no AUTH, remote recipient: 554 Relay access denied
  vm-client.py imap       port 143 with STARTTLS and 993: both messages are in INBOX
  vm-client.py pop3       port 995: both messages are listed and retrievable

The ports can be moved with VM_CLIENT_PORTS="smtp=2525,imaps=2993,..." (the
integration tests run this script against a local server that way).
"""
import imaplib
import os
import poplib
import smtplib
import ssl
import sys
from email.message import EmailMessage


def message(subject, to, sender="alice@outside.example.org"):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Hello from the pigeonpost NixOS VM test.\n")
    return msg


PORTS = {"smtp": 25, "submission": 587, "imap": 143, "imaps": 993, "pop3s": 995}
PORTS.update(
    (name, int(port))
    for name, port in (p.split("=") for p in os.environ.get("VM_CLIENT_PORTS", "").split(",") if p)
)
SUBJECTS = ["vm-test deliver", "vm-test submit"]


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test certificate is self-signed
    return ctx


def check_imap(m):
    m.login("demo@example.com", "secret")
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK" and int(data[0]) == 2, (typ, data)
    for subject in SUBJECTS:
        typ, data = m.uid("SEARCH", "SUBJECT", '"%s"' % subject)
        assert typ == "OK" and len(data[0].split()) == 1, (subject, typ, data)
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[TEXT])")
    bodies = [item[1] for item in data if isinstance(item, tuple)]
    assert all(b"pigeonpost NixOS VM test" in b for b in bodies) and len(bodies) == 2, data
    m.logout()


def main(mode):
    if mode == "deliver":
        with smtplib.SMTP("127.0.0.1", PORTS["smtp"], local_hostname="client.example.org", timeout=30) as s:
            s.send_message(message("vm-test deliver", "demo@example.com"))
    elif mode == "submit":
        ctx = tls_context()
        with smtplib.SMTP("127.0.0.1", PORTS["submission"], local_hostname="client.example.org", timeout=30) as s:
            s.starttls(context=ctx)
            s.login("demo@example.com", "secret")
            # A logged-in user sends as an address they own
            # (authenticated_sender_policy = owned).
            s.send_message(message("vm-test submit", "postmaster@example.com", "demo@example.com"))
    elif mode == "no-relay":
        try:
            with smtplib.SMTP("127.0.0.1", PORTS["smtp"], local_hostname="client.example.org", timeout=30) as s:
                s.send_message(message("vm-test relay", "someone@elsewhere.example.net"))
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@elsewhere.example.net"]
            assert code == 554 and b"Relay access denied" in text, (code, text)
            print("relay refused:", code, text.decode())
            return
        raise SystemExit("relaying was accepted: pigeonpost is an open relay")
    elif mode == "imap":
        m = imaplib.IMAP4("127.0.0.1", PORTS["imap"], timeout=30)
        m.starttls(ssl_context=tls_context())
        check_imap(m)
        check_imap(imaplib.IMAP4_SSL("127.0.0.1", PORTS["imaps"], ssl_context=tls_context(), timeout=30))
    elif mode == "pop3":
        p = poplib.POP3_SSL("127.0.0.1", PORTS["pop3s"], context=tls_context(), timeout=30)
        p.user("demo@example.com")
        p.pass_("secret")
        count, _ = p.stat()
        assert count == 2, count
        texts = [b"\n".join(p.retr(i)[1]) for i in (1, 2)]
        for subject in SUBJECTS:
            assert any(("Subject: " + subject).encode() in t for t in texts), subject
        p.quit()
    else:
        raise SystemExit(__doc__)
    print(mode, "ok")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
