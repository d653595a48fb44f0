# OCI image (dockerTools.buildLayeredImage): `nix build .#image`, then
# `docker load < result` or `podman load < result`.
#
# - runs as the non-root user vmail (uid/gid 5000), the owner of /var/vmail
#   (Maildirs, virtual_mailbox_base) and /var/spool/pigeonpost (queue);
# - configuration in /etc/pigeonpost (mount a directory there: pigeonpost.toml,
#   conf.d/*.toml, tables); PIGEONPOST_* environment variables override it;
# - listens on the unprivileged ports below (set with PIGEONPOST_LISTEN__*
#   variables, so a non-root process can bind them without capabilities);
#   publish them as 25, 587, … (`-p 25:2525 …`, or a Kubernetes Service).
#   The variables override the config file: change listeners with `-e`.
{ lib, dockerTools, cacert, pigeonpost }:

let
  ppLib = import ./lib.nix;
  ports = ppLib.containerPorts;
  # Both address families; without IPv6 in the container the [::] bind is
  # skipped with a warning.
  listenEnv = lib.mapAttrsToList
    (name: port: "PIGEONPOST_LISTEN__${lib.toUpper name}=0.0.0.0:${toString port} [::]:${toString port}")
    ports;
in
dockerTools.buildLayeredImage {
  name = "pigeonpost";
  tag = pigeonpost.version;

  contents = [ pigeonpost cacert ];

  # Runs under fakeroot, so the chown sticks in the image layer.
  fakeRootCommands = ''
    mkdir -p etc/pigeonpost/conf.d var/vmail var/spool/pigeonpost tmp
    cat > etc/passwd <<PASSWD
    root:x:0:0:root:/var/empty:/bin/false
    vmail:x:5000:5000:pigeonpost mail owner:/var/vmail:/bin/false
    nobody:x:65534:65534:nobody:/var/empty:/bin/false
    PASSWD
    cat > etc/group <<GROUP
    root:x:0:
    vmail:x:5000:
    nogroup:x:65534:
    GROUP
    chown -R 5000:5000 var/vmail var/spool/pigeonpost
    chmod 0750 var/vmail var/spool/pigeonpost
    chmod 1777 tmp
  '';

  config = {
    User = "5000:5000";
    WorkingDirectory = "/var/vmail";
    Entrypoint = [ "${pigeonpost}/bin/pigeonpost" ];
    Cmd = [ "serve" ];
    Env = [
      "PIGEONPOST_CONFIG=/etc/pigeonpost/pigeonpost.toml"
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
    ] ++ listenEnv;
    ExposedPorts = lib.listToAttrs
      (map (port: lib.nameValuePair "${toString port}/tcp" { }) (lib.attrValues ports));
    Volumes = {
      "/var/vmail" = { };
      "/var/spool/pigeonpost" = { };
    };
    Labels = {
      "org.opencontainers.image.title" = "pigeonpost";
      "org.opencontainers.image.description" = pigeonpost.meta.description;
      "org.opencontainers.image.version" = pigeonpost.version;
    };
  };
}
