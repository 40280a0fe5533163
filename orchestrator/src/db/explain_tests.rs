//! The control panel's hot queries at the size of the original plans: 10,000 Pis (105
//! shelves of 96 on 35 switches, 1,000 customers), 80,000 events and 20,100 jobs, loaded
//! in bulk by SQL that generates the rows. Each query is the statement the code issues
//! (its builder is called, nothing is copied). On PostgreSQL it is planned both as a
//! custom plan and as the generic plan a prepared statement settles on after five
//! executions, and a plan that reads `pis`, `events` or `jobs` whole fails the test; on
//! SQLite any `SCAN` in its query plan does. A failure shows the plan.

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection, Row};

use super::events::EventFilter;
use super::jobs::JobFilter;
use super::pis::PiFilter;
use super::sql::{Sql, Value, bind_all};
use super::{Backend, Db, Order};
use crate::ids::{CustomerId, PiId};
use crate::testing::{postgres_test_db, sqlite_db};

/// The inventory, in dependency order, in SQL both backends run (`generate_series` is
/// not in SQLite: a recursive `n(v)` counts instead). Customer `c` owns the Pis `n`
/// with `n % 1000 == c`, spread over every shelf; Pis 0-99 have an active job.
fn load_statements() -> Vec<String> {
    let rows = |last: u32, insert: &str| {
        format!(
            "WITH RECURSIVE n(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM n WHERE v < {last}) {insert}"
        )
    };
    vec![
        rows(
            34,
            "INSERT INTO switches (id, name, address, driver, trunk_port, created_at) \
            SELECT 'sw-' || v, 'switch-' || v, '10.0.0.' || v, 'standard', 300, 0 FROM n",
        ),
        rows(
            104,
            "INSERT INTO shelves (id, name, switch_id, first_port, last_port, created_at) \
            SELECT 'shelf-' || v, 'rack-' || v, 'sw-' || (v / 3), (v % 3) * 96 + 1, (v % 3) * 96 + 96, 0 FROM n",
        ),
        rows(
            10079,
            "INSERT INTO slots (id, shelf_id, switch_id, port, vlan, storage_net, controller_ip, pi_ip, public_ipv6) \
            SELECT 'slot-' || v, 'shelf-' || (v / 96), 'sw-' || (v / 288), v % 288 + 1, v + 2, \
                'net-' || v, 'ctl-' || v, 'pi-ip-' || v, 'v6-' || v FROM n",
        ),
        rows(
            9999,
            "INSERT INTO pis (id, serial, mac, model, slot_id, owner, image, state, failed_step, power, created_at, updated_at) \
            SELECT 'pi-' || v, 's-' || v, 'mac-' || v, '4b', 'slot-' || v, 'cust-' || (v % 1000), 'debian', \
                CASE WHEN v % 50 = 0 THEN 'failed' ELSE 'deployed' END, NULL, 'on', 0, 0 FROM n",
        ),
        rows(
            20099,
            "INSERT INTO jobs (id, kind, pi_id, params, state, step, attempts, request_hash, requested_by, customer, created_at, updated_at, controller) \
            SELECT 'job-' || (1000000 + v), 'reboot', 'pi-' || (v % 10000), '{}', \
                CASE WHEN v >= 20000 THEN 'queued' ELSE 'succeeded' END, 0, 1, 'h', 'tok-1', 'cust-' || (v % 1000), 0, 0, \
                'ctl-' || (v % 3) FROM n",
        ),
        // Per Pi: its registration, one boot's five timeline events, two jobs' audit events.
        rows(
            79999,
            "INSERT INTO events (at, pi_id, job_id, customer, actor, kind, message, data) \
            SELECT v, 'pi-' || (v % 10000), NULL, 'cust-' || (v % 1000), 'controller', \
                CASE v / 10000 WHEN 0 THEN 'pi.registered' WHEN 1 THEN 'dhcp.discover' WHEN 2 THEN 'dhcp.offer' \
                WHEN 3 THEN 'dhcp.ack' WHEN 4 THEN 'tftp.read' WHEN 5 THEN 'tftp.complete' ELSE 'job.created' END, \
                'event', '{}' FROM n",
        ),
    ]
}

