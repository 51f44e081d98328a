//! Query parameters of the read API and its paging cursors: parsed strictly, so that
//! every mistake is a 400 naming the parameter, never a 5xx and never silently ignored
//! (an unknown or repeated parameter is refused: `?stauts=failed` must not list every
//! file).
//!
//! # Cursors
//!
//! A cursor is opaque to clients: pass a page's `next_cursor` back unchanged. It is
//! the position where that page ended, in a listing's keyset order: the last run id
//! listed (`/api/runs`, newest first), the last file id (`/api/files`), or
//! `file_id.line_no.listed` for rejected rows (see [`crate::warehouse::listing`]). A
//! page costs the same wherever it is in the listing, and rows added meanwhile do not
//! shift the pages (new runs come before the first page; new files and rejects after
//! the position reached). A cursor is valid with the filters it was issued with.
//!
//! Each listing's cursor has a pattern (in the OpenAPI description), and every text
//! matching it is a position the listing can resume from: a well-formed cursor is never
//! refused, a malformed one always is (400).

use std::collections::BTreeMap;

use crate::validate::{Rule, Severity};
use crate::warehouse::listing::RejectKey;

/// Rows per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: u64 = 100;
/// The largest `limit` accepted.
pub(crate) const MAX_LIMIT: u64 = 1000;

/// A query string that cannot be used: the message says which parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParam(pub(crate) String);

/// The parameters of one request, each taken at most once.
#[derive(Debug)]
pub(crate) struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses `query` (the part after `?`), accepting only the names in `allowed`.
    ///
    /// # Errors
    /// An unknown or repeated parameter.
    pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, BadParam> {
        let mut values = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(BadParam(if allowed.is_empty() {
                    format!("unknown parameter {name:?}: this endpoint takes none")
                } else {
                    format!(
                        "unknown parameter {name:?}; this endpoint takes {}",
                        allowed.join(", ")
                    )
                }));
            }
            if values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(BadParam(format!("parameter {name:?} given more than once")));
            }
        }
        Ok(Params { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    ///
    /// # Errors
    /// Not a whole number in that range.
    pub(crate) fn limit(&self) -> Result<u64, BadParam> {
        let Some(text) = self.get("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        match text.parse::<u64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(n)
            }
            _ => Err(BadParam(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}), \
                 not {text:?}"
            ))),
        }
    }

    /// `status` of `/api/files`: `landing`, `loaded` or `failed`.
    ///
    /// # Errors
    /// Another value.
    pub(crate) fn file_status(&self) -> Result<Option<String>, BadParam> {
        match self.get("status") {
            None => Ok(None),
            Some(s @ ("landing" | "loaded" | "failed")) => Ok(Some(s.to_owned())),
            Some(other) => Err(BadParam(format!(
                "status must be landing, loaded or failed, not {other:?}"
            ))),
        }
    }

    /// `file`: a catalog file id (a whole number from 1).
    ///
    /// # Errors
    /// Anything else.
    pub(crate) fn file_id(&self) -> Result<Option<i64>, BadParam> {
        match self.get("file") {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
                _ => Err(BadParam(format!(
                    "file must be a file id (a whole number from 1, as `bankpipe files` or \
                     /api/files lists them), not {text:?}"
                ))),
            },
        }
    }

    /// `rule`: the name of a rule that rejects rows (`invalid_amount`, ...).
    ///
    /// # Errors
    /// Any other name.
    pub(crate) fn reject_rule(&self) -> Result<Option<String>, BadParam> {
        match self.get("rule") {
            None => Ok(None),
            Some(name) if reject_rules().contains(&name) => Ok(Some(name.to_owned())),
            Some(other) => Err(BadParam(format!(
                "unknown rule {other:?}; rules: {}",
                reject_rules().join(", ")
            ))),
        }
    }

    /// The `cursor` of listing `list`, read by `position`.
    ///
    /// # Errors
    /// Text that is not a cursor of that listing.
    pub(crate) fn cursor<T>(
        &self,
        list: &str,
        position: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, BadParam> {
        let Some(text) = self.get("cursor") else {
            return Ok(None);
        };
        position(text).map(Some).ok_or_else(|| {
            BadParam(format!(
                "cursor {text:?} is not a cursor of /api/{list}: pass the next_cursor of the \
                 previous page unchanged"
            ))
        })
    }
}

