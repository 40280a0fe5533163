//! A controller over a real TCP port: the API answers through the whole HTTP stack,
//! shuts down gracefully, and a restarted controller on the same database still has
//! every job and event.

use bramble::testing::test_databases;
use bramble_tests::RunningController;
use serde_json::{Value, json};

#[tokio::test]
async fn jobs_survive_a_graceful_restart_on_every_backend() {
    for db in test_databases().await {
        let c = RunningController::start(&db).await.unwrap();
        let http = bramble::tls::client::http();
        let post = |path: &str, body: Value| {
            http.post(c.url(path)).bearer_auth(&c.token).json(&body).send()
        };
        let r = post("/v1/switches", json!({"name": "sw1", "address": "192.0.2.10:161", "trunk_port": 49,
            "credentials": {"version": "v3", "user": "bramble", "auth_pass": "authpass1", "priv_pass": "privpass1"}})).await.unwrap();
        assert_eq!(r.status(), 201);
        let shelf: Value = post(
            "/v1/shelves",
            json!({"name": "rack1", "switch": "sw1", "first_port": 1, "last_port": 48}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(shelf["slots"].as_array().unwrap().len(), 48);
        let slot = shelf["slots"][47]["id"].clone();
        let pi: Value = post(
            "/v1/pis",
            json!({"serial": "00000001", "mac": "b8:27:eb:00:00:01", "model": "3b", "slot": slot}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = pi["id"].as_str().unwrap().to_string();
        assert_eq!(pi["port"], 48);
        assert_eq!(pi["storage_ip"], "10.46.0.190");
        let r = http
            .patch(c.url(&format!("/v1/pis/{id}")))
            .bearer_auth(&c.token)
            .json(&json!({"state": "ready", "owner": "cust-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let job: Value =
            post(&format!("/v1/pis/{id}/reboot"), json!({})).await.unwrap().json().await.unwrap();
        let token = c.token.clone();
        c.stop().await;

        let controller = bramble::server::Controller::open(db.config()).await.unwrap();
        let c = RunningController::serve(controller, token).await.unwrap();
        let again: Value = http
            .get(c.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The job is still there for the new controller to run (its switch, at a
        // documentation address, will not answer, so it may be running or failed by now).
        assert_eq!(again["pi"], json!(id));
        assert!(
            matches!(again["state"].as_str(), Some("queued" | "running" | "failed")),
            "{again}"
        );
        let events: Value = http
            .get(c.url(&format!("/v1/pis/{id}/events?order=asc")))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds[..3], ["pi.registered", "pi.state", "job.created"], "{kinds:?}");
        // Switch secrets never come back through the API.
        let switches = http
            .get(c.url("/v1/switches"))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!switches.contains("authpass1") && !switches.contains("privpass1"), "{switches}");
        c.stop().await;
        db.drop().await;
    }
}
