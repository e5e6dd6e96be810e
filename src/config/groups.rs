//! Stream groups: `[streams.<name>] collections = [...]` (or `"*"`) puts several collections on
//! ONE database-level change stream, applied in oplog order with one checkpoint row named after
//! the group. Collections in no group keep one stream each, named after the collection. Stream
//! names share one namespace (checkpoints, leases, metrics), so a group may not be named like a
//! collection outside it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Config, Problem};

/// The members of a group: a list of mapped collections, or `"*"` for every mapped collection
/// that no other group names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Members {
    List(Vec<String>),
    All(String),
}

/// `[streams.<name>]`: one stream group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub collections: Members,
}

/// One stream the supervisor runs: a single collection, or a group of collections sharing one
/// database-level change stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The checkpoint row, lease and stream-level metrics key.
    pub name: String,
    /// Its collections in copy order (referenced collections first).
    pub collections: Vec<String>,
    /// True for a `[streams.<name>]` group (a database-level change stream), even of one member.
    pub group: bool,
}

impl Config {
    /// Every stream of the mapping: groups (by name) first, then one stream per collection that
    /// no group names. Collections inside a stream follow `snapshot_order`.
    pub fn stream_specs(&self) -> Vec<StreamSpec> {
        let order = self.snapshot_order();
        let members = self.group_members();
        let mut specs: Vec<StreamSpec> = members
            .iter()
            .map(|(name, set)| StreamSpec {
                name: name.clone(),
                collections: order.iter().filter(|c| set.contains(*c)).cloned().collect(),
                group: true,
            })
            .collect();
        let grouped: BTreeSet<&String> = members.values().flatten().collect();
        for c in self.collections.keys() {
            if !grouped.contains(c) {
                specs.push(StreamSpec {
                    name: c.clone(),
                    collections: vec![c.clone()],
                    group: false,
                });
            }
        }
        specs
    }

    /// The stream whose checkpoint row serialises writes to `collection`: its group, or itself.
    pub fn stream_of(&self, collection: &str) -> String {
        self.group_members()
            .into_iter()
            .find(|(_, set)| set.contains(collection))
            .map(|(name, _)| name)
            .unwrap_or_else(|| collection.to_string())
    }

    /// The spec of the stream named `name`, if the mapping has one.
    pub fn stream_spec(&self, name: &str) -> Option<StreamSpec> {
        self.stream_specs().into_iter().find(|s| s.name == name)
    }

    /// Group name -> its member collections (`"*"` expanded; unknown names kept, `validate`
    /// reports them).
    fn group_members(&self) -> BTreeMap<String, BTreeSet<String>> {
        let listed: BTreeSet<&String> = self
            .streams
            .values()
            .filter_map(|g| match &g.collections {
                Members::List(l) => Some(l),
                Members::All(_) => None,
            })
            .flatten()
            .collect();
        self.streams
            .iter()
            .map(|(name, g)| {
                let set = match &g.collections {
                    Members::List(l) => l.iter().cloned().collect(),
                    Members::All(_) => self
                        .collections
                        .keys()
                        .filter(|c| !listed.contains(c))
                        .cloned()
                        .collect(),
                };
                (name.clone(), set)
            })
            .collect()
    }

    /// The `[streams]` rules; appends to `problems`.
    pub(super) fn validate_groups(&self, problems: &mut Vec<Problem>) {
        let mut report = |group: &str, rule: String| {
            problems.push(Problem {
                scope: format!("streams.{group}"),
                field: "collections".into(),
                rule,
            })
        };
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        let mut star: Option<&str> = None;
        for (name, g) in &self.streams {
            if !crate::sink::name::is_identifier(name) {
                report(
                    name,
                    format!("group name {name:?} must be a plain identifier"),
                );
            }
            match &g.collections {
                Members::All(s) if s == "*" => {
                    if let Some(first) = star {
                        report(
                            name,
                            format!("\"*\" is already used by group {first:?}; only one group may take every other collection"),
                        );
                    }
                    star = Some(name);
                }
                Members::All(s) => report(
                    name,
                    format!("must be a list of collections or \"*\", got {s:?}"),
                ),
                Members::List(list) => {
                    if list.is_empty() {
                        report(name, "a group needs at least one collection".into());
                    }
                    for c in list {
                        if !self.collections.contains_key(c) {
                            report(name, format!("{c:?} is not a mapped collection"));
                        }
                        match owner.insert(c, name) {
                            Some(other) if other == name => {
                                report(name, format!("{c:?} is listed twice"))
                            }
                            Some(other) => report(
                                name,
                                format!("{c:?} is already in group {other:?}; a collection belongs to at most one group"),
                            ),
                            None => {}
                        }
                    }
                }
            }
        }
        // Stream names share one namespace: a group may only be named like one of its members.
        let members = self.group_members();
        for (name, set) in &members {
            if self.collections.contains_key(name) && !set.contains(name) {
                report(
                    name,
                    format!("the group is named like collection {name:?}, which is not in it; stream names (checkpoints, leases, metrics) must be unique"),
                );
            }
            if set.is_empty() && star == Some(name.as_str()) {
                report(
                    name,
                    "\"*\" matches no collection: every mapped collection is in another group"
                        .into(),
                );
            }
        }
    }
}

/// The text of a mapping file without its `[streams.*]` tables: the same collections on one stream
/// each (the tests and benchmarks of the per-collection layout use the reference mapping this way).
pub fn without_stream_groups(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            skipping = trimmed.starts_with("[streams.");
        } else if trimmed.is_empty() {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
