//! Configuration, resolved once: flags > environment > `bankpipe.toml` > defaults.
//!
//! Raw inputs (`FileConfig`, flag values) become a [`Config`] of resolved values here;
//! nothing downstream reads the environment or a config file. Variables read: see
//! [`ENV_VARS`]. A variable a user sets is never silently ignored (issue #9): a value
//! that does not parse is an error naming the variable, and a `BANKPIPE_*` variable
//! bankpipe does not know is warned about (a typo would otherwise change nothing).
//!
//! Relative paths inside a config file (`data_dir`, `inbox`, `master_key_file`, a
//! `sqlite://` warehouse, a folder lake) are relative to that file's folder, so a
//! scheduler can run `bankpipe --config /etc/bankpipe/bankpipe.toml` from anywhere.
//! Paths in flags and variables stay relative to the working folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::crypt::{KeyError, MasterKey};
use crate::profile::{Profile, ProfileError, ProfileSpec, builtin_specs};
use crate::schedule::{RawSchedule, Schedule, ScheduleError};

/// Every environment variable bankpipe reads (besides the standard `AWS_*` ones of an
/// `s3://` lake or inbox). Add a new one here, or `BANKPIPE_*` warns about it.
pub const ENV_VARS: &[&str] = &[
    "BANKPIPE_CONFIG",
    "BANKPIPE_DATA_DIR",
    "BANKPIPE_INBOX",
    "BANKPIPE_WAREHOUSE_URL",
    "BANKPIPE_LAKE_URL",
    "BANKPIPE_MAX_REJECT_SHARE",
    "BANKPIPE_MAX_DECOMPRESSED_BYTES",
    "BANKPIPE_WORKERS",
    "BANKPIPE_PARALLEL",
    "BANKPIPE_MIN_FILE_AGE",
    "BANKPIPE_MASTER_KEY",
    "BANKPIPE_MASTER_KEY_FILE",
    "BANKPIPE_NEW_MASTER_KEY",
    "BANKPIPE_NEW_MASTER_KEY_FILE",
    "BANKPIPE_PSEUDONYM_KEY",
    "BANKPIPE_PSEUDONYM_KEY_FILE",
    "BANKPIPE_LOG",
    "BANKPIPE_EXPORT_URL",
    "BANKPIPE_LOG_FORMAT",
    "BANKPIPE_LISTEN",
    "BANKPIPE_API_TOKEN",
    "BANKPIPE_API_TOKEN_FILE",
];

/// `BANKPIPE_*` variables that are set but not in [`ENV_VARS`] (probably typos), for a
/// warning.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("BANKPIPE_") && !ENV_VARS.contains(&k.as_str()))
        .collect()
}

/// Default share of rejected rows above which a file fails.
pub const DEFAULT_MAX_REJECT_SHARE: f64 = 0.05;

/// The `bankpipe.toml` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Folder holding `warehouse.db`, `lake/` and `inbox/` by default.
    pub data_dir: Option<PathBuf>,
    /// Folder scanned by `bankpipe run`.
    pub inbox: Option<PathBuf>,
    /// `sqlite://PATH` (default `sqlite://DATA_DIR/warehouse.db`).
    pub warehouse_url: Option<String>,
    /// `file:///PATH`, a plain path, or `memory://` (default `DATA_DIR/lake`).
    pub lake_url: Option<String>,
    /// Where `bankpipe export` writes: a folder or `s3://BUCKET/PREFIX` (default
    /// `DATA_DIR/exports`).
    pub export_url: Option<String>,
    /// Fail a file whose rejected-row share exceeds this (default 0.05).
    pub max_reject_share: Option<f64>,
    /// Fail a compressed file that decompresses to more than this many bytes: a number,
    /// or text with a unit (`"16GiB"`, `"500MB"`; default 16 GiB).
    pub max_decompressed_bytes: Option<SizeSetting>,
    /// Validation threads (default: the number of cores).
    pub workers: Option<usize>,
    /// Files processed at once, each on its own warehouse session (default 1;
    /// PostgreSQL only: SQLite has one writer).
    pub parallel: Option<usize>,
    /// File holding the master key that turns on encryption at rest (the key itself
    /// never goes in this file).
    pub master_key_file: Option<PathBuf>,
    /// Skip inbox files modified more recently than this (`30s`, `5m`, `1h`; default
    /// `0`): exports are often written in place, without a `.part` suffix.
    pub min_file_age: Option<String>,
    /// Address `bankpipe serve` listens on (default `127.0.0.1:8000`).
    pub listen: Option<String>,
    /// Extra source profiles, tried before the built-in ones.
    #[serde(default, rename = "profile")]
    pub profiles: Vec<ProfileSpec>,
    /// The jobs `bankpipe serve` runs, as cron expressions (see [`RawSchedule`]).
    pub schedule: Option<RawSchedule>,
}

