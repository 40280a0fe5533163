//! The HTTP API end to end through the router, against SQLite and PostgreSQL:
//! authentication, customer isolation, idempotency, validation, enrollment.

mod common;

use bramble::model::SshHostKey;
use bramble::testing::{app_state, test_databases};
use common::{Api, KEY, assert_problem};
use serde_json::{Value, json};

/// Runs `case` once per database backend with a fresh controller.
macro_rules! each_backend {
    ($case:ident) => {
        for db in test_databases().await {
            let (state, op) = app_state(&db).await;
            eprintln!("-- {} on {}", stringify!($case), db.label);
            $case(Api { router: bramble::api::app(state.clone()) }, &op, &state).await;
            state.db.close().await;
            db.drop().await;
        }
    };
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    async fn case(api: Api, _op: &str, _s: &bramble::api::AppState) {
        for path in ["/v1/pis", "/v1/jobs", "/v1/shelves", "/v1/images", "/v1/tokens"] {
            let r = api.call("GET", path, None, None, &[]).await;
            assert_problem(&r, 401, "unauthorized");
            let r = api.call("GET", path, Some("brm_nonsense"), None, &[]).await;
            assert_problem(&r, 401, "unauthorized");
        }
        let r = api.call("GET", "/healthz", None, None, &[]).await;
        assert_eq!(r.status, 200);
    }
    each_backend!(case);
}

#[tokio::test]
async fn customers_see_and_touch_only_their_own_pis() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-a", 1, &["alice", "bob"]).await;
        let (alice_pi, bob_pi) = (&pis[0], &pis[1]);
        let alice = api.customer_token(op, "alice").await;

        let list = api.get("/v1/pis", &alice).await;
        let ids: Vec<&str> = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![alice_pi.as_str()]);
        // Even asking for bob's Pis by owner gives nothing.
        let list = api.get("/v1/pis?owner=bob", &alice).await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 0);

        // Bob's Pi does not exist for alice, whatever she tries.
        for (method, path, body) in [
            ("GET", format!("/v1/pis/{bob_pi}"), None),
            ("GET", format!("/v1/pis/{bob_pi}/events"), None),
            ("POST", format!("/v1/pis/{bob_pi}/reboot"), None),
            ("POST", format!("/v1/pis/{bob_pi}/power-off"), None),
            (
                "POST",
                format!("/v1/pis/{bob_pi}/reimage"),
                Some(json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]}).to_string()),
            ),
            ("POST", format!("/v1/pis/{bob_pi}/reimage"), Some("{}".to_string())),
            ("GET", format!("/v1/events?pi={bob_pi}"), None),
        ] {
            let r = api.call(method, &path, Some(&alice), body.as_deref(), &[]).await;
            assert_problem(&r, 404, "not_found");
        }
        // A job on bob's Pi is invisible to alice too.
        let job = api.post(&format!("/v1/pis/{bob_pi}/reboot"), op, json!({})).await;
        assert_eq!(job.status, 202);
        let r = api.get(&format!("/v1/jobs/{}", job.body["id"].as_str().unwrap()), &alice).await;
        assert_problem(&r, 404, "not_found");
        assert_eq!(api.get("/v1/jobs", &alice).await.body["items"].as_array().unwrap().len(), 0);

        // Her own Pi works, and operator-only resources are forbidden to her.
        let r = api.post(&format!("/v1/pis/{alice_pi}/reboot"), &alice, json!({})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        assert_eq!(r.body["kind"], "reboot");
        for path in ["/v1/shelves", "/v1/switches", "/v1/tokens"] {
            assert_problem(&api.get(path, &alice).await, 403, "forbidden");
        }
        // The operator sees both Pis.
        assert_eq!(api.get("/v1/pis", op).await.body["items"].as_array().unwrap().len(), 2);
    }
    each_backend!(case);
}

