//! Query planning over the `_id` index: derives from a filter the ordered, disjoint `_id`
//! intervals that contain every document the filter can match (equality, `$eq`, `$in`, type-
//! bracketed `$gt/$gte/$lt/$lte`, `$type`, and `$and` / `$or` of such predicates). The plan is a
//! superset: callers still run the full matcher on every candidate. It never reads documents.

use super::key::IdKey;
use super::order::{rank_of_type, type_rank, MAX_RANK};
use bson::{Bson, Document};
use std::cmp::Ordering;
use std::ops::Bound;

/// Lower end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lo {
    Unbounded,
    Incl(IdKey),
    Excl(IdKey),
}

/// Upper end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hi {
    Incl(IdKey),
    Excl(IdKey),
    Unbounded,
}

/// A non-empty `_id` interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    pub lo: Lo,
    pub hi: Hi,
}

fn lo_cmp(a: &Lo, b: &Lo) -> Ordering {
    match (a, b) {
        (Lo::Unbounded, Lo::Unbounded) => Ordering::Equal,
        (Lo::Unbounded, _) => Ordering::Less,
        (_, Lo::Unbounded) => Ordering::Greater,
        (Lo::Incl(x) | Lo::Excl(x), Lo::Incl(y) | Lo::Excl(y)) => x.cmp(y).then_with(|| {
            let excl = |l: &Lo| matches!(l, Lo::Excl(_));
            excl(a).cmp(&excl(b))
        }),
    }
}

fn hi_cmp(a: &Hi, b: &Hi) -> Ordering {
    match (a, b) {
        (Hi::Unbounded, Hi::Unbounded) => Ordering::Equal,
        (Hi::Unbounded, _) => Ordering::Greater,
        (_, Hi::Unbounded) => Ordering::Less,
        (Hi::Incl(x) | Hi::Excl(x), Hi::Incl(y) | Hi::Excl(y)) => x.cmp(y).then_with(|| {
            let incl = |h: &Hi| matches!(h, Hi::Incl(_));
            incl(a).cmp(&incl(b))
        }),
    }
}

/// True when some key can lie in `[lo, hi]`.
fn non_empty(lo: &Lo, hi: &Hi) -> bool {
    match (lo, hi) {
        (Lo::Unbounded, _) | (_, Hi::Unbounded) => true,
        (Lo::Incl(a), Hi::Incl(b)) => a <= b,
        (Lo::Incl(a) | Lo::Excl(a), Hi::Excl(b)) | (Lo::Excl(a), Hi::Incl(b)) => a < b,
    }
}

/// True when `lo` starts at or before the end `hi` (the intervals touch or overlap).
fn starts_within(lo: &Lo, hi: &Hi) -> bool {
    match (lo, hi) {
        (Lo::Unbounded, _) | (_, Hi::Unbounded) => true,
        (Lo::Incl(a), Hi::Incl(b)) | (Lo::Incl(a), Hi::Excl(b)) | (Lo::Excl(a), Hi::Incl(b)) => {
            a <= b
        }
        (Lo::Excl(a), Hi::Excl(b)) => a < b,
    }
}

impl Interval {
    fn point(v: &Bson) -> Interval {
        let k = IdKey::of(v);
        Interval {
            lo: Lo::Incl(k.clone()),
            hi: Hi::Incl(k),
        }
    }

    fn all() -> Interval {
        Interval {
            lo: Lo::Unbounded,
            hi: Hi::Unbounded,
        }
    }

    fn bracket(rank: u8) -> Interval {
        Interval {
            lo: Lo::Incl(IdKey::Low(rank)),
            hi: Hi::Incl(IdKey::High(rank)),
        }
    }

    /// The bounds as `BTreeMap::range` takes them.
    pub(crate) fn bounds(&self) -> (Bound<&IdKey>, Bound<&IdKey>) {
        let lo = match &self.lo {
            Lo::Unbounded => Bound::Unbounded,
            Lo::Incl(k) => Bound::Included(k),
            Lo::Excl(k) => Bound::Excluded(k),
        };
        let hi = match &self.hi {
            Hi::Unbounded => Bound::Unbounded,
            Hi::Incl(k) => Bound::Included(k),
            Hi::Excl(k) => Bound::Excluded(k),
        };
        (lo, hi)
    }

    /// This interval restricted to keys strictly after `k`; `None` when nothing remains.
    pub(crate) fn after(&self, k: &IdKey) -> Option<Interval> {
        intersect(
            self,
            &Interval {
                lo: Lo::Excl(k.clone()),
                hi: Hi::Unbounded,
            },
        )
    }

    /// This interval restricted to keys strictly before `k`; `None` when nothing remains.
    pub(crate) fn before(&self, k: &IdKey) -> Option<Interval> {
        intersect(
            self,
            &Interval {
                lo: Lo::Unbounded,
                hi: Hi::Excl(k.clone()),
            },
        )
    }
}

fn intersect(a: &Interval, b: &Interval) -> Option<Interval> {
    let lo = if lo_cmp(&a.lo, &b.lo) == Ordering::Less {
        b.lo.clone()
    } else {
        a.lo.clone()
    };
    let hi = if hi_cmp(&a.hi, &b.hi) == Ordering::Greater {
        b.hi.clone()
    } else {
        a.hi.clone()
    };
    non_empty(&lo, &hi).then_some(Interval { lo, hi })
}

/// The `_id` intervals a filter can match: `None` means "any `_id`" (no restriction).
pub(crate) type IdPlan = Option<Vec<Interval>>;

