#!/usr/bin/env bash
# gen_pkgset.sh DIR N: write a nixpkgs-style package set of N packages into DIR, for comparing
# evaluators on the same real-looking work (used by bench/eval.sh and by the pkgset test).
#
# DIR/default.nix is an `all-packages.nix`: a small library (fix, extends, callPackageWith with
# functionArgs/intersectAttrs, makeOverridable), a `stdenv.mkDerivation` over `derivation`
# (propagated inputs closed with genericClosure, PATH from inputs, several outputs, passthru,
# meta, overrideAttrs), one file per package under DIR/pkgs/ taking its dependencies as
# arguments, and two overlays (overrideAttrs and override). `import DIR { }` is the package
# set; every package is a derivation whose drvPath both evaluators must agree on.
set -euo pipefail
dir=$1
n=$2
mkdir -p "$dir/pkgs"

# deps I: the packages pkgI depends on (earlier ones, deterministic; chains of `I - 1` break
# every 50 packages, so dependency depth stays in the hundreds, as in nixpkgs).
deps() {
    local i=$1 out=() d
    for d in $((i % 50 == 1 ? 0 : i - 1)) $((i / 2)) $((i / 3)) $((i * 7 % (i > 1 ? i - 1 : 1) + 1)); do
        if [ "$d" -ge 1 ] && [ "$d" -lt "$i" ] && [[ " ${out[*]-} " != *" pkg$d "* ]]; then
            out+=("pkg$d")
        fi
    done
    echo "${out[*]-}"
}

for i in $(seq 1 "$n"); do
    read -r -a ds <<<"$(deps "$i")"
    args="stdenv, lib"
    for d in "${ds[@]}"; do args+=", $d"; done
    build="[ ${ds[*]:0:2} ]"
    prop="[ ]"
    if [ "${#ds[@]}" -ge 3 ]; then prop="lib.optional (${ds[2]} ? version) ${ds[2]}"; fi
    outputs='[ "out" ]'
    if [ $((i % 5)) -eq 0 ]; then outputs='[ "out" "dev" "doc" ]'; fi
    uses=""
    for d in "${ds[@]}"; do uses+="    echo \${$d}/lib \${$d.name} >> \$out/deps"$'\n'; done
    cat > "$dir/pkgs/pkg$i.nix" <<NIX
{ $args }:
stdenv.mkDerivation {
  pname = "pkg$i";
  version = "1.$((i % 17)).$i";
  outputs = $outputs;
  buildInputs = $build;
  propagatedBuildInputs = $prop;
  enableParallelBuilding = $( [ $((i % 2)) -eq 0 ] && echo true || echo false );
  configureFlags = [ "--with-n=$i" ] ++ lib.optional ($i > 10) "--enable-big";
  buildPhase = ''
    mkdir -p \$out
$uses  '';
  passthru.tests = { simple = "test-$i"; };
  meta = {
    description = "Package number $i";
    license = "mit";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
}
NIX
done

{
    cat <<'NIX'
{ overlays ? true }:
let
  lib = rec {
    fix = f: let x = f x; in x;
    extends = overlay: f: self: let super = f self; in super // overlay self super;
    optional = c: x: if c then [ x ] else [ ];
    concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
    makeOverridable = f: origArgs:
      let result = f origArgs;
      in result // {
        override = newArgs: makeOverridable f (origArgs // (if builtins.isFunction newArgs then newArgs origArgs else newArgs));
      };
    callPackageWith = autoArgs: fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
        allArgs = builtins.intersectAttrs (builtins.functionArgs f) autoArgs // args;
      in makeOverridable f allArgs;
    closePropagation = list: map (x: x.val) (builtins.genericClosure {
      startSet = map (p: { key = p.outPath; val = p; }) list;
      operator = item: map (p: { key = p.outPath; val = p; }) (item.val.propagatedBuildInputs or [ ]);
    });
  };
  stdenv = {
    mkDerivation = attrs:
      let
        inputs = (attrs.buildInputs or [ ]) ++ (attrs.propagatedBuildInputs or [ ]);
        closure = lib.closePropagation inputs;
        drv = derivation (builtins.removeAttrs attrs [ "meta" "passthru" "pname" "version" ] // {
          name = "${attrs.pname}-${attrs.version}";
          system = "x86_64-linux";
          builder = "/bin/sh";
          args = [ "-c" attrs.buildPhase ];
          PATH = lib.concatMapStringsSep ":" (d: "${d}/bin") closure;
          nativeBuildInputs = [ ];
        });
      in drv // {
        inherit (attrs) pname version;
        propagatedBuildInputs = attrs.propagatedBuildInputs or [ ];
        meta = attrs.meta or { };
        overrideAttrs = f: stdenv.mkDerivation (attrs // f attrs);
      } // (attrs.passthru or { });
  };
  allPackages = self:
    let callPackage = lib.callPackageWith (self // { inherit lib stdenv; });
    in {
NIX
    for i in $(seq 1 "$n"); do
        echo "      pkg$i = callPackage ./pkgs/pkg$i.nix { };"
    done
    cat <<'NIX'
    };
  overlay1 = self: super: {
    pkg10 = super.pkg10.overrideAttrs (old: { version = "2.0"; configureFlags = old.configureFlags ++ [ "--new" ]; });
  };
  overlay2 = self: super: {
    pkg20 = super.pkg20.override { pkg19 = self.pkg5; };
  };
in
if overlays
then lib.fix (lib.extends overlay2 (lib.extends overlay1 allPackages))
else lib.fix allPackages
NIX
} > "$dir/default.nix"

# What both evaluators are asked: every package's (and extra outputs') drvPath, in name order.
cat > "$dir/drvpaths.nix" <<'NIX'
let pkgs = import ./. { };
in builtins.concatLists (map (n: [ pkgs.${n}.drvPath (pkgs.${n}.dev.outPath or "") ])
  (builtins.attrNames pkgs))
NIX