#[tokio::test]
async fn a_pis_ssh_host_keys_are_shown_to_its_owner_as_recorded() {
    async fn case(api: Api, op: &str, s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-k", 1, &["alice", "bob"]).await;
        let (alice_pi, bob_pi) = (&pis[0], &pis[1]);
        let alice = api.customer_token(op, "alice").await;
        // Never reinstalled: no keys, and the field is there, as an empty list.
        let r = api.get(&format!("/v1/pis/{alice_pi}"), &alice).await;
        assert_eq!(r.body["ssh_host_keys"], json!([]), "{:?}", r.body);

        // What the reimage job records of the live root is what the API shows.
        let keys = vec![
            SshHostKey {
                key_type: "ssh-ed25519".into(),
                fingerprint: "SHA256:uZ3oMIn0ZHAXcvx9Z/IuBbsfgNcGHzCy6yJm9WVVxUY".into(),
            },
            SshHostKey {
                key_type: "ssh-rsa".into(),
                fingerprint: "SHA256:9r2mf4BmRVVDqZoQ+5N6KXIuJwA8GvQ7lEJtJgZzPuk".into(),
            },
        ];
        let id = bramble::ids::PiId(alice_pi.clone());
        s.db.set_pi_root(&id, Some("debian-bookworm-armhf"), &keys).await.unwrap();
        let want = json!([
            {"type": "ssh-ed25519", "fingerprint": keys[0].fingerprint},
            {"type": "ssh-rsa", "fingerprint": keys[1].fingerprint},
        ]);
        let r = api.get(&format!("/v1/pis/{alice_pi}"), &alice).await;
        assert_eq!(
            (r.body["ssh_host_keys"].clone(), r.body["image"].clone()),
            (want.clone(), json!("debian-bookworm-armhf"))
        );
        let list = api.get("/v1/pis", &alice).await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{:?}", list.body);
        assert_eq!(list.body["items"][0]["ssh_host_keys"], want);
        // Bob's Pi stays keyless and invisible to alice; the operator sees both.
        assert_problem(&api.get(&format!("/v1/pis/{bob_pi}"), &alice).await, 404, "not_found");
        let all = api.get("/v1/pis", op).await;
        let keys_of = |id: &str| {
            let items = all.body["items"].as_array().unwrap();
            items.iter().find(|p| p["id"] == id).unwrap()["ssh_host_keys"].clone()
        };
        assert_eq!((keys_of(alice_pi), keys_of(bob_pi)), (want, json!([])));
    }
    each_backend!(case);
}

#[tokio::test]
async fn idempotency_keys_replay_and_one_job_per_pi() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-b", 10, &["carol", "carol"]).await;
        let carol = api.customer_token(op, "carol").await;
        let path = format!("/v1/pis/{}/reboot", pis[0]);
        let hdr = [("idempotency-key", "k-1")];
        let first = api.call("POST", &path, Some(&carol), Some("{}"), &hdr).await;
        assert_eq!(first.status, 202, "{:?}", first.body);
        let again = api.call("POST", &path, Some(&carol), Some("{}"), &hdr).await;
        assert_eq!(again.status, 202);
        assert_eq!(again.body["id"], first.body["id"]);

        // Same key, different request.
        let other = format!("/v1/pis/{}/power-off", pis[0]);
        let r = api.call("POST", &other, Some(&carol), Some("{}"), &hdr).await;
        assert_problem(&r, 422, "idempotency_key_reused");
        assert_eq!(r.body["job"], first.body["id"]);

        // A second action while the first is queued names the running job.
        let r = api.post(&other, &carol, json!({})).await;
        assert_problem(&r, 409, "pi_busy");
        assert_eq!(r.body["job"], first.body["id"]);

        // The other Pi is not blocked; after cancelling, the first Pi takes jobs again.
        assert_eq!(
            api.post(&format!("/v1/pis/{}/reboot", pis[1]), &carol, json!({})).await.status,
            202
        );
        let id = first.body["id"].as_str().unwrap();
        let r = api.post(&format!("/v1/jobs/{id}/cancel"), &carol, json!({})).await;
        assert_eq!(r.body["state"], "cancelled", "{:?}", r.body);
        assert_problem(
            &api.post(&format!("/v1/jobs/{id}/cancel"), &carol, json!({})).await,
            409,
            "not_cancellable",
        );
        assert_eq!(api.post(&other, &carol, json!({})).await.status, 202);

        // Racking: a retry gets the active rack job its key made; a new request is busy.
        let rack = "/v1/shelves/shelf-b/rack";
        let key = [("idempotency-key", "rack-1")];
        let first = api.call("POST", rack, Some(op), Some("{}"), &key).await;
        assert_eq!(first.status, 202, "{:?}", first.body);
        let again = api.call("POST", rack, Some(op), Some("{}"), &key).await;
        assert_eq!(
            (again.status.as_u16(), &again.body["id"]),
            (202, &first.body["id"]),
            "{:?}",
            again.body
        );
        assert_problem(&api.post(rack, op, json!({})).await, 409, "shelf_busy");

        // Jobs say honestly whether this controller can run them.
        let kinds = api.get("/v1/job-kinds", &carol).await;
        assert_eq!(kinds.body.as_array().unwrap().len(), bramble::jobs::model::JobKind::ALL.len());
        assert!(
            kinds.body.as_array().unwrap().iter().all(|k| k["executable"] == json!(true)),
            "{:?}",
            kinds.body
        );
        assert_eq!(first.body["executable"], json!(true));
    }
    each_backend!(case);
}

