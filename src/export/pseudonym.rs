//! Pseudonymised identifiers (issue #10): the secret key, and the keys derived from it
//! that replace `customer_id` and `transaction_id` in exported datasets.
//!
//! The formula is contract, because the bank computes the same keys on its own label
//! tables (fraud flags, churn) to join them to the datasets:
//!
//! ```text
//! customer_key    = lowercase hex of HMAC-SHA256(key, "customer:"    + customer_id)[..16]
//! transaction_key = lowercase hex of HMAC-SHA256(key, "transaction:" + transaction_id)[..16]
//! ```
//!
//! (32 hex digits; the id as UTF-8 bytes, exactly as the warehouse stores it.) The
//! prefixes keep a customer and a transaction that share an id text apart.
//!
//! Where the key comes from ([`PseudonymKey::load`]), first match wins:
//! - `BANKPIPE_PSEUDONYM_KEY`: the base64 of 32 bytes (surrounding whitespace ignored);
//! - `BANKPIPE_PSEUDONYM_KEY_FILE`: a file holding that base64 text, or exactly the 32
//!   raw bytes (32 bytes that are not all printable ASCII), read like
//!   `BANKPIPE_MASTER_KEY_FILE` is;
//! - on the embedded (SQLite) warehouse only: `DATA_DIR/pseudonym.key`, generated on
//!   first use (base64 text and a newline, mode 0600) and reused after. On PostgreSQL
//!   no key is generated: several machines export from one warehouse and must all use
//!   the same key, so it must be set.
//!
//! Setting both variables is an error, as for the master key. An empty variable counts
//! as unset.
//!
//! This module does not write datasets or manifests; it only turns ids into keys.

use std::borrow::Cow;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The variable holding the key as base64 text.
pub const KEY_VAR: &str = "BANKPIPE_PSEUDONYM_KEY";
/// The variable naming a file that holds the key.
pub const KEY_FILE_VAR: &str = "BANKPIPE_PSEUDONYM_KEY_FILE";
/// Name of the key file generated in the data folder (embedded warehouse only).
pub const GENERATED_FILE: &str = "pseudonym.key";

/// How to set the key, for every message that says a key is missing or unusable.
const HOW: &str = "set BANKPIPE_PSEUDONYM_KEY to the base64 of 32 random bytes \
     (for example `head -c 32 /dev/urandom | base64`), or BANKPIPE_PSEUDONYM_KEY_FILE \
     to a file holding that text or the 32 raw bytes";

/// A pseudonym key that cannot be used (the command exits 2). No message ever holds
/// key material, nor the value of `BANKPIPE_PSEUDONYM_KEY_FILE` (a key pasted where
/// its file name belongs must not be printed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key is set and none may be generated (PostgreSQL warehouse).
    #[error(
        "no pseudonym key: with a PostgreSQL warehouse every machine that exports must use \
         the same key, so none is generated: {HOW}"
    )]
    Missing,
    /// Both variables are set.
    #[error(
        "both BANKPIPE_PSEUDONYM_KEY and BANKPIPE_PSEUDONYM_KEY_FILE are set: set one of them \
         (BANKPIPE_PSEUDONYM_KEY: the base64 of 32 bytes; BANKPIPE_PSEUDONYM_KEY_FILE: a file \
         holding that text or the 32 raw bytes)"
    )]
    Both,
    /// The key text or file does not hold 32 bytes in an accepted form.
    #[error("{source_name} does not hold a pseudonym key: {HOW}")]
    Malformed {
        /// Where the key came from: a variable, or a description of the file (never
        /// the key).
        source_name: String,
    },
    /// The key file cannot be read.
    #[error("cannot read {source_name}: {reason} ({HOW})")]
    Unreadable {
        /// A description of the file (the generated file's path; for
        /// `BANKPIPE_PSEUDONYM_KEY_FILE` only the variable's name).
        source_name: String,
        /// The I/O error, without the path.
        reason: String,
    },
    /// The key file of the data folder cannot be created.
    #[error("cannot create the pseudonym key file {}: {reason} (or {HOW})", path.display())]
    Generate {
        /// The file that was to be created.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// No randomness from the operating system.
    #[error("the system random generator failed while generating a pseudonym key (or {HOW})")]
    Random,
}

