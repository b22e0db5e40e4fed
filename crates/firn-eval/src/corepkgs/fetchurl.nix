# `<nix/fetchurl.nix>`: a fixed-output derivation built by the `builtin:fetchurl` builder.
# Its attributes are those Nix's own file gives the derivation (names, values and defaults),
# so the derivations it makes have the same paths under firn and Nix.
{
  system ? "", # not used
  url,
  hash ? "", # SRI
  md5 ? "",
  sha1 ? "",
  sha256 ? "",
  sha512 ? "",
  # The first hash given, SRI first, then the strongest.
  outputHash ? (
    if hash != "" then hash
    else if sha512 != "" then sha512
    else if sha1 != "" then sha1
    else if md5 != "" then md5
    else sha256
  ),
  # Empty for an SRI hash, which names its algorithm.
  outputHashAlgo ? (
    if hash != "" then ""
    else if sha512 != "" then "sha512"
    else if sha1 != "" then "sha1"
    else if md5 != "" then "md5"
    else "sha256"
  ),
  executable ? false,
  unpack ? false,
  name ? baseNameOf (toString url),
}:
derivation {
  inherit name url executable unpack outputHash outputHashAlgo;
  builder = "builtin:fetchurl";
  system = "builtin";
  outputHashMode = if executable || unpack then "recursive" else "flat";
  # Fetched where it is asked for, not on a remote builder.
  preferLocalBuild = true;
  # Proxy settings reach the download.
  impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
  # For nix-prefetch-url.
  urls = [ url ];
}
