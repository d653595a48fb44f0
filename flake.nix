{
  description = "pigeonpost: one Rust binary replacing Postfix + Dovecot";

  # Cargo.toml asks for rustc >= 1.95, so follow nixos-unstable (a stable
  # channel with an older rustc fails the build with cargo's rust-version
  # check). `nix flake lock` pins the exact revision in flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        pigeonpost = pkgs.callPackage ./nix/package.nix { };
        default = pigeonpost;
        # OCI image: `nix build .#image && docker load < result`
        image = pkgs.callPackage ./nix/image.nix { inherit pigeonpost; };
      });

      # `nix run` = `pigeonpost serve --dev` (state in ./pigeonpost-dev)
      apps = forAllSystems (pkgs: {
        default = import ./nix/app.nix { inherit pkgs; pigeonpost = self.packages.${pkgs.stdenv.hostPlatform.system}.default; };
      });

      overlays.default = final: _prev: { pigeonpost = final.callPackage ./nix/package.nix { }; };

      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/module.nix ];
        services.pigeonpost.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        vm-test = import ./nix/vm-test.nix { inherit pkgs; module = self.nixosModules.default; };
      });
    };
}