/// The secret key of the pseudonyms. Its 32 bytes are zeroed on drop; its `Debug`
/// shows only [`PseudonymKey::key_id`].
///
/// The HMAC key schedule is kept alongside (ring's `hmac::Key`, the hashed inner and
/// outer pads), so that each id costs two SHA-256 blocks rather than four; ring does
/// not zero that state on drop.
pub struct PseudonymKey {
    bytes: Zeroizing<[u8; 32]>,
    hmac: hmac::Key,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

/// Where the key is set in the environment, read once.
enum Setting {
    Inline(Zeroizing<String>),
    File(PathBuf),
    Unset,
}

impl Setting {
    fn from_env() -> Result<Setting, KeyError> {
        let inline = std::env::var_os(KEY_VAR).filter(|v| !v.is_empty());
        let file = std::env::var_os(KEY_FILE_VAR).filter(|v| !v.is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(KeyError::Both),
            (Some(text), None) => match text.into_string() {
                Ok(text) => Ok(Setting::Inline(Zeroizing::new(text))),
                Err(_) => Err(KeyError::Malformed {
                    source_name: KEY_VAR.to_owned(),
                }),
            },
            (None, Some(path)) => Ok(Setting::File(PathBuf::from(path))),
            (None, None) => Ok(Setting::Unset),
        }
    }
}

impl PseudonymKey {
    /// The key from `BANKPIPE_PSEUDONYM_KEY` or `BANKPIPE_PSEUDONYM_KEY_FILE` (see the
    /// module documentation for the forms). With neither set: on the embedded
    /// warehouse (`embedded`), `data_dir/pseudonym.key`, generated by the first call
    /// and reused by every later one; on PostgreSQL, an error.
    ///
    /// The second value is `Some(path)` when this call generated the key file: the
    /// caller tells the user (it must be kept and backed up). Generation is exclusive:
    /// the key is written and synced to a temporary file (mode 0600) that is then
    /// linked into place only if no key file exists yet, so two processes starting at
    /// once end up with the same key, and no reader ever sees a partial file.
    ///
    /// # Errors
    /// [`KeyError`]: missing on PostgreSQL, both variables set, malformed or unreadable
    /// key, key file not creatable.
    pub fn load(
        data_dir: &Path,
        embedded: bool,
    ) -> Result<(PseudonymKey, Option<PathBuf>), KeyError> {
        resolve(Setting::from_env()?, data_dir, embedded)
    }

    /// A key from its 32 bytes (tests, and callers holding the key already).
    pub fn from_bytes(bytes: &[u8; 32]) -> PseudonymKey {
        PseudonymKey {
            bytes: Zeroizing::new(*bytes),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// `customer_key`: lowercase hex of the first 16 bytes of
    /// HMAC-SHA256(key, `"customer:" + customer_id`).
    pub fn customer_key(&self, customer_id: &str) -> String {
        self.derive(b"customer:", customer_id)
    }

    /// `transaction_key`: lowercase hex of the first 16 bytes of
    /// HMAC-SHA256(key, `"transaction:" + transaction_id`).
    pub fn transaction_key(&self, transaction_id: &str) -> String {
        self.derive(b"transaction:", transaction_id)
    }

    /// The key's public id, for manifests and dataset versions: the first 16 lowercase
    /// hex digits of SHA-256(`"bankpipe-pseudonym-key-id:"` + the 32 key bytes). It
    /// tells keys apart and reveals nothing usable about the key.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"bankpipe-pseudonym-key-id:");
        h.update(&self.bytes[..]);
        hex16(&h.finalize()[..8])
    }

    fn derive(&self, prefix: &[u8], id: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.hmac);
        ctx.update(prefix);
        ctx.update(id.as_bytes());
        hex16(&ctx.sign().as_ref()[..16])
    }

    /// A key from base64 text (surrounding whitespace ignored).
    fn from_base64(text: &str, source_name: &str) -> Result<PseudonymKey, KeyError> {
        let malformed = || KeyError::Malformed {
            source_name: source_name.to_owned(),
        };
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
        Ok(PseudonymKey::from_bytes(bytes))
    }

