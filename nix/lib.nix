# Pure helpers shared by the module, the image and the VM test. No nixpkgs
# needed, so tests/deploy/check.sh can evaluate them with `nix-instantiate --eval`.
rec {
  # Standard port of every listener (ARCHITECTURE.md, "Ports"; src/config/keys.rs).
  standardPorts = {
    smtp = 25;
    submission = 587;
    submissions = 465;
    imap = 143;
    imaps = 993;
    pop3 = 110;
    pop3s = 995;
    http = 8080;
  };

  # Unprivileged ports used inside containers (the same ones `serve --dev`
  # uses), so the process needs no CAP_NET_BIND_SERVICE; Services or port
  # mappings translate 25 → 2525 and so on.
  containerPorts = {
    smtp = 2525;
    submission = 2587;
    submissions = 2465;
    imap = 2143;
    imaps = 2993;
    pop3 = 2110;
    pop3s = 2995;
    http = 8080;
  };

  # Listeners that face mail clients (http carries metrics: not opened by default).
  mailListeners = [ "smtp" "submission" "submissions" "imap" "imaps" "pop3" "pop3s" ];

  # Words of a Postfix-style list: a TOML array, or a string of words
  # separated by commas and/or whitespace.
  words = v:
    let
      s = if builtins.isList v then builtins.concatStringsSep " " (map toString v) else toString v;
      parts = builtins.filter builtins.isString (builtins.split "[, \t\n]+" s);
    in
    builtins.filter (w: w != "") parts;

  # Port of one listen address: "0.0.0.0:25", "[::]:25" → 25.
  portOf = addr:
    let m = builtins.match ".*:([0-9]+)" addr;
    in if m == null then throw "pigeonpost: listen address '${addr}' has no port" else builtins.fromJSON (builtins.head m);

  # Ports the firewall should open for `settings`: every mail listener's
  # configured ports, or its standard port when `settings.listen.<name>` is
  # unset. IMAP/POP3 listeners switched off by `protocols` are left closed.
  listenPorts = settings:
    let
      listen = settings.listen or { };
      protocols = if settings ? protocols then words settings.protocols else [ "imap" "pop3" "lmtp" ];
      protoOf = name:
        if builtins.elem name [ "imap" "imaps" ] then "imap"
        else if builtins.elem name [ "pop3" "pop3s" ] then "pop3"
        else null;
      enabled = name: let p = protoOf name; in p == null || builtins.elem p protocols;
      portsFor = name:
        if !(enabled name) then [ ]
        else if listen ? ${name} then map portOf (words listen.${name})
        else [ standardPorts.${name} ];
      all = builtins.concatLists (map portsFor mailListeners);
      unique = builtins.attrNames (builtins.listToAttrs (map (p: { name = toString p; value = null; }) all));
    in
    builtins.sort builtins.lessThan (map builtins.fromJSON unique);

  # Settings the NixOS module sets unless the user overrides them: mail and
  # queue live in the service's StateDirectory, and virtual mailboxes are
  # owned by the service user (so no CAP_CHOWN is needed).
  moduleDefaults = { stateDir, uid, gid }: {
    queue_directory = "${stateDir}/queue";
    virtual_mailbox_base = "${stateDir}/vmail";
    virtual_uid_maps = "static:${toString uid}";
    virtual_gid_maps = "static:${toString gid}";
  };
}
