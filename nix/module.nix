# NixOS module: services.pigeonpost.
#
#   services.pigeonpost = {
#     enable = true;
#     openFirewall = true;
#     settings = {                      # rendered to /etc/pigeonpost/pigeonpost.toml
#       myhostname = "mail.example.com";
#       virtual_mailbox_domains = "example.com";
#       virtual_mailbox_maps = "hash:/etc/pigeonpost/virtual_mailbox";
#       passdb = "passwd-file:/var/lib/secrets/pigeonpost-users";
#       userdb = "static:uid=5000 gid=5000 home=/var/lib/pigeonpost/vmail/%d/%n";
#       mail_location = "maildir:/var/lib/pigeonpost/vmail/%d/%n";
#       ssl_cert = "/var/lib/acme/mail.example.com/fullchain.pem";
#       ssl_key = "/var/lib/acme/mail.example.com/key.pem";
#     };
#     environmentFile = "/run/secrets/pigeonpost.env";   # PIGEONPOST_* variables
#   };
#
# Certificates from security.acme (README.md, "Certificates"):
#   enableACME = true;             # a certificate for settings.myhostname
#   useACMEHost = "example.com";   # or one security.acme.certs.<name> gets elsewhere
# set ssl_cert/ssl_key to its files; the service's group may read them and
# pigeonpost picks up each renewal by itself (it watches the files).
#
# Declarative users, as simple-nixos-mailserver's mailserver.loginAccounts:
#   loginAccounts."jane@example.com" = {
#     hashedPasswordFile = "/run/secrets/jane";   # or hashedPassword = "$6$…"
#     aliases = [ "postmaster@example.com" ];
#   };
# become the passwd-file (/run/pigeonpost/users, written at start from the
# hash files), virtual_mailbox_maps, virtual_alias_maps and
# virtual_mailbox_domains.
#
# Keys are pigeonpost's (= Postfix main.cf and dovecot.conf names, see
# README.md "Every key"); listeners are `settings.listen.<name>`.
#
# The service runs as the system user `pigeonpost` (uid/gid `services.pigeonpost.uid`,
# default 5000, the HOWTO's vmail id) with CAP_NET_BIND_SERVICE as its only
# capability. That suits virtual users (the HOWTO's second setup): every
# Maildir is owned by that user. Delivering into system users' home
# directories (passdb = "shadow", home_mailbox = "Maildir/") needs root's
# CAP_CHOWN/CAP_DAC_OVERRIDE and ProtectHome=false; see
# deploy/examples/system-users.conf for the matching systemd drop-in.
#
# Tables, passwd-files and certificates are re-read when they change
# (pigeonpost watches their directories); a change to `settings` restarts
# the service.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.pigeonpost;
  ppLib = import ./lib.nix;
  settingsFormat = pkgs.formats.toml { };
  stateDir = "/var/lib/pigeonpost";
  configFile = settingsFormat.generate "pigeonpost.toml" cfg.settings;
  # Directories the service writes outside its StateDirectory, if the user
  # moved them there.
  # security.acme: which certificate, and where NixOS keeps it
  # (security.acme.certs.<name>.directory, default /var/lib/acme/<name>).
  acmeHost = if cfg.useACMEHost != null then cfg.useACMEHost else (cfg.settings.myhostname or null);
  acmeEnabled = cfg.enableACME || cfg.useACMEHost != null;
  acmeDir = "/var/lib/acme/${toString acmeHost}";
  # loginAccounts → Postfix tables and a Dovecot passwd-file.
  accounts = cfg.loginAccounts;
  addresses = builtins.attrNames accounts;
  domainOf = a: builtins.elemAt (builtins.split "@" a) 2;
  localOf = a: builtins.head (builtins.split "@" a);
  mailboxFile = pkgs.writeText "pigeonpost-virtual-mailbox" (builtins.concatStringsSep "" (map
    (a: "${a}  ${domainOf a}/${localOf a}/\n")
    addresses));
  aliasFile = pkgs.writeText "pigeonpost-virtual-alias" (builtins.concatStringsSep "" (lib.concatMap
    (a: map (alias: "${alias}  ${a}\n") accounts.${a}.aliases)
    addresses));
  usersFile = "/run/pigeonpost/users";
  # Runs as root before the service (ExecStartPre=+): hash files may be root-only.
  writeUsers = pkgs.writeShellScript "pigeonpost-users" ''
    set -eu
    umask 0027
    tmp=${usersFile}.tmp
    : > "$tmp"
    ${builtins.concatStringsSep "\n" (map (a:
      let acct = accounts.${a}; in
      if acct.hashedPasswordFile != null
      then ''printf '%s:%s::::::\n' ${lib.escapeShellArg a} "$(head -n1 ${lib.escapeShellArg (toString acct.hashedPasswordFile)})" >> "$tmp"''
      else if acct.hashedPassword != null
      then ''printf '%s:%s::::::\n' ${lib.escapeShellArg a} ${lib.escapeShellArg acct.hashedPassword} >> "$tmp"''
      else throw "services.pigeonpost.loginAccounts.\"${a}\" needs hashedPassword or hashedPasswordFile")
      addresses)}
    chown root:pigeonpost "$tmp"
    mv "$tmp" ${usersFile}
  '';
  writablePaths = lib.filter (p: p != null && !(lib.hasPrefix "${stateDir}/" p)) [
    (cfg.settings.virtual_mailbox_base or null)
    (cfg.settings.queue_directory or null)
  ];
