//! A thin client of Bramble's HTTP API for the load generator: one shared connection
//! pool, requests spread round-robin over one or several controllers (any controller
//! answers any request), answers as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

/// Why a request did not give the answer wanted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No HTTP answer at all (connection refused or reset, timeout).
    #[error("{method} {path}: no answer")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer with a status not in the accepted list.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status { method: Method, path: String, status: u16, body: String },
    /// An accepted status whose body is not the JSON expected.
    #[error("{method} {path}: unexpected answer: {reason}")]
    Body { method: Method, path: String, reason: String },
}

impl ApiError {
    /// The HTTP status, if the controller answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub token: Arc<str>,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

impl Call {
    pub fn get(path: String, token: &Arc<str>) -> Call {
        Call { method: Method::GET, path, token: token.clone(), body: None, idempotency_key: None }
    }

    pub fn post(path: String, token: &Arc<str>, body: Value) -> Call {
        Call {
            method: Method::POST,
            path,
            token: token.clone(),
            body: Some(body),
            idempotency_key: None,
        }
    }

    pub fn patch(path: String, token: &Arc<str>, body: Value) -> Call {
        Call { method: Method::PATCH, ..Call::post(path, token, body) }
    }
}

/// What came back, with the time from sending to the whole body read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// The controllers, reached round-robin.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
}

impl Api {
    /// `bases` are `http://host:port` URLs of controllers sharing one inventory.
    pub fn new(bases: Vec<String>, pool: usize) -> Result<Api, reqwest::Error> {
        // This workspace's reqwest has rustls without a provider of its own: ring it is
        // (an error only says another was installed first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        let bases = bases.into_iter().map(|b| b.trim_end_matches('/').to_string()).collect();
        Ok(Api { http, bases: Arc::new(bases), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Sends `call` to the next controller; any status is an `Answer`.
    pub async fn send(&self, call: &Call) -> Result<Answer, ApiError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
        let mut req = self
            .http
            .request(call.method.clone(), format!("{}{}", self.bases[i], call.path))
            .bearer_auth(&call.token);
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        if let Some(k) = &call.idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let transport = |source| ApiError::Transport {
            method: call.method.clone(),
            path: call.path.clone(),
            source,
        };
        let start = Instant::now();
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?.to_vec();
        Ok(Answer { status, body, elapsed: start.elapsed() })
    }

    /// Sends `call` and reads the answer as JSON if its status is in `ok`.
    pub async fn json(&self, call: &Call, ok: &[u16]) -> Result<Value, ApiError> {
        let a = self.send(call).await?;
        if !ok.contains(&a.status) {
            return Err(ApiError::Status {
                method: call.method.clone(),
                path: call.path.clone(),
                status: a.status,
                body: String::from_utf8_lossy(&a.body).chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&a.body).map_err(|e| ApiError::Body {
            method: call.method.clone(),
            path: call.path.clone(),
            reason: e.to_string(),
        })
    }
}
