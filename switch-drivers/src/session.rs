//! One SNMP session to one switch: credentials, bounded timeouts and retries, chunked
//! GETs, bulk walks, and ordered batched SETs, with every failure mapped to a
//! [`SwitchError`] naming the switch and the object.

use crate::error::SwitchError;
use crate::plan::{self, BatchLimits};
use crate::secret::Secret;
pub use crate::usm::{V3Auth, V3Priv};
use async_snmp::v3::ReportStatus;
use async_snmp::{Auth, Client, Oid, Retry, UdpHandle, UsmConfig, Value, VarBind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// SNMP credentials. Secrets are redacted in Debug output.
#[derive(Debug, Clone)]
pub enum Credentials {
    V2c {
        community: Secret,
    },
    /// USM authPriv: the user, its authentication and privacy protocols and passwords.
    V3 {
        user: String,
        auth: V3Auth,
        auth_pass: Secret,
        privacy: V3Priv,
        priv_pass: Secret,
    },
}

/// How to reach a switch and how hard to try.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub addr: SocketAddr,
    pub credentials: Credentials,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Extra attempts after the first.
    pub retries: u32,
    pub limits: BatchLimits,
}

impl SessionConfig {
    /// Defaults: 1 s per attempt, 2 retries, [`BatchLimits::default`].
    pub fn new(addr: SocketAddr, credentials: Credentials) -> Self {
        Self {
            addr,
            credentials,
            timeout: Duration::from_secs(1),
            retries: 2,
            limits: BatchLimits::default(),
        }
    }
}

/// What an ordered batched SET sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetStats {
    pub messages: usize,
    pub varbinds: usize,
    pub elapsed: Duration,
}

/// A connected SNMP session.
pub struct Session {
    cfg: SessionConfig,
    client: Client<UdpHandle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

fn auth_of(cfg: &SessionConfig) -> Result<Auth, SwitchError> {
    match &cfg.credentials {
        Credentials::V2c { community } => Ok(Auth::v2c(community.expose())),
        Credentials::V3 { user, auth, auth_pass, privacy, priv_pass } => {
            UsmConfig::new(user.clone())
                .auth_priv(
                    auth.protocol(),
                    auth_pass.expose(),
                    privacy.protocol(),
                    priv_pass.expose(),
                )
                .map(Auth::from)
                .map_err(|e| SwitchError::Config {
                    switch: cfg.addr,
                    detail: format!("USM keys: {e}"),
                })
        }
    }
}

impl Session {
    /// Builds the client; with v3 this also performs engine discovery.
    pub async fn connect(cfg: SessionConfig) -> Result<Self, SwitchError> {
        let auth = auth_of(&cfg)?;
        let retry = Retry::fixed(cfg.retries, Duration::ZERO)
            .map_err(|e| SwitchError::Config { switch: cfg.addr, detail: e.to_string() })?;
        // An agent refuses wrong v3 credentials (unknown user, wrong digest) with a
        // Report it cannot authenticate; async-snmp drops such Reports on an authPriv
        // session unless this is on, and the refusal would end as a timeout. With it,
        // an unauthenticated Report correlated to our request is a terminal error
        // (mapped to `SwitchError::Auth`), and at most one unauthenticated time-window
        // Report may set one packet's time fields. Ordinary Responses must still be
        // authenticated, so no data is ever taken from an unauthenticated packet: a
        // spoofer able to match our msgID can only fail a request.
        let v3 = matches!(cfg.credentials, Credentials::V3 { .. });
        let client = Client::builder(cfg.addr, auth)
            .allow_unauthenticated_v3_time_correction(v3)
            .request_timeout(cfg.timeout)
            .retry(retry)
            .max_oids_per_request(cfg.limits.max_varbinds.max(1))
            .connect()
            .await
            .map_err(|e| map_err(&cfg, "connect", None, &e))?;
        Ok(Self { cfg, client })
    }

    /// The switch address.
    pub fn addr(&self) -> SocketAddr {
        self.cfg.addr
    }

    /// The configured batch limits.
    pub fn limits(&self) -> BatchLimits {
        self.cfg.limits
    }

