//! `bramble pi console ID [--follow] [--boot N]`: a Pi's console as the API keeps it,
//! each line as the API's `shown` (controls visible, so a Pi cannot drive the terminal).
//! `--follow` polls the API with `after=` (any controller answers), moving on to a newer
//! boot when no `--boot` was given.

use std::process::ExitCode;
use std::time::Duration;

use super::ApiArgs;
use super::client::{ApiClient, enc};
use super::output::{json as print_json, line};
use crate::api::console::Console;

/// How often `--follow` asks for new lines.
const POLL: Duration = Duration::from_secs(1);

fn path(id: &str, boot: Option<i64>, after: i64) -> String {
    let mut p = format!("/v1/pis/{}/console?after={after}", enc(id));
    if let Some(b) = boot {
        p.push_str(&format!("&boot={b}"));
    }
    p
}

fn print_lines(c: &Console) -> anyhow::Result<()> {
    for l in &c.lines {
        line(&l.shown)?;
    }
    Ok(())
}

pub async fn run(
    api: &ApiArgs,
    id: &str,
    follow: bool,
    boot: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let c = ApiClient::new(api)?;
    let mut page: Console = c.get(&path(id, boot, 0)).await?;
    if api.json && !follow {
        print_json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut current = match page.boot.as_ref().map(|b| b.boot) {
        Some(b) => b,
        None if !follow => {
            line(format_args!("Pi {id} has sent no console output yet"))?;
            return Ok(ExitCode::SUCCESS);
        }
        None => 0,
    };
    if current > 0 {
        line(format_args!("-- boot {current} of {} kept --", page.boots.len()))?;
    }
    loop {
        print_lines(&page)?;
        let mut after = page.next_after;
        while page.more {
            page = c.get(&path(id, Some(current), after)).await?;
            print_lines(&page)?;
            after = page.next_after;
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(POLL).await;
        page = c.get(&path(id, boot.or((current > 0).then_some(current)), after)).await?;
        // Following the latest: a newer boot starts over at its first line.
        let newest = page.boots.last().map(|b| b.boot).unwrap_or(0);
        if boot.is_none() && newest > current {
            current = newest;
            line(format_args!("-- boot {current} --"))?;
            page = c.get(&path(id, Some(current), 0)).await?;
        }
    }
}