/// `[power]`: past `max_cycles` power-cycling jobs in the window (default 6 in 10
/// minutes), every route that power-cycles the Pi answers 429 with `Retry-After` and a
/// problem document, and creates no job; cancelled jobs count (the power was cycled or
/// could have been); a power-off, which cycles nothing, and another Pi are not limited.
#[tokio::test]
async fn power_cycles_past_the_limit_are_429_with_retry_after_and_no_job() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-l", 10, &["dora", "dora"]).await;
        let dora = api.customer_token(op, "dora").await;
        let cancel = |id: String| {
            let path = format!("/v1/jobs/{id}/cancel");
            let dora = dora.clone();
            let api = &api;
            async move { assert_eq!(api.post(&path, &dora, json!({})).await.status, 200) }
        };
        let reboot = format!("/v1/pis/{}/reboot", pis[0]);
        let mut last = Value::Null;
        for i in 0..6 {
            let key = format!("cycle-{i}");
            let hdr = [("idempotency-key", key.as_str())];
            let r = api.call("POST", &reboot, Some(&dora), Some("{}"), &hdr).await;
            assert_eq!(r.status, 202, "{:?}", r.body);
            cancel(r.body["id"].as_str().unwrap().to_string()).await;
            last = r.body["id"].clone();
        }
        let jobs_before =
            api.get("/v1/jobs?limit=100", op).await.body["items"].as_array().unwrap().len();
        for route in ["reboot", "power-on", "unrescue"] {
            let r = api.post(&format!("/v1/pis/{}/{route}", pis[0]), &dora, json!({})).await;
            if route == "unrescue" {
                // Refused for its state first (409); the limit applies to what can run.
                assert_eq!(r.status, 409, "{:?}", r.body);
                continue;
            }
            assert_problem(&r, 429, "too_many_power_cycles");
            let wait: u64 = r.retry_after.as_deref().expect("Retry-After").parse().unwrap();
            assert!((590..=600).contains(&wait), "Retry-After {wait}");
            let detail = r.body["detail"].as_str().unwrap();
            assert!(detail.contains("6 times in the last 600 s"), "{detail}");
        }
        // A retry of the request that used up the limit still gets its job, and a new
        // request under that key is told the key is taken, not the limit.
        let key = [("idempotency-key", "cycle-5")];
        let again = api.call("POST", &reboot, Some(&dora), Some("{}"), &key).await;
        assert_eq!((again.status.as_u16(), &again.body["id"]), (202, &last), "{:?}", again.body);
        let on = format!("/v1/pis/{}/power-on", pis[0]);
        let other = api.call("POST", &on, Some(&dora), Some("{}"), &key).await;
        assert_problem(&other, 422, "idempotency_key_reused");
        let r = api
            .post(
                &format!("/v1/pis/{}/reimage", pis[0]),
                &dora,
                json!({"image": "none", "ssh_keys": []}),
            )
            .await;
        assert_ne!(r.status, 202, "{:?}", r.body);
        let jobs_after =
            api.get("/v1/jobs?limit=100", op).await.body["items"].as_array().unwrap().len();
        assert_eq!(jobs_after, jobs_before, "a refused request creates no job");
        let off = api.post(&format!("/v1/pis/{}/power-off", pis[0]), &dora, json!({})).await;
        assert_eq!(off.status, 202, "a power-off cycles nothing: {:?}", off.body);
        cancel(off.body["id"].as_str().unwrap().to_string()).await;
        let other = api.post(&format!("/v1/pis/{}/reboot", pis[1]), &dora, json!({})).await;
        assert_eq!(other.status, 202, "another Pi has its own count");
    }
    each_backend!(case);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-c", 20, &["dave"]).await;
        let path = format!("/v1/pis/{}/reimage", pis[0]);
        let r = api.call("POST", &path, Some(op), Some("{\"image\": "), &[]).await;
        assert_problem(&r, 400, "malformed_body");

        let cases = [
            (json!({"ssh_keys": [KEY]}), "image"),
            (json!({"image": "debian-bookworm-armhf", "ssh_keys": [3]}), "ssh_keys[0]"),
            (json!({"image": "debian-bookworm-armhf", "ssh_keys": []}), "ssh_keys"),
            (
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY, "ssh-rsa !!!"]}),
                "ssh_keys[1]",
            ),
            (json!({"image": "windows-95", "ssh_keys": [KEY]}), "image"),
            (
                json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY], "password": "x"}),
                "password",
            ),
        ];
        for (body, field) in cases {
            let r = api.post(&path, op, body.clone()).await;
            assert_eq!(r.status, 422, "{body}: {:?}", r.body);
            assert_eq!(r.body["code"], "invalid_input");
            let fields: Vec<&str> = r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.iter().any(|f| f.contains(field)),
                "{body}: wanted {field} in {fields:?} / {}",
                r.body
            );
        }
        let r = api.get("/v1/pis?state=sleeping", op).await;
        assert_problem(&r, 422, "invalid_input");
        assert_problem(&api.get("/v1/pis?limit=0", op).await, 422, "invalid_input");
        let r = api.post("/v1/tokens", op, json!({"role": "customer"})).await;
        assert_eq!(r.body["errors"][0]["field"], "customer");
        let r = api
            .post(
                "/v1/shelves",
                op,
                json!({"name": "x", "switch": "nope", "first_port": 5, "last_port": 1}),
            )
            .await;
        assert_eq!(r.body["errors"][0]["field"], "first_port");
        // A valid reimage is accepted.
        let r =
            api.post(&path, op, json!({"image": "debian-bookworm-armhf", "ssh_keys": [KEY]})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        assert_eq!(r.body["params"]["ssh_keys"][0], KEY);
    }
    each_backend!(case);
}