in
{
  options.services.pigeonpost = {
    enable = lib.mkEnableOption "pigeonpost, a mail server replacing Postfix + Dovecot";

    # pkgs.pigeonpost comes from the flake's overlays.default; the flake's
    # nixosModules.default sets this to its own build instead.
    package = lib.mkPackageOption pkgs "pigeonpost" { };

    settings = lib.mkOption {
      type = lib.types.submodule { freeformType = settingsFormat.type; };
      default = { };
      example = lib.literalExpression ''
        {
          myhostname = "mail.example.com";
          mydomain = "example.com";
          virtual_mailbox_domains = [ "example.com" "example.net" ];
          virtual_mailbox_maps = "hash:/etc/pigeonpost/virtual_mailbox";
          passdb = "passwd-file:/var/lib/secrets/pigeonpost-users";
          listen.http = "127.0.0.1:8080";
        }
      '';
      description = ''
        pigeonpost.toml as Nix attributes, rendered with pkgs.formats.toml.
        Unknown keys are refused by pigeonpost at start (exit status 2).
        The module defaults queue_directory and virtual_mailbox_base to
        ${stateDir}/{queue,vmail} and virtual_uid_maps/virtual_gid_maps to
        the service user's ids.
      '';
    };

    environmentFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/secrets/pigeonpost.env";
      description = ''
        File of PIGEONPOST_<KEY>=value lines (systemd EnvironmentFile=),
        for settings that should not be in the world-readable Nix store.
        They override `settings`.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Open the TCP ports of the mail listeners (smtp, submission,
        submissions, imap, imaps, pop3, pop3s) as configured in
        settings.listen, or their standard ports. The HTTP listener
        (health and metrics) is never opened.
      '';
    };

    enableACME = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Get a certificate for settings.myhostname from security.acme (with
        the service's group, so it can read the key) and use it as
        ssl_cert/ssl_key. pigeonpost watches the files, so renewals need no
        restart.
      '';
    };

    useACMEHost = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "example.com";
      description = ''
        Use the certificate of security.acme.certs.<name>, obtained by
        another part of the configuration; the service joins its group.
      '';
    };

    loginAccounts = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule {
        options = {
          hashedPassword = lib.mkOption {
            type = lib.types.nullOr lib.types.str;
            default = null;
            description = "crypt(3) hash (mkpasswd -m sha-512); ends up world-readable in the Nix store.";
          };
          hashedPasswordFile = lib.mkOption {
            type = lib.types.nullOr lib.types.path;
            default = null;
            description = "File whose first line is the hash, read when the service starts.";
          };
          aliases = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            description = "Addresses delivered to this account (virtual_alias_maps).";
          };
        };
      });
      default = { };
      example = lib.literalExpression ''
        { "jane@example.com" = { hashedPasswordFile = "/run/secrets/jane"; aliases = [ "postmaster@example.com" ]; }; }
      '';
      description = ''
        Mail users, as simple-nixos-mailserver's mailserver.loginAccounts:
        each address gets a Maildir under virtual_mailbox_base and logs in
        with its hash (passwd-file ${usersFile}, written at service start).
      '';
    };

    uid = lib.mkOption {
      type = lib.types.int;
      default = 5000;
      description = "uid and gid of the pigeonpost user, which owns every virtual Maildir.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.pigeonpost.settings = lib.mapAttrs (_: lib.mkDefault)
      (ppLib.moduleDefaults { inherit stateDir; uid = cfg.uid; gid = cfg.uid; })
    // lib.optionalAttrs acmeEnabled {
      ssl_cert = "${acmeDir}/fullchain.pem";
      ssl_key = "${acmeDir}/key.pem";
    }
    // lib.optionalAttrs (addresses != [ ]) {
      passdb = "passwd-file:${usersFile}";
      virtual_mailbox_maps = "hash:${mailboxFile}";
      virtual_alias_maps = "hash:${aliasFile}";
      virtual_mailbox_domains = lib.unique (map domainOf addresses);
    };

    assertions = [{
      assertion = !(cfg.enableACME && cfg.useACMEHost != null);
      message = "services.pigeonpost: set enableACME or useACMEHost, not both";
    }];

    security.acme.certs = lib.mkIf cfg.enableACME {
      ${toString acmeHost}.group = "pigeonpost";
    };

    users.users.pigeonpost = {
      isSystemUser = true;
      uid = cfg.uid;
      group = "pigeonpost";
      home = stateDir;
      description = "pigeonpost mail server";
    };
    users.groups.pigeonpost.gid = cfg.uid;

    # The same file the service reads, so `pigeonpost config` shows what runs.
    environment.etc."pigeonpost/pigeonpost.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (ppLib.listenPorts cfg.settings);

    systemd.tmpfiles.rules = map (p: "d ${p} 0750 pigeonpost pigeonpost - -") writablePaths;

    systemd.services.pigeonpost = {
      description = "pigeonpost mail server (SMTP, IMAP, POP3)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile ];
    } // lib.optionalAttrs acmeEnabled {
      # Start with NixOS's self-signed stand-in; the issued certificate
      # replaces the files later and pigeonpost reloads them.
      wants = [ "network-online.target" "acme-finished-${toString acmeHost}.target" ];
      after = [ "network-online.target" "acme-selfsigned-${toString acmeHost}.service" ];
    } // {

      serviceConfig = {
        ExecStart = "${lib.getExe cfg.package} serve --config /etc/pigeonpost/pigeonpost.toml";
        ExecStartPre = lib.mkIf (addresses != [ ]) "+${writeUsers}";
        RuntimeDirectory = "pigeonpost";
        RuntimeDirectoryPreserve = true;
        SupplementaryGroups = lib.mkIf (cfg.useACMEHost != null)
          [ (config.security.acme.certs.${cfg.useACMEHost}.group or "acme") ];
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
        Restart = "on-failure";
        RestartSec = "5s";
        # Exit status 2 is a bad configuration: restarting will not help.
        RestartPreventExitStatus = 2;
        # pigeonpost lets sessions finish for shutdown_timeout (30s) after SIGTERM.
        TimeoutStopSec = "45s";

        User = "pigeonpost";
        Group = "pigeonpost";
        DynamicUser = false;
        StateDirectory = [ "pigeonpost" "pigeonpost/queue" "pigeonpost/vmail" ];
        StateDirectoryMode = "0750";
        WorkingDirectory = stateDir;
        ReadWritePaths = lib.mkIf (writablePaths != [ ]) writablePaths;
        UMask = "0077";
        LimitNOFILE = 65536;

        # Only binding ports below 1024; nothing else.
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateMounts = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        # ~@privileged would also remove @chown, and delivery fchowns each
        # new file to its virtual_uid_maps owner (a no-op here, but not EPERM).
        SystemCallFilter = [ "@system-service" "~@privileged" "@chown" ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
