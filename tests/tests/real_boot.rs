//! Real Linux booting from Bramble, end to end, as a customer sees it. Two QEMU Pis
//! (`bramble_lab::qemupi`) sit in a lab shelf; a customer reinstalls both with
//! debian-bookworm-arm64 and their own SSH key through the HTTP API. Each reads the
//! image's real kernel and initramfs over the lab's DHCP and TFTP (the first with the
//! static `ip=` Bramble generates, the second told `ip=dhcp`, so its initramfs takes its
//! address from Bramble's DHCP), mounts its own root from the lab's nfs-ganesha and
//! starts sshd under systemd. The customer then logs in with their key from the
//! controller's side of the storage link and checks the hostname, the NFS root, that the
//! machine-id and host keys differ between the two Pis, and that the host keys SSH sees
//! are the fingerprints the API shows. A file written on the first Pi survives a reboot
//! through the API (with a new boot id), and is gone after a second reinstall, which
//! also brings new host keys on the same address. After the reboot, each Pi's console
//! (`GET /v1/pis/{id}/console`, received over netconsole) holds its own kernel's lines:
//! the version banner and the NFS root mount, not the other Pi's; another customer
//! gets 404.
//!
//! Needs qemu-system-arm and openssh-client, and the debian-bookworm-arm64 base in the
//! image build cache (`BRAMBLE_IMAGE_CACHE`, default /var/cache/bramble/images; built
//! there on a miss, about six minutes). Timings are printed (`--nocapture`); the
//! benchmark `bench/realboot.sh` collects them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bramble::jobs::model::JobState;
use bramble::lab::{Lab, REAL_IMAGE};
use bramble_lab::pisim::{Event, PiState, PiStatus};
use bramble_lab::qemupi::QemuPi;
use bramble_tests::shelf;
use serde_json::{Value, json};

