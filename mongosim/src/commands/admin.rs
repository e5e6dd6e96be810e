//! Administrative and DDL commands: create / drop / dropDatabase / renameCollection / collMod /
//! createIndexes / dropIndexes / listIndexes / listCollections / listDatabases, fail point
//! configuration, simulator controls, and the small informational commands drivers send.

use super::cursors::first_batch;
use super::{coll_arg, Body};
use crate::control::names;
use crate::error::CommandError;
use crate::state::{Inner, Shared};
use crate::store::value::as_i64;
use crate::store::write::{Change, ChangeKind};
use bson::{doc, Bson, Document};

type DdlResult = Result<(Body, Vec<Change>), CommandError>;

/// Simulator controls (need the shared handle); `None` when `name` is not a control.
pub(crate) fn control(
    shared: &Shared,
    name: &str,
    body: &Document,
) -> Option<Result<Body, CommandError>> {
    let ok = || Some(Ok(Body::Doc(Document::new())));
    match name {
        names::TRUNCATE_HISTORY => {
            shared.truncate_history();
            ok()
        }
        names::SET_WINDOW => match body.get(name).and_then(as_i64) {
            Some(n) if n > 0 => {
                shared.set_window(n as usize);
                ok()
            }
            _ => Some(Err(CommandError::bad_value(
                "mongosimSetWindow needs a positive entry count",
            ))),
        },
        names::DROP_CONNECTIONS => {
            shared.drop_connections();
            ok()
        }
        names::STEP_DOWN => {
            shared.step_down();
            ok()
        }
        names::REELECT => {
            shared.reelect();
            ok()
        }
        names::PAUSE => {
            shared.pause();
            ok()
        }
        names::RESUME => {
            shared.resume();
            ok()
        }
        _ => None,
    }
}

fn images_flag(body: &Document) -> Option<bool> {
    body.get_document("changeStreamPreAndPostImages")
        .ok()
        .and_then(|d| d.get_bool("enabled").ok())
}

fn ns_not_found(ns: &str) -> CommandError {
    CommandError::new(26, format!("ns not found: {ns}"))
}

fn empty() -> Body {
    Body::Doc(Document::new())
}

