//! Builders that run inside firn instead of as a process: `builtin:fetchurl`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

/// Run a builtin builder; `out` is where the output must be written. Returns the log text or
/// an error message.
pub fn run_builtin(
    builder: &str,
    env: &BTreeMap<String, String>,
    out: &Path,
) -> Result<String, String> {
    match builder {
        "builtin:fetchurl" => fetchurl(env, out),
        other => Err(format!(
            "unsupported builtin builder '{}'",
            other.trim_start_matches("builtin:")
        )),
    }
}

fn fetchurl(env: &BTreeMap<String, String>, out: &Path) -> Result<String, String> {
    let url = env
        .get("url")
        .ok_or_else(|| "attribute 'url' missing".to_string())?;
    let unpack = env.get("unpack").map(String::as_str) == Some("1");
    let mut reader: Box<dyn Read> = if let Some(path) = url.strip_prefix("file://") {
        Box::new(fs::File::open(path).map_err(|e| format!("unable to download '{url}': {e}"))?)
    } else {
        return Err(format!(
            "unable to download '{url}': firn's builtin:fetchurl only fetches file:// URLs so far"
        ));
    };
    if unpack {
        firn_store::nar_fs::restore_path_hashed(&mut reader, out, firn_format::HashAlgo::Sha256)
            .map_err(|e| format!("unpacking '{url}': {e}"))?;
    } else {
        let mut f =
            fs::File::create(out).map_err(|e| format!("creating '{}': {e}", out.display()))?;
        std::io::copy(&mut reader, &mut f).map_err(|e| format!("downloading '{url}': {e}"))?;
        if env.get("executable").map(String::as_str) == Some("1") {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(out, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("making '{}' executable: {e}", out.display()))?;
        }
    }
    Ok(format!("downloading '{url}'...\n"))
}