    /// GETs the given objects, several per message. Missing instances come back as the
    /// agent's exception values.
    pub async fn get(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SwitchError> {
        let mut out = Vec::with_capacity(oids.len());
        for chunk in oids.chunks(self.cfg.limits.max_varbinds.max(1)) {
            let resp = self
                .client
                .get_many(chunk)
                .await
                .map_err(|e| map_err(&self.cfg, "get", chunk.first(), &e))?;
            out.extend(resp.varbinds);
        }
        Ok(out)
    }

    /// Walks a subtree with GETBULK.
    pub async fn walk(&self, root: &[u32]) -> Result<Vec<VarBind>, SwitchError> {
        let root = Oid::from_slice(root);
        let mut stream = self
            .client
            .bulk_walk(root.clone(), 25)
            .map_err(|e| map_err(&self.cfg, "walk", Some(&root), &e))?;
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(item.map_err(|e| map_err(&self.cfg, "walk", Some(&root), &e))?);
        }
        Ok(out)
    }

    /// Sends an ordered plan as SETs split by `limits` (or one per varbind when
    /// `limits.max_varbinds == 1`). Stops at the first failure; earlier messages stay
    /// applied, which the caller must report as a failure, never as success.
    pub async fn set_plan(
        &self,
        plan: Vec<(Oid, Value)>,
        limits: BatchLimits,
    ) -> Result<SetStats, SwitchError> {
        let start = Instant::now();
        let mut stats = SetStats { varbinds: plan.len(), ..Default::default() };
        for batch in plan::split(plan, limits) {
            let resp = self.client.set_many(&batch).await;
            if let Err(e) = resp {
                return Err(map_err(&self.cfg, "set", batch.first().map(|(o, _)| o), &e));
            }
            stats.messages += 1;
            tracing::debug!(switch = %self.cfg.addr, varbinds = batch.len(), "SET applied");
        }
        stats.elapsed = start.elapsed();
        Ok(stats)
    }
}

/// Maps a client error to a [`SwitchError`], preferring the OID the agent named.
pub(crate) fn map_err(
    cfg: &SessionConfig,
    operation: &'static str,
    fallback: Option<&Oid>,
    err: &async_snmp::Error,
) -> SwitchError {
    let switch = cfg.addr;
    let fallback_oid = fallback.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
    match innermost(err) {
        async_snmp::Error::Timeout { .. } => SwitchError::Timeout {
            switch,
            operation,
            oid: fallback_oid,
            attempts: cfg.retries + 1,
            timeout: cfg.timeout,
        },
        async_snmp::Error::Snmp { status, oid, .. } => SwitchError::Snmp {
            switch,
            operation,
            status: status.to_string(),
            oid: oid.as_ref().map(|o| o.to_string()).unwrap_or(fallback_oid),
            port: None,
        },
        async_snmp::Error::Report { status, .. } => match refusal(status) {
            Some(detail) => SwitchError::Auth { switch, operation, detail },
            None => SwitchError::Transport {
                switch,
                operation,
                oid: fallback_oid,
                detail: format!("SNMPv3 report: {status}"),
            },
        },
        async_snmp::Error::Auth { .. } => SwitchError::Auth {
            switch,
            operation,
            detail: "the answer failed authentication (wrong passwords or protocols)".into(),
        },
        other => SwitchError::Transport {
            switch,
            operation,
            oid: fallback_oid,
            detail: other.to_string(),
        },
    }
}

/// What a USM Report says about the credentials, if it refuses them.
fn refusal(status: &ReportStatus) -> Option<String> {
    let what = match status {
        ReportStatus::UnknownUserName { .. } => {
            "unknown user name (usmStatsUnknownUserNames): the switch has no such SNMPv3 user"
        }
        ReportStatus::WrongDigest { .. } => {
            "wrong digest (usmStatsWrongDigests): the authentication password or protocol is wrong"
        }
        ReportStatus::DecryptionError { .. } => {
            "decryption error (usmStatsDecryptionErrors): the privacy password or protocol is wrong"
        }
        ReportStatus::UnsupportedSecurityLevel { .. } => {
            "unsupported security level (usmStatsUnsupportedSecLevels): the user is not set up for authPriv"
        }
        _ => return None,
    };
    Some(what.to_string())
}

fn innermost(err: &async_snmp::Error) -> &async_snmp::Error {
    match err {
        async_snmp::Error::Exchange { source, .. } => innermost(source),
        async_snmp::Error::SharedOperation { source } => innermost(source),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_credentials() {
        let creds = Credentials::V3 {
            user: "ops".into(),
            auth: V3Auth::Sha1,
            auth_pass: Secret::new("auth-SECRET-1"),
            privacy: V3Priv::Aes128,
            priv_pass: Secret::new("priv-SECRET-2"),
        };
        let cfg = SessionConfig::new(SocketAddr::from(([127, 0, 0, 1], 161)), creds);
        let v2 = Credentials::V2c { community: Secret::new("community-SECRET-3") };
        let text = format!("{cfg:?} {v2:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("ops"));
    }
}
