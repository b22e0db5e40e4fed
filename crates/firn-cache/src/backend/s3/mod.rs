//! `s3://BUCKET?region=&endpoint=&scheme=&profile=`: a binary cache in an S3 bucket (AWS, or
//! any S3-compatible server such as Garage, MinIO or s3s-fs), spoken over plain HTTP with
//! AWS Signature Version 4.
//!
//! As in CppNix (whose aws-sdk client uses virtual addressing exactly when no `endpoint` is
//! given): with an `endpoint` the bucket is addressed path-style
//! (`<scheme>://<endpoint>/<bucket>/<key>`; the scheme is `scheme=`, else the endpoint's own
//! `http://`/`https://`, else `https`); without one, virtual-hosted-style on AWS
//! (`https://<bucket>.s3.<region>.amazonaws.com/<key>`, the global `s3.amazonaws.com` for
//! `us-east-1` and `.amazonaws.com.cn` in China, as aws-sdk-cpp), except that a bucket name
//! that cannot be a DNS label (dots, capitals, underscores) goes path-style to the same
//! host. The `Host` header, and so the signature (`sigv4.rs`), follows: the bucket is in the
//! host or in the path. `region` defaults to `us-east-1`.
//!
//! Credentials (`credentials.rs`) come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN`), else from `~/.aws/credentials` (profile `profile=`, `AWS_PROFILE`
//! or `default`). Large NARs go up as multipart uploads (`multipart-upload=true`, parts of
//! `buffer-size` bytes, and always above 4 GiB).

// ureq's error carries the response; it is passed straight on, never stored.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod credentials;
mod sigv4;

pub use credentials::Credentials;
use sigv4::{amz_dates, hex_sha256, sign_v4, uri_encode};

use super::{check_key, Backend, Upload};
use crate::uri::CacheUri;
use crate::{CacheError, Result};

pub struct S3Backend {
    name: String,
    at: Addressing,
    region: String,
    /// `None`: anonymous (unsigned) requests.
    creds: Option<Credentials>,
    agent: ureq::Agent,
    multipart: bool,
    part_size: u64,
}

/// Where a bucket's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addressing {
    /// `scheme://host[:port]`.
    pub origin: String,
    /// The `Host` header (signed): `host[:port]`, without the scheme's default port.
    pub host: String,
    /// Path prefix of every key: `/bucket` path-style, empty virtual-hosted.
    pub prefix: String,
}

/// AWS's S3 endpoint for a region, as aws-sdk-cpp computes it.
fn aws_endpoint(region: &str) -> String {
    match region {
        "us-east-1" => "s3.amazonaws.com".to_string(),
        r if r.starts_with("cn-") => format!("s3.{r}.amazonaws.com.cn"),
        r => format!("s3.{r}.amazonaws.com"),
    }
}

/// Whether a bucket name can be the first label of a host name (lower-case letters, digits
/// and inner dashes; no dots, which TLS wildcard certificates do not cover).
fn dns_compatible(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// How requests for `bucket` are addressed, from the URI's `region`, `scheme` and `endpoint`.
pub fn addressing(
    bucket: &str,
    region: &str,
    scheme: Option<&str>,
    endpoint: Option<&str>,
) -> std::result::Result<Addressing, String> {
    let endpoint = endpoint.filter(|e| !e.is_empty());
    let (ep_scheme, ep) = match endpoint {
        Some(e) => match e.split_once("://") {
            Some((sch, rest)) => (Some(sch), Some(rest.trim_end_matches('/'))),
            None => (None, Some(e.trim_end_matches('/'))),
        },
        None => (None, None),
    };
    let scheme = scheme.or(ep_scheme).unwrap_or("https");
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme '{scheme}'"));
    }
    let (host, prefix) = match ep {
        Some(ep) => {
            if ep.is_empty() || ep.contains(['/', '?', '#', '@']) {
                return Err(format!(
                    "'endpoint' must be a host with an optional port, not '{}'",
                    endpoint.unwrap_or_default()
                ));
            }
            (ep.to_string(), format!("/{}", uri_encode(bucket, false)))
        }
        None if dns_compatible(bucket) => {
            (format!("{bucket}.{}", aws_endpoint(region)), String::new())
        }
        None => (
            aws_endpoint(region),
            format!("/{}", uri_encode(bucket, false)),
        ),
    };
    // What an HTTP client puts in `Host`: the port only when it is not the default.
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host).to_string();
    Ok(Addressing {
        origin: format!("{scheme}://{host}"),
        host,
        prefix,
    })
}

