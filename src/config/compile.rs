//! Compiles the validated mapping against the live Postgres catalogue into `CollectionRules`.
//!
//! Checks that every table and column exists, that each configured type agrees with the column's
//! catalogue kind (text may also target an enum column; labels are checked at mapping time),
//! captures numeric precision/scale, and that NOT NULL columns can never receive NULL. Problems
//! name the collection, the field and what is wrong, all at once.

use std::collections::{BTreeMap, BTreeSet};

use bson::Bson;

use super::collection::{
    ChildShape, ColumnConfig, DeletePolicy, MixedConfig, ReferenceConfig, SqlType,
};
use super::{CollectionConfig, Config, ConfigError, Problem};
use crate::mapping::convert::convert;
use crate::mapping::rules::{
    ChildRule, ChildSource, CollectionRules, Conversion, DeleteRule, FieldPath, IntWidth,
    MixedRule, ReferenceRule, RowRules, ScalarRule,
};
use crate::mapping::{KIND_ENTITY, KIND_TEMPLATE};
use crate::sink::catalogue::{Catalogue, ColumnInfo, TableInfo};

/// The validated configuration plus the compiled rules of every mapped collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledMapping {
    pub config: Config,
    /// Keyed by MongoDB collection name.
    pub collections: BTreeMap<String, CollectionRules>,
}

impl CompiledMapping {
    /// The rules for one collection, if it is mapped.
    pub fn rules(&self, collection: &str) -> Option<&CollectionRules> {
        self.collections.get(collection)
    }
}

