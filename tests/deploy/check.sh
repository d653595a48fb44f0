#!/usr/bin/env bash
# Offline checks of the deployment files: k8s/ (yamllint, kubernetes-validate,
# kustomize), every .nix file (nix-instantiate --parse, and --eval of the
# pure parts), deploy/pigeonpost.service (systemd-analyze verify), and that
# every configuration key and PIGEONPOST_* variable they use exists in
# src/config/keys.rs. With a built binary ($PIGEONPOST_BIN, or
# target/{debug,release}/pigeonpost) it also runs `pigeonpost config` on
# each configuration, so the files and the binary cannot drift apart.
#
# Tools: yamllint and kubernetes-validate (pip install yamllint
# kubernetes-validate), nix-instantiate (apt-get install nix-bin),
# systemd-analyze, openssl, python3 >= 3.11; kubectl or kustomize to render
# the kustomization. A missing tool is a SKIP, or a failure when CI=true.
#
# Exits non-zero if anything failed, after listing what.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD

FAILED=()
SKIPPED=()
fail() { echo "FAIL: $*"; FAILED+=("$*"); }
ok() { echo "ok:   $*"; }
skip() {
  if [ "${CI:-}" = true ]; then
    fail "$* (required when CI=true)"
  else
    echo "SKIP: $*"
    SKIPPED+=("$*")
  fi
}
have() { command -v "$1" >/dev/null 2>&1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if ! have python3 || ! python3 -c 'import sys, tomllib, yaml; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "FAIL: python3 >= 3.11 with PyYAML is required (pip install yamllint kubernetes-validate brings PyYAML)"
  exit 1
fi

# ---------------------------------------------------------------- Kubernetes
K8S_FILES=$(cd k8s && find . -name '*.yaml' ! -name kustomization.yaml | sed 's#^\./##' | sort)

if have yamllint; then
  if out=$(yamllint -s -c k8s/.yamllint k8s/ 2>&1); then ok "yamllint k8s/"; else echo "$out"; fail "yamllint k8s/"; fi
else
  skip "yamllint not installed"
fi

if have kubernetes-validate; then
  for f in $K8S_FILES; do
    case "$f" in
      # Named exception: cert-manager's Certificate is a CRD, which
      # kubernetes-validate has no schema for offline; checked below.
      components/cert-manager/certificate.yaml) continue ;;
    esac
    if out=$(kubernetes-validate --strict --quiet "k8s/$f" 2>&1) && ! grep -q ERROR <<<"$out"; then
      ok "kubernetes-validate --strict k8s/$f"
    else
      echo "$out"
      fail "kubernetes-validate k8s/$f"
    fi
  done
else
  skip "kubernetes-validate not installed"
fi

