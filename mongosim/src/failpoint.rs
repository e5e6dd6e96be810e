//! The `failCommand` fail point, as the real server's `configureFailPoint` accepts it: modes
//! alwaysOn / off / {times: n} / {skip: n}; data failCommands, errorCode, errorLabels,
//! closeConnection, blockConnection + blockTimeMS, errmsg, appName, writeConcernError; plus the
//! simulator-only `closeConnectionAfterExecute` (apply the command, then drop the reply).

use crate::error::CommandError;
use bson::{Bson, Document};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    AlwaysOn,
    Times(u64),
    Skip(u64),
}

/// An armed fail point.
#[derive(Debug, Clone)]
pub(crate) struct FailPoint {
    mode: Mode,
    commands: Vec<String>,
    code: Option<i32>,
    labels: Option<Vec<String>>,
    close: bool,
    block_ms: Option<u64>,
    errmsg: Option<String>,
    app_name: Option<String>,
    close_after: bool,
    write_concern_error: Option<Document>,
}

/// What to do to a command the fail point caught.
#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub close: bool,
    pub block_ms: Option<u64>,
    /// (code, explicit labels, message)
    pub error: Option<(i32, Option<Vec<String>>, String)>,
    /// Run the command, then close the connection without replying (a lost acknowledgement).
    pub close_after: bool,
    /// Run the command, then attach this writeConcernError to the reply.
    pub write_concern_error: Option<Document>,
}

fn count(v: &Bson) -> Option<u64> {
    crate::store::value::as_i64(v).and_then(|n| u64::try_from(n).ok())
}

/// Parses `configureFailPoint`; `Ok(None)` means "off".
pub(crate) fn parse(body: &Document) -> Result<Option<FailPoint>, CommandError> {
    let name = body.get_str("configureFailPoint").unwrap_or_default();
    if name != "failCommand" {
        return Err(CommandError::bad_value(format!(
            "unknown fail point: {name}"
        )));
    }
    let mode = match body.get("mode") {
        Some(Bson::String(s)) if s == "off" => return Ok(None),
        Some(Bson::String(s)) if s == "alwaysOn" => Mode::AlwaysOn,
        Some(Bson::Document(d)) => match (
            d.get("times").and_then(count),
            d.get("skip").and_then(count),
        ) {
            (Some(0), _) => return Ok(None),
            (Some(n), _) => Mode::Times(n),
            (None, Some(n)) => Mode::Skip(n),
            _ => {
                return Err(CommandError::bad_value(
                    "mode must be alwaysOn, off, {times: n} or {skip: n}",
                ))
            }
        },
        _ => {
            return Err(CommandError::bad_value(
                "mode must be alwaysOn, off, {times: n} or {skip: n}",
            ))
        }
    };
    let data = body.get_document("data").cloned().unwrap_or_default();
    let commands: Vec<String> = match data.get("failCommands") {
        Some(Bson::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return Err(CommandError::bad_value(
                "data.failCommands must be a list of command names",
            ))
        }
    };
    let labels = match data.get("errorLabels") {
        Some(Bson::Array(a)) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    let block = data.get_bool("blockConnection").unwrap_or(false);
    Ok(Some(FailPoint {
        mode,
        commands,
        code: data
            .get("errorCode")
            .and_then(crate::store::value::as_i64)
            .map(|c| c as i32),
        labels,
        close: data.get_bool("closeConnection").unwrap_or(false),
        block_ms: if block {
            data.get("blockTimeMS").and_then(count)
        } else {
            None
        },
        errmsg: data.get_str("errmsg").ok().map(str::to_owned),
        app_name: data.get_str("appName").ok().map(str::to_owned),
        close_after: data
            .get_bool("closeConnectionAfterExecute")
            .unwrap_or(false),
        write_concern_error: data.get_document("writeConcernError").ok().cloned(),
    }))
}

impl FailPoint {
    /// Checks a command against the fail point. Returns the action (if it fires) and whether the
    /// fail point stays armed.
    pub(crate) fn check(
        &mut self,
        command: &str,
        app_name: Option<&str>,
    ) -> (Option<Action>, bool) {
        if !self.commands.iter().any(|c| c == command) {
            return (None, true);
        }
        if let Some(want) = &self.app_name {
            if app_name != Some(want.as_str()) {
                return (None, true);
            }
        }
        let keep = match &mut self.mode {
            Mode::AlwaysOn => true,
            Mode::Skip(n) if *n > 0 => {
                *n -= 1;
                return (None, true);
            }
            Mode::Skip(_) => true,
            Mode::Times(n) => {
                *n = n.saturating_sub(1);
                *n > 0
            }
        };
        let error = self.code.map(|code| {
            let msg = self
                .errmsg
                .clone()
                .unwrap_or_else(|| "Failing command via 'failCommand' failpoint".to_owned());
            (code, self.labels.clone(), msg)
        });
        (
            Some(Action {
                close: self.close,
                block_ms: self.block_ms,
                error,
                close_after: self.close_after,
                write_concern_error: self.write_concern_error.clone(),
            }),
            keep,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn times_mode_fires_the_given_number_of_times() {
        let body = doc! { "configureFailPoint": "failCommand", "mode": { "times": 2 }, "data": { "failCommands": ["find"], "errorCode": 91 } };
        let mut fp = parse(&body).ok().flatten().expect("armed");
        assert!(fp.check("insert", None).0.is_none());
        let (a, keep) = fp.check("find", None);
        assert!(a.is_some() && keep);
        let (a, keep) = fp.check("find", None);
        assert!(a.is_some() && !keep);
    }

    #[test]
    fn skip_mode_lets_the_first_commands_through() {
        let body = doc! { "configureFailPoint": "failCommand", "mode": { "skip": 1 }, "data": { "failCommands": ["find"], "closeConnection": true } };
        let mut fp = parse(&body).ok().flatten().expect("armed");
        assert!(fp.check("find", None).0.is_none());
        assert!(fp.check("find", None).0.is_some_and(|a| a.close));
    }
}
