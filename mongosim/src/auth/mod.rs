//! Authentication: the configured users (SCRAM-SHA-1 and SCRAM-SHA-256 credentials derived once
//! at start), each connection's SASL conversations and authenticated users, and the commands
//! that touch them: `saslStart`, `saslContinue`, `logout`, `connectionStatus`, `usersInfo`, plus
//! hello's `saslSupportedMechs` and `speculativeAuthenticate`. Without configured users nothing
//! requires authentication. Authenticated users may run every command (no roles are enforced).
//! Passwords never leave this module: `Debug` output redacts them.

pub(crate) mod scram;

pub use scram::CredentialError;

use crate::error::CommandError;
use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use scram::{ClientFirst, Mechanism, ServerFirst, StoredKeys};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A user the simulator accepts, authenticated against `db` (usually `admin`).
#[derive(Clone, PartialEq, Eq)]
pub struct SimUser {
    pub name: String,
    pub password: String,
    pub db: String,
}

impl SimUser {
    /// A user of the `admin` database.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> SimUser {
        SimUser {
            name: name.into(),
            password: password.into(),
            db: "admin".to_owned(),
        }
    }

    /// The same user, authenticated against another database.
    pub fn in_db(mut self, db: impl Into<String>) -> SimUser {
        self.db = db.into();
        self
    }
}

impl fmt::Debug for SimUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("db", &self.db)
            .finish()
    }
}

/// Why a `name:password[@authdb]` user specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserSpecError {
    #[error("a user is given as name:password[@authdb], and this one has no ':'")]
    MissingPassword,
    #[error("a user specification has an empty user name")]
    EmptyName,
    #[error("a user specification has an empty authentication database after '@'")]
    EmptyDb,
}

impl FromStr for SimUser {
    type Err = UserSpecError;

    /// `name:password` (database `admin`) or `name:password@authdb`. The last `@` separates the
    /// database, so a password containing `@` needs an explicit `@admin` after it.
    fn from_str(spec: &str) -> Result<SimUser, UserSpecError> {
        let (name, rest) = spec.split_once(':').ok_or(UserSpecError::MissingPassword)?;
        if name.is_empty() {
            return Err(UserSpecError::EmptyName);
        }
        let (password, db) = match rest.rsplit_once('@') {
            Some((_, "")) => return Err(UserSpecError::EmptyDb),
            Some((p, d)) => (p, d),
            None => (rest, "admin"),
        };
        Ok(SimUser::new(name, password).in_db(db))
    }
}

/// A configured user with the stored SCRAM keys.
#[derive(Debug)]
struct Account {
    name: String,
    db: String,
    user_id: uuid::Uuid,
    sha1: StoredKeys,
    sha256: StoredKeys,
}

impl Account {
    fn keys(&self, mechanism: Mechanism) -> &StoredKeys {
        match mechanism {
            Mechanism::Sha1 => &self.sha1,
            Mechanism::Sha256 => &self.sha256,
        }
    }

    fn describe(&self) -> Document {
        doc! {
            "_id": format!("{}.{}", self.db, self.name),
            "userId": Binary { subtype: BinarySubtype::Uuid, bytes: self.user_id.as_bytes().to_vec() },
            "user": self.name.clone(),
            "db": self.db.clone(),
            "roles": [ { "role": "root", "db": "admin" } ],
            "mechanisms": ["SCRAM-SHA-1", "SCRAM-SHA-256"],
        }
    }
}

/// The configured users; empty means authentication is off.
#[derive(Debug, Default)]
pub(crate) struct Users {
    accounts: Vec<Account>,
}

impl Users {
    /// Derives the stored credentials of every user.
    pub(crate) fn new(users: &[SimUser]) -> Result<Users, CredentialError> {
        let mut accounts = Vec::with_capacity(users.len());
        for u in users {
            accounts.push(Account {
                name: u.name.clone(),
                db: u.db.clone(),
                user_id: uuid::Uuid::new_v4(),
                sha1: StoredKeys::derive(Mechanism::Sha1, &u.name, &u.password)?,
                sha256: StoredKeys::derive(Mechanism::Sha256, &u.name, &u.password)?,
            });
        }
        Ok(Users { accounts })
    }

    /// True when users are configured (commands then require authentication).
    pub(crate) fn enabled(&self) -> bool {
        !self.accounts.is_empty()
    }

