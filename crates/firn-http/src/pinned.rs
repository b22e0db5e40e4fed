//! A server whose own certificate is in the CA bundle is trusted by it, as curl does under
//! CppNix (OpenSSL's partial chains, which curl turns on, and GnuTLS, which Debian's CppNix
//! uses): users put a self-signed or otherwise unchained server certificate in
//! `NIX_SSL_CERT_FILE`. webpki only trusts certificates that chain to an anchor (and refuses a
//! self-signed `CA:TRUE` one as a server's), so [`BundleVerifier`] asks webpki first and, when
//! it refuses, accepts a certificate found byte for byte in the bundle if it names the server
//! and is within its dates. The handshake's signatures are always checked by webpki (the
//! server must hold the certificate's key).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// webpki's verification, or the server's very certificate found in the bundle.
#[derive(Debug)]
pub struct BundleVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    bundle: Vec<CertificateDer<'static>>,
}

impl BundleVerifier {
    pub fn new(webpki: Arc<WebPkiServerVerifier>, bundle: Vec<CertificateDer<'static>>) -> Self {
        BundleVerifier { webpki, bundle }
    }
}

impl ServerCertVerifier for BundleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !self
            .bundle
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        match validity(end_entity) {
            Some((from, to)) if (from..=to).contains(&now.as_secs()) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired,
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A certificate's `notBefore` and `notAfter` in Unix seconds.
pub fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    // [0] version (optional), serial number, signature algorithm, issuer, validity.
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (tag, from, rest) = element(validity)?;
    let from = time(tag, from)?;
    let (tag, to, _) = element(rest)?;
    Some((from, time(tag, to)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18) in
/// Unix seconds.
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |s: &[u8]| {
        s.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'))
    };
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(&digits[..2]);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (num(&digits[..4]), &digits[4..]),
        _ => return None,
    };
    let (month, day) = (num(&rest[..2]), num(&rest[2..4]));
    let (h, m, s) = (num(&rest[4..6]), num(&rest[6..8]), num(&rest[8..10]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn times() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"200101000000Z"), Some(1_577_836_800));
        assert_eq!(time(0x18, b"21251231235959Z"), Some(4_922_899_199));
        assert_eq!(time(0x18, b"20000229120000Z"), Some(951_825_600));
        for bad in [&b"2001010000Z"[..], b"200101000000", b"201301000000Z"] {
            assert_eq!(time(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(time(0x18, b"200101000000Z"), None);
    }

    #[test]
    fn the_test_certificate() {
        let pem = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../firn/tests/data/tls/server.pem"
        );
        let cert = CertificateDer::from_pem_file(pem).expect("the test certificate");
        assert_eq!(validity(&cert), Some((1_577_836_800, 4_922_899_199)));
        assert_eq!(validity(&cert[..cert.len() - 1]), None);
        assert_eq!(validity(b"\x30\x00"), None);
    }
}
