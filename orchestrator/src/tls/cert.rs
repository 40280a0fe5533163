//! What a certificate file says: [`inspect`] reads its first certificate (subject,
//! issuer, serial, validity, names) and, given the key file, whether the two belong
//! together. `bramble doctor` and the expiry gauge read certificates through it.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::TlsError;

/// A certificate as an operator wants to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// RFC 4514, e.g. `CN=bramble.example`.
    pub subject: String,
    pub issuer: String,
    /// Lower-case hex, as `openssl x509 -serial` prints it (there in upper case).
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The subject alternative names: DNS names and IP addresses.
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// How many certificates the file holds (the server's own, then its chain).
    pub chain_len: usize,
    /// Whether the key file given to [`inspect`] holds this certificate's key; `None`
    /// when no key file was given.
    pub key_matches: Option<bool>,
}

impl CertSummary {
    /// `not_after` in seconds since the Unix epoch (the expiry gauge's value).
    pub fn not_after_unix(&self) -> i64 {
        unix_seconds(self.not_after)
    }

    /// How long until it expires, or `None` once it has.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.not_after.duration_since(now).ok()
    }

    /// Whether `now` lies inside the validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Reads the first certificate of the PEM file `cert` and, when `key` is given,
/// checks that the key in it is the certificate's. An unreadable or garbled file is
/// an error; a key of another certificate is `key_matches: Some(false)`.
pub fn inspect(cert: &Path, key: Option<&Path>) -> Result<CertSummary, TlsError> {
    let chain = super::pem::certs(cert)?;
    let parsed = Certificate::from_der(chain[0].as_ref())
        .map_err(|e| TlsError::Certificate { path: cert.to_path_buf(), message: e.to_string() })?;
    let tbs = &parsed.tbs_certificate;
    let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
    if let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() {
        for name in names {
            match name {
                GeneralName::DnsName(dns) => dns_names.push(dns.to_string()),
                GeneralName::IpAddress(bytes) => {
                    let b = bytes.as_bytes();
                    if let Ok(v4) = <[u8; 4]>::try_from(b) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let key_matches = match key {
        None => None,
        Some(key) => match super::pem::certified_key(cert, key) {
            Ok(_) => Some(true),
            Err(TlsError::KeyMismatch { .. }) => Some(false),
            Err(e) => return Err(e),
        },
    };
    Ok(CertSummary {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex::encode(tbs.serial_number.as_bytes()),
        not_before: tbs.validity.not_before.to_system_time(),
        not_after: tbs.validity.not_after.to_system_time(),
        dns_names,
        ip_addresses,
        chain_len: chain.len(),
        key_matches,
    })
}