#[tokio::test]
async fn a_reinstall_or_rescue_onto_a_model_the_image_cannot_boot_is_refused() {
    async fn case(api: Api, op: &str, s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-m", 30, &["erin", "erin"]).await;
        let images = api.get("/v1/images", op).await;
        let arm64 =
            images.body.as_array().unwrap().iter().find(|i| i["name"] == "debian-bookworm-arm64");
        assert_eq!(arm64.unwrap()["models"], json!(["3b", "3b+", "4b"]), "{}", images.body);
        // The DHCP sighting (or an operator) says the first board is a Pi 5.
        s.db.q("UPDATE pis SET model = '5' WHERE id = $1")
            .bind(pis[0].clone())
            .execute(s.db.pool())
            .await
            .unwrap();
        let body = json!({"image": "debian-bookworm-arm64", "ssh_keys": [KEY]});
        let r = api.post(&format!("/v1/pis/{}/reimage", pis[0]), op, body.clone()).await;
        assert_problem(&r, 422, "invalid_input");
        let error = &r.body["errors"][0];
        assert_eq!(error["field"], "image", "{}", r.body);
        let message = error["message"].as_str().unwrap();
        for part in ["\"debian-bookworm-arm64\"", "model \"5\"", "\"3b\", \"3b+\", \"4b\""] {
            assert!(message.contains(part), "{part} in {message}");
        }
        // The rescue image (rescue-bookworm-arm64) cannot boot it either.
        let r =
            api.post(&format!("/v1/pis/{}/rescue", pis[0]), op, json!({"ssh_keys": [KEY]})).await;
        assert_problem(&r, 422, "invalid_input");
        assert_eq!(r.body["errors"][0]["field"], "rescue.image", "{}", r.body);
        assert_eq!(api.get("/v1/jobs", op).await.body["items"].as_array().unwrap().len(), 0);
        // The same image onto the 3B beside it is a job.
        let r = api.post(&format!("/v1/pis/{}/reimage", pis[1]), op, body).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    each_backend!(case);
}

#[tokio::test]
async fn pi_serials_are_8_lowercase_hex_digits_in_and_out() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let r = api.post("/v1/pis", op, json!({"serial": "5eed0001", "model": "4b"})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["serial"], "5eed0001");
        let id = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(api.get(&format!("/v1/pis/{id}"), op).await.body["serial"], "5eed0001");
        let r = api.post("/v1/pis", op, json!({"serial": "5eed0001"})).await;
        assert_problem(&r, 409, "pi_exists");
        for bad in ["5EED0002", "5eed000g", "5eed002", "000000005eed0002", ""] {
            let r = api.post("/v1/pis", op, json!({"serial": bad})).await;
            assert_problem(&r, 422, "invalid_input");
            let message = format!("must be 8 lowercase hex digits, got {bad:?}");
            assert_eq!(r.body["errors"], json!([{"field": "serial", "message": message}]));
        }
    }
    each_backend!(case);
}