/// A size in `bankpipe.toml`: a number of bytes, or text with a unit (`"16GiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSetting {
    /// A whole number of bytes.
    Bytes(u64),
    /// A size with a unit, read by [`crate::source::parse_size`].
    Text(String),
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--inbox`.
    pub inbox: Option<PathBuf>,
    /// `--max-reject-share`.
    pub max_reject_share: Option<f64>,
    /// `--max-decompressed-bytes`.
    pub max_decompressed_bytes: Option<String>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--parallel`.
    pub parallel: Option<usize>,
    /// `--min-file-age`.
    pub min_file_age: Option<String>,
    /// `export --out`.
    pub export_url: Option<String>,
    /// `serve --listen`.
    pub listen: Option<String>,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Inbox folder.
    pub inbox: PathBuf,
    /// Warehouse URL (may hold a password: print only through [`crate::redact::redact_url`]).
    pub warehouse_url: String,
    /// Lake URL.
    pub lake_url: String,
    /// Export destination: a folder or `s3://` prefix.
    pub export_url: String,
    /// Reject-share threshold.
    pub max_reject_share: f64,
    /// Most bytes a compressed file may decompress to; past it the file fails
    /// ([`crate::source::TooLarge`]).
    pub max_decompressed_bytes: u64,
    /// Validation threads.
    pub workers: usize,
    /// Files processed at once (sessions in the warehouse pool).
    pub parallel: usize,
    /// Inbox files modified more recently are skipped (reported `too_recent`).
    pub min_file_age: Duration,
    /// Profiles in detection order (user ones first).
    pub profiles: Vec<Profile>,
    /// Master key: lake objects are encrypted at rest when set.
    pub master_key: Option<Arc<MasterKey>>,
    /// The jobs `bankpipe serve` runs (`[schedule]`; empty when absent).
    pub schedule: Schedule,
    /// Address `bankpipe serve` listens on.
    pub listen: std::net::SocketAddr,
}

/// Default address of `bankpipe serve`: loopback only, so metrics and the API are not
/// exposed until someone chooses to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// A configuration that cannot be used (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A profile is not usable.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The master key is not usable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The `[schedule]` section is not usable (names the job and its expression).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// An environment variable holds a value that does not parse.
    #[error("invalid {name}={value:?}: {why}")]
    Env {
        /// Variable.
        name: &'static str,
        /// Value as set.
        value: String,
        /// What it must be.
        why: &'static str,
    },
    /// A value is out of range.
    #[error("invalid {name}: {value} ({why})")]
    Value {
        /// Setting.
        name: &'static str,
        /// Value.
        value: String,
        /// Constraint.
        why: &'static str,
    },
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A number from the environment; unset or empty is `None`, anything that does not
/// parse is an error naming the variable.
fn env_number<T: std::str::FromStr>(
    name: &'static str,
    why: &'static str,
) -> Result<Option<T>, ConfigError> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| ConfigError::Env {
            name,
            value: v,
            why,
        }),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError::Env {
            name,
            value: v.to_string_lossy().into_owned(),
            why,
        }),
    }
}