/// The names of the rules that reject a row (not those that only warn).
pub(crate) fn reject_rules() -> Vec<&'static str> {
    Rule::ALL
        .iter()
        .filter(|r| r.severity() == Severity::Reject)
        .map(|r| r.name())
        .collect()
}

/// Whether `text` is 1 to 18 ASCII digits (so it fits an `i64`).
fn digits(text: &str) -> bool {
    (1..=18).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// A run id as a cursor: a lowercase UUID (`8-4-4-4-12` hex digits).
pub(crate) fn run_position(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    shaped.then(|| text.to_owned())
}

/// A file id as a cursor: 1 to 18 digits.
pub(crate) fn file_position(text: &str) -> Option<i64> {
    digits(text).then(|| text.parse().ok())?
}

/// The position of a rejected row: `file_id.line_no.listed`, each 1 to 18 digits,
/// `listed` from 1.
pub(crate) fn reject_position(text: &str) -> Option<RejectKey> {
    let mut parts = text.split('.');
    let mut number = || parts.next().filter(|p| digits(p))?.parse::<i64>().ok();
    let key = RejectKey {
        file_id: number()?,
        line_no: number()?,
        listed: u64::try_from(number()?).ok().filter(|n| *n >= 1)?,
    };
    parts.next().is_none().then_some(key)
}

/// The cursor of a rejected row's position.
pub(crate) fn reject_cursor(key: RejectKey) -> String {
    format!("{}.{}.{}", key.file_id, key.line_no, key.listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_in_range() {
        let p = |q: &str| Params::parse(Some(q), &["limit"]).unwrap().limit();
        assert_eq!(p(""), Ok(DEFAULT_LIMIT));
        assert_eq!(p("limit=1"), Ok(1));
        assert_eq!(p("limit=1000"), Ok(1000));
        for bad in [
            "0",
            "1001",
            "-1",
            "+5",
            "1.5",
            "abc",
            "",
            "99999999999999999999",
        ] {
            assert!(p(&format!("limit={bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let e = Params::parse(Some("stauts=failed"), &["status", "limit"]).unwrap_err();
        assert!(e.0.contains("unknown parameter \"stauts\""), "{e:?}");
        let e = Params::parse(Some("limit=1&limit=2"), &["limit"]).unwrap_err();
        assert!(e.0.contains("more than once"), "{e:?}");
        assert!(Params::parse(Some("a=1"), &[]).is_err());
        assert!(Params::parse(None, &[]).is_ok());
    }

    #[test]
    fn cursors_round_trip_and_malformed_ones_are_refused() {
        let key = RejectKey {
            file_id: 3,
            line_no: 17,
            listed: 2,
        };
        let c = reject_cursor(key);
        assert_eq!(c, "3.17.2");
        let p = Params::parse(Some(&format!("cursor={c}")), &["cursor"]).unwrap();
        assert_eq!(p.cursor("rejects", reject_position), Ok(Some(key)));
        assert!(p.cursor("files", file_position).is_err());
        for bad in [
            "",
            "3.17",
            "3.17.0",
            "3.17.2.1",
            "3..2",
            "a.1.1",
            "-3.1.1",
            "+3.1.1",
            "1234567890123456789.1.1",
        ] {
            assert_eq!(reject_position(bad), None, "{bad}");
        }
        assert_eq!(file_position("42"), Some(42));
        for bad in ["", "-1", "1e3", "1234567890123456789", " 1"] {
            assert_eq!(file_position(bad), None, "{bad}");
        }
        let id = "0190a1b2-0000-7000-8000-00000000000a";
        assert_eq!(run_position(id).as_deref(), Some(id));
        for bad in [
            "",
            "0190A1B2-0000-7000-8000-00000000000a",
            "0190a1b2-0000-7000-8000",
            "x",
        ] {
            assert_eq!(run_position(bad), None, "{bad}");
        }
    }

    #[test]
    fn rules_and_statuses_are_closed_sets() {
        let p = Params::parse(
            Some("rule=invalid_amount&status=failed"),
            &["rule", "status"],
        )
        .unwrap();
        assert_eq!(p.reject_rule(), Ok(Some("invalid_amount".into())));
        assert_eq!(p.file_status(), Ok(Some("failed".into())));
        let p = Params::parse(Some("rule=nope&status=done"), &["rule", "status"]).unwrap();
        assert!(p.reject_rule().is_err());
        assert!(p.file_status().is_err());
        assert!(!reject_rules().is_empty());
    }
}