#[tokio::test]
async fn shelves_get_collision_free_addresses_or_nothing() {
    async fn case(api: Api, op: &str, state: &bramble::api::AppState) {
        api.rack(op, "shelf-d", 1, &["e"; 4]).await;
        let shelf = api.get("/v1/shelves/shelf-d", op).await;
        let slots = shelf.body["slots"].as_array().unwrap();
        assert_eq!(slots[0]["storage_net"], "10.46.0.0/30");
        assert_eq!(slots[0]["controller_ip"], "10.46.0.1");
        assert_eq!(slots[0]["pi_ip"], "10.46.0.2");
        assert_eq!(slots[3]["pi_ip"], "10.46.0.14");
        assert_eq!(slots[0]["vlan"], 200);

        // Overlapping ports on the same switch are refused.
        let r = api
            .post(
                "/v1/shelves",
                op,
                json!({"name": "shelf-e", "switch": "sw-shelf-d", "first_port": 4, "last_port": 9}),
            )
            .await;
        assert_problem(&r, 409, "ports_in_use");
        // Asking for more VLANs than the range has leaves nothing behind.
        let before =
            state.db.taken_addresses(&state.config.get().cluster.name).await.unwrap().vlans.len();
        let vlans_free = state.config.get().pools.storage_vlans.len() - before;
        let r = api.post("/v1/shelves", op, json!({"name": "huge", "switch": "sw-shelf-d", "first_port": 5, "last_port": 5 + 191})).await;
        if vlans_free < 192 {
            assert_problem(&r, 409, "addresses_exhausted");
            assert_eq!(
                state
                    .db
                    .taken_addresses(&state.config.get().cluster.name)
                    .await
                    .unwrap()
                    .vlans
                    .len(),
                before
            );
            assert_problem(&api.get("/v1/shelves/huge", op).await, 404, "not_found");
        } else {
            assert_eq!(r.status, 201);
        }
        // Switch credentials never come back.
        let sw = api.get("/v1/switches", op).await;
        assert!(!sw.body.to_string().contains("private-community"), "{}", sw.body);
        assert_eq!(sw.body[0]["snmp_version"], "v2c");
    }
    each_backend!(case);
}