/// Sorts and merges intervals into an ordered, disjoint list.
fn normalize(mut v: Vec<Interval>) -> Vec<Interval> {
    v.sort_by(|a, b| lo_cmp(&a.lo, &b.lo));
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for i in v {
        match out.last_mut() {
            Some(last) if starts_within(&i.lo, &last.hi) => {
                if hi_cmp(&i.hi, &last.hi) == Ordering::Greater {
                    last.hi = i.hi;
                }
            }
            _ => out.push(i),
        }
    }
    out
}

fn intersect_plans(a: IdPlan, b: IdPlan) -> IdPlan {
    match (a, b) {
        (None, p) | (p, None) => p,
        (Some(x), Some(y)) => {
            let mut out = Vec::new();
            for i in &x {
                for j in &y {
                    if let Some(k) = intersect(i, j) {
                        out.push(k);
                    }
                }
            }
            Some(normalize(out))
        }
    }
}

fn union_plans(plans: Vec<IdPlan>) -> IdPlan {
    let mut all = Vec::new();
    for p in plans {
        all.extend(p?);
    }
    Some(normalize(all))
}

/// Values that cannot be planned as a point (regexes match by pattern, arrays by element).
fn plannable(v: &Bson) -> bool {
    !matches!(v, Bson::RegularExpression(_) | Bson::Array(_))
}

/// Everything in `v`'s bracket above (`up`) or below it, from `v` (inclusive or not).
fn half(v: &Bson, up: bool, inclusive: bool) -> Interval {
    let k = IdKey::of(v);
    let rank = type_rank(v);
    // MinKey and MaxKey comparisons are not bracketed.
    let unbracketed = rank == 0 || rank == MAX_RANK;
    if up {
        Interval {
            lo: if inclusive { Lo::Incl(k) } else { Lo::Excl(k) },
            hi: if unbracketed {
                Hi::Unbounded
            } else {
                Hi::Incl(IdKey::High(rank))
            },
        }
    } else {
        Interval {
            lo: if unbracketed {
                Lo::Unbounded
            } else {
                Lo::Incl(IdKey::Low(rank))
            },
            hi: if inclusive { Hi::Incl(k) } else { Hi::Excl(k) },
        }
    }
}

fn operator_plan(op: &str, arg: &Bson) -> IdPlan {
    match op {
        "$eq" if plannable(arg) => Some(vec![Interval::point(arg)]),
        "$in" => match arg {
            Bson::Array(items) if items.iter().all(plannable) => {
                Some(normalize(items.iter().map(Interval::point).collect()))
            }
            _ => None,
        },
        "$gt" => Some(vec![half(arg, true, false)]),
        "$gte" => Some(vec![half(arg, true, true)]),
        "$lt" => Some(vec![half(arg, false, false)]),
        "$lte" => Some(vec![half(arg, false, true)]),
        "$type" => {
            let operands: Vec<&Bson> = match arg {
                Bson::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            let mut out = Vec::new();
            for o in operands {
                out.push(Interval::bracket(rank_of_type(o)?));
            }
            Some(normalize(out))
        }
        _ => None,
    }
}

fn field_plan(cond: &Bson) -> IdPlan {
    match cond {
        Bson::Document(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => {
            // `None` means "unrestricted" here, not failure: every operator narrows the plan.
            let mut acc = Some(vec![Interval::all()]);
            for (op, arg) in ops {
                acc = intersect_plans(acc, operator_plan(op, arg));
            }
            acc
        }
        v if plannable(v) => Some(vec![Interval::point(v)]),
        _ => None,
    }
}

/// The `_id` intervals that contain every document `filter` can match.
pub(crate) fn plan(filter: &Document) -> IdPlan {
    let mut acc: IdPlan = None;
    for (key, cond) in filter {
        let p = match key.as_str() {
            "_id" => field_plan(cond),
            "$and" => match cond {
                Bson::Array(items) => items
                    .iter()
                    .map(|i| i.as_document().and_then(plan))
                    .fold(None, intersect_plans),
                _ => None,
            },
            "$or" => match cond {
                Bson::Array(items) if !items.is_empty() => union_plans(
                    items
                        .iter()
                        .map(|i| i.as_document().and_then(plan))
                        .collect(),
                ),
                _ => None,
            },
            _ => None,
        };
        acc = intersect_plans(acc, p);
    }
    // A single unbounded interval restricts nothing.
    acc.filter(|v| v.as_slice() != [Interval::all()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn equality_in_and_ranges_become_intervals() {
        let p = plan(&doc! { "_id": { "$in": [3, 1, 2, 1] } }).expect("planned");
        assert_eq!(p.len(), 3);
        let p = plan(&doc! { "_id": { "$gt": 5, "$lte": 9 } }).expect("planned");
        assert_eq!(
            p,
            vec![Interval {
                lo: Lo::Excl(IdKey::Int(5)),
                hi: Hi::Incl(IdKey::Int(9))
            }]
        );
        assert_eq!(plan(&doc! { "x": 1 }), None);
        assert_eq!(plan(&doc! { "_id": { "$ne": 1 } }), None);
        assert_eq!(plan(&doc! { "$or": [ { "_id": 1 }, { "x": 2 } ] }), None);
        let empty = plan(&doc! { "_id": 1, "$and": [ { "_id": 2 } ] }).expect("planned");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_range_stays_in_its_bracket_and_or_with_types_adds_brackets() {
        let p = plan(&doc! { "$or": [
            { "_id": { "$gt": "m" } },
            { "_id": { "$type": ["objectId", "date"] } },
        ] })
        .expect("planned");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].hi, Hi::Incl(IdKey::High(4)));
        assert_eq!(p[1], Interval::bracket(8));
    }
}
