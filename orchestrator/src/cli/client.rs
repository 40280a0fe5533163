//! A small client for Bramble's HTTP API, turning problem+json answers into errors that
//! say what the controller said.

use anyhow::{Context, bail};
use serde_json::Value;

use super::ApiArgs;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let http =
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(ApiClient {
            http,
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the controller at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let detail = body.get("detail").and_then(Value::as_str).unwrap_or("no detail");
        let code = body.get("code").and_then(Value::as_str).unwrap_or("unknown");
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