/// The first value set, with the name of where it came from (for range errors).
fn first<T>(choices: [(Option<T>, &'static str); 3]) -> Option<(T, &'static str)> {
    choices
        .into_iter()
        .find_map(|(v, from)| v.map(|v| (v, from)))
}

impl FileConfig {
    /// Makes the relative paths of a config file relative to its folder `base`.
    fn rebase(mut self, base: &Path) -> FileConfig {
        if base.as_os_str().is_empty() {
            return self;
        }
        let join = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        self.data_dir = self.data_dir.map(join);
        self.inbox = self.inbox.map(|p| {
            if p.to_string_lossy().contains("://") {
                p
            } else {
                join(p)
            }
        });
        self.master_key_file = self.master_key_file.map(join);
        self.warehouse_url =
            self.warehouse_url
                .map(|url| match crate::warehouse::sqlite::path_from_url(&url) {
                    Some(p) if p.is_relative() && p.as_os_str() != ":memory:" => {
                        format!("sqlite://{}", base.join(p).display())
                    }
                    _ => url,
                });
        let rebase_folder = |url: String| match crate::lake::local_folder(&url) {
            Some(p) if p.is_relative() => base.join(p).display().to_string(),
            _ => url,
        };
        self.lake_url = self.lake_url.map(rebase_folder);
        self.export_url = self.export_url.map(rebase_folder);
        self
    }
}

impl Config {
    /// Resolves flags, environment, config file and defaults.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn resolve(flags: &Overrides) -> Result<Config, ConfigError> {
        let explicit = flags.config.clone().or_else(|| env_path("BANKPIPE_CONFIG"));
        let file = match &explicit {
            Some(path) => load_file(path)?.rebase(path.parent().unwrap_or(Path::new(""))),
            None if Path::new("bankpipe.toml").exists() => load_file(Path::new("bankpipe.toml"))?,
            None => FileConfig::default(),
        };
        Config::from_file(flags, file)
    }

    /// Resolves the text of a config file found at `path` as [`Config::resolve`] does
    /// with the file it reads (parse, relative paths, checks), with no flags. The
    /// environment is read as ever. For the config fuzz target (`fuzz/`), which must
    /// reach the parser and every check without a file on disk.
    ///
    /// # Errors
    /// See [`ConfigError`].
    #[doc(hidden)]
    pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = parse_file(text, path)?.rebase(path.parent().unwrap_or(Path::new("")));
        Config::from_file(&Overrides::default(), file)
    }

    /// Resolves flags, environment and a parsed config file.
    fn from_file(flags: &Overrides, file: FileConfig) -> Result<Config, ConfigError> {
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env_path("BANKPIPE_DATA_DIR"))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("bankpipe-data"));
        let inbox = flags
            .inbox
            .clone()
            .or_else(|| env_path("BANKPIPE_INBOX"))
            .or(file.inbox)
            .unwrap_or_else(|| data_dir.join("inbox"));
        let warehouse_url = env_string("BANKPIPE_WAREHOUSE_URL")
            .or(file.warehouse_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("warehouse.db").display()));
        let lake_url = env_string("BANKPIPE_LAKE_URL")
            .or(file.lake_url)
            .unwrap_or_else(|| data_dir.join("lake").display().to_string());
        let export_url = flags
            .export_url
            .clone()
            .or_else(|| env_string("BANKPIPE_EXPORT_URL"))
            .or(file.export_url)
            .unwrap_or_else(|| data_dir.join("exports").display().to_string());
        let (max_reject_share, from) = first([
            (flags.max_reject_share, "--max-reject-share"),
            (
                env_number("BANKPIPE_MAX_REJECT_SHARE", "a number between 0 and 1")?,
                "BANKPIPE_MAX_REJECT_SHARE",
            ),
            (file.max_reject_share, "max_reject_share"),
        ])
        .unwrap_or((DEFAULT_MAX_REJECT_SHARE, "max_reject_share"));
        if !(0.0..=1.0).contains(&max_reject_share) {
            return Err(ConfigError::Value {
                name: from,
                value: max_reject_share.to_string(),
                why: "must be between 0 and 1",
            });
        }
        let (size_text, from) = first([
            (
                flags.max_decompressed_bytes.clone(),
                "--max-decompressed-bytes",
            ),
            (
                env_string("BANKPIPE_MAX_DECOMPRESSED_BYTES"),
                "BANKPIPE_MAX_DECOMPRESSED_BYTES",
            ),
            (
                file.max_decompressed_bytes.as_ref().map(|s| match s {
                    SizeSetting::Bytes(n) => n.to_string(),
                    SizeSetting::Text(t) => t.clone(),
                }),
                "max_decompressed_bytes",
            ),
        ])
        .unwrap_or_else(|| {
            (
                crate::source::DEFAULT_MAX_DECOMPRESSED_BYTES.to_string(),
                "max_decompressed_bytes",
            )
        });
        let max_decompressed_bytes = crate::source::parse_size(&size_text)
            .filter(|n| *n > 0)
            .ok_or(ConfigError::Value {
                name: from,
                value: size_text,
                why: "a size above 0: bytes, or a number with kB, MB, GB, TB, KiB, MiB, GiB or TiB \
                      (16GiB, 500MB)",
            })?;
        let (workers, from) = first([
            (flags.workers, "--workers"),
            (
                env_number("BANKPIPE_WORKERS", "a whole number of threads, 1 to 256")?,
                "BANKPIPE_WORKERS",
            ),
            (file.workers, "workers"),
        ])
        .unwrap_or_else(|| {
            (
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                "workers",
            )
        });
        if workers == 0 || workers > 256 {
            return Err(ConfigError::Value {
                name: from,
                value: workers.to_string(),
                why: "must be between 1 and 256",
            });
        }
        let (parallel, from) = first([
            (flags.parallel, "--parallel"),
            (
                env_number("BANKPIPE_PARALLEL", "a whole number of files, 1 to 64")?,
                "BANKPIPE_PARALLEL",
            ),
            (file.parallel, "parallel"),
        ])
        .unwrap_or((1, "parallel"));
        if parallel == 0 || parallel > 64 {
            return Err(ConfigError::Value {
                name: from,
                value: parallel.to_string(),
                why: "must be between 1 and 64",
            });
        }
        let (age_source, age_text) = match (
            &flags.min_file_age,
            env_string("BANKPIPE_MIN_FILE_AGE"),
            &file.min_file_age,
        ) {
            (Some(t), _, _) => ("--min-file-age", Some(t.clone())),
            (None, Some(t), _) => ("BANKPIPE_MIN_FILE_AGE", Some(t)),
            (None, None, Some(t)) => ("min_file_age", Some(t.clone())),
            (None, None, None) => ("min_file_age", None),
        };
        let min_file_age = match age_text {
            None => Duration::ZERO,
            Some(text) => parse_age(&text).ok_or(ConfigError::Value {
                name: age_source,
                value: text,
                why: "a whole number with s, m or h (30s, 5m, 1h), or 0",
            })?,
        };
        let mut profiles = Vec::new();
        for spec in file.profiles.iter().chain(builtin_specs().iter()) {
            if profiles.iter().any(|p: &Profile| p.name == spec.name) {
                return Err(ConfigError::Value {
                    name: "profile name",
                    value: spec.name.clone(),
                    why: "declared twice (built-in names: kaggle-bank, canonical)",
                });
            }
            profiles.push(Profile::from_spec(spec)?);
        }
        let master_key = master_key(
            "BANKPIPE_MASTER_KEY",
            "BANKPIPE_MASTER_KEY_FILE",
            file.master_key_file.as_deref(),
        )?
        .map(Arc::new);
        // Checked at load, by every command: a typo in a cron expression is found by
        // `bankpipe status` or `run` too, not only when `serve` starts.
        let schedule = match &file.schedule {
            Some(raw) => Schedule::resolve(raw, chrono::Utc::now())?,
            None => Schedule::default(),
        };
        let (listen_text, listen_from) = first([
            (flags.listen.clone(), "--listen"),
            (env_string("BANKPIPE_LISTEN"), "BANKPIPE_LISTEN"),
            (file.listen.clone(), "listen"),
        ])
        .unwrap_or((DEFAULT_LISTEN.to_owned(), "listen"));
        let listen = listen_text.trim().parse().map_err(|_| ConfigError::Value {
            name: listen_from,
            value: listen_text.clone(),
            why: "an IP address and port, e.g. 127.0.0.1:8000 or 0.0.0.0:8000",
        })?;
        Ok(Config {
            data_dir,
            inbox,
            warehouse_url,
            lake_url,
            export_url,
            max_reject_share,
            max_decompressed_bytes,
            workers,
            parallel,
            min_file_age,
            profiles,
            master_key,
            schedule,
            listen,
        })
    }
}