    /// A key from a file's content: exactly 32 bytes that are not all printable ASCII
    /// are the raw key (its base64 text is 44 characters long, so a 32-character text
    /// is a mistake, not a key); anything else must be base64 text.
    fn from_file_content(bytes: &[u8], source_name: &str) -> Result<PseudonymKey, KeyError> {
        if let Ok(raw) = <&[u8; 32]>::try_from(bytes)
            && !raw.iter().all(|b| b.is_ascii_graphic())
        {
            return Ok(PseudonymKey::from_bytes(raw));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Malformed {
            source_name: source_name.to_owned(),
        })?;
        PseudonymKey::from_base64(text, source_name)
    }
}

/// [`PseudonymKey::load`] once the environment is read (tests call this directly: the
/// environment is shared by every test thread).
fn resolve(
    setting: Setting,
    data_dir: &Path,
    embedded: bool,
) -> Result<(PseudonymKey, Option<PathBuf>), KeyError> {
    match setting {
        Setting::Inline(text) => Ok((PseudonymKey::from_base64(&text, KEY_VAR)?, None)),
        Setting::File(path) => {
            let name = format!("the file named by {KEY_FILE_VAR}");
            let bytes = read_key_file(&path, &name)?.ok_or_else(|| KeyError::Unreadable {
                source_name: name.clone(),
                reason: std::io::Error::from(ErrorKind::NotFound).to_string(),
            })?;
            Ok((PseudonymKey::from_file_content(&bytes, &name)?, None))
        }
        Setting::Unset if !embedded => Err(KeyError::Missing),
        Setting::Unset => generated(data_dir),
    }
}

/// The file's bytes, or `None` when it does not exist.
fn read_key_file(path: &Path, source_name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // The kind only: the error of a path could echo the path.
        Err(e) => Err(KeyError::Unreadable {
            source_name: source_name.to_owned(),
            reason: std::io::Error::from(e.kind()).to_string(),
        }),
    }
}

/// The data folder's key: read when it exists, else generated exclusively.
fn generated(data_dir: &Path) -> Result<(PseudonymKey, Option<PathBuf>), KeyError> {
    let path = data_dir.join(GENERATED_FILE);
    let name = format!("the pseudonym key file {}", path.display());
    if let Some(bytes) = read_key_file(&path, &name)? {
        return Ok((existing(&bytes, &name)?, None));
    }
    let mut raw = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut raw[..])
        .map_err(|_| KeyError::Random)?;
    let failed = |e: std::io::Error| KeyError::Generate {
        path: path.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".pseudonym.key.").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(data_dir).map_err(failed)?;
    let mut text = Zeroizing::new(B64.encode(&raw[..]));
    text.push('\n');
    tmp.write_all(text.as_bytes()).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    // Linked into place only if no key file exists (renameat2 NOREPLACE, or link):
    // the loser of a race reads the winner's complete file.
    match tmp.persist_noclobber(&path) {
        Ok(_) => {
            sync_folder(data_dir).map_err(failed)?;
            Ok((PseudonymKey::from_bytes(&raw), Some(path)))
        }
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => {
            let bytes = read_key_file(&path, &name)?.ok_or_else(|| failed(e.error))?;
            Ok((existing(&bytes, &name)?, None))
        }
        Err(e) => Err(failed(e.error)),
    }
}

/// The generated file's key; when damaged, the message says not to replace it lightly.
fn existing(bytes: &[u8], name: &str) -> Result<PseudonymKey, KeyError> {
    PseudonymKey::from_file_content(bytes, name).map_err(|_| KeyError::Malformed {
        source_name: format!(
            "{name} (damaged: restore it from a backup, since the keys of earlier exports \
             were made with it; deleting it makes a new key and new pseudonyms)"
        ),
    })
}

