//! `mongo2pg snapshot <collection>`: a targeted re-sync of one collection (optionally an `_id`
//! range or a time window), over `snapshot::resync`, with a progress bar on a terminal.

use std::process::ExitCode;

use super::{open_both, to_json, CommandError};
use crate::cli::SnapshotCmdArgs;
use crate::ops::resync::SnapshotArgs;
use crate::sink::privileges::Access;
use crate::snapshot::{self, ProgressReporter, SnapshotContext};

/// Re-copies the selected documents and prints what was copied and repaired.
pub async fn snapshot(args: SnapshotCmdArgs) -> Result<ExitCode, CommandError> {
    let (mut target, mongo) = open_both(&args.conn, Access::Replicate).await?;
    let default_page = u32::try_from(target.config.snapshot.page_size).unwrap_or(u32::MAX);
    let mut options = SnapshotArgs {
        collection: args.collection.clone(),
        from_id: args.from_id,
        to_id: args.to_id,
        field: args.field,
        since: args.since,
        until: args.until,
        page_size: args.page_size,
        resolve_gaps: args.resolve_gaps,
    }
    .into_options(default_page, chrono::Utc::now())
    .map_err(|e| CommandError::Usage(e.to_string()))?;
    options.page_bytes = target.config.snapshot.page_bytes;
    let mapping = target.compile().await?;
    let rules = mapping.rules(&args.collection).ok_or_else(|| {
        CommandError::Usage(format!("collection {} is not mapped", args.collection))
    })?;
    let mut options = options;
    options.stream = Some(mapping.config.stream_of(&args.collection));
    let mut sink = target.sink().await?;
    let names = target.names.clone();
    let database = target.config.source.database.clone();
    let ctx = SnapshotContext {
        mongo: &mongo,
        database: &database,
        pg: &mut target.pg,
        sink: &mut sink,
        names: &names,
        pg_url: None,
    };
    let mut reporter: Option<ProgressReporter> = None;
    let collection = args.collection.clone();
    let mut on_progress = |p: &snapshot::SnapshotProgress| {
        reporter
            .get_or_insert_with(|| ProgressReporter::new(&collection, p.remaining))
            .update(p);
    };
    let report = snapshot::resync(ctx, rules, &options, &mut on_progress).await?;
    if args.json {
        print!("{}", to_json(&report)?);
    } else {
        println!(
            "{}: copied {} documents in {} pages ({} became gaps), {} gaps resolved, {} stale rows removed",
            report.collection, report.copied, report.pages, report.failed, report.gaps_resolved, report.swept
        );
    }
    Ok(ExitCode::SUCCESS)
}
