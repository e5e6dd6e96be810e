//! One document (or sub-document) → the column values of one row, and child tables → child rows.
//!
//! Every configured column is produced every time, so all rows of a table carry the same column
//! set: missing optional fields become the configured default or NULL.

use bson::{Bson, Document};

use super::convert::{bson_type_name, check_text, convert, fail, lookup};
use super::rules::{ChildRule, ChildSource, MixedRule, ReferenceRule, RowRules, ScalarRule};
use super::{ChildRows, ColumnValue, GapKind, LegacyRef, MappingError, SqlValue};

/// Discriminator label for a mixed id holding an ObjectId.
pub const KIND_ENTITY: &str = "entity";
/// Discriminator label for a mixed id holding a free string.
pub const KIND_TEMPLATE: &str = "template";

fn label(prefix: &str, dotted: &str) -> String {
    if prefix.is_empty() {
        dotted.to_string()
    } else {
        format!("{prefix}.{dotted}")
    }
}

fn missing(at: &str) -> MappingError {
    fail(
        GapKind::MissingRequired,
        format!("{at}: required field is missing or null"),
    )
}

fn push(out: &mut Vec<ColumnValue>, column: &str, value: SqlValue) {
    out.push(ColumnValue {
        column: column.to_string(),
        value,
    });
}

/// Maps every column rule of `rules` against `doc`; `prefix` labels paths in reasons.
pub fn map_row(
    rules: &RowRules,
    doc: &Document,
    prefix: &str,
) -> Result<Vec<ColumnValue>, MappingError> {
    let mut out =
        Vec::with_capacity(rules.scalars.len() + rules.references.len() + 3 * rules.mixed.len());
    for rule in &rules.scalars {
        push(&mut out, &rule.column, map_scalar(rule, doc, prefix)?);
    }
    for rule in &rules.references {
        push(&mut out, &rule.column, map_reference(rule, doc, prefix)?);
    }
    for rule in &rules.mixed {
        let [kind, fk, ext] = map_mixed(rule, doc, prefix)?;
        push(&mut out, &rule.kind_column, kind);
        push(&mut out, &rule.fk_column, fk);
        push(&mut out, &rule.ref_column, ext);
    }
    Ok(out)
}

fn map_scalar(rule: &ScalarRule, doc: &Document, prefix: &str) -> Result<SqlValue, MappingError> {
    let at = label(prefix, &rule.path.dotted());
    match lookup(doc, &rule.path, &at)? {
        Some(value) => convert(value, &rule.conversion, &at),
        None if rule.required => Err(missing(&at)),
        None => Ok(rule.default.clone().unwrap_or(SqlValue::Null)),
    }
}

/// The legacy-id text of an ObjectId reference: 24 lower-case hex digits.
fn object_id_ref(collection: &str, oid: &bson::oid::ObjectId) -> SqlValue {
    SqlValue::Ref(LegacyRef {
        collection: collection.to_string(),
        legacy_id: oid.to_hex(),
    })
}

fn map_reference(
    rule: &ReferenceRule,
    doc: &Document,
    prefix: &str,
) -> Result<SqlValue, MappingError> {
    let at = label(prefix, &rule.path.dotted());
    match lookup(doc, &rule.path, &at)? {
        Some(Bson::ObjectId(oid)) => Ok(object_id_ref(&rule.collection, oid)),
        Some(Bson::String(s)) => Err(fail(
            GapKind::InvalidReference,
            format!(
                "{at}: string {s:?} where a reference to {} expects an ObjectId",
                rule.collection
            ),
        )),
        Some(other) => Err(fail(
            GapKind::WrongType,
            format!(
                "{at}: expected an ObjectId reference to {}, found BSON {}",
                rule.collection,
                bson_type_name(other)
            ),
        )),
        None if rule.required => Err(missing(&at)),
        None => Ok(SqlValue::Null),
    }
}

