//! `mongo2pg verify [collection...]`: compares MongoDB and Postgres over `ops::verify`; exits 1
//! on a mismatch and 0 when every compared collection is clean. With `--last` it compares
//! nothing and shows the last continuous-verification rounds `run` stored (exit 1 when they found
//! a mismatch).

use std::process::ExitCode;

use super::{open_both, pg_url, to_json, CommandError, Target};
use crate::cli::VerifyCmdArgs;
use crate::ops::verify::{self, VerifyArgs};
use crate::sink::privileges::Access;

/// Runs the comparison and prints the report (text or JSON).
pub async fn verify(args: VerifyCmdArgs) -> Result<ExitCode, CommandError> {
    if args.last {
        return last(args).await;
    }
    let (target, mongo) = open_both(&args.conn, Access::Verify).await?;
    let mapping = target.compile().await?;
    let (rules, options) = VerifyArgs {
        collections: args.collections,
        group_by: args.group_by,
        max_listed: args.max_listed,
    }
    .resolve(&mapping)
    .map_err(|e| CommandError::Usage(e.to_string()))?;
    let db = mongo.database(&target.config.source.database);
    let report = verify::verify(&db, &target.pg, &rules, &options).await?;
    if args.json {
        print!("{}", to_json(&report)?);
    } else {
        print!("{}", verify::render_text(&report));
    }
    Ok(if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILURE)
    })
}

/// The stored rounds of the given (or all) collections.
async fn last(args: VerifyCmdArgs) -> Result<ExitCode, CommandError> {
    let url = pg_url(&args.conn.pg)?;
    let target = Target::open(&args.conn.mapping, &url).await?;
    target.check_access(Access::ReadVerifyResults).await?;
    if let Some(unknown) = args
        .collections
        .iter()
        .find(|c| !target.config.collections.contains_key(*c))
    {
        return Err(CommandError::Usage(format!(
            "collection {unknown} is not mapped"
        )));
    }
    let rounds =
        crate::sink::verify_results::last_rounds(&target.pg, &target.names, &args.collections)
            .await?;
    if args.json {
        print!("{}", to_json(&rounds)?);
    } else {
        print!("{}", verify::last::render_rounds(&rounds));
    }
    Ok(if rounds.iter().any(|r| !r.mismatches.is_empty()) {
        ExitCode::from(super::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}