    fn find(&self, name: &str, db: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name && a.db == db)
    }
}

/// One SASL conversation on a connection.
#[derive(Debug)]
struct Conversation {
    db: String,
    server: ServerFirst,
    skip_empty_exchange: bool,
    /// The proof checked out; an empty final exchange is still expected.
    verified: bool,
}

/// A connection's authentication state.
#[derive(Debug, Default)]
pub(crate) struct ConnAuth {
    conversations: HashMap<i32, Conversation>,
    next_conversation: i32,
    /// Authenticated `(user, db)` pairs.
    users: Vec<(String, String)>,
}

/// Commands a client may run before authenticating (as a real server allows them).
const OPEN_COMMANDS: &[&str] = &[
    "hello",
    "isMaster",
    "ismaster",
    "saslStart",
    "saslContinue",
    "authenticate",
    "logout",
    "ping",
    "buildInfo",
    "buildinfo",
    "connectionStatus",
    "listCommands",
    "getnonce",
    "endSessions",
];

/// The error for a command run before authentication.
pub(crate) fn check(users: &Users, conn: &ConnAuth, name: &str) -> Result<(), CommandError> {
    if !users.enabled() || !conn.users.is_empty() || OPEN_COMMANDS.contains(&name) {
        return Ok(());
    }
    Err(CommandError::new(
        13,
        format!("Command {name} requires authentication"),
    ))
}

fn auth_failed() -> CommandError {
    CommandError::new(18, "Authentication failed.")
}

fn payload(body: &Document) -> Result<Vec<u8>, CommandError> {
    match body.get("payload") {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        Some(Bson::String(s)) => Ok(s.as_bytes().to_vec()),
        _ => Err(CommandError::bad_value("SASL commands need a 'payload'")),
    }
}

fn sasl_reply(id: i32, done: bool, payload: Vec<u8>) -> Document {
    doc! {
        "conversationId": id,
        "done": done,
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: payload },
    }
}

fn sasl_start(
    users: &Users,
    conn: &mut ConnAuth,
    db: &str,
    body: &Document,
) -> Result<Document, CommandError> {
    let mechanism_name = body.get_str("mechanism").unwrap_or_default();
    let Some(mechanism) = Mechanism::parse(mechanism_name) else {
        return Err(CommandError::new(
            334,
            format!("Received authentication for mechanism {mechanism_name} which is not enabled"),
        ));
    };
    let first = ClientFirst::parse(&payload(body)?).ok_or_else(auth_failed)?;
    let account = users.find(&first.user, db).ok_or_else(auth_failed)?;
    let server = ServerFirst::new(mechanism, first, account.keys(mechanism));
    let skip_empty_exchange = body
        .get_document("options")
        .ok()
        .and_then(|o| o.get_bool("skipEmptyExchange").ok())
        .unwrap_or(false);
    conn.next_conversation += 1;
    let id = conn.next_conversation;
    let reply = sasl_reply(id, false, server.payload());
    conn.conversations.insert(
        id,
        Conversation {
            db: db.to_owned(),
            server,
            skip_empty_exchange,
            verified: false,
        },
    );
    Ok(reply)
}

fn sasl_continue(
    users: &Users,
    conn: &mut ConnAuth,
    body: &Document,
) -> Result<Document, CommandError> {
    let id = body
        .get("conversationId")
        .and_then(crate::store::value::as_i64)
        .unwrap_or(0) as i32;
    let Some(conv) = conn.conversations.remove(&id) else {
        return Err(CommandError::new(17, "No SASL session state found"));
    };
    let user = conv.server.user().to_owned();
    let Some(account) = users.find(&user, &conv.db) else {
        return Err(auth_failed());
    };
    if conv.verified {
        conn.users.push((user, conv.db));
        return Ok(sasl_reply(id, true, Vec::new()));
    }
    let keys = account.keys(conv.server.mechanism);
    let server_final = conv
        .server
        .verify(keys, &payload(body)?)
        .ok_or_else(auth_failed)?;
    if conv.skip_empty_exchange {
        conn.users.push((user, conv.db));
        return Ok(sasl_reply(id, true, server_final));
    }
    conn.conversations.insert(
        id,
        Conversation {
            verified: true,
            ..conv
        },
    );
    Ok(sasl_reply(id, false, server_final))
}