/// A real kernel under TCG on a shared two-core machine: generous.
const SSH_LIMIT: Duration = Duration::from_secs(420);
const JOB_LIMIT: Duration = Duration::from_secs(600);
const CUSTOMER: &str = "cust-real";
const MARKER: &str = "/root/bramble-e2e-marker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reinstalls_reboots_and_reinstalls_real_pis_and_logs_in_with_ssh() {
    let _one = shelf::serial().await;
    let mut opts = shelf::options(2, 12, 'q');
    opts.real = 2;
    opts.real_dhcp = vec![2];
    let started = Instant::now();
    let lab = shelf::racked(opts).await;
    println!("lab up and racked: {:.1?}", started.elapsed());
    let pis = shelf::pi_ports(&lab).await;
    for (pi, _) in &pis {
        shelf::assign(&lab, pi, CUSTOMER).await;
    }
    let customer = Customer::new(&lab, shelf::customer_token(&lab, CUSTOMER).await);

    // Reinstall both at once.
    let asked = Instant::now();
    let jobs: Vec<String> = pis.iter().map(|(pi, _)| pi.clone()).collect();
    let mut ids = Vec::new();
    for pi in &jobs {
        ids.push(customer.reinstall(pi).await);
    }
    for (id, (pi, port)) in ids.iter().zip(&pis) {
        let done = lab.wait_job(id, JOB_LIMIT).await.expect("job");
        let console = console_of(&lab, *port);
        assert_eq!(done.state, JobState::Succeeded, "reinstall {pi}: {done:?}\n{}", tail(&console));
    }
    println!("both reinstall jobs succeeded: {:.1?}", asked.elapsed());

    let mut first_boot = Vec::new();
    for (pi, port) in &pis {
        let shown = customer.pi(pi).await;
        let address = shown["storage_ip"].as_str().expect("storage address").to_string();
        let qemu = lab.cabling.qemu(*port).expect("a QEMU Pi in the slot");
        running(&qemu).await;
        let running = Instant::now();
        let answer = customer
            .ssh_until(
                &address,
                "hostname; findmnt -no FSTYPE,SOURCE /; cat /etc/machine-id; \
                 cat /proc/sys/kernel/random/boot_id; cat /proc/cmdline",
                &qemu,
            )
            .await;
        println!("port {port}: SSH answering {:.1?} after its VM was running", running.elapsed());
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(lines.len(), 5, "{answer}");
        assert_eq!(lines[0], format!("{}-p{port:02}", lab.opts.shelf), "hostname");
        let controller = dot_one(&address);
        assert_eq!(lines[1], format!("nfs    {controller}:/export/{address}"), "root");
        let cmdline = lines[4];
        if *port == 2 {
            assert!(cmdline.ends_with("ip=dhcp"), "port 2 boots with ip=dhcp: {cmdline}");
        } else {
            assert!(cmdline.contains(&format!("ip={address}::")), "static ip=: {cmdline}");
        }
        let keys = customer.host_keys_seen(&address).await;
        assert_eq!(keys, api_fingerprints(&shown), "SSH sees the host keys the API shows");
        first_boot.push(Boot {
            pi: pi.clone(),
            port: *port,
            address,
            machine_id: lines[2].to_string(),
            boot_id: lines[3].to_string(),
            keys,
        });
    }
    let (a, b) = (&first_boot[0], &first_boot[1]);
    assert_ne!(a.machine_id, b.machine_id, "two Pis share a machine-id");
    assert!(a.keys.is_disjoint(&b.keys), "two Pis share a host key");
    println!("{}", boot_split(&customer, &a.address, &lab, &a.pi, a.port).await);

    // A file written on the Pi survives a reboot through the API; the boot id changes.
    customer.ssh(&a.address, &format!("echo kept > {MARKER} && sync")).await.expect("write");
    let rebooting = Instant::now();
    let job = customer.post(&format!("/v1/pis/{}/reboot", a.pi), json!({})).await;
    let done = lab.wait_job(&job, JOB_LIMIT).await.expect("reboot job");
    assert_eq!(done.state, JobState::Succeeded, "reboot: {done:?}");
    let qemu_a = lab.cabling.qemu(a.port).expect("QEMU Pi");
    running(&qemu_a).await;
    let after = customer
        .ssh_until(
            &a.address,
            &format!("cat {MARKER}; cat /proc/sys/kernel/random/boot_id"),
            &qemu_a,
        )
        .await;
    println!("reboot through the API to SSH answering: {:.1?}", rebooting.elapsed());
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.first().copied(), Some("kept"), "the file survived the reboot: {after}");
    assert_ne!(lines.get(1).copied(), Some(a.boot_id.as_str()), "the Pi really rebooted");

    // The console without a BMC: the reboot's kernel lines, through the API.
    check_consoles(&lab, &customer, a, b).await;

    // A second reinstall: the file is gone, the host keys are new, the address is the same.
    let again = Instant::now();
    let job = customer.reinstall(&a.pi).await;
    let done = lab.wait_job(&job, JOB_LIMIT).await.expect("second reinstall");
    assert_eq!(done.state, JobState::Succeeded, "second reinstall: {done:?}");
    let shown = customer.pi(&a.pi).await;
    assert_eq!(shown["storage_ip"].as_str(), Some(a.address.as_str()), "same address");
    running(&qemu_a).await;
    let gone = customer
        .ssh_until(&a.address, &format!("test -e {MARKER} && echo present || echo gone"), &qemu_a)
        .await;
    println!("second reinstall to SSH answering: {:.1?}", again.elapsed());
    assert_eq!(gone, "gone", "the reinstall wiped the customer's file");
    let keys = customer.host_keys_seen(&a.address).await;
    assert_eq!(keys, api_fingerprints(&shown), "SSH sees the new host keys the API shows");
    assert!(keys.is_disjoint(&a.keys), "a reinstall makes new host keys");
    let state_dir = lab.opts.state_dir.clone();
    lab.down().await;
    remove_state_dir(&state_dir).await;
}