/// Runs an administrative command under the lock.
pub(crate) fn run(inner: &mut Inner, name: &str, db: &str, body: &Document) -> DdlResult {
    let none = Vec::new;
    match name {
        "ping" | "endSessions" | "killSessions" | "refreshSessions" | "startSession" => {
            if name == "endSessions" {
                if let Ok(ids) = body.get_array("endSessions") {
                    for lsid in ids.iter().filter_map(Bson::as_document) {
                        inner.sessions.end(lsid);
                    }
                }
            }
            Ok((empty(), none()))
        }
        "buildInfo" | "buildinfo" => Ok((
            Body::Doc(
                doc! { "version": "7.0.0", "versionArray": [7, 0, 0, 0], "gitVersion": "mongosim", "maxBsonObjectSize": 16_777_216i32, "bits": 64, "modules": [] },
            ),
            none(),
        )),
        "getParameter" => Ok((
            Body::Doc(doc! { "featureCompatibilityVersion": { "version": "7.0" } }),
            none(),
        )),
        "serverStatus" => Ok((
            Body::Doc(doc! { "host": "mongosim", "version": "7.0.0", "process": "mongosim" }),
            none(),
        )),
        "configureFailPoint" => {
            inner.failpoint = crate::failpoint::parse(body)?;
            Ok((empty(), none()))
        }
        "create" => {
            let coll = coll_arg(body, "create")?;
            if inner.store.coll(db, &coll).is_some() {
                return Err(CommandError::new(
                    48,
                    format!("Collection {db}.{coll} already exists."),
                ));
            }
            let c = inner.store.coll_or_create(db, &coll);
            c.images = images_flag(body).unwrap_or(false);
            Ok((empty(), none()))
        }
        "collMod" => {
            let coll = coll_arg(body, "collMod")?;
            let c = inner
                .store
                .coll_mut(db, &coll)
                .ok_or_else(|| ns_not_found(&format!("{db}.{coll}")))?;
            if let Some(flag) = images_flag(body) {
                c.images = flag;
            }
            Ok((empty(), none()))
        }
        "drop" => {
            let coll = coll_arg(body, "drop")?;
            let exists = inner
                .store
                .dbs
                .get_mut(db)
                .and_then(|d| d.colls.remove(&coll))
                .is_some();
            if !exists {
                return Err(ns_not_found(&format!("{db}.{coll}")));
            }
            Ok((
                Body::Doc(doc! { "ns": format!("{db}.{coll}"), "nIndexesWas": 1 }),
                vec![Change::ddl(db, &coll, ChangeKind::Drop)],
            ))
        }
        "dropDatabase" => {
            let Some(database) = inner.store.dbs.remove(db) else {
                return Ok((empty(), none()));
            };
            let mut changes: Vec<Change> = database
                .colls
                .keys()
                .map(|c| Change::ddl(db, c, ChangeKind::Drop))
                .collect();
            changes.push(Change::ddl(db, "", ChangeKind::DropDatabase));
            Ok((Body::Doc(doc! { "dropped": db }), changes))
        }
        "renameCollection" => rename(inner, body),
        "createIndexes" => create_indexes(inner, db, body),
        "dropIndexes" | "deleteIndexes" => {
            let coll = coll_arg(body, name)?;
            let c = inner
                .store
                .coll_mut(db, &coll)
                .ok_or_else(|| ns_not_found(&format!("{db}.{coll}")))?;
            let was = c.indexes.len() as i32 + 1;
            match body.get("index") {
                Some(Bson::String(s)) if s == "*" => c.indexes.clear(),
                Some(Bson::String(s)) => {
                    let before = c.indexes.len();
                    c.indexes.retain(|i| &i.name != s);
                    if c.indexes.len() == before {
                        return Err(CommandError::new(
                            27,
                            format!("index not found with name [{s}]"),
                        ));
                    }
                }
                Some(Bson::Document(k)) => c.indexes.retain(|i| &i.key != k),
                _ => return Err(CommandError::bad_value("dropIndexes needs 'index'")),
            }
            Ok((Body::Doc(doc! { "nIndexesWas": was }), none()))
        }
        "listIndexes" => {
            let coll = coll_arg(body, "listIndexes")?;
            let c = inner
                .store
                .coll(db, &coll)
                .ok_or_else(|| ns_not_found(&format!("{db}.{coll}")))?;
            let mut docs = vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }];
            docs.extend(c.indexes.iter().map(|i| i.describe()));
            let raw = docs.iter().map(serialize).collect();
            Ok((
                first_batch(
                    inner,
                    format!("{db}.$cmd.listIndexes.{coll}"),
                    raw,
                    batch_size(body),
                    false,
                ),
                none(),
            ))
        }
        "listCollections" => {
            let filter = body.get_document("filter").cloned().unwrap_or_default();
            let mut docs = Vec::new();
            if let Some(d) = inner.store.dbs.get(db) {
                for (name, c) in &d.colls {
                    let mut options = Document::new();
                    if c.images {
                        options.insert("changeStreamPreAndPostImages", doc! { "enabled": true });
                    }
                    let info = doc! { "readOnly": false, "uuid": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: c.uuid.as_bytes().to_vec() } };
                    let entry = doc! { "name": name.clone(), "type": "collection", "options": options, "info": info, "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" } };
                    if crate::store::matcher::matches(&entry, &filter)? {
                        docs.push(serialize(&entry));
                    }
                }
            }
            Ok((
                first_batch(
                    inner,
                    format!("{db}.$cmd.listCollections"),
                    docs.into(),
                    batch_size(body),
                    false,
                ),
                none(),
            ))
        }
        "listDatabases" => {
            let name_only = body.get_bool("nameOnly").unwrap_or(false);
            let dbs: Vec<Bson> = inner
                .store
                .dbs
                .iter()
                .map(|(n, d)| {
                    if name_only {
                        Bson::Document(doc! { "name": n.clone() })
                    } else {
                        Bson::Document(doc! { "name": n.clone(), "sizeOnDisk": 0i64, "empty": d.colls.is_empty() })
                    }
                })
                .collect();
            Ok((
                Body::Doc(doc! { "databases": dbs, "totalSize": 0i64 }),
                none(),
            ))
        }
        other => Err(CommandError::new(59, format!("no such command: '{other}'"))),
    }
}