fn users_info(users: &Users, db: &str, spec: Option<&Bson>) -> Result<Document, CommandError> {
    let wanted: Vec<(Option<String>, String)> = match spec {
        Some(Bson::Array(items)) => items
            .iter()
            .map(|i| match i {
                Bson::String(n) => Ok((Some(n.clone()), db.to_owned())),
                Bson::Document(d) => Ok((
                    d.get_str("user").ok().map(str::to_owned),
                    d.get_str("db").unwrap_or(db).to_owned(),
                )),
                _ => Err(CommandError::bad_value(
                    "usersInfo entries are names or {user, db}",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Bson::String(n)) => vec![(Some(n.clone()), db.to_owned())],
        Some(Bson::Document(d)) => vec![(
            d.get_str("user").ok().map(str::to_owned),
            d.get_str("db").unwrap_or(db).to_owned(),
        )],
        _ => vec![(None, db.to_owned())],
    };
    let found: Vec<Bson> = users
        .accounts
        .iter()
        .filter(|a| {
            wanted
                .iter()
                .any(|(n, d)| a.db == *d && n.as_ref().is_none_or(|n| *n == a.name))
        })
        .map(|a| Bson::Document(a.describe()))
        .collect();
    Ok(doc! { "users": found })
}

fn connection_status(conn: &ConnAuth) -> Document {
    let users: Vec<Bson> = conn
        .users
        .iter()
        .map(|(u, d)| Bson::Document(doc! { "user": u.clone(), "db": d.clone() }))
        .collect();
    let roles: Vec<Bson> = if conn.users.is_empty() {
        Vec::new()
    } else {
        vec![Bson::Document(doc! { "role": "root", "db": "admin" })]
    };
    doc! { "authInfo": { "authenticatedUsers": users, "authenticatedUserRoles": roles } }
}

/// Runs an authentication command; `None` when `name` is not one.
pub(crate) fn command(
    users: &Users,
    conn: &mut ConnAuth,
    name: &str,
    db: &str,
    body: &Document,
) -> Option<Result<Document, CommandError>> {
    Some(match name {
        "saslStart" => sasl_start(users, conn, db, body),
        "saslContinue" => sasl_continue(users, conn, body),
        "logout" => {
            conn.users.retain(|(_, d)| d != db);
            Ok(Document::new())
        }
        "connectionStatus" => Ok(connection_status(conn)),
        "usersInfo" => users_info(users, db, body.get("usersInfo")),
        "authenticate" => Err(CommandError::new(
            334,
            "Only SCRAM-SHA-1 and SCRAM-SHA-256 (saslStart) are enabled",
        )),
        _ => return None,
    })
}

/// hello's `saslSupportedMechs: "<db>.<user>"`: the user's mechanisms, when the user exists.
pub(crate) fn supported_mechs(users: &Users, spec: &str) -> Option<Vec<Bson>> {
    let (db, name) = spec.split_once('.')?;
    users.find(name, db)?;
    Some(vec![
        Bson::String(Mechanism::Sha1.name().to_owned()),
        Bson::String(Mechanism::Sha256.name().to_owned()),
    ])
}

/// hello's `speculativeAuthenticate` (a saslStart with a `db` field): the first SASL reply, or
/// `None` when it fails (the client then authenticates the ordinary way and gets the error).
pub(crate) fn speculative(users: &Users, conn: &mut ConnAuth, spec: &Document) -> Option<Document> {
    if !users.enabled() || !spec.contains_key("saslStart") {
        return None;
    }
    let db = spec.get_str("db").unwrap_or("admin").to_owned();
    sasl_start(users, conn, &db, spec).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_specifications_parse_with_an_optional_auth_db() {
        let u: SimUser = "ann:pw".parse().expect("spec");
        assert_eq!(
            (u.name.as_str(), u.password.as_str(), u.db.as_str()),
            ("ann", "pw", "admin")
        );
        let u: SimUser = "bob:p@ss:w@shop".parse().expect("spec");
        assert_eq!((u.password.as_str(), u.db.as_str()), ("p@ss:w", "shop"));
        assert_eq!(
            "nopass".parse::<SimUser>(),
            Err(UserSpecError::MissingPassword)
        );
        assert_eq!(":pw".parse::<SimUser>(), Err(UserSpecError::EmptyName));
        assert!(!format!("{u:?}").contains("p@ss"));
    }
}