/// Makes a new directory entry durable: a key lost in a crash would change every
/// pseudonym of later exports.
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Lowercase hex of up to 16 bytes (the pseudonyms are computed per row of an export:
/// no formatting machinery).
fn hex16(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// The id one input line of `bankpipe pseudonymise` holds: the line without its line
/// ending (`\n` or `\r\n`), trimmed of spaces and tabs at both ends as the loader trims
/// ids, so the key matches the stored id's. An empty result is a blank line (no stored
/// id is blank).
pub fn id_of_line(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.trim_matches([' ', '\t'])
}

/// `field` as one CSV field (RFC 4180): quoted, with `"` doubled, when it holds a
/// comma, a quote, a line break, or starts or ends with a space or tab (which some
/// readers would trim); as is otherwise.
pub fn csv_field(field: &str) -> Cow<'_, str> {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with([' ', '\t'])
        || field.ends_with([' ', '\t']);
    if needs {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bytes 0..32; base64 `AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=`.
    fn key() -> PseudonymKey {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = u8::try_from(i).unwrap();
        }
        PseudonymKey::from_bytes(&b)
    }

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn known_vectors() {
        // Computed independently with Python:
        // hmac.new(bytes(range(32)), b"customer:C1010011", hashlib.sha256).hexdigest()[:32]
        let k = key();
        assert_eq!(
            k.customer_key("C1010011"),
            "d19f4404986715aa886af927d220eef0"
        );
        assert_eq!(k.transaction_key("T1"), "7649fb1fc63adbf4c14ef402979fb4b0");
        assert_eq!(k.customer_key(""), "10a3b7b373414d4fc6e30414871eea26");
        assert_eq!(
            k.customer_key("Ünïcødé,\"x\""),
            "3bd3bccfbc1e86e6fbcff3b535d03fe9"
        );
        // hashlib.sha256(b"bankpipe-pseudonym-key-id:" + bytes(range(32))).hexdigest()[:16]
        assert_eq!(k.key_id(), "209658cdd54c2262");
        assert_eq!(
            format!("{k:?}"),
            "PseudonymKey { key_id: \"209658cdd54c2262\" }"
        );
    }

    #[test]
    fn kinds_are_kept_apart() {
        let k = key();
        assert_ne!(k.customer_key("X1"), k.transaction_key("X1"));
        assert_eq!(k.customer_key("X1").len(), 32);
    }

    #[test]
    fn inline_and_file_forms() {
        let dir = tempfile::tempdir().unwrap();
        let inline =
            |t: &str| resolve(Setting::Inline(Zeroizing::new(t.into())), dir.path(), false);
        let (k, generated) = inline(&format!("  {KEY_B64}\n")).unwrap();
        assert_eq!(k.key_id(), "209658cdd54c2262");
        assert!(generated.is_none());

        let text = dir.path().join("text.key");
        std::fs::write(&text, format!("{KEY_B64}\r\n")).unwrap();
        let (k, _) = resolve(Setting::File(text), dir.path(), false).unwrap();
        assert_eq!(k.key_id(), "209658cdd54c2262");

        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, (0u8..32).collect::<Vec<_>>()).unwrap();
        let (k, _) = resolve(Setting::File(raw), dir.path(), false).unwrap();
        assert_eq!(k.key_id(), "209658cdd54c2262");
        // Nothing was generated along the way.
        assert!(!dir.path().join(GENERATED_FILE).exists());
    }

    #[test]
    fn bad_keys_say_how_and_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let short = B64.encode([7u8; 31]);
        for bad in [short.as_str(), "not base64!", "QUJD"] {
            let e = resolve(
                Setting::Inline(Zeroizing::new(bad.into())),
                dir.path(),
                true,
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("BANKPIPE_PSEUDONYM_KEY does not hold"), "{e}");
            assert!(
                e.contains("BANKPIPE_PSEUDONYM_KEY_FILE") && e.contains("base64 of 32"),
                "{e}"
            );
            assert!(!e.contains(bad), "{e}");
        }
        // A key pasted where the file name belongs is not echoed.
        let e = resolve(Setting::File(PathBuf::from(KEY_B64)), dir.path(), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the file named by BANKPIPE_PSEUDONYM_KEY_FILE"),
            "{e}"
        );
        assert!(!e.contains(KEY_B64), "{e}");
        // 32 printable characters are a mistake, not a raw key.
        let f = dir.path().join("k");
        std::fs::write(&f, "a".repeat(32)).unwrap();
        let e = resolve(Setting::File(f), dir.path(), true).unwrap_err();
        assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
    }

    #[test]
    fn required_on_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(Setting::Unset, dir.path(), false).unwrap_err();
        assert!(matches!(e, KeyError::Missing));
        let msg = e.to_string();
        assert!(
            msg.contains("BANKPIPE_PSEUDONYM_KEY ") && msg.contains("BANKPIPE_PSEUDONYM_KEY_FILE")
        );
        assert!(!dir.path().join(GENERATED_FILE).exists());
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new-folder");
        let (k1, made) = resolve(Setting::Unset, &data, true).unwrap();
        let path = data.join(GENERATED_FILE);
        assert_eq!(made.as_deref(), Some(path.as_path()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 45, "base64 of 32 bytes and a newline");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, made) = resolve(Setting::Unset, &data, true).unwrap();
        assert!(made.is_none());
        assert_eq!(k1.key_id(), k2.key_id());
        assert_eq!(k1.customer_key("C1"), k2.customer_key("C1"));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_generation_gives_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| resolve(Setting::Unset, dir.path(), true).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ids: std::collections::BTreeSet<_> = results.iter().map(|(k, _)| k.key_id()).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(results.iter().filter(|(_, made)| made.is_some()).count(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn damaged_generated_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATED_FILE);
        std::fs::write(&path, "").unwrap();
        let e = resolve(Setting::Unset, dir.path(), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("restore it from a backup"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn lines_and_fields() {
        assert_eq!(id_of_line("C1\n"), "C1");
        assert_eq!(id_of_line("C1\r\n"), "C1");
        assert_eq!(id_of_line(" \tC 1 \r\n"), "C 1");
        assert_eq!(id_of_line("C1"), "C1");
        assert_eq!(id_of_line("\r\n"), "");
        assert_eq!(csv_field("C1"), "C1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("a\rb"), "\"a\rb\"");
        assert_eq!(csv_field(" a"), "\" a\"");
        assert_eq!(csv_field("ü"), "ü");
    }
}