/// Parses a file age: `0`, or a whole number with a unit, `s`, `m` or `h` (`30s`,
/// `5m`, `1h`). A bare number other than 0 is refused: seconds or minutes would be a
/// guess.
pub fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let unit = match text.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .map(Duration::from_secs)
}

/// A master key from the variable `var` (base64), the file named by `file_var`, or the
/// config file's `file`, in that order; both variables at once is an error.
///
/// # Errors
/// [`ConfigError::Key`] when the key is malformed or unreadable (the message never
/// holds the key).
pub fn master_key(
    var: &str,
    file_var: &str,
    file: Option<&Path>,
) -> Result<Option<MasterKey>, ConfigError> {
    let inline = env_string(var);
    let path = env_path(file_var);
    if inline.is_some() && path.is_some() {
        return Err(ConfigError::Value {
            name: "master key",
            value: format!("{var} and {file_var}"),
            why: "set one of them, not both",
        });
    }
    Ok(match (inline, path.as_deref().or(file)) {
        (Some(text), _) => Some(MasterKey::from_base64(&text, var)?),
        (None, Some(path)) => Some(MasterKey::from_file(
            path,
            if env_path(file_var).is_some() {
                file_var
            } else {
                "master_key_file in the config file"
            },
        )?),
        (None, None) => None,
    })
}

