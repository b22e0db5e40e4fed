//! `nix-hash`: hash paths (NAR or flat) and convert hashes between encodings.

use anyhow::Result;
use firn_format::{Hash, HashAlgo, HashFormat};

use crate::cmd::hash::{hash_paths, HashMode};
use crate::context::{usage, Ctx};

pub fn main(args: Vec<String>) -> Result<()> {
    let (_ctx, args) = Ctx::legacy(super::expand_short_flags(args))?;
    let mut algo: Option<HashAlgo> = None;
    let mut flat = false;
    let mut format = HashFormat::Base16;
    let mut truncate = false;
    let mut convert = false;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" => {
                out!("{}", HELP);
                return Ok(());
            }
            "--version" => {
                outln!("{}", crate::version_line("nix-hash"));
                return Ok(());
            }
            "--flat" => flat = true,
            "--base16" => format = HashFormat::Base16,
            "--base32" => format = HashFormat::Nix32,
            "--base64" => format = HashFormat::Base64,
            "--sri" => format = HashFormat::Sri,
            "--truncate" => truncate = true,
            "--type" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("flag '--type' requires 1 argument"))?;
                algo = Some(
                    v.parse()
                        .map_err(|e: firn_format::hash::HashError| usage(e.to_string()))?,
                );
            }
            "--to-base16" | "--to-base32" | "--to-base64" | "--to-sri" => {
                convert = true;
                format = match a.as_str() {
                    "--to-base16" => HashFormat::Base16,
                    "--to-base32" => HashFormat::Nix32,
                    "--to-base64" => HashFormat::Base64,
                    _ => HashFormat::Sri,
                };
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(format!("unrecognised flag '{s}'")))
            }
            _ => rest.push(a),
        }
    }
    if convert {
        for s in &rest {
            let h = Hash::parse(s, algo)?;
            outln!("{}", h.encode(format, format == HashFormat::Sri));
        }
        return Ok(());
    }
    let mode = if flat { HashMode::Flat } else { HashMode::Nar };
    hash_paths(&rest, mode, algo.unwrap_or(HashAlgo::Md5), format, truncate)
}

const HELP: &str = "Usage: nix-hash [OPTIONS...] PATHS...\n\
\n\
Compute the cryptographic hash of a path (its NAR serialisation, or with --flat the file's\n\
contents), or convert hashes between encodings.\n\
\n\
  --flat               hash the file's contents, not its NAR serialisation\n\
  --type ALGO          md5 (default), sha1, sha256 or sha512\n\
  --base16|--base32|--base64|--sri\n\
                       output encoding (default base16)\n\
  --truncate           fold the hash to 160 bits\n\
  --to-base16|--to-base32|--to-base64|--to-sri HASH...\n\
                       convert hashes\n";
