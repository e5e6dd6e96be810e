//! `mongo2pg verify [collection...]`: compares MongoDB and Postgres over `ops::verify`; exits 1
//! on a mismatch and 0 when every compared collection is clean.

use std::process::ExitCode;

use super::{open_both, to_json, CommandError};
use crate::cli::VerifyCmdArgs;
use crate::ops::verify::{self, VerifyArgs};
use crate::sink::privileges::Access;

/// Runs the comparison and prints the report (text or JSON).
pub async fn verify(args: VerifyCmdArgs) -> Result<ExitCode, CommandError> {
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
