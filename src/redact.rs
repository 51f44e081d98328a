//! What may be shown of a value that can hold a secret: URLs and connection strings
//! lose their passwords here, and every log line, error and report that names a
//! warehouse or lake URL goes through [`redact_url`]. A module of its own so that the
//! modules that print URLs (config, lake, warehouse) need not depend on each other.

/// A URL (or libpq conninfo string) with its password replaced by `***`, for logs,
/// errors and reports.
///
/// Works on the text, without parsing it as a URL first: a password holding `/`, `?` or
/// `#` unescaped would make a URL parser put part of it in the host or query, and a
/// string that does not parse must not be echoed either.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // scheme://user:password@host… — the password runs to the last '@'.
    if let (Some(scheme_end), Some(at)) = (out.find("://"), out.rfind('@')) {
        let userinfo_start = scheme_end + 3;
        if at > userinfo_start {
            let userinfo = &out[userinfo_start..at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => userinfo.to_owned(),
            };
            out = format!("{}{masked}{}", &out[..userinfo_start], &out[at..]);
        }
    } else if !url.contains("://") && url.contains('@') {
        return "***".to_owned();
    }
    // password=… in a query string or a conninfo string, any case, up to & or space.
    let lower = out.to_ascii_lowercase();
    let mut result = String::with_capacity(out.len());
    let mut rest = 0;
    for key in ["password=", "sslpassword=", "secret="] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let start = from + pos + key.len();
            if start < rest {
                from = start;
                continue;
            }
            let end = lower[start..]
                .find(['&', ' ', '\t'])
                .map_or(lower.len(), |e| start + e);
            result.push_str(&out[rest..start]);
            result.push_str("***");
            rest = end;
            from = end;
        }
    }
    result.push_str(&out[rest..]);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://loader:s3cret@db:5432/bank?sslmode=require"),
            "postgres://loader:***@db:5432/bank?sslmode=require"
        );
        assert!(!redact_url("postgres://u@h/db?password=hunter2").contains("hunter2"));
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redact_url("u:p@host"), "***");
        for secret in [
            "postgres://loader:12?hunter2@db/bank",
            "postgres://loader:a/b#c@db:5432/bank?sslmode=require",
            "host=db user=loader password=hunter2 dbname=bank",
            "postgres://db/bank?user=u&PASSWORD=hunter2&sslmode=require",
        ] {
            let r = redact_url(secret);
            assert!(
                !r.contains("hunter2") && !r.contains("a/b#c"),
                "{secret} -> {r}"
            );
        }
    }
}