/// An SNMPv3 switch is registered with its USM protocols, named as net-snmp does; the
/// listing shows them but never a password; an unknown protocol is a 422 naming the
/// field; a registration without them is SHA-256/AES, as before the fields existed.
#[tokio::test]
async fn v3_switches_carry_their_protocols_and_never_show_passwords() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let v3 = |name: &str, protocols: serde_json::Value| {
            let mut creds = json!({"version": "v3", "user": "bramble",
                "auth_pass": "auth-SECRET-1", "priv_pass": "priv-SECRET-2"});
            creds.as_object_mut().unwrap().extend(protocols.as_object().unwrap().clone());
            json!({"name": name, "address": "192.0.2.20:161", "trunk_port": 49, "credentials": creds})
        };
        let r = api
            .post(
                "/v1/switches",
                op,
                v3("sw-sha1", json!({"auth_protocol": "sha", "priv_protocol": "AES-256"})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["snmp_protocols"], "SHA/AES-256", "{}", r.body);
        let r = api.post("/v1/switches", op, v3("sw-old", json!({}))).await;
        assert_eq!(r.body["snmp_protocols"], "SHA-256/AES", "{}", r.body);
        let r = api.post("/v1/switches", op, v3("sw-bad", json!({"auth_protocol": "SHA-3"}))).await;
        assert_problem(&r, 422, "invalid_input");
        assert_eq!(r.body["errors"][0]["field"], "credentials.auth_protocol", "{}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("\"SHA-3\": expected one of MD5, SHA, SHA-224"), "{message}");
        let r = api.post("/v1/switches", op, v3("sw-bad", json!({"priv_protocol": "DES"}))).await;
        assert_eq!(r.body["errors"][0]["field"], "credentials.priv_protocol", "{}", r.body);
        let listed = api.get("/v1/switches", op).await.body.to_string();
        assert!(listed.contains("SHA/AES-256") && !listed.contains("SECRET"), "{listed}");
        assert!(!listed.contains("sw-bad"), "{listed}");
    }
    each_backend!(case);
}

#[tokio::test]
async fn revoked_tokens_stop_working_and_customers_cannot_mint() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let r = api
            .post(
                "/v1/tokens",
                op,
                json!({"role": "customer", "customer": "frank", "label": "panel"}),
            )
            .await;
        let (id, token) = (
            r.body["id"].as_str().unwrap().to_string(),
            r.body["token"].as_str().unwrap().to_string(),
        );
        assert_eq!(api.get("/v1/pis", &token).await.status, 200);
        assert_problem(
            &api.post("/v1/tokens", &token, json!({"role": "operator"})).await,
            403,
            "forbidden",
        );
        let listed = api.get("/v1/tokens", op).await;
        assert!(!listed.body.to_string().contains(&token), "token secret listed");
        let r = api.call("DELETE", &format!("/v1/tokens/{id}"), Some(op), None, &[]).await;
        assert_eq!(r.status, 204);
        assert_problem(&api.get("/v1/pis", &token).await, 401, "unauthorized");
        // The audit log recorded who did it.
        let audit = api.get("/v1/events?kind=token.&order=asc", op).await;
        let kinds: Vec<&str> = audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, vec!["token.created", "token.revoked"]);
    }
    each_backend!(case);
}

#[tokio::test]
async fn jobs_and_events_belong_to_the_customer_they_were_for() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-t", 1, &["alice"]).await;
        let pi = &pis[0];
        let (alice, bob) =
            (api.customer_token(op, "alice").await, api.customer_token(op, "bob").await);
        let ids = |r: &common::Resp| -> Vec<String> {
            let items = r.body["items"].as_array().unwrap().iter();
            items.map(|j| j["id"].as_str().unwrap().to_string()).collect()
        };
        // An operator's reboot of alice's Pi is alice's job: she gets it and lists it.
        let job = api.post(&format!("/v1/pis/{pi}/reboot"), op, json!({})).await;
        assert_eq!(job.status, 202, "{:?}", job.body);
        let job = job.body["id"].as_str().unwrap().to_string();
        assert_eq!(api.get(&format!("/v1/jobs/{job}"), &alice).await.status, 200);
        assert_eq!(ids(&api.get("/v1/jobs", &alice).await), vec![job.clone()]);
        let r = api.post(&format!("/v1/jobs/{job}/cancel"), op, json!({})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);

        // The Pi goes to bob: alice's history stays hers, none of it is bob's.
        let r = api.patch(&format!("/v1/pis/{pi}"), op, json!({"owner": "bob"})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_problem(&api.get(&format!("/v1/jobs/{job}"), &bob).await, 404, "not_found");
        assert_eq!(ids(&api.get("/v1/jobs", &bob).await), Vec::<String>::new());
        assert_eq!(api.get(&format!("/v1/jobs/{job}"), &alice).await.status, 200);
        let timeline = api.get(&format!("/v1/pis/{pi}/events"), &bob).await;
        assert_eq!(timeline.status, 200);
        let leaked: Vec<&serde_json::Value> = timeline.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["job"].as_str() == Some(job.as_str()))
            .collect();
        assert_eq!(leaked, Vec::<&serde_json::Value>::new(), "bob sees alice's job events");

        // Bob's own job on it is his.
        let mine = api.post(&format!("/v1/pis/{pi}/reboot"), &bob, json!({})).await;
        assert_eq!(mine.status, 202, "{:?}", mine.body);
        let mine = mine.body["id"].as_str().unwrap().to_string();
        assert_eq!(ids(&api.get("/v1/jobs", &bob).await), vec![mine.clone()]);
        assert_problem(&api.get(&format!("/v1/jobs/{mine}"), &alice).await, 404, "not_found");
    }
    each_backend!(case);
}

