//! `s3://BUCKET?region=&endpoint=&scheme=&profile=`: a binary cache in an S3 bucket (AWS, or
//! any S3-compatible server such as Garage, MinIO or s3s-fs), spoken over plain HTTP with
//! AWS Signature Version 4.
//!
//! As in CppNix: with an `endpoint` the bucket is addressed path-style
//! (`<scheme>://<endpoint>/<bucket>/<key>`), without one virtual-host-style on AWS
//! (`https://<bucket>.s3.<region>.amazonaws.com/<key>`); `region` defaults to `us-east-1`,
//! `scheme` to `https`. Credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN`), else from `~/.aws/credentials` (profile `profile=`, `AWS_PROFILE`
//! or `default`). Large NARs go up as multipart uploads (`multipart-upload=true`, parts of
//! `buffer-size` bytes, and always above 4 GiB).

// ureq's error carries the response; it is passed straight on, never stored.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{check_key, Backend, Upload};
use crate::uri::CacheUri;
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

pub struct S3Backend {
    name: String,
    /// `scheme://host[:port]`.
    origin: String,
    host: String,
    /// Path prefix of every key: `/bucket` path-style, empty virtual-host-style.
    prefix: String,
    region: String,
    /// `None`: anonymous (unsigned) requests.
    creds: Option<Credentials>,
    agent: ureq::Agent,
    multipart: bool,
    part_size: u64,
}

/// Parts of a multipart upload (S3 allows at most 10,000; parts are at least 5 MiB).
const MAX_PARTS: u64 = 10_000;
const MIN_PART: u64 = 5 << 20;
/// Above this, a single PUT is refused by S3: multipart is mandatory.
const SINGLE_PUT_LIMIT: u64 = 4 << 30;

impl S3Backend {
    pub fn new(bucket: &str, uri: &CacheUri, connections: usize) -> Result<S3Backend> {
        let region = uri.param("region").unwrap_or("us-east-1").to_string();
        let scheme = uri.param("scheme").unwrap_or("https");
        if scheme != "http" && scheme != "https" {
            return Err(CacheError::BadUri {
                uri: uri.base(),
                why: format!("unsupported scheme '{scheme}'"),
            });
        }
        let (host, prefix) = match uri.param("endpoint").filter(|e| !e.is_empty()) {
            Some(ep) => {
                let ep = ep
                    .strip_prefix("http://")
                    .or_else(|| ep.strip_prefix("https://"))
                    .unwrap_or(ep)
                    .trim_end_matches('/');
                (ep.to_string(), format!("/{}", uri_encode(bucket, false)))
            }
            None => (format!("{bucket}.s3.{region}.amazonaws.com"), String::new()),
        };
        let part_size = match uri.param("buffer-size") {
            Some(v) => v.parse::<u64>().map_err(|_| CacheError::BadUri {
                uri: uri.base(),
                why: format!("'buffer-size' must be a number of bytes, not '{v}'"),
            })?,
            None => MIN_PART,
        }
        .max(MIN_PART);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(300))
            .max_idle_connections(connections.max(1))
            .max_idle_connections_per_host(connections.max(1))
            .user_agent(concat!("firn/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(S3Backend {
            name: uri.base(),
            origin: format!("{scheme}://{host}"),
            host,
            prefix,
            region,
            creds: Credentials::load(uri.param("profile"))?,
            agent,
            multipart: uri.flag("multipart-upload", false),
            part_size,
        })
    }

    /// A signed request for `key` (`query` already in canonical order: sorted, encoded).
    fn request(&self, method: &str, key: &str, query: &str, payload_sha256: &str) -> ureq::Request {
        let path = format!("{}/{}", self.prefix, uri_encode(key, true));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (date, amz_date) = amz_dates(now);
        let url = if query.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query}", self.origin)
        };
        let req = self.agent.request(method, &url);
        let Some(creds) = &self.creds else {
            return req;
        };
        let mut headers: Vec<(&str, String)> = vec![
            ("host", self.host.clone()),
            ("x-amz-content-sha256", payload_sha256.to_string()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(t) = &creds.session_token {
            headers.push(("x-amz-security-token", t.clone()));
        }
        let authorization = sign_v4(
            creds,
            &self.region,
            method,
            &path,
            query,
            &headers,
            payload_sha256,
            &date,
            &amz_date,
        );
        let mut req = req;
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.set(k, v);
        }
        req.set("Authorization", &authorization)
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.name)
    }

    fn put_multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        size: u64,
        mime: &str,
    ) -> Result<()> {
        let url = self.url(key);
        let up = |why: String| CacheError::Upload {
            url: url.clone(),
            why,
        };
        let empty = hex_sha256(b"");
        let resp = self
            .request("POST", key, "uploads=", &empty)
            .set("Content-Type", mime)
            .call()
            .map_err(|e| up(describe(e)))?;
        let body = resp.into_string().map_err(|e| up(e.to_string()))?;
        let upload_id = xml_field(&body, "UploadId")
            .ok_or_else(|| up(format!("no UploadId in the answer: {body}")))?;
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let result = (|| -> Result<()> {
            let mut file = std::fs::File::open(path).map_err(|e| up(e.to_string()))?;
            let mut etags = Vec::new();
            let mut buf = vec![0u8; part_size as usize];
            let mut number = 1u64;
            loop {
                let mut n = 0;
                while n < buf.len() {
                    let r = file.read(&mut buf[n..]).map_err(|e| up(e.to_string()))?;
                    if r == 0 {
                        break;
                    }
                    n += r;
                }
                if n == 0 && number > 1 {
                    break;
                }
                let part = &buf[..n];
                let query = format!(
                    "partNumber={number}&uploadId={}",
                    uri_encode(&upload_id, false)
                );
                let resp = self
                    .request("PUT", key, &query, &hex_sha256(part))
                    .send_bytes(part)
                    .map_err(|e| up(describe(e)))?;
                let etag = resp
                    .header("ETag")
                    .ok_or_else(|| up(format!("no ETag for part {number}")))?
                    .to_string();
                etags.push(etag);
                number += 1;
                if n < buf.len() {
                    break;
                }
            }
            let mut xml = String::from("<CompleteMultipartUpload>");
            for (i, e) in etags.iter().enumerate() {
                let _ = write!(
                    xml,
                    "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                    i + 1
                );
            }
            xml.push_str("</CompleteMultipartUpload>");
            let query = format!("uploadId={}", uri_encode(&upload_id, false));
            let resp = self
                .request("POST", key, &query, &hex_sha256(xml.as_bytes()))
                .set("Content-Type", "application/xml")
                .send_bytes(xml.as_bytes())
                .map_err(|e| up(describe(e)))?;
            // S3 may answer 200 with an error document.
            let body = resp.into_string().map_err(|e| up(e.to_string()))?;
            if body.contains("<Error>") {
                return Err(up(body));
            }
            Ok(())
        })();
        if result.is_err() {
            let query = format!("uploadId={}", uri_encode(&upload_id, false));
            let _ = self.request("DELETE", key, &query, &empty).call();
        }
        result
    }
}

