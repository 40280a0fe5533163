//! A small client for Bramble's HTTP API: answers are read into the API's own types, and
//! problem+json answers become errors that say what the controller said.

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ApiArgs;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// The parts of a problem+json answer the CLI shows.
#[derive(Debug, Default, serde::Deserialize)]
struct ProblemView {
    detail: Option<String>,
    code: Option<String>,
}

impl ApiClient {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let tls = crate::tls::ClientTls {
            ca_file: args.ca_file.clone(),
            identity: match (&args.client_cert, &args.client_key) {
                (Some(cert), Some(key)) => {
                    Some(crate::tls::client::Identity { cert: cert.clone(), key: key.clone() })
                }
                _ => None,
            },
        };
        let http = tls
            .reqwest_builder()
            .context("cannot use the TLS files given (--ca-file, --client-cert, --client-key)")?
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(ApiClient {
            http,
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(path, self.http.get(self.url(path))).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<T> {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        self.send(path, req).await
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(path, self.http.patch(self.url(path)).json(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        mut req: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the controller at {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_slice(&body).with_context(|| {
                format!("the controller's answer to {path} is not what this bramble expects (a different version?)")
            });
        }
        let problem: ProblemView = serde_json::from_slice(&body).unwrap_or_default();
        let detail = problem.detail.as_deref().unwrap_or("no detail");
        let code = problem.code.as_deref().unwrap_or("unknown");
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{detail} ({code}); pass --token or set BRAMBLE_TOKEN");
        }
        bail!("{status}: {detail} ({code})")
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