/// The token of `serve`'s write endpoints: `BANKPIPE_API_TOKEN`, or the content of the
/// file `BANKPIPE_API_TOKEN_FILE` names (surrounding whitespace removed); both at once
/// is an error. Read by `serve` only; never in `bankpipe.toml`, which is often shared.
///
/// # Errors
/// [`ConfigError::Value`] when both are set, the file cannot be read, or the token is
/// shorter than [`crate::serve::MIN_TOKEN_LEN`] (messages never hold the token).
pub fn api_token() -> Result<Option<crate::serve::ApiToken>, ConfigError> {
    const VAR: &str = "BANKPIPE_API_TOKEN";
    const FILE_VAR: &str = "BANKPIPE_API_TOKEN_FILE";
    let bad = |value: String, why: &'static str| ConfigError::Value {
        name: "API token",
        value,
        why,
    };
    let (text, source_name) = match (env_string(VAR), env_path(FILE_VAR)) {
        (Some(_), Some(_)) => {
            return Err(bad(
                format!("{VAR} and {FILE_VAR}"),
                "set one of them, not both",
            ));
        }
        (Some(text), None) => (zeroize::Zeroizing::new(text), VAR.to_owned()),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => (
                zeroize::Zeroizing::new(text),
                format!("{FILE_VAR} ({})", path.display()),
            ),
            Err(_) => {
                return Err(bad(
                    format!("{FILE_VAR}={}", path.display()),
                    "the file cannot be read",
                ));
            }
        },
        (None, None) => return Ok(None),
    };
    crate::serve::ApiToken::new(&text, &source_name)
        .map(Some)
        .map_err(|e| bad(e.to_string(), "not usable as the API token"))
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text, path)
}

/// Parses the text of the config file at `path` (named in the error).
fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ages() {
        for (text, secs) in [("0", 0), ("30s", 30), ("5m", 300), ("1h", 3600), ("0s", 0)] {
            assert_eq!(parse_age(text), Some(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "30", "s", "1.5m", "-1s", "5 m", "1d", "m5"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_variable_is_listed_once_and_documented() {
        let readme = include_str!("../README.md");
        let mut seen = std::collections::BTreeSet::new();
        for var in ENV_VARS {
            assert!(seen.insert(var), "{var} is listed twice in ENV_VARS");
            assert!(readme.contains(var), "{var} is not in the README");
        }
    }

    #[test]
    fn config_file_rejects_unknown_keys() {
        let err = toml::from_str::<FileConfig>("data_dirr = 'x'").unwrap_err();
        assert!(err.message().contains("unknown field"));
    }
}
