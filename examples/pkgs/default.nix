# A small package set built from nothing but the host's static busybox (Debian: busybox-static),
# imported into the store by the expression itself: no network, no nixpkgs.
#   firn build -f examples/pkgs          # everything (the `all` attribute's members)
#   firn build -f examples/pkgs hello    # one package
{ busybox ? /usr/bin/busybox }:
let
  system = builtins.currentSystem;
  # /usr/bin filtered down to busybox: a store path `<hash>-busybox/busybox`.
  bb = builtins.path {
    path = dirOf busybox;
    name = "busybox";
    filter = p: t: baseNameOf p == baseNameOf busybox;
  };
  sh = "${bb}/${baseNameOf busybox}";
  mk = name: script: attrs: derivation ({
    inherit name system;
    builder = sh;
    args = [ "sh" "-e" "-c" script ];
  } // attrs);

  # The busybox applets as a bin/ directory of symlinks.
  coreutils = mk "coreutils-busybox" ''
    ${sh} mkdir -p $out/bin
    for a in $(${sh} --list); do ${sh} ln -s ${sh} $out/bin/$a; done
  '' { };

  greeting = mk "greeting-1.0" ''
    export PATH=${coreutils}/bin
    mkdir -p $out/share
    echo "Hello from firn, built in a sandbox on $(uname -s)." > $out/share/greeting
  '' { };

  hello = mk "hello-1.0" ''
    export PATH=${coreutils}/bin
    mkdir -p $out/bin $doc/share/doc
    printf '#!%s sh\ncat %s/share/greeting\n' ${sh} ${greeting} > $out/bin/hello
    chmod +x $out/bin/hello
    echo "hello prints a greeting" > $doc/share/doc/README
  '' { outputs = [ "out" "doc" ]; };

  # A fixed-output derivation: content known in advance, checked after the build.
  license = mk "license.txt" ''
    echo "MIT OR Apache-2.0" > $out
  '' {
    outputHashAlgo = "sha256";
    outputHash = "sha256-NrslOBisE3YQgVVv9cRX1ibanfHrT1YZTZrTkmxBimg=";
  };

  # Structured attributes: the builder reads its inputs from .attrs.json.
  manifest = mk "manifest" ''
    export PATH=${coreutils}/bin
    out=$(sed -n "s/^declare -A outputs=(\['out'\]='\([^']*\)'.*/\1/p" $NIX_BUILD_TOP/.attrs.sh)
    cp $NIX_BUILD_TOP/.attrs.json $out
  '' {
    __structuredAttrs = true;
    packages = [ "${hello}" "${greeting}" "${license}" ];
  };

  world = mk "world-1.0" ''
    export PATH=${coreutils}/bin
    mkdir -p $out/bin
    ln -s ${hello}/bin/hello $out/bin/hello
    cp ${license} $out/LICENSE
    cp ${manifest} $out/manifest.json
  '' { };
in
{
  inherit coreutils greeting hello license manifest world;
}
