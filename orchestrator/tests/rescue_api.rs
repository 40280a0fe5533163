//! Rescue through the HTTP API, against SQLite and PostgreSQL: which states take a
//! rescue, an unrescue or a reboot (which in rescue is an unrescue), the keys a rescue
//! defaults to (the current owner's, never a previous owner's), validation naming the
//! field, and another customer's Pi answering 404. No runner: jobs stay queued.

mod common;

use bramble::ids::PiId;
use bramble::lifecycle::PiState;
use bramble::testing::{app_state, test_databases};
use common::{Api, KEY, assert_problem};
use serde_json::{Value, json};

const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCJ bob@laptop";

macro_rules! each_backend {
    ($case:ident) => {
        for db in test_databases().await {
            let (state, op) = app_state(&db).await;
            // These cases rescue and unrescue one Pi more often than `[power]
            // max_cycles` allows; `api.rs` tests the limit itself.
            let mut config = (*state.config.get()).clone();
            config.power.max_cycles = 0;
            state.config.set(config);
            eprintln!("-- {} on {}", stringify!($case), db.label);
            $case(Api { router: bramble::api::app(state.clone()) }, &op, &state).await;
            state.db.close().await;
            db.drop().await;
        }
    };
}

/// Puts the Pi in `to` as the jobs would have.
async fn set_state(s: &bramble::api::AppState, pi: &str, to: PiState) {
    let id = PiId(pi.to_string());
    let from = s.db.get_pi(&id).await.unwrap().unwrap().state;
    assert!(s.db.set_pi_state(&id, from, to, None).await.unwrap(), "{from} -> {to}");
}

/// Ends every active job of the Pi as a runner would have: succeeded.
async fn finish_jobs(s: &bramble::api::AppState) {
    s.db.q("UPDATE jobs SET state = 'succeeded' WHERE state IN ('queued', 'running')")
        .execute(s.db.pool())
        .await
        .unwrap();
}

