//! The delivery signature: `sha256=` and the hex HMAC-SHA256, keyed with the shared
//! secret, of `"<timestamp>.<body>"`. Binding the timestamp into the MAC lets a receiver
//! refuse replays of an old delivery; [`verify`] is the reference receiver check.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::WebhookSecret;

/// The prefix of the signature header's value, naming the algorithm.
pub const SCHEME: &str = "sha256=";

/// Why a receiver should refuse a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("timestamp header is not a number of seconds: {0:?}")]
    BadTimestamp(String),
    #[error("timestamp is {age_secs} s away from now, more than the {tolerance_secs} s allowed")]
    Stale { age_secs: i64, tolerance_secs: i64 },
    #[error("signature header is not `sha256=` and 64 hex digits")]
    BadSignature,
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Bramble-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    format!("{SCHEME}{}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Checks a delivery as a receiver should: the timestamp is within `tolerance_secs` of
/// `now_secs`, and the signature matches (compared in constant time).
pub fn verify(
    secret: &WebhookSecret,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(timestamp.chars().take(32).collect()))?;
    let age_secs = now_secs.saturating_sub(ts).saturating_abs();
    if age_secs > tolerance_secs {
        return Err(VerifyError::Stale { age_secs, tolerance_secs });
    }
    let hex_part = signature.strip_prefix(SCHEME).ok_or(VerifyError::BadSignature)?;
    let tag = hex::decode(hex_part).map_err(|_| VerifyError::BadSignature)?;
    if tag.len() != 32 {
        return Err(VerifyError::BadSignature);
    }
    mac(secret, ts, body).verify_slice(&tag).map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("0123456789abcdef0123")
    }

    #[test]
    fn the_mac_is_plain_hmac_sha256_of_timestamp_dot_body() {
        // The primitive is HMAC-SHA256 as in RFC 4231 (test case 2), and `sign` is
        // that primitive over "<timestamp>.<body>", nothing more.
        let key = WebhookSecret::new("Jefe");
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"1700000000.{}");
        assert_eq!(
            sign(&key, 1_700_000_000, b"{}"),
            format!("sha256={}", hex::encode(m.finalize().into_bytes()))
        );
    }

    #[test]
    fn a_fresh_signed_delivery_verifies() {
        let body = br#"{"event":{"id":1}}"#;
        let sig = sign(&secret(), 1_700_000_000, body);
        assert_eq!(verify(&secret(), "1700000000", body, &sig, 1_700_000_100, 300), Ok(()));
    }

    #[test]
    fn tampering_staleness_and_garbage_are_refused() {
        let body = br#"{"event":{"id":1}}"#;
        let sig = sign(&secret(), 1_700_000_000, body);
        let other = WebhookSecret::new("another-secret-of-16+");
        let cases: [(&WebhookSecret, &str, &[u8], &str, VerifyError); 6] = [
            (&secret(), "1700000000", b"{\"event\":{\"id\":2}}", &sig, VerifyError::Mismatch),
            (&other, "1700000000", body, &sig, VerifyError::Mismatch),
            (&secret(), "1700000001", body, &sig, VerifyError::Mismatch),
            (
                &secret(),
                "1699999000",
                body,
                &sig,
                VerifyError::Stale { age_secs: 1000, tolerance_secs: 300 },
            ),
            (&secret(), "soon", body, &sig, VerifyError::BadTimestamp("soon".into())),
            (&secret(), "1700000000", body, "sha256=zz", VerifyError::BadSignature),
        ];
        for (key, ts, b, s, want) in cases {
            assert_eq!(verify(key, ts, b, s, 1_700_000_000, 300), Err(want));
        }
    }
}
