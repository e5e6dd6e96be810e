//! Partial decoding of stored documents: the top-level fields a filter or a sort reads, and their
//! extraction from raw BSON bytes into a small `Document`, so matching and sorting never decode
//! fields they do not look at. It does not evaluate filters (that is `matcher.rs`).

use crate::error::CommandError;
use bson::{Bson, Document, RawDocument};

/// The top-level field names an operation reads (`all` when it may read any of them).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSet {
    names: Vec<String>,
    all: bool,
}

fn corrupt(e: impl std::fmt::Display) -> CommandError {
    CommandError::new(1, format!("stored document is not valid BSON: {e}"))
}

impl FieldSet {
    /// Fields read by a query filter.
    pub(crate) fn of_filter(filter: &Document) -> FieldSet {
        let mut set = FieldSet::default();
        set.add_filter(filter);
        set
    }

    /// Fields read by sort keys (dotted paths).
    pub(crate) fn of_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> FieldSet {
        let mut set = FieldSet::default();
        for p in paths {
            set.add_path(p);
        }
        set
    }

    /// True when nothing is read (an empty filter matches without decoding).
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.all
    }

    fn add_path(&mut self, path: &str) {
        let head = path.split('.').next().unwrap_or(path);
        if !self.names.iter().any(|n| n == head) {
            self.names.push(head.to_owned());
        }
    }

    pub(crate) fn add_filter(&mut self, filter: &Document) {
        for (key, cond) in filter {
            match key.as_str() {
                "$and" | "$or" | "$nor" => match cond {
                    Bson::Array(items) => {
                        for item in items {
                            match item {
                                Bson::Document(d) => self.add_filter(d),
                                _ => self.all = true,
                            }
                        }
                    }
                    _ => self.all = true,
                },
                "$comment" => {}
                k if k.starts_with('$') => self.all = true,
                path => self.add_path(path),
            }
        }
    }

    /// The fields of `raw` this set reads, decoded.
    pub(crate) fn extract(&self, raw: &[u8]) -> Result<Document, CommandError> {
        if self.all {
            return Document::from_reader(raw).map_err(corrupt);
        }
        let doc = RawDocument::from_bytes(raw).map_err(corrupt)?;
        let mut out = Document::new();
        let mut found = 0;
        for element in doc {
            let (key, value) = element.map_err(corrupt)?;
            if self.names.iter().any(|n| n == key) {
                out.insert(key, Bson::try_from(value).map_err(corrupt)?);
                found += 1;
                if found == self.names.len() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Decodes a whole stored document.
pub(crate) fn decode(raw: &[u8]) -> Result<Document, CommandError> {
    Document::from_reader(raw).map_err(corrupt)
}

/// Serializes a document.
pub(crate) fn encode(doc: &Document) -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing an in-memory document into a Vec cannot fail.
    let _ = doc.to_writer(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn extraction_decodes_only_the_fields_a_filter_reads() {
        let raw = encode(&doc! { "_id": 1, "a": { "b": 2 }, "c": 3, "d": [1] });
        let set = FieldSet::of_filter(&doc! { "a.b": 2, "$or": [ { "d": 1 }, { "_id": 0 } ] });
        assert_eq!(
            set.extract(&raw).ok(),
            Some(doc! { "_id": 1, "a": { "b": 2 }, "d": [1] })
        );
        assert!(FieldSet::of_filter(&doc! {}).is_empty());
    }
}
