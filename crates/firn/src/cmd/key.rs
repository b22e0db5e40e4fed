//! `nix key ...` and the signing helpers shared with `nix store sign`, `nix store verify` and
//! `nix-store --generate-binary-cache-key`.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use firn_format::signature::{PublicKey, PublicKeys, SecretKey};
use firn_format::StoreDir;
use firn_store::ValidPathInfo;

use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate a secret key for signing store paths, printed on stdout.
    #[command(name = "generate-secret")]
    GenerateSecret {
        /// Identifier of the key (e.g. `cache.example.org-1`).
        #[arg(long = "key-name")]
        key_name: String,
    },
    /// Print the public key of the secret key read from stdin.
    #[command(name = "convert-secret-to-public")]
    ConvertSecretToPublic,
}

pub fn run(cmd: KeyCmd) -> Result<()> {
    match cmd {
        KeyCmd::GenerateSecret { key_name } => {
            // No newline, as CppNix writes it, so `> file` gives a key file as is.
            out!("{}", SecretKey::generate(&key_name));
        }
        KeyCmd::ConvertSecretToPublic => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the secret key from standard input")?;
            out!("{}", SecretKey::parse(&s)?.to_public());
        }
    }
    Ok(())
}

/// Write a new key pair to files, the secret one readable by its owner only.
pub fn generate_key_files(name: &str, secret_file: &str, public_file: &str) -> Result<()> {
    let sk = SecretKey::generate(name);
    std::fs::write(public_file, sk.to_public().to_string())
        .with_context(|| format!("writing public key to '{public_file}'"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(secret_file)
        .with_context(|| format!("writing secret key to '{secret_file}'"))?;
    f.write_all(sk.to_string().as_bytes())
        .with_context(|| format!("writing secret key to '{secret_file}'"))?;
    Ok(())
}

pub fn read_secret_key(p: &Path) -> Result<SecretKey> {
    let s = std::fs::read_to_string(p)
        .with_context(|| format!("reading secret key '{}'", p.display()))?;
    SecretKey::parse(&s).with_context(|| format!("parsing secret key '{}'", p.display()))
}

/// The signature of a path's fingerprint with `key`.
pub fn sign_path_info(key: &SecretKey, sd: &StoreDir, info: &ValidPathInfo) -> Result<String> {
    info.signature(sd, key).map_err(anyhow::Error::msg)
}

/// The `trusted-public-keys` setting (also from `secret-key-files`, as Nix does).
pub fn trusted_public_keys(settings: &Settings) -> Result<PublicKeys> {
    let mut keys = PublicKeys::default();
    for k in settings.get_list("trusted-public-keys") {
        keys.insert(
            PublicKey::parse(&k).with_context(|| format!("in trusted-public-keys: '{k}'"))?,
        );
    }
    for f in settings.get_list("secret-key-files") {
        keys.insert(read_secret_key(Path::new(&f))?.to_public());
    }
    Ok(keys)
}

/// How many signatures of `info` verify with `keys` (content-addressed paths count as fully
/// trusted, as in Nix).
pub fn count_valid_signatures(sd: &StoreDir, info: &ValidPathInfo, keys: &PublicKeys) -> usize {
    if let Some(ca) = &info.ca {
        let self_ref = info.references.contains(&info.path);
        let others = info.references.iter().filter(|r| **r != info.path);
        if sd
            .make_path_from_ca(info.path.name(), ca, others, self_ref)
            .ok()
            .as_ref()
            == Some(&info.path)
        {
            return usize::MAX;
        }
    }
    let Ok(fp) = info.fingerprint(sd) else {
        return 0;
    };
    info.sigs
        .iter()
        .filter(|s| keys.verify(fp.as_bytes(), s))
        .count()
}
