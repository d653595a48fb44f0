# NixOS VM test: `nix build .#checks.x86_64-linux.vm-test` (needs KVM).
#
# Boots a VM with services.pigeonpost (the HOWTO's virtual-user setup from
# nix/vm-settings.nix), then with Python's smtplib: delivers a message on
# port 25, submits one on 587 with STARTTLS + AUTH, checks that relaying for
# an outside client is refused, finds both in the Maildir on disk, and reads
# them back with imaplib (143 with STARTTLS, and 993) and poplib (995).
{ pkgs, module }:

let
  # A throwaway self-signed certificate for STARTTLS (built once, in the sandbox).
  testCert = pkgs.runCommand "pigeonpost-test-cert" { nativeBuildInputs = [ pkgs.openssl ]; } ''
    mkdir $out
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=mail.example.com \
      -addext subjectAltName=DNS:mail.example.com,DNS:localhost \
      -keyout $out/key.pem -out $out/cert.pem
  '';
  mailClient = ./vm-client.py;
  maildir = "/var/lib/pigeonpost/vmail/example.com/demo";
in
pkgs.testers.runNixOSTest {
  name = "pigeonpost";

  nodes.machine = { pkgs, ... }: {
    imports = [ module ];

    services.pigeonpost = {
      enable = true;
      openFirewall = true;
      # The loopback client is deliberately *not* in mynetworks, so the test
      # sees the relay policy an outside client gets.
      settings = import ./vm-settings.nix // { mynetworks = [ "192.0.2.0/24" ]; };
    };

    environment.etc = {
      # Postfix table: address → Maildir under virtual_mailbox_base (trailing / = Maildir).
      "pigeonpost/virtual_mailbox".text = ''
        demo@example.com  example.com/demo/
      '';
      "pigeonpost/virtual_alias".text = ''
        postmaster@example.com  demo@example.com
      '';
      # Dovecot passwd-file; the password is "secret" (made with `doveadm pw -s SHA512-CRYPT`).
      "pigeonpost/users" = {
        text = ''
          demo@example.com:{SHA512-CRYPT}$6$Za4AdrhJR5UbcwoX$FcdWDSZ8AsRKNeFKvHoqkvo4NA48eEHzCMD8HCA6zW4bTTS59p78ZOTcDsauCkvJJRTuBRYju4LKZfWgSiJwN/::::::
        '';
        mode = "0440";
        group = "pigeonpost";
      };
      "pigeonpost/tls/cert.pem".source = "${testCert}/cert.pem";
      "pigeonpost/tls/key.pem" = {
        source = "${testCert}/key.pem";
        mode = "0440";
        group = "pigeonpost";
      };
    };

    environment.systemPackages = [ pkgs.python3 pkgs.curl ];
  };

  testScript = ''
    machine.wait_for_unit("pigeonpost.service")
    machine.wait_for_open_port(25)
    machine.wait_for_open_port(587)
    machine.wait_until_succeeds("curl -sf http://127.0.0.1:8080/readyz")
    machine.succeed("curl -sf http://127.0.0.1:8080/healthz")

    with subtest("runs as the pigeonpost user, not root"):
        # (ps -o uid, not user: ps truncates names longer than 8 characters)
        machine.succeed("test \"$(ps -o uid= -C pigeonpost | tr -d ' ')\" = 5000")

    with subtest("pigeonpost config accepts the rendered configuration"):
        machine.succeed("pigeonpost config --config /etc/pigeonpost/pigeonpost.toml >&2")

    with subtest("SMTP delivery to a virtual mailbox"):
        machine.succeed("python3 ${mailClient} deliver")
        machine.wait_until_succeeds("grep -l 'Subject: vm-test deliver' ${maildir}/new/*")
        machine.succeed("test \"$(stat -c %U ${maildir}/new)\" = pigeonpost")

    with subtest("submission with STARTTLS and AUTH, through a virtual alias"):
        machine.succeed("python3 ${mailClient} submit")
        machine.wait_until_succeeds("grep -l 'Subject: vm-test submit' ${maildir}/new/*")
        machine.succeed("grep -l '^Delivered-To: demo@example.com' ${maildir}/new/*")

    with subtest("not an open relay"):
        machine.succeed("python3 ${mailClient} no-relay")

    with subtest("metrics"):
        machine.succeed("curl -sf http://127.0.0.1:8080/metrics | grep -q '^pigeonpost_'")

    with subtest("both messages read back by IMAP and POP3"):
        machine.wait_for_open_port(143)
        machine.succeed("python3 ${mailClient} imap")
        machine.succeed("python3 ${mailClient} pop3")

    with subtest("stops cleanly on SIGTERM"):
        machine.succeed("systemctl stop pigeonpost.service")
        machine.succeed("test \"$(systemctl show -p Result --value pigeonpost.service)\" = success")
  '';
}
