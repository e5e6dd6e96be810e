//! Resumable queries over one collection: a filter, an order (natural, `_id` ascending or
//! descending through the ordered `_id` index, or any other sort, for which only record ids are
//! kept), skip and limit. A query remembers its position (the last record id or `_id` key it
//! returned), so a cursor costs O(log n + batch) per getMore and never copies the result set.
//! Documents changed or inserted behind the position are seen as MongoDB's yielding cursors see
//! them. It reads the collection; it never modifies it.

use super::fields::FieldSet;
use super::key::IdKey;
use super::plan::{plan, Hi, Interval, Lo};
use super::{matcher, Collection, Raw};
use crate::error::CommandError;
use crate::pipeline::sort_cmp;
use bson::{Bson, Document};
use std::ops::Bound;

/// The order in which a query visits documents.
#[derive(Debug, Clone)]
enum Order {
    Natural { reverse: bool },
    Id { desc: bool },
    Keys(Vec<(String, bool)>),
}

/// Where a query stands.
#[derive(Debug, Clone)]
enum Position {
    Start,
    AfterRid(u64),
    AfterKey { interval: usize, key: Option<IdKey> },
    Sorted { rids: Vec<u64>, at: usize },
    Done,
}

/// A query with its position.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    filter: Document,
    fields: FieldSet,
    intervals: Vec<Interval>,
    /// The filter restricts `_id`: scans go through the `_id` index.
    indexed: bool,
    order: Order,
    skip: usize,
    limit: Option<usize>,
    pos: Position,
    peeked: Option<u64>,
}

fn sort_keys(spec: &Document) -> Vec<(String, bool)> {
    spec.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                crate::store::value::as_f64(v).unwrap_or(1.0) >= 0.0,
            )
        })
        .collect()
}

impl Query {
    /// Plans `filter` with an optional sort, skip and limit (0 or `None`: no limit).
    pub(crate) fn new(
        filter: &Document,
        sort: Option<&Document>,
        skip: usize,
        limit: Option<usize>,
    ) -> Query {
        let planned = plan(filter);
        let indexed = planned.is_some();
        let order = match sort.filter(|s| !s.is_empty()) {
            Some(s) => {
                let keys = sort_keys(s);
                match keys.first() {
                    // `_id` is unique: later sort keys never matter.
                    Some((k, asc)) if k == "_id" => Order::Id { desc: !asc },
                    Some((k, asc)) if k == "$natural" => Order::Natural { reverse: !asc },
                    _ => Order::Keys(keys),
                }
            }
            None if planned.is_some() => Order::Id { desc: false },
            None => Order::Natural { reverse: false },
        };
        let intervals = planned.unwrap_or_else(|| {
            vec![Interval {
                lo: Lo::Unbounded,
                hi: Hi::Unbounded,
            }]
        });
        Query {
            fields: FieldSet::of_filter(filter),
            filter: filter.clone(),
            intervals,
            indexed,
            order,
            skip,
            limit: limit.filter(|l| *l > 0),
            pos: Position::Start,
            peeked: None,
        }
    }

    fn matches(&self, raw: &[u8]) -> Result<bool, CommandError> {
        if self.fields.is_empty() {
            return Ok(true);
        }
        matcher::matches(&self.fields.extract(raw)?, &self.filter)
    }

    /// The next candidate in visiting order (before filtering), advancing the position.
    fn next_candidate(&mut self, c: &Collection) -> Result<Option<u64>, CommandError> {
        loop {
            match &mut self.pos {
                Position::Done => return Ok(None),
                Position::Start => {
                    self.pos = match &self.order {
                        Order::Natural { reverse: false } => Position::AfterRid(0),
                        Order::Natural { reverse: true } => Position::AfterRid(u64::MAX),
                        Order::Id { desc } => Position::AfterKey {
                            interval: if *desc { self.intervals.len() } else { 0 },
                            key: None,
                        },
                        Order::Keys(keys) => {
                            let rids = self.sorted_rids(c, keys.clone())?;
                            Position::Sorted { rids, at: 0 }
                        }
                    };
                }
                Position::AfterRid(last) => {
                    let reverse = matches!(self.order, Order::Natural { reverse: true });
                    let next = if reverse {
                        c.docs.range(..*last).next_back()
                    } else {
                        c.docs
                            .range((Bound::Excluded(*last), Bound::Unbounded))
                            .next()
                    };
                    match next {
                        Some((rid, _)) => {
                            *last = *rid;
                            return Ok(Some(*rid));
                        }
                        None => self.pos = Position::Done,
                    }
                }
                Position::AfterKey { interval, key } => {
                    let desc = matches!(self.order, Order::Id { desc: true });
                    let idx = if desc {
                        match interval.checked_sub(1) {
                            Some(i) => i,
                            None => {
                                self.pos = Position::Done;
                                continue;
                            }
                        }
                    } else if *interval < self.intervals.len() {
                        *interval
                    } else {
                        self.pos = Position::Done;
                        continue;
                    };
                    let iv = &self.intervals[idx];
                    let restricted = match (key.as_ref(), desc) {
                        (None, _) => Some(iv.clone()),
                        (Some(k), false) => iv.after(k),
                        (Some(k), true) => iv.before(k),
                    };
                    let found = restricted.and_then(|r| {
                        let mut range = c.ids.range::<IdKey, _>(r.bounds());
                        let hit = if desc {
                            range.next_back()
                        } else {
                            range.next()
                        };
                        hit.map(|(k, rid)| (k.clone(), *rid))
                    });
                    match found {
                        Some((k, rid)) => {
                            *key = Some(k);
                            return Ok(Some(rid));
                        }
                        None => {
                            // Move to the next interval, keeping the key as a lower bound.
                            if desc {
                                *interval = idx;
                            } else {
                                *interval = idx + 1;
                            }
                        }
                    }
                }
                Position::Sorted { rids, at } => match rids.get(*at) {
                    Some(rid) => {
                        *at += 1;
                        return Ok(Some(*rid));
                    }
                    None => self.pos = Position::Done,
                },
            }
        }
    }