# kustomization.yaml lists every manifest (a component's manifests are
# listed by the component, which kustomization.yaml names, perhaps commented
# out), and every entry exists.
if out=$(K8S_FILES="$K8S_FILES" python3 - <<'PY' 2>&1
import os, sys, yaml
k = yaml.safe_load(open("k8s/kustomization.yaml"))
listed = k.get("resources", [])
files = os.environ["K8S_FILES"].split()
text = open("k8s/kustomization.yaml").read()
bad = []
for r in listed:
    if not os.path.exists(os.path.join("k8s", r)):
        bad.append(f"kustomization.yaml lists missing file {r}")
for f in files:
    if f in listed:
        continue
    if f.startswith("components/"):
        comp = "/".join(f.split("/")[:2])
        ck = yaml.safe_load(open(f"k8s/{comp}/kustomization.yaml"))
        if ck.get("kind") != "Component":
            bad.append(f"k8s/{comp}/kustomization.yaml is not a kustomize Component")
        if f.split("/", 2)[2] not in ck.get("resources", []):
            bad.append(f"k8s/{comp}/kustomization.yaml does not list {f}")
        if comp not in text:
            bad.append(f"kustomization.yaml does not name the component {comp}")
        continue
    bad.append(f"kustomization.yaml does not list {f}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
); then ok "kustomization.yaml lists every manifest"; else echo "$out"; fail "kustomization.yaml resources"; fi

RENDERED=""
if have kubectl && kubectl kustomize k8s/ >"$TMP/rendered.yaml" 2>"$TMP/kustomize.err"; then
  RENDERED="$TMP/rendered.yaml"
elif have kustomize && kustomize build k8s/ >"$TMP/rendered.yaml" 2>"$TMP/kustomize.err"; then
  RENDERED="$TMP/rendered.yaml"
elif have kubectl || have kustomize; then
  cat "$TMP/kustomize.err"
  fail "kustomize build k8s/"
else
  skip "neither kubectl nor kustomize installed: kustomization not rendered"
fi
if [ -n "$RENDERED" ]; then
  ok "kustomize renders k8s/ ($(grep -c '^kind:' "$RENDERED") resources)"
  if have kubernetes-validate; then
    if out=$(kubernetes-validate --strict --quiet "$RENDERED" 2>&1) && ! grep -q ERROR <<<"$out"; then
      ok "kubernetes-validate --strict on the rendered kustomization"
    else
      echo "$out"
      fail "kubernetes-validate on the rendered kustomization"
    fi
  fi
fi

# The base with the cert-manager component: the Certificate lands in the
# namespace and issues the Secret the pod mounts.
# (A copy of k8s/ with the documented lines uncommented.)
cp -r k8s "$TMP/with-cert-manager"
sed -i -e 's/^# components:$/components:/' -e 's/^#   - components\/cert-manager$/  - components\/cert-manager/' \
  "$TMP/with-cert-manager/kustomization.yaml"
if have kubectl; then
  if kubectl kustomize "$TMP/with-cert-manager" >"$TMP/with-cm.yaml" 2>"$TMP/with-cm.err" &&
    python3 - "$TMP/with-cm.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
certs = [d for d in docs if d["kind"] == "Certificate"]
sts = [d for d in docs if d["kind"] == "StatefulSet"][0]
secret = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"][0]["secret"]["secretName"]
ok = len(certs) == 1 and certs[0]["metadata"].get("namespace") == "pigeonpost" and certs[0]["spec"]["secretName"] == secret
sys.exit(0 if ok else 1)
PY
  then
    ok "kustomize renders k8s/ with components/cert-manager (Certificate issues the mounted Secret)"
  else
    cat "$TMP/with-cm.err"
    fail "kustomize k8s/ with components/cert-manager"
  fi
else
  skip "kubectl not installed: k8s/ with components/cert-manager not rendered"
fi

# Cross-file consistency of the manifests: ports, mounts, probes, security.
if out=$(python3 - <<'PY' 2>&1
import re, sys, yaml
docs = {}
for f in ["statefulset.yaml", "service.yaml", "configmap.yaml", "pdb.yaml", "components/cert-manager/certificate.yaml"]:
    for d in yaml.safe_load_all(open(f"k8s/{f}")):
        docs[(d["kind"], d["metadata"]["name"])] = d
bad = []
sts = docs[("StatefulSet", "pigeonpost")]
pod = sts["spec"]["template"]["spec"]
c = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
env = {e["name"]: e.get("value", "") for e in c.get("env", [])}

# Mail Service: exactly the standard ports, each onto the pod port of the same listener.
svc = docs[("Service", "pigeonpost")]["spec"]
want = {"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
got = {p["name"]: p["port"] for p in svc["ports"]}
if got != want:
    bad.append(f"Service pigeonpost ports {got} != {want}")
if svc.get("type") != "LoadBalancer" or svc.get("externalTrafficPolicy") != "Local":
    bad.append("Service pigeonpost must be a LoadBalancer with externalTrafficPolicy: Local")
for p in svc["ports"]:
    if p["targetPort"] not in ports:
        bad.append(f"Service port {p['name']} targets unknown container port {p['targetPort']}")
# Each container port is what the listener of that name binds (PIGEONPOST_LISTEN__<NAME>).
for name, port in ports.items():
    var = f"PIGEONPOST_LISTEN__{name.upper()}"
    addrs = env.get(var, "")
    bound = {int(m) for m in re.findall(r":(\d+)(?:[,\s]|$)", addrs)}
    if port not in bound:
        bad.append(f"containerPort {name}={port} but {var}={addrs!r}")
    if port < 1024:
        bad.append(f"containerPort {name}={port} is privileged; the pod has no capabilities")
metrics = docs[("Service", "pigeonpost-metrics")]["spec"]
if metrics.get("type", "ClusterIP") != "ClusterIP" or [p["targetPort"] for p in metrics["ports"]] != ["http"]:
    bad.append("Service pigeonpost-metrics must be ClusterIP onto the http port")

# Probes.
if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
    bad.append("livenessProbe must GET /healthz")
if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
    bad.append("readinessProbe must GET /readyz")

# Security.
if pod.get("enableServiceLinks") is not False:
    bad.append("enableServiceLinks must be false")
sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
    bad.append("runAsNonRoot must be set")
if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
    bad.append("readOnlyRootFilesystem: true and allowPrivilegeEscalation: false required")
if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
    bad.append("capabilities must drop ALL and add none")
if (sc.get("seccompProfile") or psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
    bad.append("seccompProfile RuntimeDefault required")
if "requests" not in c.get("resources", {}):
    bad.append("resource requests missing")

# Volumes: files are whole-directory mounts (hot reload), never subPath.
mounts = {m["name"]: m for m in c["volumeMounts"]}
for m in c["volumeMounts"]:
    if "subPath" in m or "subPathExpr" in m:
        bad.append(f"volumeMount {m['name']} uses subPath: it would never see updates")
vols = {v["name"]: v for v in pod["volumes"]}
claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
for name in ["maildir", "queue"]:
    if name not in claims:
        bad.append(f"no PersistentVolumeClaim template {name}")
if vols.get("config", {}).get("configMap", {}).get("name") != "pigeonpost-config":
    bad.append("config volume must be the pigeonpost-config ConfigMap")
tls_secret = vols.get("tls", {}).get("secret", {}).get("secretName")
cert = docs[("Certificate", "pigeonpost")]
if cert["apiVersion"] != "cert-manager.io/v1" or cert["spec"].get("secretName") != tls_secret:
    bad.append(f"components/cert-manager/certificate.yaml must issue the Secret the pod mounts ({tls_secret})")
if not docs[("PodDisruptionBudget", "pigeonpost")]["spec"].get("selector"):
    bad.append("PodDisruptionBudget without selector")

# The configuration's file paths are under the mounts.
conf = docs[("ConfigMap", "pigeonpost-config")]["data"]
mount_of = {mounts[n]["mountPath"]: n for n in mounts}
import tomllib
toml = tomllib.loads(conf["pigeonpost.toml"])
def under(path, vol):
    return path.startswith(mounts[vol]["mountPath"] + "/")
checks = {
    "ssl_cert": ("tls", "/tls.crt"), "ssl_key": ("tls", "/tls.key"),
    "passdb": ("users", "/users"), "virtual_mailbox_maps": ("config", "/virtual_mailbox"),
    "virtual_alias_maps": ("config", "/virtual_alias"), "alias_maps": ("config", "/aliases"),
}
for key, (vol, suffix) in checks.items():
    path = toml[key].split(":")[-1].lstrip("<")
    if not (under(path, vol) and path.endswith(suffix)):
        bad.append(f"{key} = {toml[key]!r} is not {suffix} in the {vol} mount")
    elif vol == "config" and path.rsplit("/", 1)[1] not in conf:
        bad.append(f"{key} names {path}, which the ConfigMap does not contain")
if toml["virtual_mailbox_base"] != mounts["maildir"]["mountPath"]:
    bad.append("virtual_mailbox_base is not the maildir mount")
if toml["queue_directory"] != mounts["queue"]["mountPath"]:
    bad.append("queue_directory is not the queue mount")
uid = psc.get("runAsUser")
if toml["virtual_uid_maps"] != f"static:{uid}" or toml["virtual_gid_maps"] != f"static:{psc.get('runAsGroup')}":
    bad.append("virtual_uid_maps/virtual_gid_maps must be the pod's runAsUser/runAsGroup (no CAP_CHOWN)")
if env.get("PIGEONPOST_CONFIG") != mounts["config"]["mountPath"] + "/pigeonpost.toml":
    bad.append("PIGEONPOST_CONFIG must point at pigeonpost.toml in the config mount")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
); then ok "manifests agree (ports 25/587/465/143/993/110/995 → listeners, probes, mounts, security)"; else echo "$out"; fail "manifest consistency"; fi

# ----------------------------------------------------------------------- Nix
NIX_FILES=$( (ls flake.nix; find nix -name '*.nix') | sort)
if have nix-instantiate; then
  for f in $NIX_FILES; do
    if out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then ok "nix-instantiate --parse $f"; else echo "$out"; fail "nix-instantiate --parse $f"; fi
  done
  # The pure helpers: firewall ports, container ports, module defaults.
  expr='let l = import ./nix/lib.nix; in {
    default = l.listenPorts { };
    custom = l.listenPorts { protocols = "imap"; listen = { smtp = "0.0.0.0:25, [::]:25"; submission = [ "127.0.0.1:2587" ]; imaps = ""; }; };
    container = l.containerPorts;
    defaults = l.moduleDefaults { stateDir = "/var/lib/pigeonpost"; uid = 5000; gid = 5000; };
    vm = import ./nix/vm-settings.nix;
  }'
  if nix-instantiate --eval --strict --json -E "$expr" >"$TMP/nix.json" 2>"$TMP/nix.err"; then
    if out=$(python3 - "$TMP/nix.json" <<'PY' 2>&1
import json, sys, re, yaml
v = json.load(open(sys.argv[1]))
bad = []
if v["default"] != [25, 110, 143, 465, 587, 993, 995]:
    bad.append(f"listenPorts {{}} = {v['default']}")
if v["custom"] != [25, 143, 465, 2587]:
    bad.append(f"listenPorts custom = {v['custom']}")
sts = yaml.safe_load(open("k8s/statefulset.yaml"))
ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
if v["container"] != ports:
    bad.append(f"nix/lib.nix containerPorts {v['container']} != k8s ports {ports}")
dev = dict(re.findall(r'\("(\w+)", (\d+)\)', open("src/dev.rs").read().split("DEV_PORTS", 1)[1].split("];", 1)[0]))
if {k: int(p) for k, p in dev.items()} != v["container"]:
    bad.append(f"containerPorts differ from `serve --dev`'s DEV_PORTS {dev}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
    ); then ok "nix-instantiate --eval nix/lib.nix, nix/vm-settings.nix"; else echo "$out"; fail "nix/lib.nix evaluation"; fi
  else
    cat "$TMP/nix.err"
    fail "nix-instantiate --eval nix/lib.nix"
  fi

  # The whole flake, evaluated against a stand-in for nixpkgs (the real one
  # cannot be fetched offline): catches wrong names and arguments, and lets
  # us check what the outputs contain. Nothing is built.
  cat >"$TMP/stub-nixpkgs.nix" <<'NIX'
# A stand-in for nixpkgs, just enough to evaluate this repository's Nix
# files offline: derivation builders return their arguments, module
# functions return plain attribute sets (no merging, no type checks).
root:
let
  b = builtins;
  lib = rec {
    genAttrs = names: f: b.listToAttrs (map (n: { name = n; value = f n; }) names);
    importTOML = p: b.fromTOML (b.readFile p);
    fileset = { toSource = a: a.root; unions = l: l; };
    licenses = { mit = "mit"; asl20 = "asl20"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    mapAttrsToList = f: a: map (n: f n a.${n}) (b.attrNames a);
    toUpper = b.replaceStrings
      (b.genList (i: b.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26)
      (b.genList (i: b.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26);
    listToAttrs = b.listToAttrs;
    nameValuePair = name: value: { inherit name value; };
    attrValues = b.attrValues;
    mkIf = c: v: if c then v else null;
    mkDefault = v: v;
    mkOption = o: o;
    mkEnableOption = d: { description = d; };
    mkPackageOption = pkgs: name: _: { default = pkgs.${name}; };
    literalExpression = t: t;
    types = { submodule = m: m; int = "int"; bool = "bool"; path = "path"; nullOr = t: t; package = "package";
              str = "str"; attrsOf = t: t; listOf = t: t; };
    filter = b.filter;
    hasPrefix = p: s: b.substring 0 (b.stringLength p) s == p;
    mapAttrs = b.mapAttrs;
    getExe = p: "${p.pname}/bin/${p.meta.mainProgram}";
    optionalAttrs = c: a: if c then a else { };
    concatMap = f: l: b.concatLists (map f l);
    unique = b.foldl' (acc: x: if b.elem x acc then acc else acc ++ [ x ]) [ ];
    escapeShellArg = a: "'" + b.replaceStrings [ "'" ] [ "'\\''" ] (toString a) + "'";
  };
  pkgs = rec {
    inherit lib;
    stdenv.hostPlatform.system = "x86_64-linux";
    rustPlatform.buildRustPackage = a: a // { outPath = "/nix/store/pigeonpost"; };
    dockerTools.buildLayeredImage = a: a;
    cacert = "/nix/store/cacert";
    openssl = "/nix/store/openssl";
    python3 = "/nix/store/python3";
    curl = "/nix/store/curl";
    writeShellScript = name: text: "/nix/store/${name}";
    writeText = name: text: "/nix/store/${name}";
    runCommand = name: env: script: "/nix/store/${name}";
    formats.toml = _: { type = "toml"; generate = n: v: "/nix/store/${n}"; };
    testers.runNixOSTest = t: t;
    callPackage = path: over:
      let f = import path;
      in f (b.intersectAttrs (b.functionArgs f) pkgs // over);
  };
in
{
  lib = lib;
  legacyPackages.x86_64-linux = pkgs;
  legacyPackages.aarch64-linux = pkgs // { stdenv.hostPlatform.system = "aarch64-linux"; };
}
NIX
  cat >"$TMP/stub-flake.nix" <<'NIX'
{ root }:
let
  b = builtins;
  nixpkgs = import ./stub-nixpkgs.nix root;
  flake = import (root + "/flake.nix");
  self = flake.outputs { inherit self nixpkgs; };
  sys = "x86_64-linux";
  pkgs = nixpkgs.legacyPackages.${sys};
  wrapper = self.nixosModules.default { inherit pkgs; lib = nixpkgs.lib; };
  vm = self.checks.${sys}.vm-test;
  node = vm.nodes.machine { inherit pkgs; };
  cfg = node.services.pigeonpost // { package = self.packages.${sys}.default; environmentFile = null; uid = 5000;
    enableACME = false; useACMEHost = null; loginAccounts = { }; };
  module = import (b.head wrapper.imports) { config.services.pigeonpost = cfg; inherit pkgs; lib = nixpkgs.lib; };
  # enableACME and loginAccounts (simple-nixos-mailserver style).
  acmeCfg = cfg // {
    enableACME = true;
    settings = cfg.settings // { myhostname = "mail.example.com"; };
    loginAccounts = {
      "jane@example.com" = { hashedPassword = null; hashedPasswordFile = "/run/secrets/jane"; aliases = [ "postmaster@example.com" ]; };
      "joe@example.net" = { hashedPassword = "$6$salt$hash"; hashedPasswordFile = null; aliases = [ ]; };
    };
  };
  acmeModule = import (b.head wrapper.imports) { config.services.pigeonpost = acmeCfg; inherit pkgs; lib = nixpkgs.lib; };
in {
  systems = b.attrNames self.packages;
  package = { inherit (self.packages.${sys}.default) pname version cargoLock doCheck; };
  image = { inherit (self.packages.${sys}.image) name tag config; };
  app = self.apps.${sys}.default;
  service = module.config.systemd.services.pigeonpost.serviceConfig;
  moduleDefaults = module.config.services.pigeonpost.settings;
  firewall = module.config.networking.firewall.allowedTCPPorts;
  users = module.config.users.users.pigeonpost;
  wrapperPackage = wrapper.services.pigeonpost.package.pname;
  testScript = vm.testScript;
  nodeSettings = node.services.pigeonpost.settings;
  nodeEtc = b.attrNames node.environment.etc;
  acme = {
    settings = acmeModule.config.services.pigeonpost.settings;
    certs = acmeModule.config.security.acme.certs;
    unit = { inherit (acmeModule.config.systemd.services.pigeonpost) wants after; };
    execStartPre = acmeModule.config.systemd.services.pigeonpost.serviceConfig.ExecStartPre;
  };
}
NIX
  if (cd "$TMP" && nix-instantiate --eval --strict --json stub-flake.nix --arg root "$ROOT") >"$TMP/flake.json" 2>"$TMP/flake.err"; then
    if out=$(python3 - "$TMP/flake.json" "$TMP/nix.json" <<'PY' 2>&1
import json, sys, py_compile, tempfile
v = json.load(open(sys.argv[1]))
lib = json.load(open(sys.argv[2]))
bad = []
if v["systems"] != ["aarch64-linux", "x86_64-linux"]:
    bad.append(f"packages for {v['systems']}")
if not v["package"]["cargoLock"]["lockFile"].endswith("Cargo.lock"):
    bad.append("packages.default does not use Cargo.lock")
if v["app"]["type"] != "app":
    bad.append("apps.default is not an app")
img = v["image"]["config"]
if img.get("User") != "5000:5000":
    bad.append(f"image User {img.get('User')} is not the non-root vmail user 5000:5000")
exposed = sorted(int(p.split("/")[0]) for p in img.get("ExposedPorts", {}))
if exposed != sorted(lib["container"].values()):
    bad.append(f"image ExposedPorts {exposed} != containerPorts")
for name, port in lib["container"].items():
    if not any(e.startswith(f"PIGEONPOST_LISTEN__{name.upper()}=") and f":{port}" in e for e in img["Env"]):
        bad.append(f"image does not set listen.{name} to port {port}")
if "PIGEONPOST_CONFIG=/etc/pigeonpost/pigeonpost.toml" not in img["Env"]:
    bad.append("image PIGEONPOST_CONFIG is not /etc/pigeonpost/pigeonpost.toml")
sc = v["service"]
for key, want in [("AmbientCapabilities", ["CAP_NET_BIND_SERVICE"]), ("CapabilityBoundingSet", ["CAP_NET_BIND_SERVICE"]),
                  ("DynamicUser", False), ("User", "pigeonpost"), ("ProtectSystem", "strict"), ("NoNewPrivileges", True),
                  ("RestartPreventExitStatus", 2)]:
    if sc.get(key) != want:
        bad.append(f"NixOS service {key} = {sc.get(key)!r}, want {want!r}")
if "pigeonpost" not in (sc.get("StateDirectory") or []):
    bad.append("NixOS service has no StateDirectory")
if v["firewall"] != [25, 110, 143, 465, 587, 993, 995]:
    bad.append(f"openFirewall opens {v['firewall']}")
if v["users"].get("isSystemUser") is not True or v["users"].get("uid") != 5000:
    bad.append(f"pigeonpost user {v['users']}")
if v["wrapperPackage"] != "pigeonpost":
    bad.append("nixosModules.default does not set services.pigeonpost.package")
for f in ["pigeonpost/users", "pigeonpost/virtual_mailbox", "pigeonpost/virtual_alias", "pigeonpost/tls/cert.pem", "pigeonpost/tls/key.pem"]:
    if f not in v["nodeEtc"]:
        bad.append(f"VM test does not provide /etc/{f}")
a = v["acme"]
want = {"ssl_cert": "/var/lib/acme/mail.example.com/fullchain.pem", "ssl_key": "/var/lib/acme/mail.example.com/key.pem",
        "passdb": "passwd-file:/run/pigeonpost/users", "virtual_mailbox_domains": ["example.com", "example.net"]}
for key, val in want.items():
    if a["settings"].get(key) != val:
        bad.append(f"enableACME/loginAccounts: settings.{key} = {a['settings'].get(key)!r}, want {val!r}")
if a["certs"] != {"mail.example.com": {"group": "pigeonpost"}}:
    bad.append(f"enableACME: security.acme.certs = {a['certs']}")
if "acme-finished-mail.example.com.target" not in a["unit"]["wants"]:
    bad.append(f"enableACME: the service does not want acme-finished-mail.example.com.target: {a['unit']}")
if not str(a["execStartPre"]).startswith("+/nix/store/"):
    bad.append(f"loginAccounts: ExecStartPre {a['execStartPre']!r} does not write the passwd-file as root")
for k in ("virtual_mailbox_maps", "virtual_alias_maps"):
    if not a["settings"].get(k, "").startswith("hash:/nix/store/"):
        bad.append(f"loginAccounts: settings.{k} = {a['settings'].get(k)!r}")
with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as t:
    t.write(v["testScript"])
for f in [t.name, "nix/vm-client.py"]:
    try:
        py_compile.compile(f, doraise=True, cfile=tempfile.mktemp())
    except py_compile.PyCompileError as e:
        bad.append(f"VM test Python does not compile: {e}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
    ); then ok "flake evaluates against stub nixpkgs (package, image, app, module, vm-test)"; else echo "$out"; fail "flake outputs"; fi
  else
    cat "$TMP/flake.err"
    fail "nix-instantiate --eval of the flake against stub nixpkgs"
  fi
else
  skip "nix-instantiate not installed (apt-get install nix-bin)"
fi

# ------------------------------------------------------------- Containerfile
# The image built without Nix must match nix/image.nix's: the same user,
# ports (serve --dev's, which the Nix section checks against containerPorts
# and the StatefulSet), listener variables, config path and volumes; and
# its build stage may only need files that exist.
if out=$(python3 - <<'PY' 2>&1
import re, shlex, os
text = open("Containerfile").read()
# Join continuation lines, drop comments.
lines = []
for raw in re.sub(r"\\\n", " ", text).splitlines():
    if raw.strip() and not raw.lstrip().startswith("#"):
        lines.append(raw.strip())
stages = [l for l in lines if l.upper().startswith("FROM ")]
final = lines[max(i for i, l in enumerate(lines) if l.upper().startswith("FROM ")):]
def instr(name, within=final):
    return [l.split(None, 1)[1] for l in within if l.split(None, 1)[0].upper() == name]
bad = []
dev = {k: int(p) for k, p in re.findall(r'\("(\w+)", (\d+)\)', open("src/dev.rs").read().split("DEV_PORTS", 1)[1].split("];", 1)[0])}
env = {}
for e in instr("ENV"):
    for tok in shlex.split(e):
        k, _, v = tok.partition("=")
        env[k] = v
exposed = sorted(int(p) for e in instr("EXPOSE") for p in e.split())
if exposed != sorted(dev.values()):
    bad.append(f"Containerfile EXPOSE {exposed} != serve --dev ports {sorted(dev.values())}")
for name, port in dev.items():
    v = env.get(f"PIGEONPOST_LISTEN__{name.upper()}", "")
    if not v or any(not a.endswith(f":{port}") for a in v.split()):
        bad.append(f"Containerfile does not set listen.{name} to port {port} (got {v!r})")
if env.get("PIGEONPOST_CONFIG") != "/etc/pigeonpost/pigeonpost.toml":
    bad.append("Containerfile PIGEONPOST_CONFIG is not /etc/pigeonpost/pigeonpost.toml")
if instr("USER") != ["5000:5000"]:
    bad.append(f"Containerfile USER {instr('USER')} is not the non-root vmail user 5000:5000")
vols = sorted(v for e in instr("VOLUME") for v in re.findall(r'"([^"]+)"', e))
if vols != ["/var/spool/pigeonpost", "/var/vmail"]:
    bad.append(f"Containerfile VOLUME {vols}")
if instr("CMD") != ['["serve"]']:
    bad.append(f"Containerfile CMD {instr('CMD')}")
for c in instr("COPY", lines):
    if c.startswith("--from"):
        continue
    for src in c.split()[:-1]:
        if not os.path.exists(src):
            bad.append(f"Containerfile copies {src}, which does not exist")
if len(stages) != 2:
    bad.append(f"Containerfile has {len(stages)} stages, expected build + run")
tc = re.search(r"rust:(\d+\.\d+)", stages[0]) if stages else None
rustc = os.popen("rustc --version 2>/dev/null").read().split()
if tc and len(rustc) > 1 and not rustc[1].startswith(tc.group(1) + "."):
    bad.append(f"Containerfile builds with rust:{tc.group(1)}, the tests with rustc {rustc[1]}")
print("\n".join(bad))
raise SystemExit(1 if bad else 0)
PY
); then ok "Containerfile matches the Nix image (user, ports, listeners, config path, volumes)"; else echo "$out"; fail "Containerfile"; fi

# ------------------------------------------------------------------- systemd
BIN="${PIGEONPOST_BIN:-}"
if [ -z "$BIN" ]; then
  for b in target/debug/pigeonpost target/release/pigeonpost; do
    if [ -x "$b" ]; then BIN="$ROOT/$b"; break; fi
  done
fi

if have systemd-analyze; then
  # verify insists that ExecStart's binary exists: point it at one that does.
  mkdir -p "$TMP/unit/pigeonpost.service.d"
  exe=${BIN:-/bin/true}
  sed "s#^ExecStart=/usr/local/bin/pigeonpost#ExecStart=$exe#" deploy/pigeonpost.service >"$TMP/unit/pigeonpost.service"
  for variant in plain system-users; do
    if [ $variant = system-users ]; then cp deploy/examples/system-users.conf "$TMP/unit/pigeonpost.service.d/"; fi
    # systemd-analyze reports unknown keys and bad values on stderr but exits 0.
    out=$(cd "$TMP" && systemd-analyze verify "$TMP/unit/pigeonpost.service" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
      ok "systemd-analyze verify deploy/pigeonpost.service ($variant)"
    else
      echo "$out"
      fail "systemd-analyze verify deploy/pigeonpost.service ($variant)"
    fi
  done
  if grep -q '^AmbientCapabilities=CAP_NET_BIND_SERVICE$' deploy/pigeonpost.service &&
    grep -q '^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$' deploy/pigeonpost.service; then
    ok "deploy/pigeonpost.service keeps CAP_NET_BIND_SERVICE only"
  else
    fail "deploy/pigeonpost.service must have CAP_NET_BIND_SERVICE as its only capability"
  fi
else
  skip "systemd-analyze not installed"
fi

# ------------------------------------------------- configuration keys vs binary
# Every key set by a TOML file, the ConfigMap, the NixOS module/VM test and
# every PIGEONPOST_* variable must be in src/config/keys.rs.
if out=$(python3 - "$TMP/nix.json" "$TMP/flake.json" <<'PY' 2>&1
import glob, json, os, re, sys, tomllib, yaml
keys = set(re.findall(r'^\s*k\("([^"]+)"', open("src/config/keys.rs").read(), re.M))
if len(keys) < 40:
    print(f"could not read the key table from src/config/keys.rs (found {len(keys)})"); sys.exit(1)
bad, seen = [], 0

def flat(d, prefix=""):
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from flat(v, name + ".")
        else:
            yield name

def check(names, where):
    global seen
    for n in names:
        seen += 1
        if n not in keys:
            bad.append(f"{where}: unknown key {n}")

for f in sorted(glob.glob("deploy/examples/*.toml")):
    check(flat(tomllib.load(open(f, "rb"))), f)
cm = yaml.safe_load(open("k8s/configmap.yaml"))
check(flat(tomllib.loads(cm["data"]["pigeonpost.toml"])), "k8s/configmap.yaml pigeonpost.toml")

def env_key(var):
    rest = var[len("PIGEONPOST_"):]
    return ".".join(p.lower() for p in rest.split("__"))
sts = yaml.safe_load(open("k8s/statefulset.yaml"))
for c in sts["spec"]["template"]["spec"]["containers"]:
    for e in c.get("env", []):
        if e["name"].startswith("PIGEONPOST_") and e["name"] != "PIGEONPOST_CONFIG":
            check([env_key(e["name"])], f"k8s/statefulset.yaml env {e['name']}")
# nix/image.nix builds PIGEONPOST_LISTEN__<NAME> from containerPorts' names.
try:
    nixv = json.load(open(sys.argv[1]))
    check((f"listen.{n}" for n in nixv["container"]), "nix/lib.nix containerPorts (image env)")
    check(flat(nixv["defaults"]), "nix/lib.nix moduleDefaults")
    check(flat(nixv["vm"]), "nix/vm-settings.nix")
except (OSError, ValueError):
    pass  # nix-instantiate missing: reported above
try:
    fl = json.load(open(sys.argv[2]))
    check(flat(fl["nodeSettings"]), "nix/vm-test.nix settings")
    check(flat(fl["moduleDefaults"]), "nix/module.nix default settings")
except (OSError, ValueError):
    pass
# Keys the module reads from its settings (cfg.settings.<key>).
for n in re.findall(r"cfg\.settings\.([a-z_][a-z0-9_]*)", open("nix/module.nix").read()):
    check([n], "nix/module.nix")
print("\n".join(bad))
print(f"{seen} uses of keys checked against {len(keys)} keys")
sys.exit(1 if bad else 0)
PY
); then ok "config keys: $(tail -1 <<<"$out")"; else echo "$out"; fail "config keys not in src/config/keys.rs"; fi

# `pigeonpost config` on each configuration, with the files it names made
# from the examples in a scratch root ($TMP/root stands for /).
if [ -z "$BIN" ]; then
  skip "no pigeonpost binary (build it, or set PIGEONPOST_BIN): \`pigeonpost config\` not run on the configurations"
elif ! have openssl; then
  skip "openssl not installed: cannot make a test certificate for \`pigeonpost config\`"
else
  R="$TMP/root"
  mkdir -p "$R/etc/ssl/certs" "$R/etc/ssl/private" "$R/var/vmail" "$R/var/spool/pigeonpost" "$R/var/lib/pigeonpost"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mail.example.com \
    -keyout "$R/key.pem" -out "$R/cert.pem" >/dev/null 2>&1 || fail "openssl: test certificate"
  if out=$(BIN="$BIN" R="$R" python3 - "$TMP/flake.json" <<'PY' 2>&1
import json, os, re, shutil, subprocess, sys, tomllib, yaml
BIN, R = os.environ["BIN"], os.environ["R"]
bad = []
ex = "deploy/examples"

def put(path, src=None, text=None):
    dst = R + path
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if text is not None:
        open(dst, "w").write(text)
    else:
        shutil.copy(src, dst)

def reroot(text):
    # Absolute /etc/ and /var/ paths after a quote, "<", ":", "=" or space.
    return re.sub(r'(?<=["<:= ])/(etc|var)/', R + r"/\1/", text)

def toml_value(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return str(v)
    if isinstance(v, list): return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)

def to_toml(d):
    top = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            top.append(f"[{k}]")
            top += [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(top) + "\n"

def run(name, toml_text, env=None):
    cfg = f"{R}/cfg-" + re.sub(r"[^A-Za-z0-9]+", "-", name) + ".toml"
    open(cfg, "w").write(reroot(toml_text))
    e = {"PATH": os.environ["PATH"], "HOME": R}
    e.update(env or {})
    p = subprocess.run([BIN, "config", "--config", cfg], env=e, capture_output=True, text=True, cwd=R)
    if p.returncode != 0:
        bad.append(f"{name}: pigeonpost config exited {p.returncode}: {p.stderr.strip()}")
        return
    # Every key the file or environment sets must be reported from there, not "default".
    given = set()
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict): flat(v, f"{prefix}{k}.")
            else: given.add(prefix + k)
    flat(tomllib.loads(toml_text))
    for var in (env or {}):
        if var.startswith("PIGEONPOST_") and var != "PIGEONPOST_CONFIG":
            given.add(".".join(x.lower() for x in var[11:].split("__")))
    section, sources = "", {}
    for line in p.stdout.splitlines():
        m = re.match(r"^\[(\w+)\]$", line)
        if m: section = m.group(1) + "."; continue
        m = re.match(r'^(\S+) = ".*"  # (.*)$', line)
        if m: sources[section + m.group(1)] = m.group(2)
    for k in sorted(given):
        if sources.get(k, "default").startswith("default"):
            bad.append(f"{name}: {k} is set but `pigeonpost config` reports it from {sources.get(k)!r}")
    print(f"{name}: pigeonpost config ok ({len(given)} settings)")

# The HOWTO examples, with the files they name taken from deploy/examples.
put("/etc/postfix/virtual_mailbox", f"{ex}/virtual_mailbox")
put("/etc/postfix/virtual_alias", f"{ex}/virtual_alias")
put("/etc/aliases", f"{ex}/aliases")
put("/etc/dovecot/users", f"{ex}/users")
put("/etc/ssl/certs/mail.pem", f"{R}/cert.pem")
put("/etc/ssl/private/mail.key", f"{R}/key.pem")
for f in sorted(os.listdir(ex)):
    if f.endswith(".toml"):
        run(f"{ex}/{f}", open(f"{ex}/{f}").read())

# The Kubernetes ConfigMap with the StatefulSet's environment.
cm = yaml.safe_load(open("k8s/configmap.yaml"))["data"]
for name, text in cm.items():
    if name != "pigeonpost.toml":
        put(f"/etc/pigeonpost/{name}", text=text)
put("/etc/pigeonpost-users/users", f"{ex}/users")
put("/etc/pigeonpost-tls/tls.crt", f"{R}/cert.pem")
put("/etc/pigeonpost-tls/tls.key", f"{R}/key.pem")
sts = yaml.safe_load(open("k8s/statefulset.yaml"))
env = {e["name"]: e["value"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] != "PIGEONPOST_CONFIG"}
run("k8s/configmap.yaml + statefulset env", cm["pigeonpost.toml"], env)

# The NixOS VM test's settings, with the module's defaults under them
# (from the stub evaluation of the flake above).
try:
    fl = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    fl = None
if fl:
    put("/etc/pigeonpost/virtual_mailbox", text="demo@example.com  example.com/demo/\n")
    put("/etc/pigeonpost/virtual_alias", text="postmaster@example.com  demo@example.com\n")
    put("/etc/pigeonpost/users", f"{ex}/users")
    put("/etc/pigeonpost/tls/cert.pem", f"{R}/cert.pem")
    put("/etc/pigeonpost/tls/key.pem", f"{R}/key.pem")
    settings = dict(fl["moduleDefaults"])
    settings.update(fl["nodeSettings"])
    run("NixOS module defaults + VM test settings", to_toml(settings))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
  ); then
    while IFS= read -r line; do echo "ok:   $line"; done <<<"$out"
  else
    echo "$out"
    fail "pigeonpost config on the deployment configurations"
  fi
fi

# ------------------------------------------------------------------- summary
echo
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "deploy checks: ${#FAILED[@]} failed:"
  printf '  - %s\n' "${FAILED[@]}"
  exit 1
fi
echo "deploy checks: all passed${SKIPPED:+ (${#SKIPPED[@]} skipped)}"