#[tokio::test]
async fn lists_are_paginated() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        api.rack(op, "shelf-p", 1, &["g"; 5]).await;
        let mut seen = vec![];
        let mut cursor = String::new();
        loop {
            let r = api.get(&format!("/v1/pis?limit=2{cursor}"), op).await;
            let items = r.body["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_string()));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen.len(), 5);
        assert_eq!(sorted, seen);
    }
    each_backend!(case);
}

/// The `field` each 400 problem of a list query names.
fn refused_field(r: &common::Resp) -> String {
    assert_problem(r, 400, "invalid_parameter");
    r.body["errors"][0]["field"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn unparseable_cursors_are_400_naming_the_cursor() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pi = api.rack(op, "shelf-k", 1, &["k"]).await.remove(0);
        let lists = ["/v1/pis?".to_string(), "/v1/jobs?".into(), "/v1/events?".into()]
            .into_iter()
            .chain([format!("/v1/pis/{pi}/events?"), format!("/v1/events?pi={pi}&")]);
        for list in lists {
            for cursor in ["%ff%fe", "", "garbage", "-1", "job-", "pi-%20", "1e3", "1;DROP"] {
                let path = format!("{list}cursor={cursor}");
                let r = api.get(&path, op).await;
                assert_eq!(refused_field(&r), "cursor", "{path}: {:?}", r.body);
            }
        }
    }
    each_backend!(case);
}