/// After a reboot through the API, the first Pi's latest console boot holds its kernel's
/// own lines (the version banner, once, and the NFS root mount); the
/// second Pi's holds its own root, not the first's; follow mode streams lines; another
/// customer gets 404.
async fn check_consoles(lab: &Lab, customer: &Customer<'_>, a: &Boot, b: &Boot) {
    let (ca, cb) = (dot_one(&a.address), dot_one(&b.address));
    let root_a = format!("NFS root {ca}:/export/{} mounted", a.address);
    let root_b = format!("NFS root {cb}:/export/{} mounted", b.address);
    let start = Instant::now();
    let (console_a, console_b) = loop {
        let (sa, va) = customer.console(&a.pi, "").await;
        let (sb, vb) = customer.console(&b.pi, "").await;
        assert_eq!((sa, sb), (200, 200), "{va} {vb}");
        let text = |v: &Value| -> String {
            v["lines"]
                .as_array()
                .map_or(vec![], |l| {
                    l.iter().map(|l| l["text"].as_str().unwrap_or_default().to_string()).collect()
                })
                .join("\n")
        };
        let (ta, tb) = (text(&va), text(&vb));
        if (ta.contains("Linux version") && ta.contains(&root_a) && tb.contains(&root_b))
            || start.elapsed() > Duration::from_secs(60)
        {
            break ((va, ta), (vb, tb));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ((va, ta), (vb, tb)) = (console_a, console_b);
    let serial = tail(&console_of(lab, a.port));
    assert!(ta.contains("Linux version"), "no kernel banner in Pi a's console:\n{ta}\n{serial}");
    // The banner predates netconsole (a module the initramfs loads): netconsole sends the
    // log so far when it registers with a boot-time target, so it arrives once.
    assert_eq!(ta.matches("] Linux version ").count(), 1, "the banner once:\n{ta}");
    for l in ta.lines().filter(|l| {
        l.contains("Linux version") || l.contains("netconsole") || l.contains("NFS root")
    }) {
        println!("console of Pi a: {l}");
    }
    assert!(ta.contains(&root_a), "no NFS root line in Pi a's console:\n{ta}");
    assert!(tb.contains(&root_b), "no NFS root line in Pi b's console:\n{tb}");
    assert!(!tb.contains(&a.address) && !ta.contains(&root_b), "consoles mixed:\n{ta}\n---\n{tb}");
    // The reboot started a new console boot: Pi a has its reinstall's and the reboot's.
    let boots = va["boots"].as_array().expect("boots");
    assert!(boots.len() >= 2, "boots: {boots:?}");
    assert_eq!(va["boot"]["boot"], boots.last().expect("a boot")["boot"], "latest by default");
    let earlier = boots[0]["boot"].as_i64().expect("number");
    let (s, first) = customer.console(&a.pi, &format!("?boot={earlier}")).await;
    assert_eq!(s, 200, "{first}");
    assert!(first["lines"].as_array().is_some_and(|l| !l.is_empty()), "earlier boot kept");
    println!(
        "console: Pi a {} lines in boot {}, Pi b {} lines; {} boots kept for a",
        va["lines"].as_array().map_or(0, Vec::len),
        va["boot"]["boot"],
        vb["lines"].as_array().map_or(0, Vec::len),
        boots.len()
    );
    // Follow mode: server-sent events with the stored lines first.
    let mut r = bramble::tls::client::http()
        .get(format!("{}/v1/pis/{}/console?follow=true", lab.api, a.pi))
        .bearer_auth(&customer.token)
        .send()
        .await
        .expect("GET follow");
    assert_eq!(r.status(), 200);
    let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("an event within 10 s")
        .expect("chunk")
        .unwrap_or_default();
    let chunk = String::from_utf8_lossy(&chunk);
    assert!(chunk.contains("event: line") && chunk.contains("data: {"), "{chunk}");
    // Another customer's token: 404, as for every route of a Pi that is not theirs.
    let other = shelf::customer_token(lab, "cust-other").await;
    let r = bramble::tls::client::http()
        .get(format!("{}/v1/pis/{}/console", lab.api, a.pi))
        .bearer_auth(other)
        .send()
        .await
        .expect("GET as another customer");
    assert_eq!(r.status(), 404);
}

/// Three copies of a real root (the base and two Pis'), about 2 GB: not worth keeping.
/// Daemons the lab stopped may still be writing their last files, so a few tries.
async fn remove_state_dir(dir: &Path) {
    for _ in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => eprintln!("removing {}: {e}; trying again", dir.display()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the Pi's firmware stage is over and its VM runs.
async fn running(qemu: &QemuPi) {
    let state = qemu.wait_for(Duration::from_secs(120), |s| *s == PiState::Running).await;
    assert_eq!(state, PiState::Running, "{}", timeline(&qemu.status()));
}

/// What the first boot of one Pi showed.
struct Boot {
    pi: String,
    port: u16,
    address: String,
    machine_id: String,
    boot_id: String,
    keys: BTreeSet<String>,
}

/// A customer of the lab: their token and their own SSH key pair.
struct Customer<'a> {
    lab: &'a Lab,
    token: String,
    _dir: tempfile::TempDir,
    key: PathBuf,
    public: String,
}

impl<'a> Customer<'a> {
    fn new(lab: &'a Lab, token: String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id_ed25519");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", CUSTOMER, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        Customer { lab, token, _dir: dir, key, public: public.trim().to_string() }
    }

    /// POSTs as the customer; returns the job id of the 202.
    async fn post(&self, path: &str, body: Value) -> String {
        let r = bramble::tls::client::http()
            .post(format!("{}{path}", self.lab.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 202, "POST {path}: {v}");
        v["id"].as_str().expect("job id").to_string()
    }

    async fn reinstall(&self, pi: &str) -> String {
        let body = json!({ "image": REAL_IMAGE, "ssh_keys": [self.public] });
        self.post(&format!("/v1/pis/{pi}/reimage"), body).await
    }

    /// `GET /v1/pis/{pi}/console{query}`: the status and the body.
    async fn console(&self, pi: &str, query: &str) -> (u16, Value) {
        let r = bramble::tls::client::http()
            .get(format!("{}/v1/pis/{pi}/console{query}", self.lab.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET console");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn pi(&self, pi: &str) -> Value {
        let r = bramble::tls::client::http()
            .get(format!("{}/v1/pis/{pi}", self.lab.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET pi");
        assert_eq!(r.status(), 200);
        r.json().await.expect("pi json")
    }

    /// Runs `remote` over SSH with the customer's key, from the controller's namespace.
    async fn ssh(&self, address: &str, remote: &str) -> Result<String, String> {
        let argv =
            bramble::lab::ssh::ssh_argv(self.lab.controller_netns(), &self.key, address, &[remote]);
        let out = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run ssh");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// [`Customer::ssh`] until it answers; fails after [`SSH_LIMIT`], or at once when the
    /// QEMU Pi's machine stopped (a kernel panic: `panic=` and `-no-reboot` end the VM).
    async fn ssh_until(&self, address: &str, remote: &str, qemu: &QemuPi) -> String {
        let console = qemu.config().console_log();
        let start = Instant::now();
        loop {
            match self.ssh(address, remote).await {
                Ok(answer) => return answer,
                Err(e) => {
                    let state = qemu.state();
                    assert_eq!(
                        state,
                        PiState::Running,
                        "the machine stopped: {e}\n{}",
                        tail(&console)
                    );
                    assert!(
                        start.elapsed() < SSH_LIMIT,
                        "no SSH after {SSH_LIMIT:?}: {e}\n{}",
                        tail(&console)
                    );
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The SHA-256 fingerprints of the host keys the Pi's sshd offers, as the real
    /// `ssh-keyscan` and `ssh-keygen -l` see them.
    async fn host_keys_seen(&self, address: &str) -> BTreeSet<String> {
        let script =
            format!("ssh-keyscan -T 10 {address} 2>/dev/null | ssh-keygen -l -E sha256 -f -");
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", self.lab.controller_netns(), "sh", "-c", &script])
            .output()
            .await
            .expect("ssh-keyscan");
        let text = String::from_utf8_lossy(&out.stdout);
        let seen: BTreeSet<String> =
            text.lines().filter_map(|l| l.split_whitespace().nth(1)).map(String::from).collect();
        assert!(!seen.is_empty(), "ssh-keyscan saw no host key: {text}");
        seen
    }
}

/// The fingerprints `GET /v1/pis/{id}` shows.
fn api_fingerprints(pi: &Value) -> BTreeSet<String> {
    pi["ssh_host_keys"]
        .as_array()
        .expect("ssh_host_keys")
        .iter()
        .map(|k| k["fingerprint"].as_str().expect("fingerprint").to_string())
        .collect()
}

/// The controller's end of a storage /30 (its first address), given the Pi's (the second).
fn dot_one(address: &str) -> String {
    let pi: std::net::Ipv4Addr = address.parse().expect("storage address");
    std::net::Ipv4Addr::from(u32::from(pi) - 1).to_string()
}

fn console_of(lab: &Lab, port: u16) -> PathBuf {
    lab.cabling.qemu(port).map(|q| q.config().console_log()).unwrap_or_default()
}

/// Where a reinstall's time went, for the benchmark: the job's steps and boot events as
/// the controller recorded them (seconds after the job's first event), the firmware
/// stage from the QEMU Pi's own timeline, and the kernel, initramfs (root mounted) and
/// sshd start as the Pi's systemd measured them.
async fn boot_split(
    customer: &Customer<'_>,
    address: &str,
    lab: &Lab,
    pi: &str,
    port: u16,
) -> String {
    let events = shelf::timeline(lab, pi).await;
    let start = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "job.created")
        .and_then(|e| e["at"].as_i64())
        .unwrap_or_default();
    let mut out = String::from("reinstall timeline (s after the job was created):\n");
    for e in events.iter().filter(|e| e["at"].as_i64().unwrap_or_default() >= start) {
        let kind = e["kind"].as_str().unwrap_or_default();
        if kind.starts_with("job.") || kind.starts_with("boot.") || kind.starts_with("power") {
            let at = (e["at"].as_i64().unwrap_or_default() - start) as f64 / 1000.0;
            out.push_str(&format!("  {at:7.2} {kind} {}\n", e["message"].as_str().unwrap_or("")));
        }
    }
    if let Some(q) = lab.cabling.qemu(port) {
        out.push_str(&format!(
            "firmware stage and VM start (QEMU Pi timeline):\n{}",
            timeline(&q.status())
        ));
    }
    let analyze = customer
        .ssh(
            address,
            "dmesg | grep -m1 'Run /init'; systemctl show -p UserspaceTimestampMonotonic; \
             systemctl show -p ActiveEnterTimestampMonotonic ssh.service",
        )
        .await
        .unwrap_or_else(|e| e);
    out.push_str(&format!(
        "on the Pi (since kernel start): initramfs started (dmesg), root mounted and systemd \
         started (UserspaceTimestampMonotonic, µs), sshd up (ActiveEnterTimestampMonotonic, µs):\n\
         {analyze}\n"
    ));
    out
}

fn timeline(status: &PiStatus) -> String {
    let on = status.timeline.iter().rposition(|e| e.event == Event::PowerOn).unwrap_or(0);
    status.timeline[on..].iter().map(|e| format!("  {:>9.3?} {:?}\n", e.elapsed, e.event)).collect()
}

/// The last lines of the Pi's serial console, for failure messages.
fn tail(console: &Path) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(60);
    format!("console ({}):\n{}", console.display(), lines[from..].join("\n"))
}
