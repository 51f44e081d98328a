//! The API token: what write endpoints and the raw text of rejected rows need.
//!
//! Configured with `BANKPIPE_API_TOKEN` or `BANKPIPE_API_TOKEN_FILE` (read by
//! [`crate::config::api_token`]) and presented as `Authorization: Bearer <token>`.
//!
//! The token itself is not kept: at startup it is signed with a random HMAC-SHA256 key
//! (drawn for this process), and a presented token is checked with [`ring::hmac::verify`],
//! which compares the two tags in constant time. So the comparison takes the same time
//! whatever the presented token shares with the real one (or its length), and neither
//! the process memory after startup nor any `Debug` output, log line or error holds the
//! token.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use ring::hmac;

/// The shortest token accepted: a shorter one is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured API token, as a tag that can only be checked against.
pub struct ApiToken {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Too short (the message never holds the token).
    #[error(
        "the API token from {source_name} has {len} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Where it came from.
        source_name: String,
        /// Its length.
        len: usize,
    },
    /// No random key could be drawn for the comparison.
    #[error("cannot draw a random key to check API tokens with")]
    Random,
}

impl ApiToken {
    /// The token `text` (surrounding whitespace, such as a file's final newline,
    /// removed), which came from `source_name` (named in errors).
    ///
    /// # Errors
    /// [`TokenError::TooShort`] under [`MIN_TOKEN_LEN`] characters.
    pub fn new(text: &str, source_name: &str) -> Result<ApiToken, TokenError> {
        let text = text.trim();
        if text.chars().count() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                source_name: source_name.to_owned(),
                len: text.chars().count(),
            });
        }
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| TokenError::Random)?;
        let tag = hmac::sign(&key, text.as_bytes());
        Ok(ApiToken { key, tag })
    }

    /// Whether `presented` is the token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token is configured: write endpoints are off.
    NotConfigured,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the configured one (or a malformed header).
    Wrong,
    /// The configured token.
    Granted,
}

/// The access `headers` give, given the configured `token`.
pub(crate) fn access(token: Option<&ApiToken>, headers: &HeaderMap) -> Access {
    let Some(token) = token else {
        return Access::NotConfigured;
    };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None, or several (ambiguous): a single header is required.
        return if headers.contains_key(AUTHORIZATION) {
            Access::Wrong
        } else {
            Access::Missing
        };
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    match presented {
        Some(t) if token.matches(t) => Access::Granted,
        _ => Access::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_configured_bearer_token_is_granted() {
        let t = ApiToken::new("0123456789abcdef-secret\n", "test").unwrap();
        assert_eq!(access(None, &headers(&[])), Access::NotConfigured);
        assert_eq!(access(Some(&t), &headers(&[])), Access::Missing);
        for good in [
            "Bearer 0123456789abcdef-secret",
            "bearer 0123456789abcdef-secret",
        ] {
            assert_eq!(
                access(Some(&t), &headers(&[good])),
                Access::Granted,
                "{good}"
            );
        }
        for bad in [
            "Bearer 0123456789abcdef-secreT",
            "Bearer 0123456789abcdef-secre",
            "Bearer ",
            "Basic 0123456789abcdef-secret",
            "0123456789abcdef-secret",
        ] {
            assert_eq!(access(Some(&t), &headers(&[bad])), Access::Wrong, "{bad}");
        }
        let twice = [
            "Bearer 0123456789abcdef-secret",
            "Bearer 0123456789abcdef-secret",
        ];
        assert_eq!(access(Some(&t), &headers(&twice)), Access::Wrong);
    }

    #[test]
    fn short_tokens_are_refused_without_being_echoed() {
        let e = ApiToken::new("short-one", "BANKPIPE_API_TOKEN").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("BANKPIPE_API_TOKEN") && text.contains("9 characters"));
        assert!(!text.contains("short-one"));
        let t = ApiToken::new("0123456789abcdef", "x").unwrap();
        assert_eq!(format!("{t:?}"), "ApiToken(..)");
    }
}
