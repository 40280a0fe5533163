//! The `[webhooks]` section of the controller's TOML file: [`RawWebhooks`] as written,
//! [`WebhookConfig`] once checked. Errors name the file and the key, never the secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::ConfigError;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The section as written. Exactly one of `secret` and `secret_file` must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    /// The control panel's endpoint, `https://host[:port]/path` (or `http://`).
    pub url: String,
    pub secret: Option<WebhookSecret>,
    /// A file holding the secret (surrounding whitespace and the final newline ignored).
    pub secret_file: Option<PathBuf>,
    /// Per-request timeout; default 10000.
    pub timeout_ms: Option<u64>,
    /// Tries per event before it is recorded as `webhook.failed`; default 5.
    pub max_attempts: Option<u32>,
    /// The pause after the first failure, doubling after each further one; default 1000.
    pub first_backoff_ms: Option<u64>,
    /// Which event kinds to send: exact names, `prefix.*`, or `*`; default `["job.*"]`.
    pub kinds: Option<Vec<String>>,
    /// A PEM CA bundle to verify an `https://` endpoint against instead of the system's
    /// roots.
    pub ca_file: Option<PathBuf>,
}

/// The checked section.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    pub secret: WebhookSecret,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub kinds: KindFilter,
    /// Whom an `https://` endpoint must be certified by (`ca_file`, else the system).
    pub tls: crate::tls::ClientTls,
    /// How often the event log is read when nobody nudges; not in the file.
    pub poll_interval: Duration,
    /// How long a hole in event ids may be waited on before it is passed (see
    /// [`super::policy::may_pass`]); not in the file.
    pub gap_grace: Duration,
}

impl WebhookConfig {
    /// Checks a parsed `[webhooks]` section. `origin` names the file in errors.
    pub fn from_raw(raw: RawWebhooks, origin: &str) -> Result<WebhookConfig, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let url = check_url(&raw.url).map_err(|m| invalid("webhooks.url", m))?;
        let secret = match (raw.secret, raw.secret_file) {
            (Some(s), None) => s,
            (None, Some(path)) => {
                read_secret_file(&path).map_err(|m| invalid("webhooks.secret_file", m))?
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "webhooks.secret",
                    "and `secret_file` are both set; give one".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "webhooks.secret",
                    "is missing: set `secret` or `secret_file`".into(),
                ));
            }
        };
        if secret.len() < MIN_SECRET_BYTES {
            return Err(invalid(
                "webhooks.secret",
                format!("must be at least {MIN_SECRET_BYTES} bytes, got {}", secret.len()),
            ));
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(10_000);
        if !(1..=300_000).contains(&timeout_ms) {
            return Err(invalid(
                "webhooks.timeout_ms",
                format!("must be 1-300000, got {timeout_ms}"),
            ));
        }
        let max_attempts = raw.max_attempts.unwrap_or(5);
        if !(1..=100).contains(&max_attempts) {
            return Err(invalid(
                "webhooks.max_attempts",
                format!("must be 1-100, got {max_attempts}"),
            ));
        }
        let backoff_ms = raw.first_backoff_ms.unwrap_or(1_000);
        if backoff_ms > 600_000 {
            return Err(invalid(
                "webhooks.first_backoff_ms",
                format!("must be at most 600000, got {backoff_ms}"),
            ));
        }
        let kinds = match raw.kinds {
            Some(list) => KindFilter::parse(&list).map_err(|m| invalid("webhooks.kinds", m))?,
            None => KindFilter::default(),
        };
        if let Some(ca) = &raw.ca_file {
            crate::tls::pem::roots(ca).map_err(|e| invalid("webhooks.ca_file", e.to_string()))?;
        }
        Ok(WebhookConfig {
            url,
            secret,
            timeout: Duration::from_millis(timeout_ms),
            max_attempts,
            first_backoff: Duration::from_millis(backoff_ms),
            kinds,
            tls: crate::tls::ClientTls { ca_file: raw.ca_file, identity: None },
            poll_interval: Duration::from_millis(500),
            gap_grace: Duration::from_secs(10),
        })
    }

    /// The endpoint as logs and audit events show it: scheme, host, port and path.
    pub fn endpoint(&self) -> String {
        let u = &self.url;
        format!(
            "{}://{}:{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0),
            u.path()
        )
    }
}

fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("must be an http(s) URL, got scheme {other:?}")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user or password (the signature authenticates the controller)".into(),
        );
    }
    Ok(url)
}

fn read_secret_file(path: &Path) -> Result<WebhookSecret, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = bytes.trim_ascii();
    Ok(WebhookSecret::new(trimmed.to_vec()))
}

/// The shared HMAC secret. It prints as `<redacted>` and is read only for signing.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(bytes.into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key itself; only the signature module calls this.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| WebhookSecret(s.into_bytes()))
    }
}

/// Which event kinds are sent. `webhook.*` never is, whatever the patterns say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindFilter(Vec<KindPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum KindPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Default for KindFilter {
    /// Every job event (`job.created`, `job.started`, `job.step`, `job.succeeded`, ...)
    /// and `pi.replaced` (a Pi's board was replaced: its MAC and serial changed).
    fn default() -> Self {
        KindFilter(vec![
            KindPattern::Prefix("job.".into()),
            KindPattern::Exact("pi.replaced".into()),
        ])
    }
}

