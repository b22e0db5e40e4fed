//! AWS Signature Version 4 for S3 (the `Authorization` header), and the encodings it needs.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::credentials::Credentials;

pub(super) fn hex_sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(super) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any size");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// S3's URI encoding: everything but `A-Za-z0-9-_.~` (and `/` in paths) as `%XX`.
pub(super) fn uri_encode(s: &str, keep_slash: bool) -> String {
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
pub(super) fn amz_dates(secs: u64) -> (String, String) {
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
pub(super) fn sign_v4(
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
}
