//! Helpers for driving the API through tower's `oneshot`, as the HTTP stack sees it.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Api {
    pub router: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => {
                req.header("content-type", "application/json").body(Body::from(b.to_string()))
            }
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let retry_after =
            resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp { status, content_type, retry_after, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(&body.to_string()), &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(token), Some(&body.to_string()), &[]).await
    }

    /// Mints a customer token through the API.
    pub async fn customer_token(&self, op: &str, customer: &str) -> String {
        let r =
            self.post("/v1/tokens", op, json!({"role": "customer", "customer": customer})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// A switch, a shelf of `ports` ports, and one ready Pi per slot owned by `owners`
    /// in turn. Returns the Pi ids.
    pub async fn rack(
        &self,
        op: &str,
        shelf: &str,
        first_port: u16,
        owners: &[&str],
    ) -> Vec<String> {
        let sw_name = format!("sw-{shelf}");
        let r = self
            .post(
                "/v1/switches",
                op,
                json!({"name": sw_name, "address": "127.0.0.1:161", "trunk_port": 200,
            "credentials": {"version": "v2c", "community": "private-community"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let last = first_port + owners.len() as u16 - 1;
        let r = self.post("/v1/shelves", op, json!({"name": shelf, "switch": sw_name, "first_port": first_port, "last_port": last})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let mut ids = vec![];
        for (slot, owner) in r.body["slots"].as_array().unwrap().iter().zip(owners) {
            let p = self
                .post("/v1/pis", op, json!({"model": "3b", "slot": slot["id"], "owner": owner}))
                .await;
            assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
            let id = p.body["id"].as_str().unwrap().to_string();
            let r = self.patch(&format!("/v1/pis/{id}"), op, json!({"state": "ready"})).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            ids.push(id);
        }
        ids
    }
}

/// Takes every switch off its controller, so that any runner may claim their jobs (as
/// for a switch registered before clusters existed): for tests of the job engine's
/// leases between runners, which are not controllers.
pub async fn unroute(db: &bramble::db::Db) {
    db.q("UPDATE switches SET controller = NULL").execute(db.pool()).await.expect("unroute");
}

pub fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert_eq!(r.body["status"], status);
}

pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI alice@laptop";
