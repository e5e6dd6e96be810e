//! `mongo2pg gaps list|show|retry|resolve|ignore`: the gaps lifecycle from the command line,
//! over `ops::gaps`.

use std::process::ExitCode;

use super::{actor_or_user, open_both, to_json, CommandError, Target};
use crate::cli::{
    GapFilterArgs, GapsIgnoreArgs, GapsListArgs, GapsResolveArgs, GapsRetryArgs, GapsShowArgs,
};
use crate::ops::gaps::{self, GapFilter, GapListArgs, GapView, RetryContext};
use crate::sink::privileges::Access;

fn filter_of(
    filter: GapFilterArgs,
    status: Option<String>,
    limit: Option<i64>,
) -> Result<GapFilter, CommandError> {
    GapListArgs {
        collection: filter.collection,
        kind: filter.kind,
        status,
        older_than: filter.older_than,
        newer_than: filter.newer_than,
        limit,
    }
    .into_filter()
    .map_err(|e| CommandError::Usage(e.to_string()))
}

/// Gaps matching the filters, newest first.
pub async fn list(args: GapsListArgs) -> Result<ExitCode, CommandError> {
    if args.limit.is_some_and(|n| n < 0) {
        return Err(CommandError::Usage("--limit must not be negative".into()));
    }
    let filter = filter_of(args.filter, args.status, args.limit)?;
    let target = Target::from_args(&args.pg, Access::ReadGaps).await?;
    let views = gaps::list(&target.pg, &target.names.gaps, &filter).await?;
    if args.json {
        print!("{}", to_json(&views)?);
    } else {
        print!("{}", gaps::render_table(&views));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_one(g: &GapView) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = gaps::render_table(std::slice::from_ref(g));
    out.push_str(&format!(
        "reason:    {}\nnote:      {}\noperation: {}\n",
        g.reason,
        opt(&g.note),
        opt(&g.operation)
    ));
    if let Some(raw) = &g.raw {
        out.push_str(&format!("raw:       {raw}\n"));
    }
    out
}

/// One gap with its raw event.
pub async fn show(args: GapsShowArgs) -> Result<ExitCode, CommandError> {
    let target = Target::from_args(&args.pg, Access::ReadGaps).await?;
    let gap = gaps::show(&target.pg, &target.names.gaps, args.id)
        .await?
        .ok_or(gaps::GapsError::NotFound(args.id))?;
    if args.json {
        print!("{}", to_json(&gap)?);
    } else {
        print!("{}", render_one(&gap));
    }
    Ok(ExitCode::SUCCESS)
}

/// Retries one gap or every open gap matching the filters; exits 1 when some stay open.
pub async fn retry(args: GapsRetryArgs) -> Result<ExitCode, CommandError> {
    let filter = if args.id.is_none() {
        Some(filter_of(args.filter, None, None)?)
    } else {
        None
    };
    let (mut target, mongo) = open_both(&args.conn, Access::Replicate).await?;
    let mapping = target.compile().await?;
    let mut sink = target.sink().await?;
    let names = target.names.clone();
    let mut ctx = RetryContext {
        mongo: &mongo,
        pg: &mut target.pg,
        sink: &mut sink,
        names: &names,
        mapping: &mapping,
    };
    match (args.id, filter) {
        (Some(id), _) => {
            let outcome = gaps::retry_one(&mut ctx, id).await?;
            if args.json {
                print!(
                    "{}",
                    to_json(&serde_json::json!({"id": id, "outcome": outcome}))?
                );
            } else {
                println!("gap {id}: {}", describe(&outcome));
            }
            Ok(match outcome {
                gaps::RetryOutcome::StillOpen(_) => ExitCode::from(super::EXIT_FAILURE),
                _ => ExitCode::SUCCESS,
            })
        }
        (None, Some(filter)) => {
            let report = gaps::retry_matching(&mut ctx, &filter).await?;
            if args.json {
                print!("{}", to_json(&report)?);
            } else {
                println!(
                    "retried {}: {} resolved, {} superseded, {} still open, {} skipped",
                    report.attempted,
                    report.resolved,
                    report.superseded,
                    report.still_open,
                    report.skipped
                );
            }
            Ok(if report.still_open > 0 {
                ExitCode::from(super::EXIT_FAILURE)
            } else {
                ExitCode::SUCCESS
            })
        }
        (None, None) => Err(CommandError::Usage(
            "give a gap id or at least one filter".into(),
        )),
    }
}

fn describe(o: &gaps::RetryOutcome) -> String {
    match o {
        gaps::RetryOutcome::Resolved => "resolved".into(),
        gaps::RetryOutcome::Superseded => "superseded by a newer change".into(),
        gaps::RetryOutcome::StillOpen(reason) => format!("still open: {reason}"),
        gaps::RetryOutcome::Skipped(reason) => format!("skipped: {reason}"),
    }
}

/// Marks an open gap as repaired.
pub async fn resolve(args: GapsResolveArgs) -> Result<ExitCode, CommandError> {
    if args.note.trim().is_empty() {
        return Err(CommandError::Usage("--note must not be empty".into()));
    }
    let target = Target::from_args(&args.pg, Access::CloseGaps).await?;
    let actor = actor_or_user(args.actor);
    let gap = gaps::resolve(
        &target.pg,
        &target.names.gaps,
        args.id,
        &actor,
        Some(&args.note),
    )
    .await?;
    println!(
        "gap {} is {}: {}",
        gap.id,
        gap.status,
        gap.note.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Marks an open gap as not needing repair.
pub async fn ignore(args: GapsIgnoreArgs) -> Result<ExitCode, CommandError> {
    if args.reason.trim().is_empty() {
        return Err(CommandError::Usage("--reason must not be empty".into()));
    }
    let target = Target::from_args(&args.pg, Access::CloseGaps).await?;
    let actor = actor_or_user(args.actor);
    let gap = gaps::ignore(
        &target.pg,
        &target.names.gaps,
        args.id,
        &actor,
        &args.reason,
    )
    .await?;
    println!(
        "gap {} is {}: {}",
        gap.id,
        gap.status,
        gap.note.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