impl KindFilter {
    /// Parses `*`, `prefix.*` and exact kinds; a `*` anywhere else is refused.
    pub fn parse(patterns: &[String]) -> Result<KindFilter, String> {
        if patterns.is_empty() {
            return Err("is empty; leave it out to send job events and pi.replaced".into());
        }
        patterns
            .iter()
            .map(|p| match p.as_str() {
                "*" => Ok(KindPattern::Any),
                "" => Err("contains an empty kind".to_string()),
                _ if p.ends_with(".*") && !p[..p.len() - 1].contains('*') => {
                    Ok(KindPattern::Prefix(p[..p.len() - 1].to_string()))
                }
                _ if p.contains('*') => {
                    Err(format!("{p:?}: `*` may only stand alone or end a pattern as `.*`"))
                }
                _ => Ok(KindPattern::Exact(p.clone())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(KindFilter)
    }

    pub fn matches(&self, kind: &str) -> bool {
        if kind.starts_with("webhook.") {
            return false;
        }
        self.0.iter().any(|p| match p {
            KindPattern::Any => true,
            KindPattern::Prefix(prefix) => kind.starts_with(prefix.as_str()),
            KindPattern::Exact(exact) => kind == exact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "correct-horse-battery-staple";

    fn parse(body: &str) -> Result<WebhookConfig, ConfigError> {
        let raw: RawWebhooks = toml::from_str(body)
            .map_err(|e| ConfigError::Parse { path: "t.toml".into(), message: e.to_string() })?;
        WebhookConfig::from_raw(raw, "t.toml")
    }

    #[test]
    fn defaults_fill_in_around_url_and_secret() {
        let c = parse(&format!("url = \"http://panel.example:8000/hooks\"\nsecret = \"{SECRET}\""))
            .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!((c.max_attempts, c.first_backoff), (5, Duration::from_secs(1)));
        assert!(
            c.kinds.matches("job.created")
                && c.kinds.matches("job.step")
                && c.kinds.matches("pi.replaced")
                && !c.kinds.matches("pi.hardware_flagged")
                && !c.kinds.matches("dhcp.offer")
        );
        assert_eq!(c.endpoint(), "http://panel.example:8000/hooks");
    }

    #[test]
    fn bad_values_name_the_file_and_key() {
        let s = format!("secret = \"{SECRET}\"");
        let cases = [
            (format!("url = \"ftp://x/\"\n{s}"), "`webhooks.url`"),
            (format!("url = \"not a url\"\n{s}"), "`webhooks.url`"),
            (
                format!("url = \"http://x/\"\n{s}\nca_file = \"/nonexistent/ca.pem\""),
                "`webhooks.ca_file`",
            ),
            (format!("url = \"http://me:pw@x/\"\n{s}"), "`webhooks.url`"),
            ("url = \"http://x/\"\nsecret = \"short\"".into(), "at least 16 bytes"),
            ("url = \"http://x/\"".into(), "`webhooks.secret` is missing"),
            (format!("url = \"http://x/\"\n{s}\nsecret_file = \"/x\""), "both set"),
            (
                "url = \"http://x/\"\nsecret_file = \"/nonexistent/bramble-secret\"".into(),
                "`webhooks.secret_file`",
            ),
            (format!("url = \"http://x/\"\n{s}\ntimeout_ms = 0"), "`webhooks.timeout_ms`"),
            (format!("url = \"http://x/\"\n{s}\nmax_attempts = 0"), "`webhooks.max_attempts`"),
            (format!("url = \"http://x/\"\n{s}\nkinds = [\"job.*.x\"]"), "`webhooks.kinds`"),
            (format!("url = \"http://x/\"\n{s}\nkinds = []"), "`webhooks.kinds`"),
            (format!("url = \"http://x/\"\n{s}\nretries = 3"), "retries"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("t.toml"), "{text:?}: {err}");
            assert!(!err.contains(SECRET), "secret leaked into {err}");
        }
    }

    #[test]
    fn https_endpoints_are_accepted_with_the_system_roots_or_a_ca_file() {
        let c = parse(&format!("url = \"https://panel.example/hooks\"\nsecret = \"{SECRET}\""))
            .unwrap();
        assert_eq!(c.endpoint(), "https://panel.example:443/hooks");
        assert_eq!(c.tls, crate::tls::ClientTls::default(), "the system's roots");
        let pki = crate::tls::testpki::TestPki::new();
        let c = parse(&format!(
            "url = \"https://127.0.0.1:8443/hooks\"\nsecret = \"{SECRET}\"\nca_file = \"{}\"",
            pki.ca_cert.display()
        ))
        .unwrap();
        assert_eq!(c.tls.ca_file.as_ref(), Some(&pki.ca_cert));
        // A file that is no CA bundle is named at load, not at the first delivery.
        let err = parse(&format!(
            "url = \"https://x/\"\nsecret = \"{SECRET}\"\nca_file = \"{}\"",
            pki.server_key.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`webhooks.ca_file`") && err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn the_secret_never_prints() {
        let c = parse(&format!("url = \"http://x/\"\nsecret = \"{SECRET}\"")).unwrap();
        let raw: RawWebhooks =
            toml::from_str(&format!("url = \"http://x/\"\nsecret = \"{SECRET}\"")).unwrap();
        let shown = format!("{c:?} {raw:?} {:#?}", c.secret);
        assert!(!shown.contains(SECRET) && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let c =
            parse(&format!("url = \"http://x/\"\nsecret_file = \"{}\"", path.display())).unwrap();
        assert_eq!(c.secret, WebhookSecret::new(SECRET));
    }

    #[test]
    fn kind_patterns() {
        let f = KindFilter::parse(&["pi.registered".into(), "job.*".into()]).unwrap();
        assert!(f.matches("pi.registered") && f.matches("job.failed"));
        assert!(!f.matches("pi.replaced") && !f.matches("jobs.x"));
        let all = KindFilter::parse(&["*".into()]).unwrap();
        assert!(all.matches("dhcp.ack"));
        assert!(!all.matches("webhook.failed"), "the notifier never reports on itself");
    }
}