fn describe(e: ureq::Error) -> String {
    super::describe_ureq(
        e,
        Some(|body| xml_field(body, "Message").or_else(|| xml_field(body, "Code"))),
    )
}

impl Backend for S3Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        check_key(key, &self.name)?;
        match self.request("GET", key, "", &hex_sha256(b"")).call() {
            Ok(resp) => Ok(Some(resp.into_reader())),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(CacheError::Download {
                url: self.url(key),
                why: describe(e),
            }),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key, &self.name)?;
        match self.request("HEAD", key, "", &hex_sha256(b"")).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(CacheError::Download {
                url: self.url(key),
                why: describe(e),
            }),
        }
    }

    fn put(&self, key: &str, data: Upload<'_>, mime: &str) -> Result<()> {
        check_key(key, &self.name)?;
        let url = self.url(key);
        let r = match data {
            Upload::Bytes(b) => self
                .request("PUT", key, "", &hex_sha256(b))
                .set("Content-Type", mime)
                .send_bytes(b),
            Upload::File { path, size } => {
                if size > SINGLE_PUT_LIMIT || (self.multipart && size > self.part_size) {
                    return self.put_multipart(key, path, size, mime);
                }
                let f = std::fs::File::open(path).map_err(|e| CacheError::Upload {
                    url: url.clone(),
                    why: e.to_string(),
                })?;
                self.request("PUT", key, "", "UNSIGNED-PAYLOAD")
                    .set("Content-Type", mime)
                    .set("Content-Length", &size.to_string())
                    .send(f)
            }
        };
        r.map(|_| ()).map_err(|e| CacheError::Upload {
            url,
            why: describe(e),
        })
    }
}

/// The text of the first `<name>...</name>` in an XML answer.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_string())
}

fn hex_sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any size");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// S3's URI encoding: everything but `A-Za-z0-9-_.~` (and `/` in paths) as `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` for a Unix time.
fn amz_dates(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let amz = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    (date, amz)
}

/// The `Authorization` header of AWS Signature Version 4 for service `s3`. `headers` are
/// the signed headers, lower-case names.
#[allow(clippy::too_many_arguments)]
fn sign_v4(
    creds: &Credentials,
    region: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, String)],
    payload_sha256: &str,
    date: &str,
    amz_date: &str,
) -> String {
    let mut sorted: Vec<&(&str, String)> = headers.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut canonical_headers = String::new();
    for (k, v) in &sorted {
        let _ = writeln!(canonical_headers, "{k}:{}", v.trim());
    }
    let signed_headers: Vec<&str> = sorted.iter().map(|(k, _)| *k).collect();
    let signed_headers = signed_headers.join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET example of AWS's "Signature Version 4 signing process" for S3 (examplebucket,
    /// `/test.txt` with a Range header).
    #[test]
    fn aws_documented_example() {
        let creds = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let empty = hex_sha256(b"");
        let headers = vec![
            ("host", "examplebucket.s3.amazonaws.com".to_string()),
            ("range", "bytes=0-9".to_string()),
            ("x-amz-content-sha256", empty.clone()),
            ("x-amz-date", "20130524T000000Z".to_string()),
        ];
        let auth = sign_v4(
            &creds,
            "us-east-1",
            "GET",
            "/test.txt",
            "",
            &headers,
            &empty,
            "20130524",
            "20130524T000000Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(
            amz_dates(1_369_353_600),
            ("20130524".into(), "20130524T000000Z".into())
        );
        assert_eq!(amz_dates(951_782_400 + 3661).1, "20000229T010101Z");
        assert_eq!(uri_encode("nar/a b+c.nar.xz", true), "nar/a%20b%2Bc.nar.xz");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

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
        assert_eq!(
            xml_field("<a><UploadId>x-1</UploadId></a>", "UploadId").as_deref(),
            Some("x-1")
        );
    }
}
