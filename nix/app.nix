# `nix run` → `pigeonpost serve --dev`: a complete development server with
# its state in ./pigeonpost-dev/ (ports 2525/2587/2465/2143/2993/2110/2995,
# HTTP on 8080). Extra arguments are passed on.
{ pkgs, pigeonpost }:

{
  type = "app";
  meta.description = "pigeonpost development server (serve --dev, state in ./pigeonpost-dev)";
  program = toString (pkgs.writeShellScript "pigeonpost-dev" ''
    exec ${pigeonpost}/bin/pigeonpost serve --dev "$@"
  '');
}
