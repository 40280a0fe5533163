//! PoE that cannot hurt, on a virtual shelf: a power-off whose port keeps delivering
//! power (the switch's stuck-on fault) fails its job naming the fault, and the Pi is not
//! reported off; a 96-port shelf racked under a PoE budget that holds only 60 Pis at
//! full draw powers on in waves the switch never refuses, and every Pi answers, also when
//! each wave has finished booting before the next is sized.

use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::Lab;
use bramble::lifecycle::PiState;
use bramble_tests::shelf;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_off_the_switch_does_not_carry_out_fails_and_the_pi_stays_on() {
    let _turn = shelf::serial().await;
    let lab = shelf::racked(shelf::options(2, 41, 'p')).await;
    let pis = lab.pis().await.expect("pis");
    let pi = pis.iter().find(|p| p.port == Some(1)).expect("Pi in port 1");
    lab.switch.set_stuck_on(1, true).expect("fault");
    let job = lab
        .call(
            reqwest::Method::POST,
            &format!("/v1/pis/{}/power-off", pi.id),
            Some(json!({})),
            &[202],
        )
        .await
        .expect("power-off");
    let id = job["id"].as_str().expect("job id");
    let done = lab.wait_job(id, Duration::from_secs(60)).await.expect("job");
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let operator = done.last_error.clone().unwrap_or_default();
    assert!(
        operator.contains("power did not stop") && operator.contains("deliveringPower"),
        "{operator}"
    );
    let customer = done.customer_message.clone().unwrap_or_default();
    assert!(customer.contains("still delivers power"), "{customer}");
    let now = lab.pis().await.expect("pis");
    let now = now.iter().find(|p| p.id == pi.id).expect("the Pi");
    assert_eq!(
        now.power,
        bramble::model::PowerState::On,
        "a Pi still powered is not reported off: {now:?}"
    );
    assert!(lab.switch.state().delivering(1));
    lab.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racking_96_pis_under_a_budget_for_60_powers_them_in_waves_and_all_answer() {
    const PIS: u16 = 96;
    let _turn = shelf::serial().await;
    let mut opts = shelf::options(PIS, 0, 'w');
    opts.storage_supernet = "10.109.0.0/23".into();
    // A pause long enough for each wave's Pis to finish booting (down to their idle
    // draw) before the next one is sized: the budget must then still make room, from
    // their models' worst case rather than the worst of the table for unseen ports.
    opts.jobs_toml = opts
        .jobs_toml
        .replace("rack_group_size = 4", "rack_group_size = 96")
        .replace("rack_group_pause_ms = 200", "rack_group_pause_ms = 3000");
    let lab = Lab::up(opts).await.expect("lab up");
    // The lab's mix at full draw (a quarter each of 3B, 3B+, 4B and 5: 6.7, 6.7, 9.2 and
    // 17.4 W, 960 W for 96); the budget holds 60 of them on average (600 W).
    let full: u32 = (1..=PIS)
        .map(|p| {
            bramble::poe::draw::worst_case_mw(bramble::lab::wiring::model_name(
                bramble::lab::wiring::model_for(p),
            ))
        })
        .sum();
    let budget_w = u32::try_from(u64::from(full) * 60 / 96 / 1000).expect("watts");
    assert!(budget_w * 1000 < full, "the budget does not fit the whole shelf at once");
    lab.switch.set_poe_budget(budget_w).expect("budget");
    let denied = lab.switch.power_denials();
    let started = Instant::now();
    let job = lab.rack(Duration::from_secs(600)).await.expect("rack");
    let took = started.elapsed();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let pis = lab.pis().await.expect("pis");
    let ready = pis.iter().filter(|p| p.state == PiState::Ready).count();
    if ready != usize::from(PIS) {
        panic!("{ready} of {PIS} Pis answered after {took:?}\n{}", why_not(&lab).await);
    }
    let state = lab.switch.state();
    for pi in &pis {
        let port = pi.port.expect("a racked Pi has a port");
        assert!(state.delivering(port), "ready {} on port {port}, which delivers no power", pi.id);
    }
    assert_eq!(lab.switch.power_denials(), denied, "the switch never had to refuse power");
    let waves = lab
        .call(reqwest::Method::GET, "/v1/events?kind=shelf.power_group&limit=100", None, &[200])
        .await
        .expect("events");
    let waves = waves["items"].as_array().expect("items").len();
    assert!(waves >= 2, "the budget split the shelf into waves: {waves}");
    eprintln!(
        "racked {PIS} Pis under {budget_w} W in {waves} waves in {:.1} s",
        took.as_secs_f64()
    );
    lab.down().await;
}

/// What a failed racking left behind: the flags of the slots without a Pi, the shelf's
/// events, and the simulated Pis' boot states counted.
async fn why_not(lab: &Lab) -> String {
    let flags = lab
        .call(reqwest::Method::GET, "/v1/shelves/e2e/status", None, &[200])
        .await
        .map(|s| {
            let slots = s["slots"].as_array().cloned().unwrap_or_default();
            slots
                .iter()
                .filter(|s| !s["flag"].is_null())
                .map(|s| format!("port {}: {}", s["port"], s["flag"]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| format!("status unreadable: {e}"));
    let mut events = Vec::new();
    for kind in ["shelf.power_group", "shelf.power_budget", "shelf.racked"] {
        let page = lab
            .call(reqwest::Method::GET, &format!("/v1/events?kind={kind}&limit=100"), None, &[200])
            .await;
        match page {
            Ok(page) => events.extend(
                page["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| format!("{} {}", i["at"], i["message"])),
            ),
            Err(e) => events.push(format!("{kind} unreadable: {e}")),
        }
    }
    events.sort();
    let events = events.join("\n");
    let mut states = std::collections::BTreeMap::<String, Vec<u16>>::new();
    for (port, pi) in lab.cabling.pis() {
        states.entry(pi.state().to_string()).or_default().push(port);
    }
    format!("flagged slots:\n{flags}\nshelf events:\n{events}\nsimulated Pis by state: {states:?}")
}