/// Parts of a multipart upload (S3 allows at most 10,000; parts are at least 5 MiB).
const MAX_PARTS: u64 = 10_000;
const MIN_PART: u64 = 5 << 20;
/// Above this, a single PUT is refused by S3: multipart is mandatory.
const SINGLE_PUT_LIMIT: u64 = 4 << 30;

impl S3Backend {
    pub fn new(bucket: &str, uri: &CacheUri, connections: usize) -> Result<S3Backend> {
        let region = uri.param("region").unwrap_or("us-east-1").to_string();
        let at = addressing(bucket, &region, uri.param("scheme"), uri.param("endpoint")).map_err(
            |why| CacheError::BadUri {
                uri: uri.base(),
                why,
            },
        )?;
        let part_size = match uri.param("buffer-size") {
            Some(v) => v.parse::<u64>().map_err(|_| CacheError::BadUri {
                uri: uri.base(),
                why: format!("'buffer-size' must be a number of bytes, not '{v}'"),
            })?,
            None => MIN_PART,
        }
        .max(MIN_PART);
        let agent = agent(connections, &at.origin)
            .map_err(|e| CacheError::Tls {
                cache: uri.base(),
                source: e,
            })?
            .build();
        Ok(S3Backend {
            name: uri.base(),
            at,
            region,
            creds: Credentials::load(uri.param("profile"))?,
            agent,
            multipart: uri.flag("multipart-upload", false),
            part_size,
        })
    }

