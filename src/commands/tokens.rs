//! `mongo2pg tokens show` and `mongo2pg tokens reset`: the operator's view and steering of the
//! stored stream positions, over `ops::tokens`.

use std::process::ExitCode;

use super::{connect_mongo, open_both, to_json, CommandError, Target};
use crate::cli::{TokensResetArgs, TokensShowArgs};
use crate::ops::tokens::{self, ResetArgs};
use crate::sink::privileges::Access;

/// Prints every stream's position; the lag is filled when MongoDB is reachable.
pub async fn show(args: TokensShowArgs) -> Result<ExitCode, CommandError> {
    let mongo = args.mongo.optional_secret()?;
    let target = Target::from_args(&args.pg, Access::ReadTokens).await?;
    let mongo_now = match mongo {
        Some(url) => match connect_mongo(&url).await {
            Ok(client) => match tokens::mongo_cluster_time(&client).await {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!(
                        "warning: lag unknown: {}",
                        crate::config::redact_secrets(&e.to_string()).into_owned()
                    );
                    None
                }
            },
            Err(e @ CommandError::MongoUrl(_)) => return Err(e),
            Err(e) => {
                eprintln!("warning: lag unknown: {}", e.line());
                None
            }
        },
        None => None,
    };
    let views = tokens::show(&target.pg, &target.names, mongo_now, chrono::Utc::now()).await?;
    if args.json {
        print!("{}", to_json(&views)?);
    } else {
        print!("{}", tokens::render_table(&views));
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves one stream (or, with `--dry-run`, says what would move) and prints the outcome.
pub async fn reset(args: TokensResetArgs) -> Result<ExitCode, CommandError> {
    let raw = ResetArgs {
        collection: args.collection.clone(),
        to_token: args.target.to_token,
        to_time: args.target.to_time,
        to_now: args.target.to_now,
        resnapshot: args.target.resnapshot,
        no_gap: args.no_gap,
        dry_run: args.dry_run,
        reason: Some(args.reason),
        actor: Some(super::actor_or_user(args.actor)),
    };
    let mut request = raw
        .into_request(std::env::var("USER").ok())
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let (mut target, mongo) = open_both(&args.conn, Access::ResetTokens).await?;
    let named = request.collection.clone();
    let stream = if target.config.streams.contains_key(&named) {
        named.clone()
    } else if target.config.collections.contains_key(&named) {
        target.config.stream_of(&named)
    } else {
        return Err(CommandError::Usage(format!(
            "{named} is neither a mapped collection nor a stream group"
        )));
    };
    if let Some(spec) = target.config.stream_spec(&stream).filter(|s| s.group) {
        if stream != named && !args.yes && !args.dry_run {
            confirm_group_move(&named, &stream, &spec.collections)?;
        }
        request.collection = stream;
        request.group = Some(spec.collections);
    }
    let database = target.config.source.database.clone();
    let outcome = tokens::reset(&mut target.pg, &mongo, &database, &target.names, &request).await?;
    if args.json {
        print!("{}", to_json(&outcome)?);
    } else {
        print!("{}", tokens::render_reset(&outcome));
    }
    Ok(ExitCode::SUCCESS)
}

/// A collection of a group moves its whole group: ask on a terminal, refuse otherwise.
fn confirm_group_move(
    collection: &str,
    group: &str,
    members: &[String],
) -> Result<(), CommandError> {
    use std::io::{BufRead, IsTerminal, Write};
    let what = format!(
        "{collection} belongs to stream group {group}; the reset moves the whole group ({})",
        members.join(", ")
    );
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::Usage(format!(
            "{what}: pass --yes to confirm (or name the group)"
        )));
    }
    eprint!("{what}. Continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CommandError::Usage(format!("cannot read the confirmation: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CommandError::Usage(format!("{what}: not confirmed")))
    }
}
