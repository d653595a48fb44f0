# pigeonpost settings for the NixOS VM test (nix/vm-test.nix): the HOWTO's
# virtual-user setup in the module's state directory. Pure data, so
# tests/deploy/check.sh can check every key against src/config/keys.rs
# (and, with a built binary, run `pigeonpost config` on it).
{
  myhostname = "mail.example.com";
  mydomain = "example.com";
  mydestination = [ "localhost" ];
  mynetworks = [ "127.0.0.0/8" "[::1]/128" ];
  virtual_mailbox_domains = [ "example.com" ];
  virtual_mailbox_maps = "hash:/etc/pigeonpost/virtual_mailbox";
  virtual_alias_maps = "hash:/etc/pigeonpost/virtual_alias";
  alias_maps = "";
  recipient_delimiter = "+";
  protocols = "imap pop3";
  mail_location = "maildir:/var/lib/pigeonpost/vmail/%d/%n";
  auth_mechanisms = "plain login";
  passdb = "passwd-file:/etc/pigeonpost/users";
  userdb = "static:uid=5000 gid=5000 home=/var/lib/pigeonpost/vmail/%d/%n";
  ssl_cert = "</etc/pigeonpost/tls/cert.pem";
  ssl_key = "</etc/pigeonpost/tls/key.pem";
  listen.http = "127.0.0.1:8080";
}