    /// The URL and headers of a request for `key` (`query` already in canonical order:
    /// sorted, encoded) made at `now` (Unix seconds): signed when there are credentials.
    fn prepare(
        &self,
        method: &str,
        key: &str,
        query: &str,
        payload_sha256: &str,
        now: u64,
    ) -> (String, Vec<(&'static str, String)>) {
        let path = format!("{}/{}", self.at.prefix, uri_encode(key, true));
        let url = if query.is_empty() {
            format!("{}{path}", self.at.origin)
        } else {
            format!("{}{path}?{query}", self.at.origin)
        };
        let Some(creds) = &self.creds else {
            return (url, Vec::new());
        };
        let (date, amz_date) = amz_dates(now);
        let mut headers: Vec<(&'static str, String)> = vec![
            ("host", self.at.host.clone()),
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
        // The HTTP client sends `Host` itself (the same value).
        headers.retain(|(k, _)| *k != "host");
        headers.push(("authorization", authorization));
        (url, headers)
    }

    /// A request for `key`, signed now.
    fn request(&self, method: &str, key: &str, query: &str, payload_sha256: &str) -> ureq::Request {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (url, headers) = self.prepare(method, key, query, payload_sha256, now);
        let mut req = self.agent.request(method, &url);
        for (k, v) in &headers {
            req = req.set(k, v);
        }
        req
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.name)
    }

    /// [`Backend::list_top`], asking for at most `page` keys at a time (the server's default,
    /// 1000 on S3, without).
    fn list_top_in_pages(&self, page: Option<u32>) -> Result<Vec<String>> {
        let url = format!("{}/?list-type=2", self.name);
        let fail = |why: String| CacheError::Download {
            url: url.clone(),
            why,
        };
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Parameters in canonical (sorted) order.
            let mut query = String::new();
            if let Some(t) = &token {
                query = format!("continuation-token={}&", uri_encode(t, false));
            }
            query.push_str("delimiter=%2F&list-type=2");
            if let Some(n) = page {
                query.push_str(&format!("&max-keys={n}"));
            }
            let body = self
                .request("GET", "", &query, &hex_sha256(b""))
                .call()
                .map_err(|e| fail(describe(e)))?
                .into_string()
                .map_err(|e| fail(e.to_string()))?;
            keys.extend(
                xml_fields(&body, "Key")
                    .into_iter()
                    .map(|k| xml_unescape(&k)),
            );
            let next = xml_field(&body, "NextContinuationToken").map(|t| xml_unescape(&t));
            let truncated = xml_field(&body, "IsTruncated").is_some_and(|t| t == "true");
            match next {
                Some(t) if truncated && token.as_ref() != Some(&t) => token = Some(t),
                _ if truncated => {
                    return Err(fail(
                        "the listing is truncated but gives no new continuation token".into(),
                    ))
                }
                _ => return Ok(keys),
            }
        }
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

/// The HTTP client for the endpoint `origin`: a pool of `connections` connections, trusting
/// the CA bundle CppNix would.
fn agent(
    connections: usize,
    origin: &str,
) -> std::result::Result<ureq::AgentBuilder, firn_http::TlsError> {
    Ok(firn_http::agent_builder(origin)?
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(300))
        .max_idle_connections(connections.max(1))
        .max_idle_connections_per_host(connections.max(1)))
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

    /// The bucket's top-level keys, a page of ListObjectsV2 at a time (`delimiter=/`, so
    /// `nar/` and the like come back as one prefix each, as CppNix's listing asks).
    fn list_top(&self) -> Result<Option<Vec<String>>> {
        self.list_top_in_pages(None).map(Some)
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
    xml_fields(xml, name).into_iter().next()
}

/// The texts of every `<name>...</name>` in an XML answer, in order.
fn xml_fields(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    found
}

/// XML text with its five predefined entities (all S3 escapes in keys) replaced.
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_creds() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// A backend for `uri` with the given credentials (none from the environment).
    fn backend(uri: &str, creds: Option<Credentials>) -> S3Backend {
        let u = CacheUri::parse(uri).unwrap();
        let crate::uri::Location::S3 { bucket } = &u.location else {
            panic!("not an S3 URI: {uri}");
        };
        let region = u.param("region").unwrap_or("us-east-1").to_string();
        S3Backend {
            name: u.base(),
            at: addressing(bucket, &region, u.param("scheme"), u.param("endpoint")).unwrap(),
            region,
            creds,
            agent: agent(1, "http://").expect("an agent").build(),
            multipart: false,
            part_size: MIN_PART,
        }
    }

    #[test]
    fn addressing_styles() {
        let at = |b: &str, region: &str, scheme: Option<&str>, ep: Option<&str>| {
            let a = addressing(b, region, scheme, ep).unwrap();
            (a.origin, a.host, a.prefix)
        };
        let own = |t: (&str, &str, &str)| (t.0.to_string(), t.1.to_string(), t.2.to_string());
        // No endpoint: virtual-hosted on AWS (the global endpoint for us-east-1).
        assert_eq!(
            at("my-cache", "eu-west-1", None, None),
            own((
                "https://my-cache.s3.eu-west-1.amazonaws.com",
                "my-cache.s3.eu-west-1.amazonaws.com",
                ""
            ))
        );
        assert_eq!(
            at("my-cache", "us-east-1", None, None),
            own((
                "https://my-cache.s3.amazonaws.com",
                "my-cache.s3.amazonaws.com",
                ""
            ))
        );
        assert_eq!(
            at("cn-cache", "cn-north-1", None, Some("")).1,
            "cn-cache.s3.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            at("my-cache", "eu-west-1", Some("http"), None).0,
            "http://my-cache.s3.eu-west-1.amazonaws.com"
        );
        // A name that is no DNS label goes path-style to the region's endpoint.
        for b in ["my.cache", "My-Cache", "my_cache", "-cache", "ab"] {
            assert_eq!(
                at(b, "eu-west-1", None, None),
                own((
                    "https://s3.eu-west-1.amazonaws.com",
                    "s3.eu-west-1.amazonaws.com",
                    &format!("/{}", uri_encode(b, false))
                )),
                "{b}"
            );
        }
        // An endpoint: path-style, https unless said otherwise (by `scheme` or the endpoint).
        assert_eq!(
            at("cache", "eu-test-1", None, Some("minio.local:9000")),
            own(("https://minio.local:9000", "minio.local:9000", "/cache"))
        );
        assert_eq!(
            at(
                "cache",
                "eu-test-1",
                Some("https"),
                Some("minio.local:9000/")
            )
            .0,
            "https://minio.local:9000"
        );
        assert_eq!(
            at("cache", "eu-test-1", Some("http"), Some("127.0.0.1:9000")),
            own(("http://127.0.0.1:9000", "127.0.0.1:9000", "/cache"))
        );
        assert_eq!(
            at("cache", "eu-test-1", None, Some("http://127.0.0.1:9000")).0,
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            at(
                "cache",
                "eu-test-1",
                Some("https"),
                Some("http://127.0.0.1:9000")
            )
            .0,
            "https://127.0.0.1:9000"
        );
        // The default port is not part of `Host`.
        assert_eq!(
            at("cache", "r", None, Some("https://s3.example.org:443")),
            own(("https://s3.example.org", "s3.example.org", "/cache"))
        );
        assert!(addressing("cache", "r", Some("ftp"), None).is_err());
        assert!(addressing("cache", "r", None, Some("host/path")).is_err());
    }

    /// Requests as built and signed for both styles. The expected signatures are AWS's
    /// published examples (GET Bucket Lifecycle and List Objects on `examplebucket`) and, for
    /// the others, what botocore's `S3SigV4Auth` gives for the same request and time.
    #[test]
    fn signed_requests_in_both_styles() {
        let empty = hex_sha256(b"");
        let t = 1_369_353_600; // 2013-05-24T00:00:00Z
        let auth = |b: &S3Backend, method: &str, key: &str, query: &str, payload: &str| {
            let (url, headers) = b.prepare(method, key, query, payload, t);
            let get = |k: &str| {
                headers
                    .iter()
                    .find(|(h, _)| *h == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            assert_eq!(get("x-amz-date"), "20130524T000000Z");
            assert_eq!(get("x-amz-content-sha256"), payload);
            let a = get("authorization");
            let sig = a
                .rsplit("Signature=")
                .next()
                .unwrap_or_default()
                .to_string();
            (url, a, sig)
        };
        let example = backend("s3://examplebucket", Some(example_creds()));
        let (url, a, sig) = auth(&example, "GET", "", "lifecycle=", &empty);
        assert_eq!(url, "https://examplebucket.s3.amazonaws.com/?lifecycle=");
        assert_eq!(
            a,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let (_, _, sig2) = auth(&example, "GET", "", "max-keys=2&prefix=J", &empty);
        assert_eq!(
            sig2,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        assert_ne!(sig, sig2);

        // Virtual-hosted: the bucket is in `Host`, the path is the key.
        let vhost = backend("s3://my-cache?region=eu-west-1", Some(example_creds()));
        let (url, a, sig) = auth(&vhost, "GET", "nar/0abc.nar.xz", "", &empty);
        assert_eq!(
            url,
            "https://my-cache.s3.eu-west-1.amazonaws.com/nar/0abc.nar.xz"
        );
        assert!(a.contains("/20130524/eu-west-1/s3/aws4_request"), "{a}");
        assert_eq!(
            sig,
            "92174316bd788ca1ccbed8a29bdc36bf7941621ac95505ca8e3f8c65fe713997"
        );
        // Path-style on AWS (a dotted bucket): the bucket is in the path.
        let dotted = backend("s3://my.cache?region=eu-west-1", Some(example_creds()));
        let (url, _, sig) = auth(&dotted, "GET", "nix-cache-info", "", &empty);
        assert_eq!(
            url,
            "https://s3.eu-west-1.amazonaws.com/my.cache/nix-cache-info"
        );
        assert_eq!(
            sig,
            "f5bd80a7796e31b5bc0b39b8639834f681d57a47f181932e8308eff20d232745"
        );
        // Path-style with an endpoint (its port is part of `Host`), a signed payload.
        let ep = backend(
            "s3://cache?endpoint=127.0.0.1:9000&scheme=http&region=eu-test-1",
            Some(example_creds()),
        );
        let body_hash = hex_sha256(b"StorePath: x\n");
        let (url, _, sig) = auth(&ep, "PUT", "abc.narinfo", "", &body_hash);
        assert_eq!(url, "http://127.0.0.1:9000/cache/abc.narinfo");
        assert_eq!(
            sig,
            "303e484d0ce593ee23b111b65c01861088780c6db993f30a1014cf523b8477b2"
        );
        // A session token is sent and signed.
        let mut creds = example_creds();
        creds.session_token = Some("SESSIONTOKEN".into());
        let tok = backend("s3://my-cache?region=eu-west-1", Some(creds));
        let (url, headers) = tok.prepare("HEAD", "abc.narinfo", "", &empty, t);
        assert_eq!(
            url,
            "https://my-cache.s3.eu-west-1.amazonaws.com/abc.narinfo"
        );
        assert!(headers.contains(&("x-amz-security-token", "SESSIONTOKEN".to_string())));
        let a = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert!(a.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=0529e1156e50c2247bc1fa2be2cc76137873603fffa23bedf5ae342a1662f525"), "{a}");
        // Anonymous: no signature at all.
        let anon = backend("s3://my-cache?region=eu-west-1", None);
        let (url, headers) = anon.prepare("GET", "x.narinfo", "", &empty, t);
        assert_eq!(url, "https://my-cache.s3.eu-west-1.amazonaws.com/x.narinfo");
        assert!(headers.is_empty());
    }

    /// Both styles against a real S3 server: s3s-fs answers virtual-hosted-style requests
    /// for its `--domain`, and checks every signature. The client's resolver sends the AWS
    /// host names to it (AWS itself cannot be reached from the test machines).
    #[test]
    fn both_styles_against_s3s_fs() {
        let bin = [
            std::env::var_os("S3S_FS").map(std::path::PathBuf::from),
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo/bin/s3s-fs")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .expect("this test needs s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary --locked)");
        let tmp = tempfile::tempdir().unwrap();
        for b in ["vhost-cache", "path.cache"] {
            std::fs::create_dir(tmp.path().join(b)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _server = Kill(
            std::process::Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", "AK", "--secret-key", "SK"])
                .args(["--domain", "s3.eu-test-1.amazonaws.com"])
                .arg(tmp.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let creds = |secret: &str| {
            Some(Credentials {
                access_key: "AK".into(),
                secret_key: secret.into(),
                session_token: None,
            })
        };
        let local = |uri: &str, secret: &str| {
            let mut b = backend(uri, creds(secret));
            b.agent = agent(2, "http://")
                .unwrap()
                .resolver(move |netloc: &str| {
                    assert!(netloc.ends_with(".amazonaws.com:80"), "{netloc}");
                    Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
                })
                .build();
            b
        };
        for (uri, dir) in [
            (
                "s3://vhost-cache?region=eu-test-1&scheme=http",
                "vhost-cache",
            ),
            ("s3://path.cache?region=eu-test-1&scheme=http", "path.cache"),
        ] {
            let b = local(uri, "SK");
            let text = b"StoreDir: /nix/store\n";
            b.put(
                "nix-cache-info",
                Upload::Bytes(text),
                "text/x-nix-cache-info",
            )
            .unwrap();
            assert_eq!(
                std::fs::read(tmp.path().join(dir).join("nix-cache-info")).unwrap(),
                text
            );
            assert_eq!(b.get_bytes("nix-cache-info").unwrap().unwrap(), text);
            assert!(b.exists("nix-cache-info").unwrap());
            assert!(!b.exists("nar/missing.nar").unwrap());
            // The listing has the top-level keys, not those under `nar/`.
            b.put("nar/x.nar", Upload::Bytes(b"x"), "application/x-nix-nar")
                .unwrap();
            let mut top = b.list_top().unwrap().unwrap();
            top.sort();
            assert_eq!(top, ["nix-cache-info"]);
            // A page at a time.
            b.put("b.narinfo", Upload::Bytes(b"x"), "text/x-nix-narinfo")
                .unwrap();
            b.put("a.narinfo", Upload::Bytes(b"x"), "text/x-nix-narinfo")
                .unwrap();
            let mut top = b.list_top_in_pages(Some(1)).unwrap();
            top.sort();
            assert_eq!(top, ["a.narinfo", "b.narinfo", "nix-cache-info"]);
            // A wrong secret makes a wrong signature, which the server refuses.
            let e = local(uri, "not-the-secret").get_bytes("nix-cache-info");
            assert!(
                matches!(&e, Err(CacheError::Download { why, .. }) if why.contains("403")),
                "{:?}",
                e.map(|_| ())
            );
        }
    }

    #[test]
    fn xml_answers() {
        assert_eq!(
            xml_field("<a><UploadId>x-1</UploadId></a>", "UploadId").as_deref(),
            Some("x-1")
        );
        let listing = "<ListBucketResult><IsTruncated>false</IsTruncated>\
            <Contents><Key>a.narinfo</Key><Size>1</Size></Contents>\
            <Contents><Key>b&amp;c</Key></Contents>\
            <CommonPrefixes><Prefix>nar/</Prefix></CommonPrefixes><Key>unclosed";
        let keys: Vec<String> = xml_fields(listing, "Key")
            .iter()
            .map(|k| xml_unescape(k))
            .collect();
        assert_eq!(keys, ["a.narinfo", "b&c"]);
        assert_eq!(xml_unescape("&amp;lt;"), "&lt;");
    }
}
