//! Input validation: small pure checks that return a message saying what is wrong.
//! Callers collect them as [`BadField`]s so one [`Invalid`] names every bad field; the API
//! turns that into its 422 problem (this module knows nothing of HTTP).

use bramble_netboot::hw::PiSerial;

/// One input field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    /// The field, as a JSON pointer-ish path (`ssh_keys[1]`) or a parameter name.
    pub field: String,
    pub message: String,
}

/// Input that failed validation: every bad field, in the order they were checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<BadField>);

pub const MODELS: [&str; 5] = ["3b", "3b+", "4b", "5", "unknown"];

/// Whether `image`, which boots `boots` (empty: not declared, not checked), can boot a Pi
/// of inventory model `model` (`unknown`: not checked); else the message saying so.
pub fn image_boots_model(image: &str, boots: &[String], model: &str) -> Result<(), String> {
    if boots.is_empty() || model == "unknown" || boots.iter().any(|m| m == model) {
        return Ok(());
    }
    Err(format!(
        "image {image:?} cannot boot this Pi: it is a model {model:?} and the image boots models {}",
        boots.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
    ))
}

/// Runs `check` on `value`, naming `field` in the error.
pub fn check(field: &str, value: &str, check: fn(&str) -> Result<(), String>) -> Vec<BadField> {
    match check(value) {
        Ok(()) => Vec::new(),
        Err(message) => vec![BadField { field: field.to_string(), message }],
    }
}

/// Like [`check`] for a check that needs more than one value.
pub fn check_with(field: &str, check: impl FnOnce() -> Result<(), String>) -> Vec<BadField> {
    match check() {
        Ok(()) => Vec::new(),
        Err(message) => vec![BadField { field: field.to_string(), message }],
    }
}

/// Like [`check`] for an optional value.
pub fn opt(
    errs: &mut Vec<BadField>,
    field: &str,
    value: Option<&str>,
    f: fn(&str) -> Result<(), String>,
) {
    if let Some(v) = value {
        errs.extend(check(field, v, f));
    }
}

/// `Ok` if nothing was wrong, else [`Invalid`] naming every field.
pub fn finish(errs: Vec<BadField>) -> Result<(), Invalid> {
    if errs.is_empty() { Ok(()) } else { Err(Invalid(errs)) }
}

/// Like [`opt`] for a check that also parses: the parsed value, when present and good.
pub fn opt_parse<T>(
    errs: &mut Vec<BadField>,
    field: &str,
    value: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(value?) {
        Ok(parsed) => Some(parsed),
        Err(message) => {
            errs.push(BadField { field: field.to_string(), message });
            None
        }
    }
}

/// A Pi serial: 8 lowercase hex digits.
pub fn serial(s: &str) -> Result<PiSerial, String> {
    PiSerial::parse_canonical(s).map_err(|_| format!("must be 8 lowercase hex digits, got {s:?}"))
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub fn mac(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 6
        && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!("must look like aa:bb:cc:dd:ee:ff, got {s:?}"))
    }
}

/// A name for shelves, switches, customers: 1-64 of `[A-Za-z0-9._-]`, starting with an
/// alphanumeric.
pub fn name(s: &str) -> Result<(), String> {
    let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_start
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, got {s:?}"
        ))
    }
}

pub fn customer_id(s: &str) -> Result<(), String> {
    name(s)
}

/// One OpenSSH public key line, as `bramble-images` will write it into authorized_keys:
/// a known type, base64 data whose embedded type matches, no options, one line.
pub fn ssh_public_key(s: &str) -> Result<(), String> {
    match bramble_images::keys::AuthorizedKey::parse(s) {
        Ok(_) => Ok(()),
        Err(bramble_images::ImagesError::InvalidInput { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_values() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI alice@laptop";
        type Check = fn(&str) -> Result<(), String>;
        let cases: &[(Check, &str, bool)] = &[
            (|s| serial(s).map(drop), "00000000", true),
            (|s| serial(s).map(drop), "1234abcd", true),
            (|s| serial(s).map(drop), "1234ABCD", false),
            (|s| serial(s).map(drop), "123", false),
            (mac, "b8:27:eb:12:34:56", true),
            (mac, "b8-27-eb-12-34-56", false),
            (name, "shelf-a1", true),
            (name, "-x", false),
            (name, "", false),
            (ssh_public_key, key, true),
            (ssh_public_key, "ssh-ed25519 not*base64", false),
            (ssh_public_key, "command=\"rm -rf /\" ssh-ed25519 AAAA", false),
            (ssh_public_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\nssh-rsa AAAA", false),
        ];
        for (f, v, ok) in cases {
            assert_eq!(f(v).is_ok(), *ok, "{v:?}: {:?}", f(v));
        }
        assert_eq!(serial("1234abcd"), Ok(PiSerial(0x1234abcd)));
    }

    #[test]
    fn model_checks_refuse_only_a_declared_mismatch() {
        let boots: Vec<String> = ["3b", "3b+", "4b"].map(String::from).to_vec();
        let err = image_boots_model("debian-bookworm-arm64", &boots, "5").expect_err("a Pi 5");
        assert!(err.contains("\"debian-bookworm-arm64\"") && err.contains("model \"5\""), "{err}");
        assert!(err.contains("\"3b\", \"3b+\", \"4b\""), "{err}");
        assert_eq!(image_boots_model("x", &boots, "4b"), Ok(()));
        assert_eq!(image_boots_model("x", &boots, "unknown"), Ok(()));
        assert_eq!(image_boots_model("x", &[], "5"), Ok(()));
    }
}
