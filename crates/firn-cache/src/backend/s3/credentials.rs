//! AWS credentials: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), else a profile of `~/.aws/credentials`.

use crate::{CacheError, Result};

/// AWS credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.access_key)
    }
}

impl Credentials {
    /// From the environment, else from `~/.aws/credentials` (`[profile]` section); `None`
    /// when there are none (public buckets are then read anonymously).
    pub fn load(profile: Option<&str>) -> Result<Option<Credentials>> {
        if let (Ok(a), Ok(s)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            if !a.is_empty() && !s.is_empty() {
                return Ok(Some(Credentials {
                    access_key: a,
                    secret_key: s,
                    session_token: std::env::var("AWS_SESSION_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty()),
                }));
            }
        }
        let profile = profile
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "default".to_string());
        let file = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
            Some(f) => std::path::PathBuf::from(f),
            None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".aws/credentials"),
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("no S3 credentials; requests are anonymous");
                return Ok(None);
            }
            Err(e) => {
                return Err(CacheError::Other(format!(
                    "reading S3 credentials from '{}': {e}",
                    file.display()
                )))
            }
        };
        parse_credentials_file(&text, &profile)
            .ok_or_else(|| {
                CacheError::Other(format!(
                    "no credentials for profile '{profile}' in '{}'",
                    file.display()
                ))
            })
            .map(Some)
    }
}

/// The `[profile]` section of an AWS credentials file.
fn parse_credentials_file(text: &str, profile: &str) -> Option<Credentials> {
    let mut section = String::new();
    let (mut ak, mut sk, mut tok) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => ak = Some(v),
                "aws_secret_access_key" => sk = Some(v),
                "aws_session_token" => tok = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key: ak?,
        secret_key: sk?,
        session_token: tok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let c = parse_credentials_file(text, "other").unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("C", "D"));
        assert_eq!(c.session_token.as_deref(), Some("T"));
        assert_eq!(
            parse_credentials_file(text, "default").unwrap().access_key,
            "A"
        );
        assert!(parse_credentials_file(text, "missing").is_none());
    }
}