fn is_hex24(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[kind, fk, external_ref]`: exactly one of fk / external_ref is non-NULL when the field is set,
/// as the schema's CHECK constraints demand; all three NULL when it is absent and optional.
fn map_mixed(
    rule: &MixedRule,
    doc: &Document,
    prefix: &str,
) -> Result<[SqlValue; 3], MappingError> {
    let at = label(prefix, &rule.path.dotted());
    let entity = |legacy_id: String| {
        [
            SqlValue::Text(KIND_ENTITY.to_string()),
            SqlValue::Ref(LegacyRef {
                collection: rule.collection.clone(),
                legacy_id,
            }),
            SqlValue::Null,
        ]
    };
    match lookup(doc, &rule.path, &at)? {
        Some(Bson::ObjectId(oid)) => Ok(entity(oid.to_hex())),
        Some(Bson::String(s)) if rule.hex24_is_id && is_hex24(s) => {
            Ok(entity(s.to_ascii_lowercase()))
        }
        Some(Bson::String(s)) => {
            check_text(&at, s)?;
            Ok([
                SqlValue::Text(KIND_TEMPLATE.to_string()),
                SqlValue::Null,
                SqlValue::Text(s.clone()),
            ])
        }
        Some(other) => Err(fail(
            GapKind::WrongType,
            format!(
                "{at}: expected an ObjectId or a string, found BSON {}",
                bson_type_name(other)
            ),
        )),
        None if rule.required => Err(missing(&at)),
        None => Ok([SqlValue::Null, SqlValue::Null, SqlValue::Null]),
    }
}

/// The complete child rows of every child table of one parent document.
pub fn map_children(
    children: &[ChildRule],
    doc: &Document,
) -> Result<Vec<ChildRows>, MappingError> {
    children.iter().map(|child| map_child(child, doc)).collect()
}

fn map_child(rule: &ChildRule, doc: &Document) -> Result<ChildRows, MappingError> {
    let at = rule.path.dotted();
    let value = lookup(doc, &rule.path, &at)?;
    let mut rows: Vec<Vec<ColumnValue>> = Vec::new();
    match (&rule.source, value) {
        (_, None) => {}
        (ChildSource::SubDocument(row_rules), Some(Bson::Document(sub))) => {
            rows.push(map_row(row_rules, sub, &at)?);
        }
        (ChildSource::SubDocument(_), Some(other)) => {
            return Err(fail(
                GapKind::WrongType,
                format!(
                    "{at}: expected a sub-document, found BSON {}",
                    bson_type_name(other)
                ),
            ));
        }
        (source, Some(Bson::Array(items))) => {
            for (i, item) in items.iter().enumerate() {
                let item_at = format!("{at}[{i}]");
                let mut row = match (source, item) {
                    (ChildSource::DocumentArray(row_rules), Bson::Document(sub)) => {
                        map_row(row_rules, sub, &item_at)?
                    }
                    (
                        ChildSource::IdArray {
                            value_column,
                            collection,
                        },
                        Bson::ObjectId(oid),
                    ) => {
                        vec![ColumnValue {
                            column: value_column.clone(),
                            value: object_id_ref(collection, oid),
                        }]
                    }
                    (ChildSource::IdArray { collection, .. }, Bson::String(s)) => {
                        return Err(fail(
                            GapKind::InvalidReference,
                            format!("{item_at}: string {s:?} where a reference to {collection} expects an ObjectId"),
                        ));
                    }
                    (ChildSource::ScalarArray { .. }, Bson::Null | Bson::Undefined) => {
                        return Err(fail(
                            GapKind::WrongType,
                            format!("{item_at}: null element in an array of values"),
                        ));
                    }
                    (
                        ChildSource::ScalarArray {
                            value_column,
                            conversion,
                        },
                        item,
                    ) => {
                        vec![ColumnValue {
                            column: value_column.clone(),
                            value: convert(item, conversion, &item_at)?,
                        }]
                    }
                    (ChildSource::DocumentArray(_), other) => {
                        return Err(fail(
                            GapKind::WrongType,
                            format!(
                                "{item_at}: expected a sub-document, found BSON {}",
                                bson_type_name(other)
                            ),
                        ));
                    }
                    (ChildSource::IdArray { collection, .. }, other) => {
                        return Err(fail(
                            GapKind::WrongType,
                            format!("{item_at}: expected an ObjectId reference to {collection}, found BSON {}", bson_type_name(other)),
                        ));
                    }
                    (ChildSource::SubDocument(_), _) => {
                        return Err(fail(
                            GapKind::WrongType,
                            format!("{at}: expected a sub-document, found an array"),
                        ));
                    }
                };
                match &rule.ordinal_column {
                    Some(column) => row.push(ColumnValue {
                        column: column.clone(),
                        value: SqlValue::Int(i as i64),
                    }),
                    None if !matches!(source, ChildSource::DocumentArray(_))
                        && rows.contains(&row) =>
                    {
                        continue
                    }
                    None => {}
                }
                rows.push(row);
            }
        }
        (_, Some(other)) => {
            return Err(fail(
                GapKind::WrongType,
                format!(
                    "{at}: expected an array, found BSON {}",
                    bson_type_name(other)
                ),
            ));
        }
    }
    Ok(ChildRows {
        table: rule.table.clone(),
        parent_column: rule.parent_column.clone(),
        rows,
    })
}