impl Config {
    /// Validates the mapping against `catalogue` (which must hold every table of
    /// `mapped_tables()`) and compiles it. Reports every problem found.
    pub fn compile(&self, catalogue: &Catalogue) -> Result<CompiledMapping, ConfigError> {
        self.validate()?;
        let mut problems = Vec::new();
        let mut collections = BTreeMap::new();
        for (name, coll) in &self.collections {
            let mut c = Compiler {
                scope: format!("collections.{name}"),
                catalogue,
                problems: &mut problems,
            };
            if let Some(rules) = c.collection(name, coll) {
                collections.insert(name.clone(), rules);
            }
        }
        if problems.is_empty() {
            Ok(CompiledMapping {
                config: self.clone(),
                collections,
            })
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

struct Compiler<'a> {
    scope: String,
    catalogue: &'a Catalogue,
    problems: &'a mut Vec<Problem>,
}

fn kind_matches(sql_type: SqlType, kind: &str) -> bool {
    match sql_type {
        SqlType::Text => matches!(kind, "text" | "varchar" | "bpchar" | "citext" | "enum"),
        SqlType::Smallint => kind == "int2",
        SqlType::Integer => kind == "int4",
        SqlType::Bigint => kind == "int8",
        SqlType::Boolean => kind == "bool",
        SqlType::Numeric => kind == "numeric",
        SqlType::Timestamptz => kind == "timestamptz",
        SqlType::Uuid => kind == "uuid",
        SqlType::Jsonb => matches!(kind, "jsonb" | "json"),
        SqlType::TextArray => matches!(kind, "text[]" | "varchar[]"),
    }
}

/// The conversion for a configured type going into a catalogue column (types already agree).
fn conversion(sql_type: SqlType, info: &ColumnInfo) -> Conversion {
    match sql_type {
        SqlType::Text if info.kind == "enum" => Conversion::Text {
            enum_labels: Some(info.enum_labels.clone()),
            enum_type: Some(info.sql_type.clone()),
        },
        SqlType::Text => Conversion::Text {
            enum_labels: None,
            enum_type: None,
        },
        SqlType::Smallint => Conversion::Int(IntWidth::I16),
        SqlType::Integer => Conversion::Int(IntWidth::I32),
        SqlType::Bigint => Conversion::Int(IntWidth::I64),
        SqlType::Boolean => Conversion::Bool,
        SqlType::Numeric => Conversion::Numeric {
            precision_scale: info.numeric_precision_scale,
        },
        SqlType::Timestamptz => Conversion::Timestamptz,
        SqlType::Uuid => Conversion::Uuid,
        SqlType::Jsonb => Conversion::Jsonb,
        SqlType::TextArray => Conversion::TextArray,
    }
}

/// A TOML default as the BSON value a document would hold; dates are not supported as defaults.
fn toml_to_bson(value: &toml::Value) -> Option<Bson> {
    Some(match value {
        toml::Value::String(s) => Bson::String(s.clone()),
        toml::Value::Integer(i) => Bson::Int64(*i),
        toml::Value::Float(f) => Bson::Double(*f),
        toml::Value::Boolean(b) => Bson::Boolean(*b),
        toml::Value::Array(items) => {
            Bson::Array(items.iter().map(toml_to_bson).collect::<Option<Vec<_>>>()?)
        }
        toml::Value::Table(t) => Bson::Document(
            t.iter()
                .map(|(k, v)| Some((k.clone(), toml_to_bson(v)?)))
                .collect::<Option<bson::Document>>()?,
        ),
        toml::Value::Datetime(_) => return None,
    })
}

impl<'a> Compiler<'a> {
    fn report(&mut self, field: &str, rule: String) {
        self.problems.push(Problem {
            scope: self.scope.clone(),
            field: field.to_string(),
            rule,
        });
    }

    fn table(&mut self, name: &str) -> Option<&'a TableInfo> {
        let catalogue = self.catalogue;
        let found = catalogue.tables.get(name);
        if found.is_none() {
            self.report(name, format!("table {name} does not exist in Postgres"));
        }
        found
    }

    /// Looks a column up and checks its kind with `ok`; `expected` describes the kinds allowed.
    fn column<'t>(
        &mut self,
        table: &'t TableInfo,
        column: &str,
        expected: &str,
        ok: impl Fn(&ColumnInfo) -> bool,
    ) -> Option<&'t ColumnInfo> {
        match table.columns.get(column) {
            None => {
                self.report(
                    column,
                    format!("column {}.{column} does not exist", table.name),
                );
                None
            }
            Some(info) if !ok(info) => {
                self.report(
                    column,
                    format!(
                        "column {}.{column} is {} but the mapping needs {expected}",
                        table.name, info.sql_type
                    ),
                );
                None
            }
            Some(info) => Some(info),
        }
    }

    fn never_null(&mut self, info: &ColumnInfo, field: &str, required: bool, has_default: bool) {
        if !info.nullable && !required && !has_default {
            self.report(
                field,
                format!(
                    "column {} is NOT NULL: mark the field required or give a default",
                    info.name
                ),
            );
        }
    }

    fn scalar(&mut self, table: &TableInfo, c: &ColumnConfig) -> Option<ScalarRule> {
        let info = self.column(table, &c.column, c.sql_type.as_str(), |i| {
            kind_matches(c.sql_type, &i.kind)
        })?;
        let conversion = conversion(c.sql_type, info);
        let default = match &c.default {
            None => None,
            Some(value) => {
                let converted = toml_to_bson(value)
                    .ok_or_else(|| "dates cannot be defaults".to_string())
                    .and_then(|b| convert(&b, &conversion, &c.column).map_err(|e| e.reason));
                match converted {
                    Ok(v) => Some(v),
                    Err(why) => {
                        self.report(&c.column, format!("default is not valid: {why}"));
                        None
                    }
                }
            }
        };
        self.never_null(info, &c.column, c.required, c.default.is_some());
        Some(ScalarRule {
            column: c.column.clone(),
            path: FieldPath::parse(&c.path),
            conversion,
            required: c.required,
            default,
        })
    }

    fn reference(&mut self, table: &TableInfo, r: &ReferenceConfig) -> Option<ReferenceRule> {
        let info = self.column(table, &r.column, "uuid", |i| i.kind == "uuid")?;
        self.never_null(info, &r.column, r.required, false);
        Some(ReferenceRule {
            column: r.column.clone(),
            path: FieldPath::parse(&r.path),
            collection: r.collection.clone(),
            required: r.required,
        })
    }

    fn mixed(&mut self, table: &TableInfo, m: &MixedConfig) -> Option<MixedRule> {
        let labels_ok = |i: &ColumnInfo| {
            i.kind == "text"
                || (i.kind == "enum"
                    && [KIND_ENTITY, KIND_TEMPLATE]
                        .iter()
                        .all(|l| i.enum_labels.iter().any(|x| x == l)))
        };
        let kind = self.column(
            table,
            &m.kind_column,
            "text or an enum with labels entity and template",
            labels_ok,
        );
        let fk = self.column(table, &m.fk_column, "uuid", |i| i.kind == "uuid");
        let ext = self.column(table, &m.ref_column, "text", |i| {
            matches!(i.kind.as_str(), "text" | "varchar")
        });
        if let Some(kind) = kind {
            self.never_null(kind, &m.kind_column, m.required, false);
        }
        for (info, column) in [(fk, &m.fk_column), (ext, &m.ref_column)] {
            if info.is_some_and(|i| !i.nullable) {
                self.report(
                    column,
                    "one of the FK / external-ref columns is always NULL: it must be nullable"
                        .into(),
                );
            }
        }
        (kind.is_some() && fk.is_some() && ext.is_some()).then(|| MixedRule {
            path: FieldPath::parse(&m.path),
            kind_column: m.kind_column.clone(),
            fk_column: m.fk_column.clone(),
            ref_column: m.ref_column.clone(),
            collection: m.collection.clone(),
            hex24_is_id: m.hex24_is_id,
            required: m.required,
        })
    }

    fn row(
        &mut self,
        table: &TableInfo,
        cols: &[ColumnConfig],
        refs: &[ReferenceConfig],
        mixed: &[MixedConfig],
    ) -> RowRules {
        RowRules {
            scalars: cols.iter().filter_map(|c| self.scalar(table, c)).collect(),
            references: refs
                .iter()
                .filter_map(|r| self.reference(table, r))
                .collect(),
            mixed: mixed.iter().filter_map(|m| self.mixed(table, m)).collect(),
        }
    }

    /// NOT NULL columns without a default that nothing fills would reject every insert.
    fn unmapped_not_null(&mut self, table: &TableInfo, mapped: &BTreeSet<&str>) {
        for info in table.columns.values() {
            if !info.nullable && !info.has_default && !mapped.contains(info.name.as_str()) {
                self.report(
                    &info.name,
                    format!(
                        "column {}.{} is NOT NULL without a default but nothing maps it",
                        table.name, info.name
                    ),
                );
            }
        }
    }

    fn collection(&mut self, name: &str, coll: &CollectionConfig) -> Option<CollectionRules> {
        let count = self.problems.len();
        let table = self.table(&coll.table)?;
        self.column(table, &coll.id_column, "uuid", |i| i.kind == "uuid");
        self.column(table, &coll.legacy_column, "text", |i| {
            matches!(i.kind.as_str(), "text" | "varchar")
        });
        if let Some(v) = &coll.version_column {
            self.column(table, v, "bigint", |i| i.kind == "int8");
        }
        let row = self.row(table, &coll.columns, &coll.references, &coll.mixed);
        let mut mapped: BTreeSet<&str> =
            BTreeSet::from([coll.id_column.as_str(), coll.legacy_column.as_str()]);
        mapped.extend(coll.version_column.as_deref());
        mapped.extend(coll.columns.iter().map(|c| c.column.as_str()));
        mapped.extend(coll.references.iter().map(|c| c.column.as_str()));
        mapped.extend(coll.mixed.iter().flat_map(|m| {
            [
                m.kind_column.as_str(),
                m.fk_column.as_str(),
                m.ref_column.as_str(),
            ]
        }));
        self.unmapped_not_null(table, &mapped);
        let delete = match &coll.delete {
            DeletePolicy::Delete => DeleteRule::Delete,
            DeletePolicy::Ignore => DeleteRule::Ignore,
            DeletePolicy::Soft { column, value } => {
                let info = table.columns.get(column);
                let kind = info.map(|i| i.kind.clone());
                let sql_type = match (kind.as_deref(), value) {
                    (Some("bool"), _) => Some(SqlType::Boolean),
                    (Some("timestamptz"), _) => None,
                    (Some(k), _) if kind_matches(SqlType::Text, k) => Some(SqlType::Text),
                    (Some("int2"), _) => Some(SqlType::Smallint),
                    (Some("int4"), _) => Some(SqlType::Integer),
                    (Some("int8"), _) => Some(SqlType::Bigint),
                    _ => None,
                };
                match (info, sql_type) {
                    (Some(info), Some(t)) => match toml_to_bson(value)
                        .map(|b| convert(&b, &conversion(t, info), column))
                    {
                        Some(Ok(v)) => DeleteRule::Soft {
                            column: column.clone(),
                            value: v,
                        },
                        Some(Err(e)) => {
                            self.report("delete.value", e.reason);
                            DeleteRule::Delete
                        }
                        None => {
                            self.report(
                                "delete.value",
                                "dates cannot be soft-delete values".into(),
                            );
                            DeleteRule::Delete
                        }
                    },
                    (None, _) => {
                        self.report(
                            "delete.column",
                            format!("column {}.{column} does not exist", table.name),
                        );
                        DeleteRule::Delete
                    }
                    (Some(info), None) => {
                        self.report("delete.column", format!("soft-delete column {column} is {}: use boolean, text or an integer", info.sql_type));
                        DeleteRule::Delete
                    }
                }
            }
        };
        let mut children = Vec::new();
        for child in &coll.children {
            let Some(ct) = self.table(&child.table) else {
                continue;
            };
            self.column(ct, &child.parent_column, "uuid", |i| i.kind == "uuid");
            if let Some(o) = &child.ordinal_column {
                self.column(ct, o, "an integer", |i| {
                    matches!(i.kind.as_str(), "int2" | "int4" | "int8")
                });
            }
            let rules = self.row(ct, &child.columns, &child.references, &child.mixed);
            let mut mapped: BTreeSet<&str> = BTreeSet::from([child.parent_column.as_str()]);
            mapped.extend(child.ordinal_column.as_deref());
            mapped.extend(child.columns.iter().map(|c| c.column.as_str()));
            mapped.extend(child.references.iter().map(|c| c.column.as_str()));
            mapped.extend(child.mixed.iter().flat_map(|m| {
                [
                    m.kind_column.as_str(),
                    m.fk_column.as_str(),
                    m.ref_column.as_str(),
                ]
            }));
            self.unmapped_not_null(ct, &mapped);
            let source = match child.shape {
                ChildShape::Array => ChildSource::DocumentArray(rules),
                ChildShape::Document => ChildSource::SubDocument(rules),
            };
            children.push(ChildRule {
                table: child.table.clone(),
                path: FieldPath::parse(&child.path),
                parent_column: child.parent_column.clone(),
                ordinal_column: child.ordinal_column.clone(),
                source,
            });
        }
        for j in &coll.junctions {
            let Some(jt) = self.table(&j.table) else {
                continue;
            };
            self.column(jt, &j.parent_column, "uuid", |i| i.kind == "uuid");
            if let Some(o) = &j.ordinal_column {
                self.column(jt, o, "an integer", |i| {
                    matches!(i.kind.as_str(), "int2" | "int4" | "int8")
                });
            }
            let source = match (&j.collection, j.sql_type) {
                (Some(collection), _) => {
                    self.column(jt, &j.value_column, "uuid", |i| i.kind == "uuid");
                    ChildSource::IdArray {
                        value_column: j.value_column.clone(),
                        collection: collection.clone(),
                    }
                }
                (None, Some(t)) => {
                    let Some(info) = self.column(jt, &j.value_column, t.as_str(), |i| {
                        kind_matches(t, &i.kind)
                    }) else {
                        continue;
                    };
                    ChildSource::ScalarArray {
                        value_column: j.value_column.clone(),
                        conversion: conversion(t, info),
                    }
                }
                (None, None) => continue,
            };
            let mut mapped = BTreeSet::from([j.parent_column.as_str(), j.value_column.as_str()]);
            mapped.extend(j.ordinal_column.as_deref());
            self.unmapped_not_null(jt, &mapped);
            children.push(ChildRule {
                table: j.table.clone(),
                path: FieldPath::parse(&j.path),
                parent_column: j.parent_column.clone(),
                ordinal_column: j.ordinal_column.clone(),
                source,
            });
        }
        (self.problems.len() == count).then(|| CollectionRules {
            collection: name.to_string(),
            table: coll.table.clone(),
            id_column: coll.id_column.clone(),
            legacy_column: coll.legacy_column.clone(),
            version_column: coll.version_column.clone(),
            delete,
            append_only: coll.append_only,
            row,
            children,
        })
    }
}
