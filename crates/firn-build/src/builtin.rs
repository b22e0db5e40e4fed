//! Builders that run inside firn instead of as a process: `builtin:fetchurl` (`file://`,
//! `http://`, `https://`; with `unpack`, a NAR, xz-compressed when the URL ends in `.xz`;
//! `executable`). The hash of a fixed output is checked afterwards like any other.
//! `https://` servers must be signed by the CA bundle in effect ([`firn_http::tls`]);
//! CppNix 2.8 does not check the server's certificate here at all (the hash is checked).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

/// Run a builtin builder; `out` is where the output must be written, `store_dir` the logical
/// store directory and `real_store_dir` where its files are. Returns the log text or an error
/// message.
pub fn run_builtin(
    builder: &str,
    env: &BTreeMap<String, String>,
    out: &Path,
    store_dir: &str,
    real_store_dir: &Path,
) -> Result<String, String> {
    match builder {
        "builtin:fetchurl" => fetchurl(env, out),
        "builtin:buildenv" => crate::buildenv::build(env, out, store_dir, real_store_dir),
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
    let raw: Box<dyn Read> = if let Some(path) = url.strip_prefix("file://") {
        Box::new(fs::File::open(path).map_err(|e| format!("unable to download '{url}': {e}"))?)
    } else if url.starts_with("http://") || url.starts_with("https://") {
        http_get(url)?
    } else {
        return Err(format!(
            "unable to download '{url}': unsupported URL scheme (builtin:fetchurl fetches file://, http:// and https://)"
        ));
    };
    // As CppNix: only an unpacked `.xz` download is decompressed.
    let mut reader: Box<dyn Read> = if unpack && url.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(raw))
    } else {
        raw
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

/// GET `url`, following redirects; any status but 2xx is an error naming it.
fn http_get(url: &str) -> Result<Box<dyn Read>, String> {
    let agent = firn_http::agent_builder(url)
        .map_err(|e| format!("unable to download '{url}': {e}"))?
        .timeout_connect(std::time::Duration::from_secs(30))
        .timeout_read(std::time::Duration::from_secs(300))
        .build();
    match agent.get(url).call() {
        Ok(resp) => Ok(resp.into_reader()),
        Err(ureq::Error::Status(code, resp)) => Err(format!(
            "unable to download '{url}': HTTP error {code} ({})",
            resp.status_text()
        )),
        Err(ureq::Error::Transport(t)) => Err(format!("unable to download '{url}': {t}")),
    }
}
