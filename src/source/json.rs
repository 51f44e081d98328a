//! Reads one JSON record (an object) into `(key, value)` cells.
//!
//! Numbers are kept as their exact source text (through `serde_json`'s `RawValue`) so
//! that `25.10` stays `25.10` and `1e3` can be refused as "not a plain decimal" instead
//! of silently becoming a float.

use serde_json::value::RawValue;
use std::collections::HashMap;

/// A cell value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonCell {
    /// `null`.
    Null,
    /// A string (unescaped), number (exact text) or boolean (`true`/`false`).
    Text(String),
    /// An object or an array: an error only for a key the profile uses, so the caller
    /// decides.
    Nested,
}

/// Why a record is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON, or not an object.
    NotAnObject(String),
}

impl JsonError {
    /// Human explanation for the quarantine.
    pub fn message(&self) -> String {
        match self {
            JsonError::NotAnObject(why) => format!("not a JSON object: {why}"),
        }
    }
}

/// Parses `record` into its keys and values, in no particular order. A key that
/// appears twice keeps its last value, as most JSON readers do. Nested values are
/// only marked: keys the profile does not use may hold anything.
///
/// # Errors
/// See [`JsonError`].
pub fn parse(record: &str) -> Result<Vec<(String, JsonCell)>, JsonError> {
    let map: HashMap<String, &RawValue> =
        serde_json::from_str(record).map_err(|e| JsonError::NotAnObject(e.to_string()))?;
    let mut out = Vec::with_capacity(map.len());
    for (key, raw) in map {
        let text = raw.get();
        let cell = match text.as_bytes().first() {
            Some(b'"') => JsonCell::Text(
                serde_json::from_str::<String>(text)
                    .map_err(|e| JsonError::NotAnObject(e.to_string()))?,
            ),
            Some(b'{' | b'[') => JsonCell::Nested,
            Some(b'n') => JsonCell::Null,
            _ => JsonCell::Text(text.to_owned()),
        };
        out.push((key, cell));
    }
    Ok(out)
}

/// The keys of an object (sorted), for profile detection.
///
/// # Errors
/// When the record is not a JSON object.
pub fn keys(record: &str) -> Result<Vec<String>, JsonError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(record).map_err(|e| JsonError::NotAnObject(e.to_string()))?;
    Ok(map.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(cells: &[(String, JsonCell)], key: &str) -> JsonCell {
        cells.iter().find(|(k, _)| k == key).unwrap().1.clone()
    }

    #[test]
    fn numbers_keep_their_text() {
        let c = parse(r#"{"a": 25.10, "b": 1e3, "c": "x\"y", "d": null, "e": true}"#).unwrap();
        assert_eq!(get(&c, "a"), JsonCell::Text("25.10".into()));
        assert_eq!(get(&c, "b"), JsonCell::Text("1e3".into()));
        assert_eq!(get(&c, "c"), JsonCell::Text("x\"y".into()));
        assert_eq!(get(&c, "d"), JsonCell::Null);
        assert_eq!(get(&c, "e"), JsonCell::Text("true".into()));
    }

    #[test]
    fn non_objects_are_errors_and_nested_values_are_marked() {
        assert!(matches!(parse("5"), Err(JsonError::NotAnObject(_))));
        assert!(matches!(parse("{\"a\":"), Err(JsonError::NotAnObject(_))));
        assert_eq!(
            parse(r#"{"a": [1]}"#).unwrap(),
            [("a".into(), JsonCell::Nested)]
        );
        assert_eq!(
            parse(r#"{"a": {"b": {"c": 1}}}"#).unwrap(),
            [("a".into(), JsonCell::Nested)]
        );
    }

    #[test]
    fn keys_in_order() {
        assert_eq!(keys(r#"{"b":1,"a":2}"#).unwrap().len(), 2);
    }
}