fn fields(r: &common::Resp) -> Vec<String> {
    let errors = r.body["errors"].as_array().cloned().unwrap_or_default();
    errors.iter().map(|e| e["field"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn rescue_is_asked_in_the_right_states_with_the_owners_keys() {
    async fn case(api: Api, op: &str, s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-r", 1, &["alice", "bob"]).await;
        let (pi, bobs) = (&pis[0], &pis[1]);
        let alice = api.customer_token(op, "alice").await;
        let rescue = format!("/v1/pis/{pi}/rescue");

        // Ready (nothing installed): no rescue, and no unrescue.
        let r = api.post(&rescue, &alice, json!({"ssh_keys": [KEY]})).await;
        assert_problem(&r, 409, "invalid_state");
        assert!(r.body["detail"].as_str().unwrap().contains("ready"), "{:?}", r.body);
        let r = api.post(&format!("/v1/pis/{pi}/unrescue"), &alice, json!({})).await;
        assert_problem(&r, 409, "invalid_state");
        assert!(r.body["detail"].as_str().unwrap().contains("not in rescue"), "{:?}", r.body);

        // Without keys and without a reinstall of hers: the field is named.
        set_state(s, pi, PiState::Deployed).await;
        let r = api.post(&rescue, &alice, json!({})).await;
        assert_problem(&r, 422, "invalid_input");
        assert_eq!(fields(&r), ["ssh_keys"]);
        for (body, field) in [
            (json!({"ssh_keys": []}), "ssh_keys"),
            (json!({"ssh_keys": [KEY, "ssh-rsa !!!"]}), "ssh_keys[1]"),
            (json!({"ssh_keys": [3]}), "ssh_keys[0]"),
            (json!({"ssh_keys": [KEY], "password": "x"}), "password"),
        ] {
            let r = api.post(&rescue, &alice, body.clone()).await;
            assert_eq!(r.status, 422, "{body}: {:?}", r.body);
            assert!(fields(&r).iter().any(|f| f.contains(field)), "{body}: {:?}", r.body);
        }
        let r = api.call("POST", &rescue, Some(&alice), Some("{\"ssh_keys\": "), &[]).await;
        assert_problem(&r, 400, "malformed_body");

        // Her reinstall's keys are the default; a previous owner's never are.
        let r = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                op,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [OTHER_KEY]}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        finish_jobs(s).await;
        set_state(s, pi, PiState::Deployed).await;
        let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"owner": "carol"})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let carol = api.customer_token(op, "carol").await;
        let r = api.post(&rescue, &carol, json!({})).await;
        assert_eq!(fields(&r), ["ssh_keys"], "the previous owner's keys: {:?}", r.body);
        let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"owner": "alice"})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &alice,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        finish_jobs(s).await;
        set_state(s, pi, PiState::Deployed).await;
        let r = api.post(&rescue, &alice, json!({})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        assert_eq!(
            (r.body["kind"].clone(), r.body["params"].clone()),
            (json!("rescue"), json!({"ssh_keys": [KEY]}))
        );
        let steps: Vec<Value> = r.body["steps"].as_array().cloned().unwrap_or_default();
        assert_eq!(steps.first(), Some(&json!("power-off")), "{:?}", r.body);

        // One job at a time.
        let r = api.post(&format!("/v1/pis/{pi}/power-off"), &alice, json!({})).await;
        assert_problem(&r, 409, "pi_busy");
        finish_jobs(s).await;

        // In rescue: no second rescue, no reinstall, no change of owner; power actions
        // stay; a reboot is an unrescue.
        set_state(s, pi, PiState::Rescue).await;
        let r = api.post(&rescue, &alice, json!({"ssh_keys": [KEY]})).await;
        assert_problem(&r, 409, "invalid_state");
        assert!(r.body["detail"].as_str().unwrap().contains("in rescue already"), "{:?}", r.body);
        let r = api
            .post(
                &format!("/v1/pis/{pi}/reimage"),
                &alice,
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}),
            )
            .await;
        assert_problem(&r, 409, "invalid_state");
        assert!(
            r.body["detail"].as_str().unwrap().contains(&format!("/v1/pis/{pi}/unrescue")),
            "{:?}",
            r.body
        );
        let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"owner": "bob"})).await;
        assert_problem(&r, 409, "invalid_state");
        let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"state": "ready"})).await;
        assert_problem(&r, 409, "invalid_state");
        let r = api.post(&format!("/v1/pis/{pi}/power-off"), &alice, json!({})).await;
        assert_eq!((r.status.as_u16(), r.body["kind"].clone()), (202, json!("power-off")));
        finish_jobs(s).await;
        let r = api.post(&format!("/v1/pis/{pi}/reboot"), &alice, json!({})).await;
        assert_eq!((r.status.as_u16(), r.body["kind"].clone()), (202, json!("unrescue")));
        let steps = r.body["steps"].as_array().cloned().unwrap_or_default();
        assert!(steps.contains(&json!("remove-rescue")), "{:?}", r.body);
        finish_jobs(s).await;
        let r = api.post(&format!("/v1/pis/{pi}/unrescue"), &alice, json!({})).await;
        assert_eq!((r.status.as_u16(), r.body["kind"].clone()), (202, json!("unrescue")));
        finish_jobs(s).await;

        // A failed Pi takes a rescue (that is what it is for) and an unrescue.
        set_state(s, pi, PiState::Failed).await;
        let r = api.post(&rescue, &alice, json!({"ssh_keys": [OTHER_KEY]})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        finish_jobs(s).await;
        let r = api.post(&format!("/v1/pis/{pi}/unrescue"), &alice, json!({})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        finish_jobs(s).await;

        // Bob's Pi does not exist for alice, whatever she sends.
        set_state(s, bobs, PiState::Deployed).await;
        for (path, body) in [
            (format!("/v1/pis/{bobs}/rescue"), Some(json!({"ssh_keys": [KEY]}).to_string())),
            (format!("/v1/pis/{bobs}/rescue"), Some("{\"ssh_keys\": 3".to_string())),
            (format!("/v1/pis/{bobs}/rescue"), Some("{}".to_string())),
            (format!("/v1/pis/{bobs}/unrescue"), None),
        ] {
            let r = api.call("POST", &path, Some(&alice), body.as_deref(), &[]).await;
            assert_problem(&r, 404, "not_found");
        }
    }
    each_backend!(case);
}
