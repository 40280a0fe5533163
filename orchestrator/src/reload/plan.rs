//! The pure rule of a reload: given the running configuration and the file's new one,
//! which keys change live, which need a restart, and what runs from now on.
//!
//! A key needs a restart when what uses it is built once at start and cannot be rebuilt
//! safely under a running controller: the listener, the database pool, the state and
//! image directories, address plans already handed out, netboot's sockets and storage
//! interfaces, the job runner's leases, the cluster membership. Its running value stays
//! in force, so the next reload lists it again until the file matches the running
//! controller or the controller restarts. Everything read at use through
//! [`super::LiveConfig`] applies live.
//!
//! Sections that only exist or not: adding or removing `[webhooks]` needs a restart (the
//! notifier and its cluster lease run only when it is there); changing its keys while it
//! stays applies live. Likewise `[events] boot_retention_days` between 0 (keep forever,
//! no pruning task) and a number of days.

use crate::config::{Config, ImagesConfig, JobsConfig, SwitchesConfig};
use crate::webhooks::WebhookConfig;

/// What a reload does with the file's new configuration.
#[derive(Debug, Clone)]
pub struct ReloadPlan {
    /// Keys, as written in the file, whose new value takes effect now.
    pub live: Vec<&'static str>,
    /// Keys whose new value waits for a restart; their running value stays in force.
    pub restart: Vec<&'static str>,
    /// What runs from now on: the file's configuration, except that every key in
    /// `restart` keeps its running value.
    pub config: Config,
}

impl ReloadPlan {
    /// Whether the file and the running configuration agree.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

struct Planner<'a> {
    running: &'a Config,
    live: Vec<&'static str>,
    restart: Vec<&'static str>,
    /// Starts as the file's configuration; restart keys are put back to running values.
    config: Config,
}

/// A key needing a restart: listed when it differs, and its running value kept.
macro_rules! restart {
    ($p:ident, $key:literal, $($field:ident).+) => {
        if $p.running.$($field).+ != $p.config.$($field).+ {
            $p.restart.push($key);
            $p.config.$($field).+ = $p.running.$($field).+.clone();
        }
    };
}

/// A key applying live: listed when it differs; the file's value is already in place.
macro_rules! live {
    ($p:ident, $key:literal, $($field:ident).+) => {
        if $p.running.$($field).+ != $p.config.$($field).+ {
            $p.live.push($key);
        }
    };
}

/// Compares the running configuration with the file's new one (both already validated,
/// with the same command-line overrides applied).
pub fn plan(running: &Config, file: &Config) -> ReloadPlan {
    // Every field is named, so a new one does not compile until it is classified below.
    let Config {
        listen: _,
        database_url: _,
        state_dir: _,
        pools: _,
        public_vlan: _,
        public_gateway: _,
        job_lease: _,
        job_poll: _,
        jobs,
        images,
        switches,
        webhooks: _,
        netboot: _,
        cluster: _,
        events: _,
        snapshots: _,
        rescue: _,
        power: _,
        log: _,
        tls: _,
    } = file;
    let JobsConfig {
        lease: _,
        poll: _,
        max_parallel: _,
        settle: _,
        boot_timeout: _,
        power_confirm: _,
        rack_group_size: _,
        rack_group_pause: _,
        rack_await: _,
        ssh_timeout: _,
    } = jobs;
    let ImagesConfig { store_dir: _, nfs: _, mirror: _ } = images;
    let SwitchesConfig { snmp: _, reconcile_every: _ } = switches;

    let mut p = Planner { running, live: Vec::new(), restart: Vec::new(), config: file.clone() };
    restart!(p, "listen", listen);
    restart!(p, "database", database_url);
    restart!(p, "state_dir", state_dir);
    addressing(&mut p);

    restart!(p, "jobs.lease_seconds", jobs.lease);
    restart!(p, "jobs.poll_interval_ms", jobs.poll);
    restart!(p, "jobs.max_parallel", jobs.max_parallel);
    p.config.job_lease = p.config.jobs.lease;
    p.config.job_poll = p.config.jobs.poll;
    live!(p, "jobs.settle_ms", jobs.settle);
    live!(p, "jobs.boot_timeout_seconds", jobs.boot_timeout);
    live!(p, "jobs.power_confirm_seconds", jobs.power_confirm);
    live!(p, "jobs.rack_group_size", jobs.rack_group_size);
    live!(p, "jobs.rack_group_pause_ms", jobs.rack_group_pause);
    live!(p, "jobs.rack_await_seconds", jobs.rack_await);
    live!(p, "jobs.ssh_timeout_seconds", jobs.ssh_timeout);

    restart!(p, "images.store_dir", images.store_dir);
    restart!(p, "images.nfs", images.nfs);
    // Only `bramble image build` reads it, from the file, each time.
    live!(p, "images.mirror", images.mirror);

    live!(p, "switches.snmp_timeout_ms", switches.snmp.timeout);
    live!(p, "switches.snmp_retries", switches.snmp.retries);
    restart!(p, "switches.reconcile_seconds", switches.reconcile_every);

    webhooks(&mut p);

    restart!(p, "console", netboot.console);
    restart!(p, "netboot", netboot);

    restart!(p, "cluster.name", cluster.name);
    // `advertise` defaults to `http://<listen>`: a change that only follows `listen` is
    // listed as `listen` alone.
    let follows_listen = |c: &Config| c.cluster.advertise == format!("http://{}", c.listen);
    if follows_listen(running) && follows_listen(file) {
        p.config.cluster.advertise = running.cluster.advertise.clone();
    }
    restart!(p, "cluster.advertise", cluster.advertise);
    restart!(p, "cluster.heartbeat_ms", cluster.heartbeat);
    restart!(p, "cluster.lease_ms", cluster.lease);
    // The certificate and key files themselves are re-read on SIGHUP by the TLS server
    // (`tls::server`); which files, and turning TLS on or off, need a restart.
    restart!(p, "tls", tls);

    let days = (running.events.boot_retention_days, p.config.events.boot_retention_days);
    if days.0.is_some() == days.1.is_some() {
        live!(p, "events.boot_retention_days", events.boot_retention_days);
    } else {
        restart!(p, "events.boot_retention_days", events.boot_retention_days);
    }

    live!(p, "snapshots.keep", snapshots.keep);
    live!(p, "snapshots.max_manual", snapshots.max_manual);
    live!(p, "snapshots.max_age_days", snapshots.max_age_days);
    live!(p, "snapshots.sweep_seconds", snapshots.sweep);

    live!(p, "rescue.image", rescue.image);

    live!(p, "power.max_cycles", power.max_cycles);
    live!(p, "power.cycle_window_seconds", power.window);

    live!(p, "log.filter", log.filter);

    ReloadPlan { live: p.live, restart: p.restart, config: p.config }
}