/// Loads the inventory through `conn`.
async fn load(conn: &mut sqlx::AnyConnection) {
    for statement in load_statements() {
        sqlx::query(AssertSqlSafe(statement.clone()))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// EXPLAIN's JSON is of type json, which the `Any` driver does not decode: as text.
const EXPLAIN_TEXT: &str = "CREATE FUNCTION explain_text(statement text) RETURNS text LANGUAGE plpgsql AS $$ \
    DECLARE plan text; BEGIN EXECUTE 'EXPLAIN (FORMAT JSON) ' || statement INTO plan; RETURN plan; END $$";

/// The tables no hot query may read whole.
const GUARDED: &[&str] = &["pis", "events", "jobs"];

/// Every hot query of the control panel, as the code builds it (pages of 100).
fn hot_queries(backend: Backend) -> Vec<(&'static str, Sql)> {
    use super::hardware::{self, By};
    use super::{events, jobs, pis, retention, snapshots, status};
    let customer = || Some(CustomerId("cust-7".into()));
    let pi = || Some(PiId("pi-7".into()));
    let pis = |f: PiFilter, cursor| pis::list_pis_sql(&f, cursor, 100);
    let events = |f: EventFilter, cursor, order| events::list_events_sql(&f, cursor, order, 100);
    let jobs = |f: JobFilter| jobs::list_jobs_sql(&f, None, Order::Desc, 100);
    vec![
        ("a customer's Pis", pis(PiFilter { visible_to: customer(), ..PiFilter::default() }, None)),
        (
            "a customer's Pis, next page",
            pis(PiFilter { visible_to: customer(), ..PiFilter::default() }, Some("pi-4007")),
        ),
        (
            "an operator's list of a customer's Pis",
            pis(PiFilter { owner: customer(), ..PiFilter::default() }, None),
        ),
        ("getting a Pi", pis::get_pi_sql(&PiId("pi-7".into()))),
        (
            "a Pi's events, as its customer",
            events(
                EventFilter { pi: pi(), customer: customer(), kind_prefix: None },
                None,
                Order::Desc,
            ),
        ),
        (
            "a Pi's events, as an operator, oldest first from a cursor",
            events(EventFilter { pi: pi(), ..EventFilter::default() }, Some(7), Order::Asc),
        ),
        (
            "a customer's audit log",
            events(
                EventFilter { customer: customer(), ..EventFilter::default() },
                None,
                Order::Desc,
            ),
        ),
        ("a shelf's status", status::status_sql("rack-42")),
        (
            "a shelf's Pis (?shelf=&limit=100)",
            pis(PiFilter { shelf: Some("rack-42".into()), ..PiFilter::default() }, None),
        ),
        ("a Pi's active job", jobs::active_job_sql(&PiId("pi-7".into()))),
        ("a customer's jobs", jobs(JobFilter { visible_to: customer(), ..JobFilter::default() })),
        ("a Pi's jobs", jobs(JobFilter { pi: pi(), ..JobFilter::default() })),
        ("one batch of boot-timeline pruning", retention::prune_batch_sql(backend, 1_000, 1_000)),
        ("a Pi's snapshots", snapshots::list_snapshots_sql(&PiId("pi-7".into()), None)),
        (
            "a customer's snapshots of a Pi",
            snapshots::list_snapshots_sql(&PiId("pi-7".into()), customer().as_ref()),
        ),
        (
            "a Pi's kernel reads (console boots)",
            super::console::kernel_reads_sql(&PiId("pi-7".into()), 0),
        ),
        ("a DHCP packet's Pi, by MAC", hardware::sighting_pi_sql(By::Mac, "dc:a6:32:00:00:07")),
        ("a TFTP read's Pi, by serial", hardware::sighting_pi_sql(By::Serial, "5eed0007")),
        ("a Pi's boot timeline", super::orchestration::boot_timeline_sql(&PiId("pi-7".into()), 0)),
        (
            "a customer's hardware history of a Pi",
            hardware::hardware_history_sql(&PiId("pi-7".into()), customer().as_ref()),
        ),
        ("/metrics: jobs to alert on", super::gauges::jobs_sql()),
        ("/metrics: the webhook sender's lag", super::gauges::oldest_after_sql(79_000)),
    ]
}

/// A value as an SQL literal, for `EXECUTE name(...)` in this test only.
fn literal(v: &Value) -> String {
    match v {
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Int(n) => n.to_string(),
    }
}

/// Where a plan reads a guarded table whole: a sequential scan, or an index scan with no
/// condition (a walk of the whole index), except over `jobs_one_active_per_pi`, which
/// holds only the active jobs.
fn whole_table_reads(node: &serde_json::Value, found: &mut Vec<String>) {
    let relation = node["Relation Name"].as_str().unwrap_or("");
    let kind = node["Node Type"].as_str().unwrap_or("");
    if GUARDED.contains(&relation) {
        let index = node["Index Name"].as_str().unwrap_or("");
        let unbounded_index = matches!(kind, "Index Scan" | "Index Only Scan")
            && node.get("Index Cond").is_none()
            && index != "jobs_one_active_per_pi";
        if kind == "Seq Scan" || unbounded_index {
            found.push(format!("{kind} on {relation} {index}"));
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        whole_table_reads(child, found);
    }
}

/// A runner's claims, queued and expired-running (`$1`..`$5` as [`super::jobs::claim_sql`]
/// binds them), with the literal arguments to plan them with.
fn claims(backend: Backend) -> Vec<(&'static str, String, Vec<Value>)> {
    use crate::jobs::model::{JobKind, JobState};
    let args = |from: JobState| {
        vec![
            Value::from("ctl-1"),
            Value::Int(60_000),
            Value::Int(1_000),
            Value::from("running"),
            Value::from(from.as_str()),
        ]
    };
    [
        ("a runner's claim of a queued job", JobState::Queued),
        ("a runner's claim of an expired job", JobState::Running),
    ]
    .into_iter()
    .map(|(name, from)| (name, super::jobs::claim_sql(backend, &JobKind::ALL, from), args(from)))
    .collect()
}

/// The plan of `text` (with `$N` placeholders) and its values under `mode`
/// (`force_custom_plan` or `force_generic_plan`).
async fn plan_text(
    conn: &mut sqlx::AnyConnection,
    text: &str,
    values: &[Value],
    mode: &str,
) -> serde_json::Value {
    let args = values.iter().map(literal).collect::<Vec<_>>().join(", ");
    let execute =
        if args.is_empty() { "EXECUTE hot".to_string() } else { format!("EXECUTE hot({args})") };
    sqlx::query(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("PREPARE hot AS {text}")))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("PREPARE {text}: {e}"));
    let row = sqlx::query("SELECT explain_text($1) AS plan")
        .bind(execute)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {text}: {e}"));
    sqlx::query("DEALLOCATE hot").execute(&mut *conn).await.unwrap();
    serde_json::from_str(&row.get::<String, _>("plan")).expect("EXPLAIN's JSON")
}

#[tokio::test]
async fn no_hot_query_reads_pis_events_or_jobs_whole_on_postgres() {
    let Some(t) = postgres_test_db().await else { return };
    let db = Db::connect(&t.url).await.unwrap();
    let started = Instant::now();
    let mut conn = sqlx::AnyConnection::connect(&t.url).await.unwrap();
    load(&mut conn).await;
    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    sqlx::raw_sql(EXPLAIN_TEXT).execute(&mut conn).await.unwrap();
    eprintln!("loaded 10,000 Pis in {:?}", started.elapsed());
    let mut failures = Vec::new();
    let statements = hot_queries(Backend::Postgres)
        .into_iter()
        .map(|(name, sql)| (name, sql.text(Backend::Postgres), sql.values().to_vec()))
        .chain(claims(Backend::Postgres));
    for (name, text, values) in statements {
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = plan_text(&mut conn, &text, &values, mode).await;
            let mut found = Vec::new();
            whole_table_reads(&plan[0]["Plan"], &mut found);
            if !found.is_empty() {
                failures.push(format!(
                    "{name} ({mode}) reads {}:\n{text}\n{}",
                    found.join(", "),
                    serde_json::to_string_pretty(&plan).unwrap()
                ));
            }
        }
    }
    let _ = conn.close().await;
    db.close().await;
    t.drop().await;
    eprintln!("planned in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same on SQLite, the embedded default: `EXPLAIN QUERY PLAN` of each hot query
/// shows no `SCAN` (a walk of a whole table or index) of any table, only `SEARCH`es.
#[tokio::test]
async fn no_hot_query_scans_a_table_on_sqlite() {
    let t = sqlite_db();
    let db = Db::connect(&t.url).await.unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    load(&mut conn).await;
    let mut failures = Vec::new();
    // A controller never runs ANALYZE on its SQLite file: plans without statistics
    // count as much as plans with them.
    for stats in ["no statistics", "after ANALYZE"] {
        if stats == "after ANALYZE" {
            sqlx::raw_sql("ANALYZE").execute(&mut *conn).await.unwrap();
        }
        let statements = hot_queries(Backend::Sqlite)
            .into_iter()
            .map(|(name, sql)| (name, sql.text(Backend::Sqlite), sql.values().to_vec()))
            .chain(claims(Backend::Sqlite));
        for (name, text, values) in statements {
            let explain = format!("EXPLAIN QUERY PLAN {text}");
            let plan = bind_all(sqlx::query(AssertSqlSafe(explain)), &values)
                .fetch_all(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let steps: Vec<String> = plan.iter().map(|r| r.get::<String, _>("detail")).collect();
            // A scan of a subquery's own result (its co-routine) reads no table.
            let subqueries: Vec<String> = steps
                .iter()
                .filter_map(|s| s.strip_prefix("CO-ROUTINE ").map(|n| format!("SCAN {n}")))
                .collect();
            let table_scan = |s: &String| {
                s.starts_with("SCAN ") && s != "SCAN CONSTANT ROW" && !subqueries.contains(s)
            };
            if steps.iter().any(table_scan) {
                failures.push(format!("{name} ({stats}) scans:\n{text}\n{}", steps.join("\n")));
            }
        }
    }
    drop(conn);
    db.close().await;
    t.drop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The check itself: a plan with a sequential scan of `pis` nested under a join, and one
/// walking a whole primary key, are both caught; a bounded index scan is not.
#[test]
fn whole_table_reads_are_found_anywhere_in_the_plan() {
    let plan = serde_json::json!({
        "Node Type": "Limit",
        "Plans": [{
            "Node Type": "Nested Loop",
            "Plans": [
                { "Node Type": "Seq Scan", "Relation Name": "pis" },
                { "Node Type": "Index Scan", "Relation Name": "events", "Index Name": "events_pkey" },
                { "Node Type": "Index Scan", "Relation Name": "jobs", "Index Name": "jobs_pi_id", "Index Cond": "(pi_id = p.id)" },
                { "Node Type": "Seq Scan", "Relation Name": "shelves" }
            ]
        }]
    });
    let mut found = Vec::new();
    whole_table_reads(&plan, &mut found);
    assert_eq!(found, ["Seq Scan on pis ", "Index Scan on events events_pkey"]);
}