/// The ids of a list's pages, following `next_cursor` from `first`.
async fn walk(api: &Api, op: &str, first: &str) -> Vec<String> {
    let (mut seen, mut path) = (vec![], first.to_string());
    loop {
        let r = api.get(&path, op).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        let items = r.body["items"].as_array().unwrap();
        seen.extend(items.iter().map(|i| i["id"].to_string().trim_matches('"').to_string()));
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("{first}&cursor={c}"),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn jobs_and_events_list_newest_first_unless_asked_otherwise() {
    async fn case(api: Api, op: &str, _s: &bramble::api::AppState) {
        let pis = api.rack(op, "shelf-o", 1, &["o"; 5]).await;
        for pi in &pis {
            let r = api.post(&format!("/v1/pis/{pi}/power-on"), op, json!({})).await;
            assert_eq!(r.status, 202, "{:?}", r.body);
        }
        let events = format!("/v1/pis/{}/events?limit=2", pis[0]);
        for list in ["/v1/jobs?limit=2", "/v1/events?limit=2", &events] {
            let newest_first = walk(&api, op, list).await;
            let oldest_first = walk(&api, op, &format!("{list}&order=asc")).await;
            assert!(newest_first.len() >= 3, "{list}: {newest_first:?}");
            let mut reversed = oldest_first.clone();
            reversed.reverse();
            assert_eq!(newest_first, reversed, "{list}");
            assert_eq!(walk(&api, op, &format!("{list}&order=desc")).await, newest_first);
            let by_key = |v: &Vec<String>| -> Vec<i64> {
                v.iter().map(|id| id.parse().unwrap_or_default()).collect()
            };
            if list.contains("events") {
                let keys = by_key(&oldest_first);
                assert!(keys.windows(2).all(|w| w[0] < w[1]), "{list}: {keys:?}");
            } else {
                let mut sorted = oldest_first.clone();
                sorted.sort();
                assert_eq!(sorted, oldest_first, "{list}");
            }
            let r = api.get(&format!("{list}&order=sideways"), op).await;
            assert_eq!(refused_field(&r), "order", "{list}: {:?}", r.body);
        }
    }
    each_backend!(case);
}

#[tokio::test]
async fn metrics_and_openapi_are_served() {
    let db = bramble::testing::sqlite_db();
    let (state, op) = app_state(&db).await;
    let api = Api { router: bramble::api::app(state) };
    api.rack(&op, "shelf-m", 1, &["h"]).await;
    let m = api.call("GET", "/metrics", None, None, &[]).await;
    let text = m.body.as_str().unwrap();
    assert!(text.contains("bramble_pis{state=\"ready\"} 1"), "{text}");
    // Racking ran as a job; nothing is queued or failed, so no job gauge has a sample.
    assert!(text.contains("# TYPE bramble_jobs gauge"), "{text}");
    assert!(!text.contains("bramble_jobs{"), "{text}");
    assert!(text.contains("bramble_controllers{state=\"alive\"} 1"), "{text}");
    let doc = api.call("GET", "/v1/openapi.json", None, None, &[]).await;
    assert_eq!(doc.body["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    assert!(doc.body["paths"]["/v1/pis/{id}/reimage"]["post"].is_object());

    // The checked-in copy must match what the code generates.
    let generated = bramble::api::openapi::document();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    if std::env::var("BRAMBLE_UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run `BRAMBLE_UPDATE_OPENAPI=1 cargo test -p bramble --test api metrics_and_openapi`"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_pis_console_is_shown_per_boot_to_its_owner_only() {
    async fn case(api: Api, op: &str, s: &bramble::api::AppState) {
        use bramble::db::console::ConsoleLimits;
        use bramble::ids::PiId;
        let pis = api.rack(op, "shelf-c", 1, &["alice", "bob"]).await;
        let (alice_pi, bob_pi) = (&pis[0], &pis[1]);
        let alice = api.customer_token(op, "alice").await;
        let limits = ConsoleLimits { keep_boots: 5, boot_bytes: 1 << 20 };
        let lines =
            vec![(1, b"Linux version 6.1".to_vec()), (2, b"ansi \x1b[1m bad \xff".to_vec())];
        s.db.append_console(&[(PiId(alice_pi.clone()), lines)], limits).await.unwrap();

        let r = api.get(&format!("/v1/pis/{alice_pi}/console"), &alice).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["boot"]["boot"], 1);
        assert_eq!(r.body["boots"].as_array().unwrap().len(), 1);
        let l = &r.body["lines"];
        assert_eq!(l[0]["text"], "Linux version 6.1");
        assert!(l[0].get("raw_hex").is_none(), "exact text needs no raw bytes");
        assert_eq!(l[1]["shown"], "ansi ␛[1m bad \\xff");
        assert_eq!(l[1]["raw_hex"], hex_of(b"ansi \x1b[1m bad \xff"));
        // Paging on with after= and limit=.
        let first = l[0]["id"].as_i64().unwrap();
        let r = api.get(&format!("/v1/pis/{alice_pi}/console?after={first}&limit=1"), &alice).await;
        assert_eq!(r.body["lines"].as_array().unwrap().len(), 1);
        assert_eq!(r.body["more"], false);

        // Another customer's Pi, or a boot not kept: 404. Bad parameters name the field.
        let r = api.get(&format!("/v1/pis/{bob_pi}/console"), &alice).await;
        assert_problem(&r, 404, "not_found");
        let r = api.get(&format!("/v1/pis/{alice_pi}/console?boot=9"), &alice).await;
        assert_problem(&r, 404, "not_found");
        for (q, field) in
            [("limit=0", "limit"), ("boot=0", "boot"), ("boot=x", "boot"), ("nope=1", "nope")]
        {
            let r = api.get(&format!("/v1/pis/{alice_pi}/console?{q}"), &alice).await;
            assert_problem(&r, 422, "invalid_input");
            assert!(r.body.to_string().contains(field), "{q}: {:?}", r.body);
        }
        // A Pi that sent nothing: no boot, no lines.
        let r = api.get(&format!("/v1/pis/{bob_pi}/console"), op).await;
        assert_eq!((r.status.as_u16(), &r.body["boot"]), (200, &serde_json::Value::Null));
    }
    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    each_backend!(case);
}