    /// Every matching record id, sorted by `keys` (ties in natural order).
    fn sorted_rids(
        &self,
        c: &Collection,
        keys: Vec<(String, bool)>,
    ) -> Result<Vec<u64>, CommandError> {
        let mut scan = Query {
            order: Order::Natural { reverse: false },
            skip: 0,
            limit: None,
            pos: Position::Start,
            peeked: None,
            ..self.clone()
        };
        if self.indexed {
            scan.order = Order::Id { desc: false };
        }
        let sort_fields = FieldSet::of_paths(keys.iter().map(|(k, _)| k.as_str()));
        let mut rows: Vec<(Document, u64)> = Vec::new();
        while let Some(rid) = scan.next_candidate(c)? {
            let Some(raw) = c.docs.get(&rid) else {
                continue;
            };
            if scan.matches(raw)? {
                rows.push((sort_fields.extract(raw)?, rid));
            }
        }
        rows.sort_by(|a, b| sort_cmp(&a.0, &b.0, &keys));
        Ok(rows.into_iter().map(|(_, rid)| rid).collect())
    }

    /// The next matching document (after skip), or `None` when the query is exhausted.
    pub(crate) fn next<'c>(
        &mut self,
        c: &'c Collection,
    ) -> Result<Option<(u64, &'c Raw)>, CommandError> {
        if self.limit == Some(0) {
            return Ok(None);
        }
        if let Some(rid) = self.peeked.take() {
            if let Some(raw) = c.docs.get(&rid) {
                self.limit = self.limit.map(|l| l - 1);
                return Ok(Some((rid, raw)));
            }
        }
        while let Some(rid) = self.next_candidate(c)? {
            let Some(raw) = c.docs.get(&rid) else {
                continue;
            };
            if !self.matches(raw)? {
                continue;
            }
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            self.limit = self.limit.map(|l| l - 1);
            return Ok(Some((rid, raw)));
        }
        Ok(None)
    }

    /// True when another matching document follows (it is kept and returned by `next`).
    pub(crate) fn has_more(&mut self, c: &Collection) -> Result<bool, CommandError> {
        if self.peeked.is_some() {
            return Ok(true);
        }
        match self.next(c)? {
            Some((rid, _)) => {
                self.limit = self.limit.map(|l| l + 1);
                self.peeked = Some(rid);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every remaining matching record id.
    pub(crate) fn collect_rids(&mut self, c: &Collection) -> Result<Vec<u64>, CommandError> {
        let mut out = Vec::new();
        while let Some((rid, _)) = self.next(c)? {
            out.push(rid);
        }
        Ok(out)
    }
}

/// Record ids matching `filter`, optionally sorted, up to `limit`.
pub(crate) fn select(
    c: &Collection,
    filter: &Document,
    sort: Option<&Document>,
    limit: Option<usize>,
) -> Result<Vec<u64>, CommandError> {
    Query::new(filter, sort, 0, limit).collect_rids(c)
}

/// The number of documents matching `filter`.
pub(crate) fn count(c: &Collection, filter: &Document) -> Result<usize, CommandError> {
    if filter.is_empty() {
        return Ok(c.len());
    }
    let mut q = Query::new(filter, None, 0, None);
    let mut n = 0;
    while q.next(c)?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Decoded documents matching `filter`, in natural (or index) order.
pub(crate) fn documents(c: &Collection, filter: &Document) -> Result<Vec<Document>, CommandError> {
    let mut q = Query::new(filter, None, 0, None);
    let mut out = Vec::new();
    while let Some((_, raw)) = q.next(c)? {
        out.push(super::fields::decode(raw)?);
    }
    Ok(out)
}

/// The `_id` of a stored document.
pub(crate) fn id_of(raw: &[u8]) -> Option<Bson> {
    bson::RawDocument::from_bytes(raw)
        .ok()?
        .get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(v).ok())
}