fn batch_size(body: &Document) -> Option<usize> {
    body.get_document("cursor")
        .ok()
        .and_then(|c| c.get("batchSize"))
        .and_then(as_i64)
        .map(|b| b.max(0) as usize)
}

fn serialize(d: &Document) -> Vec<u8> {
    let mut b = Vec::new();
    // Writing an in-memory document into a Vec cannot fail.
    let _ = d.to_writer(&mut b);
    b
}

fn split_ns(ns: &str) -> Result<(String, String), CommandError> {
    ns.split_once('.')
        .map(|(d, c)| (d.to_owned(), c.to_owned()))
        .ok_or_else(|| CommandError::new(73, format!("Invalid namespace: {ns}")))
}

fn rename(inner: &mut Inner, body: &Document) -> DdlResult {
    let (from_db, from) = split_ns(body.get_str("renameCollection").unwrap_or_default())?;
    let (to_db, to) = split_ns(body.get_str("to").unwrap_or_default())?;
    let drop_target = body.get_bool("dropTarget").unwrap_or(false);
    if inner.store.coll(&from_db, &from).is_none() {
        return Err(ns_not_found(&format!("{from_db}.{from}")));
    }
    let mut changes = Vec::new();
    if inner.store.coll(&to_db, &to).is_some() {
        if !drop_target {
            return Err(CommandError::new(
                48,
                format!("target namespace exists: {to_db}.{to}"),
            ));
        }
        changes.push(Change::ddl(&to_db, &to, ChangeKind::Drop));
    }
    let Some(c) = inner
        .store
        .dbs
        .get_mut(&from_db)
        .and_then(|d| d.colls.remove(&from))
    else {
        return Err(ns_not_found(&format!("{from_db}.{from}")));
    };
    inner
        .store
        .dbs
        .entry(to_db.clone())
        .or_default()
        .colls
        .insert(to.clone(), c);
    changes.push(Change::ddl(
        &from_db,
        &from,
        ChangeKind::Rename { to_db, to_coll: to },
    ));
    Ok((empty(), changes))
}

fn create_indexes(inner: &mut Inner, db: &str, body: &Document) -> DdlResult {
    let coll = coll_arg(body, "createIndexes")?;
    let specs = body
        .get_array("indexes")
        .map_err(|_| CommandError::type_mismatch("createIndexes needs 'indexes'"))?;
    let created = inner.store.coll(db, &coll).is_none();
    let c = inner.store.coll_or_create(db, &coll);
    let before = c.indexes.len() as i32 + 1;
    for spec in specs.iter().filter_map(Bson::as_document) {
        let key = spec
            .get_document("key")
            .map_err(|_| CommandError::bad_value("index spec needs 'key'"))?
            .clone();
        if key.keys().eq(["_id"]) {
            continue;
        }
        let name = spec.get_str("name").map(str::to_owned).unwrap_or_else(|_| {
            key.iter()
                .map(|(k, v)| format!("{k}_{v}"))
                .collect::<Vec<_>>()
                .join("_")
        });
        let unique = spec.get_bool("unique").unwrap_or(false);
        let sparse = spec.get_bool("sparse").unwrap_or(false);
        c.create_index(name, key, unique, sparse)?;
    }
    let after = c.indexes.len() as i32 + 1;
    Ok((
        Body::Doc(
            doc! { "createdCollectionAutomatically": created, "numIndexesBefore": before, "numIndexesAfter": after },
        ),
        Vec::new(),
    ))
}