/// `[addressing]`: addresses already handed out follow the running plan.
fn addressing(p: &mut Planner<'_>) {
    let (old, new) = (&p.running.pools.storage_vlans, &p.config.pools.storage_vlans);
    if old.start() != new.start() {
        p.restart.push("addressing.storage_vlan_first");
    }
    if old.end() != new.end() {
        p.restart.push("addressing.storage_vlan_last");
    }
    p.config.pools.storage_vlans = old.clone();
    restart!(p, "addressing.storage_supernet", pools.storage_supernet);
    restart!(p, "addressing.public_prefix", pools.public_prefix);
    restart!(p, "addressing.public_vlan", public_vlan);
    restart!(p, "addressing.public_gateway", public_gateway);
}

/// `[webhooks]`: its keys apply live while the section stays; adding or removing it
/// needs a restart.
fn webhooks(p: &mut Planner<'_>) {
    match (&p.running.webhooks, &p.config.webhooks) {
        (None, None) => {}
        (Some(old), Some(new)) => {
            let WebhookConfig {
                url,
                secret,
                timeout,
                max_attempts,
                first_backoff,
                kinds,
                tls,
                poll_interval: _,
                gap_grace: _,
            } = new;
            let keys = [
                ("webhooks.url", old.url != *url),
                ("webhooks.secret", old.secret != *secret),
                ("webhooks.timeout_ms", old.timeout != *timeout),
                ("webhooks.max_attempts", old.max_attempts != *max_attempts),
                ("webhooks.first_backoff_ms", old.first_backoff != *first_backoff),
                ("webhooks.kinds", old.kinds != *kinds),
                ("webhooks.ca_file", old.tls != *tls),
            ];
            p.live.extend(keys.into_iter().filter(|(_, changed)| *changed).map(|(k, _)| k));
        }
        _ => {
            p.restart.push("webhooks");
            p.config.webhooks = p.running.webhooks.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, RawConfig};

    const HOOKS: &str =
        "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"0123456789abcdef\"\n";

    fn config_with(text: &str, overrides: &Overrides) -> Config {
        let raw: RawConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        Config::from_raw(raw, "t.toml", overrides).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn config(text: &str) -> Config {
        let base = Overrides {
            state_dir: Some("/srv/bramble".into()),
            name: Some("ctl-1".into()),
            ..Overrides::default()
        };
        config_with(text, &base)
    }

    fn same(a: &Config, b: &Config) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        for text in ["", HOOKS, "listen = \"127.0.0.1:9000\"\n[jobs]\nsettle_ms = 10\n"] {
            let c = config(text);
            let p = plan(&c, &config(text));
            assert!(p.is_empty(), "{text}: {p:?}");
            assert!(same(&p.config, &c));
        }
    }

    /// (running file, new file, the one key that changed), each applying live.
    const LIVE: &[(&str, &str, &str)] = &[
        ("", "[jobs]\nsettle_ms = 1", "jobs.settle_ms"),
        ("", "[jobs]\nboot_timeout_seconds = 9", "jobs.boot_timeout_seconds"),
        ("", "[jobs]\npower_confirm_seconds = 9", "jobs.power_confirm_seconds"),
        ("", "[jobs]\nrack_group_size = 2", "jobs.rack_group_size"),
        ("", "[jobs]\nrack_group_pause_ms = 1", "jobs.rack_group_pause_ms"),
        ("", "[jobs]\nrack_await_seconds = 9", "jobs.rack_await_seconds"),
        ("", "[jobs]\nssh_timeout_seconds = 9", "jobs.ssh_timeout_seconds"),
        ("", "[images]\nmirror = \"http://apt.local/debian\"", "images.mirror"),
        ("", "[switches]\nsnmp_timeout_ms = 50", "switches.snmp_timeout_ms"),
        ("", "[switches]\nsnmp_retries = 0", "switches.snmp_retries"),
        (
            HOOKS,
            "[webhooks]\nurl = \"http://b.example/x\"\nsecret = \"0123456789abcdef\"",
            "webhooks.url",
        ),
        (
            HOOKS,
            "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"fedcba9876543210\"",
            "webhooks.secret",
        ),
        (
            HOOKS,
            concat!(
                "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
                "timeout_ms = 5"
            ),
            "webhooks.timeout_ms",
        ),
        (
            HOOKS,
            concat!(
                "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
                "max_attempts = 1"
            ),
            "webhooks.max_attempts",
        ),
        (
            HOOKS,
            concat!(
                "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
                "first_backoff_ms = 5"
            ),
            "webhooks.first_backoff_ms",
        ),
        (
            HOOKS,
            concat!(
                "[webhooks]\nurl = \"http://a.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
                "kinds = [\"*\"]"
            ),
            "webhooks.kinds",
        ),
        ("", "[events]\nboot_retention_days = 7", "events.boot_retention_days"),
        ("", "[snapshots]\nkeep = 1", "snapshots.keep"),
        ("", "[snapshots]\nmax_manual = 0", "snapshots.max_manual"),
        ("", "[snapshots]\nmax_age_days = 0", "snapshots.max_age_days"),
        ("", "[snapshots]\nsweep_seconds = 5", "snapshots.sweep_seconds"),
        ("", "[rescue]\nimage = \"other\"", "rescue.image"),
        ("", "[power]\nmax_cycles = 1", "power.max_cycles"),
        ("", "[power]\ncycle_window_seconds = 60", "power.cycle_window_seconds"),
        ("", "[log]\nfilter = \"debug\"", "log.filter"),
        ("[log]\nfilter = \"debug\"", "", "log.filter"),
    ];

    /// Each case changes one key: the plan lists it alone, as live or restart, and what
    /// runs from now on is the new file (live) or the running configuration (restart).
    fn check(cases: &[(&str, &str, &str)], live: bool) {
        for (old, new, key) in cases {
            let (running, file) = (config(old), config(new));
            let p = plan(&running, &file);
            let (listed, other) = if live { (&p.live, &p.restart) } else { (&p.restart, &p.live) };
            assert_eq!((listed.as_slice(), other.len()), (&[*key][..], 0), "{new}");
            let runs = if live { &file } else { &running };
            assert!(same(&p.config, runs), "{key} (live: {live}):\n{:?}", p.config);
        }
    }

    #[test]
    fn live_keys_apply_at_once() {
        check(LIVE, true);
    }

    /// As [`LIVE`], for keys that need a restart.
    const RESTART: &[(&str, &str, &str)] = &[
        ("", "listen = \"127.0.0.1:9\"", "listen"),
        ("", "database = \"postgres://db/bramble\"", "database"),
        ("", "[addressing]\nstorage_supernet = \"10.47.0.0/16\"", "addressing.storage_supernet"),
        ("", "[addressing]\nstorage_vlan_first = 300", "addressing.storage_vlan_first"),
        ("", "[addressing]\nstorage_vlan_last = 3000", "addressing.storage_vlan_last"),
        ("", "[addressing]\npublic_vlan = 132", "addressing.public_vlan"),
        ("", "[addressing]\npublic_gateway = \"2001:db8:0:84::fe\"", "addressing.public_gateway"),
        ("", "[jobs]\nlease_seconds = 9", "jobs.lease_seconds"),
        ("", "[jobs]\npoll_interval_ms = 99", "jobs.poll_interval_ms"),
        ("", "[jobs]\nmax_parallel = 2", "jobs.max_parallel"),
        ("", "[images]\nnfs = \"kernel\"", "images.nfs"),
        ("", "[switches]\nreconcile_seconds = 5", "switches.reconcile_seconds"),
        ("", HOOKS, "webhooks"),
        (HOOKS, "", "webhooks"),
        ("", "[netboot]\nenabled = true", "netboot"),
        ("", "[netboot]\nrefresh_seconds = 5", "netboot"),
        ("", "[console]\nkeep_boots = 2", "console"),
        ("", "[cluster]\nadvertise = \"http://ctl-1:8080\"", "cluster.advertise"),
        ("", "[cluster]\nheartbeat_ms = 500", "cluster.heartbeat_ms"),
        ("", "[cluster]\nlease_ms = 60000", "cluster.lease_ms"),
        ("", "[events]\nboot_retention_days = 0", "events.boot_retention_days"),
        ("[events]\nboot_retention_days = 0", "", "events.boot_retention_days"),
    ];

    #[test]
    fn restart_keys_keep_their_running_value() {
        check(RESTART, false);
    }

    #[test]
    fn state_dir_and_cluster_name_need_a_restart() {
        let running = config_with("", &Overrides::default());
        let file = config_with("state_dir = \"/srv/x\"\n[cluster]\nname = \"ctl-9\"", &{
            Overrides::default()
        });
        let p = plan(&running, &file);
        assert!(p.live.is_empty(), "{:?}", p.live);
        for key in ["state_dir", "cluster.name", "images.store_dir", "netboot"] {
            assert!(p.restart.contains(&key), "{key} in {:?}", p.restart);
        }
        assert!(same(&p.config, &running));
    }

    #[test]
    fn a_mixed_file_applies_its_live_part_and_keeps_the_rest() {
        let running = config(HOOKS);
        let file = config(concat!(
            "listen = \"0.0.0.0:8443\"\n[jobs]\nboot_timeout_seconds = 42\nmax_parallel = 3\n",
            "[webhooks]\nurl = \"http://b.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
            "[log]\nfilter = \"info,bramble=debug\"\n"
        ));
        let p = plan(&running, &file);
        assert_eq!(p.live, ["jobs.boot_timeout_seconds", "webhooks.url", "log.filter"]);
        assert_eq!(p.restart, ["listen", "jobs.max_parallel"]);
        let c = &p.config;
        assert_eq!(c.listen, running.listen);
        assert_eq!(c.jobs.max_parallel, running.jobs.max_parallel);
        assert_eq!(c.jobs.boot_timeout.as_secs(), 42);
        assert_eq!(c.webhooks.as_ref().unwrap().url.as_str(), "http://b.example/hooks");
        assert_eq!(c.log.filter.as_deref(), Some("info,bramble=debug"));
        // The running listen address is still not the file's: the next reload says so
        // again, and once the file is put back nothing is pending.
        let again = plan(c, &file);
        assert_eq!(
            (again.live.len(), again.restart.as_slice()),
            (0, &["listen", "jobs.max_parallel"][..])
        );
        assert!(
            plan(
                c,
                &config(concat!(
                    "[jobs]\nboot_timeout_seconds = 42\n",
                    "[webhooks]\nurl = \"http://b.example/hooks\"\nsecret = \"0123456789abcdef\"\n",
                    "[log]\nfilter = \"info,bramble=debug\"\n"
                ))
            )
            .is_empty()
        );
    }

    #[test]
    fn the_command_line_overrides_hold_across_a_reload() {
        let o = Overrides { listen: Some("127.0.0.1:7000".into()), ..Overrides::default() };
        let running = config_with("listen = \"127.0.0.1:1\"", &o);
        let p = plan(&running, &config_with("listen = \"127.0.0.1:2\"", &o));
        assert!(p.is_empty(), "--listen beats the file: {p:?}");
    }

    #[test]
    fn a_webhook_section_added_with_live_changes_lists_only_the_section() {
        let p = plan(
            &config("[jobs]\nsettle_ms = 1"),
            &config(&format!("{HOOKS}\n[jobs]\nsettle_ms = 2")),
        );
        assert_eq!(
            (p.live.as_slice(), p.restart.as_slice()),
            (&["jobs.settle_ms"][..], &["webhooks"][..])
        );
        assert!(p.config.webhooks.is_none(), "no notifier runs until a restart");
        assert_eq!(p.config.jobs.settle.as_millis(), 2);
    }
}
