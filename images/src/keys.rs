//! SSH public keys: validation of customers' keys before they are written to a root's
//! authorized_keys (one key per line, a known type, a base64 blob whose embedded type
//! matches, an optional comment, and no options: no `command=`, `from=` ...), and the
//! OpenSSH SHA-256 fingerprint of a public key, as `ssh-keygen -l -E sha256` prints it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ImagesError, Result};

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One public key line taken apart and checked (the one parser of key lines here).
struct PublicKey<'a> {
    kind: &'a str,
    blob_text: &'a str,
    blob: Vec<u8>,
    comment: Option<&'a str>,
}

impl<'a> PublicKey<'a> {
    /// Checks one line; the error says why it was refused.
    fn parse(line: &'a str) -> Result<Self> {
        let bad = |reason: &str| ImagesError::InvalidInput {
            what: "SSH public key",
            value: line.chars().take(40).collect(),
            reason: reason.to_string(),
        };
        let line = line.trim();
        if line.contains(['\n', '\r', '\0']) {
            return Err(bad("must be a single line"));
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let kind = parts.next().unwrap_or_default();
        if !KEY_TYPES.contains(&kind) {
            return Err(bad("unknown key type (options before the key are not accepted)"));
        }
        let blob_text = parts.next().ok_or_else(|| bad("missing key data"))?;
        let blob = STANDARD.decode(blob_text).map_err(|_| bad("key data is not base64"))?;
        if embedded_type(&blob) != Some(kind.as_bytes()) {
            return Err(bad("key data does not match its type"));
        }
        let comment = parts.next().map(str::trim).filter(|c| !c.is_empty());
        Ok(PublicKey { kind, blob_text, blob, comment })
    }
}

/// A validated public key line, normalised to `type blob [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey(String);

impl AuthorizedKey {
    /// Validates one line; the error says why it was refused.
    pub fn parse(line: &str) -> Result<Self> {
        let PublicKey { kind, blob_text, comment, .. } = PublicKey::parse(line)?;
        Ok(AuthorizedKey(match comment {
            Some(c) => format!("{kind} {blob_text} {c}"),
            None => format!("{kind} {blob_text}"),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A public key's type (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa` ...) and its
/// fingerprint exactly as `ssh-keygen -l -E sha256` prints it: `SHA256:` and the unpadded
/// standard base64 of the SHA-256 of the key blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFingerprint {
    pub key_type: String,
    pub fingerprint: String,
}

impl KeyFingerprint {
    /// The fingerprint of one public key line (an `id_*.pub` or `ssh_host_*_key.pub`).
    pub fn of_line(line: &str) -> Result<Self> {
        let key = PublicKey::parse(line)?;
        let digest = Sha256::digest(&key.blob);
        Ok(KeyFingerprint {
            key_type: key.kind.to_string(),
            fingerprint: format!("SHA256:{}", STANDARD_NO_PAD.encode(digest)),
        })
    }
}

/// The first length-prefixed string of an SSH wire-format key blob.
fn embedded_type(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

/// Parses a whole authorized_keys text (blank lines and `#` comments skipped).
pub fn parse_authorized_keys(text: &str) -> Result<Vec<AuthorizedKey>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(AuthorizedKey::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0m1c0ZVTmlmN4xZAGIJFwx1V7F6XGaB2DxQ9t0Qy3 alice@laptop";

    #[test]
    fn accepts_real_keys_and_rejects_the_rest() {
        assert_eq!(AuthorizedKey::parse(ED).expect("valid").as_str(), ED);
        let cases = [
            ("", "unknown key type"),
            ("command=\"/bin/sh\" ssh-ed25519 AAAA", "unknown key type"),
            ("ssh-ed25519", "missing key data"),
            ("ssh-ed25519 !!!notbase64", "not base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHc0m1c0ZVTmlmN4xZAGIJFwx1V7F6XGaB2DxQ9t0Qy3",
                "does not match",
            ),
            ("ssh-ed25519 AAAA", "does not match"),
        ];
        for (line, why) in cases {
            let err = AuthorizedKey::parse(line).expect_err(line).to_string();
            assert!(err.contains(why), "{line}: {err}");
        }
        let keys = parse_authorized_keys(&format!("# mine\n\n{ED}\n")).expect("file");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn fingerprints_are_ssh_keygens() {
        // `ssh-keygen -l -E sha256 -f` of ED printed this (tests/host_keys.rs checks
        // freshly generated keys of every type against the real ssh-keygen).
        let fp = KeyFingerprint::of_line(&format!("{ED}\n")).expect("fingerprint");
        assert_eq!(fp.key_type, "ssh-ed25519");
        assert_eq!(fp.fingerprint, "SHA256:4IcwpTtJELlpR6mk6ShoSx97TJXicvLAatGCOrU39IM");
        assert!(KeyFingerprint::of_line("ssh-ed25519 AAAA").is_err(), "blob of another type");
    }
}
