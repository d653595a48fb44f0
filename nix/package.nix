# The pigeonpost binary, built from Cargo.lock (no network access needed
# beyond the crates Cargo.lock pins; there are no git dependencies).
{ lib, rustPlatform }:

let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "pigeonpost";
  inherit (cargoToml.package) version;

  # Only what the build reads, so editing k8s/ or deploy/ does not rebuild.
  # README.md is include_str!'d by a unit test in src/config/keys.rs.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../README.md
      ../src
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The test suite (unit tests plus integration tests that start the binary,
  # talk to it over sockets and cross-check hashes with doveadm) runs in CI
  # with `cargo test`; checks.vm-test exercises the built binary. Inside the
  # Nix sandbox we only build.
  doCheck = false;

  meta = {
    description = cargoToml.package.description;
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "pigeonpost";
    platforms = lib.platforms.linux;
  };
}
