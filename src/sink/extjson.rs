//! The stored text form of BSON values in the control tables: canonical extended JSON (type-exact
//! and deterministic, so equal values have equal text). Resume tokens, snapshot `_id`s, gap
//! document keys and raw events are all written and read back through these four functions.

use bson::{Bson, Document};

use crate::sink::error::SinkError;

/// Canonical extended JSON of a BSON value (deterministic: used to match document keys).
pub fn bson_extjson(value: &Bson) -> String {
    value.clone().into_canonical_extjson().to_string()
}

/// Canonical extended JSON of a document (a resume token, a raw event).
pub fn document_extjson(doc: &Document) -> String {
    bson_extjson(&Bson::Document(doc.clone()))
}

/// Parses extended JSON (canonical or relaxed) back into a value; `what` names it in the error.
pub fn bson_from_extjson(what: &str, text: &str) -> Result<Bson, SinkError> {
    let invalid = |reason: String| SinkError::InvalidStored {
        what: what.to_string(),
        reason,
    };
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    Bson::try_from(json).map_err(|e| invalid(e.to_string()))
}

/// Parses extended JSON back into a document; anything else is `InvalidStored`.
pub fn document_from_extjson(what: &str, text: &str) -> Result<Document, SinkError> {
    match bson_from_extjson(what, text)? {
        Bson::Document(d) => Ok(d),
        other => Err(SinkError::InvalidStored {
            what: what.to_string(),
            reason: format!("expected a document, got {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    #[test]
    fn ids_round_trip_through_their_stored_text_with_their_type() {
        let oid = ObjectId::parse_str("650000000000000000000001").expect("hex");
        for id in [
            Bson::ObjectId(oid),
            Bson::String("tpl-1".into()),
            Bson::Int64(7),
            Bson::Int32(7),
        ] {
            assert_eq!(
                bson_from_extjson("id", &bson_extjson(&id)).ok(),
                Some(id.clone())
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_non_documents_are_refused() {
        let token = bson::doc! {"_data": "8200000001000000012B"};
        assert_eq!(
            document_from_extjson("token", &document_extjson(&token)).ok(),
            Some(token)
        );
        assert!(document_from_extjson("token", "\"x\"").is_err());
        assert!(document_from_extjson("token", "not json").is_err());
    }
}
