"""SMTP client for the NixOS VM test (nix/vm-test.nix), run inside the VM.

  vm-smtp.py deliver      port 25, no AUTH: mail for a virtual user is accepted
  vm-smtp.py submit       port 587, STARTTLS + AUTH PLAIN, to an alias of the user
  vm-smtp.py no-relay     port 25, no AUTH, remote recipient: 554 Relay access denied
"""
import smtplib
import ssl
import sys
from email.message import EmailMessage


def message(subject, to):
    msg = EmailMessage()
    msg["From"] = "alice@outside.example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Hello from the pigeonpost NixOS VM test.\n")
    return msg


def main(mode):
    if mode == "deliver":
        with smtplib.SMTP("127.0.0.1", 25, local_hostname="client.example.org", timeout=30) as s:
            s.send_message(message("vm-test deliver", "demo@example.com"))
    elif mode == "submit":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the test certificate is self-signed
        with smtplib.SMTP("127.0.0.1", 587, local_hostname="client.example.org", timeout=30) as s:
            s.starttls(context=ctx)
            s.login("demo@example.com", "secret")
            s.send_message(message("vm-test submit", "postmaster@example.com"))
    elif mode == "no-relay":
        try:
            with smtplib.SMTP("127.0.0.1", 25, local_hostname="client.example.org", timeout=30) as s:
                s.send_message(message("vm-test relay", "someone@elsewhere.example.net"))
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@elsewhere.example.net"]
            assert code == 554 and b"Relay access denied" in text, (code, text)
            print("relay refused:", code, text.decode())
            return
        raise SystemExit("relaying was accepted: pigeonpost is an open relay")
    else:
        raise SystemExit(__doc__)
    print(mode, "ok")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
