//! The raw zone: every input file is copied, byte for byte, into object storage under a
//! content-addressed key, before any of its rows can be committed.
//!
//! Goes through the `object_store` crate so a local folder (the default) and
//! S3-compatible stores share one code path; uploads are multipart and streamed, so
//! memory does not grow with file size, and an object is only visible once complete
//! (no reader ever sees a partial object). The lake is async; the pipeline is not, so
//! calls block on the runtime handle given at open.
//!
//! With a master key ([`Lake::with_master_key`]) every object is written encrypted
//! (see `crypt`): the content digest and the catalog still describe the plaintext, and
//! every read decrypts, authenticates and hashes on the way.

use std::io::Read;
use std::sync::Arc;

use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::crypt::{DataKey, KeyError, MasterKey, Opener, Sealed, Sealer};

/// Size of multipart upload parts.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// A lake failure.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake cannot be opened or written.
    #[error("{role} unreachable at {url}: {reason}")]
    Unreachable {
        /// What the store serves as: `lake`, or `inbox` for an object-store inbox.
        role: &'static str,
        /// URL (no secrets).
        url: String,
        /// Cause.
        reason: String,
    },
    /// The lake refused for a reason retrying cannot fix: a wrong setting or
    /// credential (exit status 2). The reason names the setting to change.
    #[error("{role} {url}: {reason}")]
    Setup {
        /// What the store serves as: `lake`, or `inbox` for an object-store inbox.
        role: &'static str,
        /// URL (no secrets).
        url: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The URL scheme is not supported.
    #[error(
        "unsupported lake URL {0} (use a folder path, file:///PATH, s3://BUCKET/PREFIX or memory://)"
    )]
    UnsupportedUrl(String),
    /// Reading an object back failed.
    #[error("reading {} object {key} from {}: {}", store.object(), store.url, explain(source).1)]
    Read {
        /// The store.
        store: Arc<StoreId>,
        /// Object key.
        key: String,
        /// Cause.
        source: object_store::Error,
    },
    /// Reading the source file failed.
    #[error("reading {path}: {source}")]
    Source {
        /// Source path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading an object back failed mid-stream.
    #[error("reading {} object {key} from {}: {source}", store.object(), store.url)]
    ReadStream {
        /// The store.
        store: Arc<StoreId>,
        /// Object key.
        key: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The object's key cannot be used (no master key, wrong one, damaged wrapping).
    #[error("lake object {key}: {source}")]
    Key {
        /// Object key.
        key: String,
        /// Cause.
        source: KeyError,
    },
    /// Writing the object failed. Says which store (`writing export object … to
    /// /srv/exports: …`): an export destination's failure is not the lake's.
    #[error("writing {} object {key} to {}: {}", store.object(), store.url, explain(source).1)]
    Write {
        /// The store.
        store: Arc<StoreId>,
        /// Object key.
        key: String,
        /// Cause.
        source: object_store::Error,
    },
    /// The source changed between fingerprint and landing.
    #[error("{path} changed while being landed (expected sha256 {expected}, read {actual})")]
    Changed {
        /// Source path.
        path: String,
        /// Digest at fingerprint time.
        expected: String,
        /// Digest while landing.
        actual: String,
    },
}

/// Which store an object is in, as its errors name it (shared by the store and its
/// errors, so an error stays small).
#[derive(Debug)]
pub struct StoreId {
    /// What the store serves as: `lake`, `inbox`, or `export destination`.
    pub role: &'static str,
    /// Its URL, password masked ([`crate::redact::redact_url`]).
    pub url: String,
}

impl StoreId {
    /// How an error names an object of this store: `lake`, `inbox`, `export`.
    fn object(&self) -> &'static str {
        match self.role {
            "inbox" => "inbox",
            "export destination" => "export",
            _ => "lake",
        }
    }
}

impl LakeError {
    /// Whether a setting or credential must change (exit status 2) rather than the
    /// store coming back (exit status 3): a bucket, key or endpoint refused mid-run is
    /// the same mistake as at start.
    pub fn is_setup(&self) -> bool {
        match self {
            LakeError::Setup { .. } | LakeError::UnsupportedUrl(_) => true,
            LakeError::Key { source, .. } => !matches!(source, KeyError::Random),
            LakeError::Read { source, .. } | LakeError::Write { source, .. } => explain(source).0,
            _ => false,
        }
    }
}

/// One object of an object-store inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxObject {
    /// Key relative to the inbox prefix (no `/`: the inbox does not recurse).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, as the store reports it.
    pub modified: std::time::SystemTime,
}

/// The inbox files among listed objects: the object holding the prefix itself (a
/// folder marker `incoming/` is listed under the empty relative key, since object paths
/// drop a trailing `/`) and anything deeper are skipped.
fn inbox_objects(objects: Vec<object_store::ObjectMeta>) -> Vec<InboxObject> {
    let mut out: Vec<InboxObject> = objects
        .into_iter()
        .filter_map(|meta| {
            let key = meta.location.to_string();
            (!key.is_empty() && !key.contains('/')).then(|| InboxObject {
                key,
                size: meta.size,
                modified: meta.last_modified.into(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// An object store holding raw files.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// Its role (`lake`, `inbox` for an object-store inbox, `export destination`) and
    /// URL, as errors name them.
    id: Arc<StoreId>,
    runtime: Handle,
    master: Option<Arc<MasterKey>>,
    /// The folder of a local-folder store (where interrupted uploads leave staging
    /// files); `None` for other stores.
    folder: Option<std::path::PathBuf>,
}

/// Encrypt a landed object: its data key and the plaintext length.
#[derive(Debug)]
pub struct Encrypt {
    /// The object's data key (its wrapping is already in the catalog).
    pub key: DataKey,
    /// Plaintext bytes (from the fingerprint).
    pub len: u64,
}

/// The result of landing a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// Object key.
    pub key: String,
    /// Plaintext bytes landed.
    pub bytes: u64,
    /// Bytes stored (more than `bytes` when encrypted).
    pub stored_bytes: u64,
    /// SHA-256 of what was written, hex.
    pub sha256: String,
}

impl Lake {
    /// Opens the lake named by `url`: a folder path, `file:///PATH`, or `memory://`.
    ///
    /// # Errors
    /// [`LakeError::Unreachable`] when the folder cannot be created,
    /// [`LakeError::UnsupportedUrl`] otherwise.
    pub fn open(url: &str, runtime: Handle) -> Result<Lake, LakeError> {
        Lake::open_as(url, runtime, "lake")
    }

    /// Opens an object-store inbox like a lake; its errors say `inbox`.
    ///
    /// # Errors
    /// As [`Lake::open`].
    pub fn open_inbox(url: &str, runtime: Handle) -> Result<Lake, LakeError> {
        Lake::open_as(url, runtime, "inbox")
    }

    fn open_as(url: &str, runtime: Handle, role: &'static str) -> Result<Lake, LakeError> {
        let mut folder = None;
        let store: Arc<dyn ObjectStore> = if url == "memory://" {
            Arc::new(InMemory::new())
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::UnsupportedUrl(crate::redact::redact_url(url)));
            }
            // Standard AWS_* variables (endpoint, keys, region, AWS_ALLOW_HTTP); path-style
            // addressing unless AWS_VIRTUAL_HOSTED_STYLE_REQUEST says otherwise. Retries
            // are bounded so an unreachable store fails in seconds, not minutes.
            let s3 = s3_from_env()
                .with_bucket_name(bucket)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(5),
                        base: 2.0,
                    },
                    max_retries: 4,
                    retry_timeout: Duration::from_secs(30),
                })
                .build()
                .map_err(|e| LakeError::Setup {
                    role,
                    url: crate::redact::redact_url(url),
                    reason: format!(
                        "{}{}; check {} and the AWS_* variables",
                        one_line(&e),
                        unparsable_variable(&one_line(&e)),
                        match role {
                            "lake" => "lake_url",
                            "inbox" => "--inbox",
                            _ => "--out or export_url (BANKPIPE_EXPORT_URL)",
                        }
                    ),
                })?;
            if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.trim_matches('/')))
            }
        } else {
            let path = match url.strip_prefix("file://") {
                Some(p) => std::path::PathBuf::from(p),
                None if url.contains("://") => {
                    return Err(LakeError::UnsupportedUrl(crate::redact::redact_url(url)));
                }
                None => std::path::PathBuf::from(url),
            };
            // A local folder that cannot be made or used is a setting to fix, not an
            // outage: nothing would change by waiting.
            let setup = |e: &dyn std::fmt::Display| LakeError::Setup {
                role,
                url: url.to_owned(),
                reason: format!(
                    "{e}; check {}: it must be a folder bankpipe may write",
                    if role == "export destination" {
                        "--out or export_url (BANKPIPE_EXPORT_URL)"
                    } else {
                        "lake_url (BANKPIPE_LAKE_URL) or --data-dir"
                    }
                ),
            };
            std::fs::create_dir_all(&path).map_err(|e| setup(&e))?;
            let local = LocalFileSystem::new_with_prefix(&path).map_err(|e| setup(&e))?;
            folder = Some(path);
            Arc::new(local)
        };
        Ok(Lake {
            store,
            id: Arc::new(StoreId {
                role,
                url: crate::redact::redact_url(url),
            }),
            runtime,
            master: None,
            folder,
        })
    }

    /// Opens an export destination (`bankpipe export --out`) like a lake; its errors say
    /// `export destination` and name `--out`. Never encrypted: its readers are ML tools.
    ///
    /// # Errors
    /// As [`Lake::open`].
    ///
    /// A folder destination is named by its canonical absolute path
    /// ([`canonical_destination`]): [`Lake::url`], which `exports.destination` records and
    /// the "up to date" check compares, is the same whatever the working folder and
    /// however the folder was written (`exports`, `./exports`, `file://…`, through a
    /// symlink).
    pub fn open_destination(url: &str, runtime: Handle) -> Result<Lake, LakeError> {
        Lake::open_as(&canonical_destination(url), runtime, "export destination")
    }

    /// The whole object `key`, or `None` when there is none.
    ///
    /// # Errors
    /// [`LakeError::Read`] when the store fails (not for a missing object).
    pub fn get_if_present(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        match self.read_all(key) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.read_error(key, source)),
        }
    }

    /// Encrypts every object written from now on under data keys wrapped by `master`,
    /// and opens encrypted objects with it.
    #[must_use]
    pub fn with_master_key(mut self, master: Option<Arc<MasterKey>>) -> Lake {
        self.master = master;
        self
    }

    /// The master key, when objects are encrypted.
    pub fn master_key(&self) -> Option<&Arc<MasterKey>> {
        self.master.as_ref()
    }

    /// The data key of an encrypted object whose content digest is `sha256`.
    fn data_key(&self, key: &str, sealed: &Sealed, sha256: &str) -> Result<DataKey, LakeError> {
        let wrap = |source| LakeError::Key {
            key: key.to_owned(),
            source,
        };
        let master = self.master.as_ref().ok_or_else(|| {
            wrap(KeyError::NoMasterKey {
                key_id: sealed.key_id.clone(),
            })
        })?;
        master.unwrap(sealed, sha256).map_err(wrap)
    }

    /// The runtime handle the lake blocks on (to open another store alike).
    pub fn runtime(&self) -> Handle {
        self.runtime.clone()
    }

    /// The lake's URL, without secrets.
    pub fn url(&self) -> &str {
        &self.id.url
    }

    /// Proves the store is there by listing it (a missing bucket fails here, where some
    /// servers would create it on the first put), without writing anything.
    ///
    /// # Errors
    /// [`LakeError::Setup`] or [`LakeError::Unreachable`].
    pub fn check_listable(&self) -> Result<(), LakeError> {
        let store = Arc::clone(&self.store);
        self.runtime
            .block_on(async move { store.list_with_delimiter(None).await.map(|_| ()) })
            .map_err(|e| self.failure(&e))
    }

    /// Proves the lake is writable by writing and deleting a probe object.
    ///
    /// # Errors
    /// [`LakeError::Unreachable`].
    pub fn check(&self) -> Result<(), LakeError> {
        // Unique per call: `serve` checks readiness while a run of the same process may
        // check too, and one call's delete must not meet another's probe.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = ObjectPath::from(format!("_bankpipe/probe-{}-{n}", std::process::id()));
        let store = Arc::clone(&self.store);
        self.runtime
            .block_on(async move {
                // Listing fails on a missing bucket (some servers create one on the first
                // put); the probe proves we may write.
                store.list_with_delimiter(Some(&"_bankpipe".into())).await?;
                store.put(&probe, "ok".into()).await?;
                store.delete(&probe).await
            })
            .map_err(|e| self.failure(&e))
    }

    /// [`LakeError::Read`] of `key`, naming this store.
    fn read_error(&self, key: &str, source: object_store::Error) -> LakeError {
        LakeError::Read {
            store: Arc::clone(&self.id),
            key: key.to_owned(),
            source,
        }
    }

    /// [`LakeError::Write`] of `key`, naming this store.
    fn write_error(&self, key: &str, source: object_store::Error) -> LakeError {
        LakeError::Write {
            store: Arc::clone(&self.id),
            key: key.to_owned(),
            source,
        }
    }

    /// A store failure as a [`LakeError`]: [`LakeError::Setup`] when a setting or
    /// credential is wrong, [`LakeError::Unreachable`] otherwise.
    fn failure(&self, e: &object_store::Error) -> LakeError {
        let (setup, reason) = explain(e);
        if setup {
            LakeError::Setup {
                role: self.id.role,
                url: self.id.url.clone(),
                reason,
            }
        } else {
            LakeError::Unreachable {
                role: self.id.role,
                url: self.id.url.clone(),
                reason,
            }
        }
    }

    /// Streams an object back (decrypting it when `sealed`) and compares the SHA-256
    /// of its content with the catalog's.
    ///
    /// # Errors
    /// [`LakeError::Read`] / [`LakeError::ReadStream`] when the store fails,
    /// [`LakeError::Key`] when an encrypted object's key cannot be used.
    pub fn verify(
        &self,
        key: &str,
        expected_sha256: &str,
        sealed: Option<&Sealed>,
    ) -> Result<Verified, LakeError> {
        let mut reader = match self.plaintext(key, expected_sha256, sealed) {
            Ok(r) => r,
            Err(LakeError::Read {
                source: object_store::Error::NotFound { .. },
                ..
            }) => return Ok(Verified::Missing),
            Err(e) => return Err(e),
        };
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    bytes += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Ok(Verified::Damaged {
                        reason: e.to_string(),
                    });
                }
                Err(source) => {
                    return Err(LakeError::ReadStream {
                        store: Arc::clone(&self.id),
                        key: key.to_owned(),
                        source,
                    });
                }
            }
        }
        let actual = crate::hex::encode(&hasher.finalize());
        Ok(if actual == expected_sha256 {
            Verified::Intact { bytes }
        } else {
            Verified::Corrupt { actual }
        })
    }

    /// The content of an object as a stream: the stored bytes, or their decryption
    /// (every chunk authenticated) when the object is `sealed`.
    fn plaintext(
        &self,
        key: &str,
        sha256: &str,
        sealed: Option<&Sealed>,
    ) -> Result<Box<dyn Read + Send>, LakeError> {
        let data_key = sealed.map(|s| self.data_key(key, s, sha256)).transpose()?;
        let path = ObjectPath::from(key);
        let got = self
            .runtime
            .block_on(self.store.get(&path))
            .map_err(|source| self.read_error(key, source))?;
        let size = got.meta.size;
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<bytes::Bytes>>(4);
        self.runtime.spawn(async move {
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let item = chunk.map_err(std::io::Error::other);
                let stop = item.is_err();
                if tx.send(item).is_err() || stop {
                    return;
                }
            }
        });
        let stored = ChannelReader {
            chunks: rx,
            current: bytes::Bytes::new(),
        };
        Ok(match data_key {
            Some(k) => Box::new(Opener::new(stored, &k, key, Some(size))),
            None => Box::new(stored),
        })
    }

    /// The key of a raw file: `raw/<profile>/<yyyy>/<mm>/<sha256>.<ext>`.
    pub fn raw_key(profile: &str, year_month: (i32, u32), sha256: &str, ext: &str) -> String {
        format!(
            "raw/{profile}/{:04}/{:02}/{sha256}.{ext}",
            year_month.0, year_month.1
        )
    }

    /// Streams `source` into the object `key`, hashing on the way, and checks the digest
    /// against `expected_sha256`; with `encrypt`, what is stored is the encryption of
    /// `source` (the digest is still the plaintext's). Idempotent: landing the same
    /// content again rewrites the same object. On any error the upload is aborted and
    /// no object is left.
    ///
    /// # Errors
    /// [`LakeError::Source`], [`LakeError::Write`], [`LakeError::Changed`].
    pub fn land(
        &self,
        key: &str,
        source_name: &str,
        mut source: impl Read,
        expected_sha256: &str,
        encrypt: Option<Encrypt>,
    ) -> Result<Landed, LakeError> {
        let path = ObjectPath::from(key);
        let write_err = |source| self.write_error(key, source);
        self.runtime.block_on(async {
            let upload = self.store.put_multipart(&path).await.map_err(write_err)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            let mut stored_bytes = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            let mut sealer = encrypt.map(|e| Sealer::new(&e.key, e.len));
            let mut sealed = Vec::new();
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        let _ = writer.abort().await;
                        return Err(LakeError::Source {
                            path: source_name.to_owned(),
                            source,
                        });
                    }
                };
                hasher.update(&buf[..n]);
                bytes += n as u64;
                if let Err(e) = writer.wait_for_capacity(4).await {
                    // No half-uploaded parts are left behind (they would never be
                    // visible, but they cost storage until the bucket expires them).
                    let _ = writer.abort().await;
                    return Err(write_err(e));
                }
                match &mut sealer {
                    Some(sealer) => {
                        sealed.clear();
                        sealer.update(&buf[..n], &mut sealed);
                        writer.write(&sealed);
                        stored_bytes += sealed.len() as u64;
                    }
                    None => {
                        writer.write(&buf[..n]);
                        stored_bytes += n as u64;
                    }
                }
            }
            let actual = crate::hex::encode(&hasher.finalize());
            if actual != expected_sha256 {
                let _ = writer.abort().await;
                return Err(LakeError::Changed {
                    path: source_name.to_owned(),
                    expected: expected_sha256.to_owned(),
                    actual,
                });
            }
            if let Some(sealer) = sealer {
                sealed.clear();
                sealer.finish(&mut sealed);
                writer.write(&sealed);
                stored_bytes += sealed.len() as u64;
            }
            writer.finish().await.map_err(write_err)?;
            self.remove_partial_uploads(key);
            Ok(Landed {
                key: key.to_owned(),
                bytes,
                stored_bytes,
                sha256: actual,
            })
        })
    }

    /// Removes what interrupted uploads of `key` left in a local-folder store and
    /// returns how many files that was. object_store's folder backend writes an object
    /// to the staging file `<key>#<n>` and renames it into place once complete; a
    /// process killed mid-upload (`kill -9`, a crash, a power cut) leaves that partial
    /// file behind, which no listing shows (so `verify` cannot report it) and nothing
    /// else removes. Called after every successful landing of `key` (a resumed file, an
    /// export published again) and for the key of a claim's earlier attempt when the
    /// claim is resumed (an encrypted attempt, or one in another month, writes another
    /// key). Only the claimant of a file writes its key, so no live upload is cut; an
    /// export's files are rewritten only by another export of the same version, whose
    /// bytes are the same. Best effort: a file that cannot be removed is logged and left.
    /// On S3 an interrupted multipart upload is likewise invisible; a bucket lifecycle
    /// rule (`AbortIncompleteMultipartUpload`) reclaims it. Nothing to do for other
    /// stores.
    pub fn remove_partial_uploads(&self, key: &str) -> usize {
        let Some(folder) = &self.folder else {
            return 0;
        };
        let object = folder.join(key);
        // Each upload takes the first free `#<n>` from 1, so interrupted ones are `#1`,
        // `#2`, …: probed by name (a month's folder may hold many thousands of objects,
        // too many to list at every landing), until `PROBE_MISSES` numbers in a row are
        // free.
        const PROBE_MISSES: u32 = 4;
        let (mut removed, mut misses, mut n) = (0, 0, 1u32);
        while misses < PROBE_MISSES {
            let staged = std::path::PathBuf::from(format!("{}#{n}", object.display()));
            match std::fs::remove_file(&staged) {
                Ok(()) => {
                    tracing::info!(key, staged = %staged.display(), "Removed the partial upload of an interrupted landing.");
                    removed += 1;
                    misses = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => misses += 1,
                Err(e) => {
                    tracing::warn!(key, staged = %staged.display(), error = %e, "Could not remove the partial upload of an interrupted landing.");
                    misses = 0;
                }
            }
            n += 1;
        }
        removed
    }

    /// Opens an object for streaming reads of its content (decrypted when `sealed`)
    /// that check its digest: the reader fails with `InvalidData` naming the object and
    /// both digests if the content does not hash to `expected_sha256` (checked at the
    /// end, so a consumer must not commit before EOF), or naming the damage when an
    /// encrypted chunk does not authenticate.
    ///
    /// # Errors
    /// When the object cannot be opened (missing, unreachable) or its key not used.
    pub fn open_read(
        &self,
        key: &str,
        expected_sha256: &str,
        sealed: Option<&Sealed>,
    ) -> Result<VerifiedReader, LakeError> {
        Ok(VerifiedReader {
            key: key.to_owned(),
            expected: expected_sha256.to_owned(),
            inner: self.plaintext(key, expected_sha256, sealed)?,
            hasher: Sha256::new(),
            done: false,
        })
    }

    /// Every object below the store's root (its prefix), as (key, size), sorted by key.
    ///
    /// # Errors
    /// When listing fails.
    pub fn list(&self) -> Result<Vec<(String, u64)>, LakeError> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(None);
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.failure(&e))?;
                out.push((meta.location.to_string(), meta.size));
            }
            out.sort();
            Ok(out)
        })
    }

    /// Deletes the raw object of a withdrawn claim (nothing in the catalog names it any
    /// more). A missing object is not an error.
    ///
    /// # Errors
    /// [`LakeError::Write`] when the store refuses.
    pub fn remove(&self, key: &str) -> Result<(), LakeError> {
        let path = ObjectPath::from(key);
        self.runtime
            .block_on(self.store.delete(&path))
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(e),
            })
            .map_err(|source| self.write_error(key, source))
    }

    /// The objects directly below the store's root (its prefix), sorted by key, for an
    /// object-store inbox. Deeper "folders" are not descended into, as a folder inbox
    /// does not recurse either; folder markers (the zero-byte `incoming/` objects the S3
    /// console creates) are not files.
    ///
    /// # Errors
    /// When listing fails.
    pub fn list_inbox(&self) -> Result<Vec<InboxObject>, LakeError> {
        self.runtime.block_on(async {
            // With a delimiter, S3 rolls `incoming/sub/…` (marker included) up into a
            // common prefix, which is ignored.
            let listed = self
                .store
                .list_with_delimiter(None)
                .await
                .map_err(|e| self.listing_failure(&e))?;
            Ok(inbox_objects(listed.objects))
        })
    }

    /// A listing failure as a [`LakeError`]. A key that object_store cannot represent
    /// (a control character, an empty `//` or a `.`/`..` segment: S3 allows them all)
    /// fails the whole listing, not just that object; said as such, naming the key (its
    /// control characters escaped), as a setting to change (exit 2): retrying cannot
    /// help, renaming or removing the object does.
    fn listing_failure(&self, e: &object_store::Error) -> LakeError {
        match e {
            object_store::Error::InvalidPath { source } => LakeError::Setup {
                role: self.id.role,
                url: self.id.url.clone(),
                reason: format!(
                    "holds an object whose key cannot be read ({}): rename or remove that \
                     object (a key with a control character, an empty `//` segment, or a `.` \
                     or `..` segment); nothing was read",
                    crate::report::printable(&source.to_string())
                        .chars()
                        .take(400)
                        .collect::<String>()
                ),
            },
            e => self.failure(e),
        }
    }

    /// Streams an object into a local file (constant memory). `key` is a key as listed
    /// ([`Lake::list_inbox`]), taken as it is: `ObjectPath::from` would percent-encode
    /// `%`, `#`, `[`… in it again and read another key (`a%23b.csv` as `a%2523b.csv`).
    ///
    /// # Errors
    /// When the object cannot be read or the file written; the partial file is then
    /// removed.
    pub fn download(&self, key: &str, dest: &std::path::Path) -> Result<u64, LakeError> {
        let read_err = |source| self.read_error(key, source);
        let path = ObjectPath::parse(key).map_err(|e| read_err(e.into()))?;
        let write_err = |source| LakeError::Source {
            path: dest.display().to_string(),
            source,
        };
        let result = self.runtime.block_on(async {
            let got = self.store.get(&path).await.map_err(read_err)?;
            let mut file = std::fs::File::create(dest).map_err(write_err)?;
            let mut stream = got.into_stream();
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_err)?;
                std::io::Write::write_all(&mut file, &chunk).map_err(write_err)?;
                bytes += chunk.len() as u64;
            }
            Ok(bytes)
        });
        if result.is_err() {
            // A partial copy (a full disk, a store that stopped answering) is of no use
            // and would keep the space it took.
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    /// Reads a whole object (small objects and tests).
    ///
    /// # Errors
    /// When the object is missing or unreadable.
    pub fn read_all(&self, key: &str) -> Result<Vec<u8>, object_store::Error> {
        let path = ObjectPath::from(key);
        self.runtime.block_on(async {
            let got = self.store.get(&path).await?;
            Ok(got.bytes().await?.to_vec())
        })
    }
}

/// The stored bytes of an object, read from the stream a runtime task feeds.
struct ChannelReader {
    chunks: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A streaming reader of a lake object's content that checks its SHA-256 at the end.
pub struct VerifiedReader {
    key: String,
    expected: String,
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    done: bool,
}

impl std::fmt::Debug for VerifiedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        self.done = true;
        let actual = crate::hex::encode(&self.hasher.clone().finalize());
        if actual != self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "lake object {} is corrupt: expected sha256 {}, read {actual}",
                    self.key, self.expected
                ),
            ));
        }
        Ok(0)
    }
}

/// The state of one landed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Present, digest matches.
    Intact {
        /// Size.
        bytes: u64,
    },
    /// Not in the lake.
    Missing,
    /// Present, but its digest differs.
    Corrupt {
        /// Digest of what is stored.
        actual: String,
    },
    /// Encrypted, and a chunk does not authenticate (tampered, truncated, reordered).
    Damaged {
        /// What is wrong.
        reason: String,
    },
}

/// `AmazonS3Builder::from_env` without the variables set to an empty string: an empty
/// `AWS_ALLOW_HTTP=` (or any other `AWS_*`) counts as unset, as bankpipe's own
/// variables do, instead of failing to parse.
fn s3_from_env() -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
            && key.starts_with("AWS_")
            && !value.trim().is_empty()
            && let Ok(config) = key.to_ascii_lowercase().parse()
        {
            builder = builder.with_config(config, value);
        }
    }
    builder
}

/// For a builder error `failed to parse "VALUE" as …`: the `AWS_*` variables holding
/// that value, named (` (AWS_ALLOW_HTTP="yes")`), or nothing.
fn unparsable_variable(error: &str) -> String {
    let Some(rest) = error.split("failed to parse \"").nth(1) else {
        return String::new();
    };
    let Some(value) = rest.split('"').next() else {
        return String::new();
    };
    let names: Vec<String> = std::env::vars()
        .filter(|(k, v)| k.starts_with("AWS_") && v == value)
        .map(|(k, _)| format!("{k}=\"{value}\""))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

/// A store error as one actionable line, and whether it is a setting or credential to
/// fix (`true`) rather than an outage. Never the raw response: S3 error bodies are XML
/// documents, of which only the `<Code>` and `<Message>` are kept.
fn explain(e: &object_store::Error) -> (bool, String) {
    let full = chain(e);
    let says = |needles: &[&str]| needles.iter().any(|n| full.contains(n));
    let code = xml_element(&full, "Code");
    let (setup, what) = if says(&["NoSuchBucket"]) {
        (
            true,
            "bucket not found: check the bucket in lake_url (or --inbox)",
        )
    } else if says(&[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "403 Forbidden",
        "401 Unauthorized",
    ]) {
        (
            true,
            "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and the bucket policy)",
        )
    } else if says(&["URL scheme is not allowed", "https_only", "HTTPS only"]) {
        (
            true,
            "the endpoint is plain http://: set AWS_ALLOW_HTTP=true to allow it, or use https://",
        )
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        (false, "object not found")
    } else if says(&[
        "error sending request",
        "Connection refused",
        "connect",
        "timed out",
        "dns",
    ]) {
        (false, "cannot connect to the endpoint (AWS_ENDPOINT_URL)")
    } else {
        // Unrecognised: the driver's first line, cut before any response body.
        let text = one_line(e);
        let text = text
            .find('<')
            .map_or(text.as_str(), |at| {
                text[..at].trim_end_matches([' ', ':', '-'])
            })
            .to_owned();
        let detail = match (code.as_deref(), xml_element(&full, "Message")) {
            (Some(c), Some(m)) => format!(" ({c}: {m})"),
            (Some(c), None) => format!(" ({c})"),
            _ => String::new(),
        };
        return (false, format!("{text}{detail}"));
    };
    match code {
        Some(c) if !what.contains(&c) => (setup, format!("{what} ({c})")),
        _ => (setup, what.to_owned()),
    }
}

/// The text of the first `<name>…</name>` element of an S3 error document.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find("</")? + start;
    Some(text[start..end].chars().take(200).collect())
}

/// An error and all its causes on one string, for recognising what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The folder of a lake URL that names a local folder (a plain path or `file://`);
/// `None` for an object store.
pub fn local_folder(url: &str) -> Option<std::path::PathBuf> {
    match url.strip_prefix("file://") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None if url.contains("://") => None,
        None => Some(std::path::PathBuf::from(url)),
    }
}

/// An export destination as it is recorded and compared: a folder (a path, or
/// `file://` and a path) as its canonical absolute path — the longest part that exists
/// resolved by the file system (symlinks, `..`), the rest appended with `.` and `..`
/// taken lexically (a folder that does not exist yet is no symlink); any other URL
/// (`s3://…`) unchanged but for a password, which is never recorded.
pub fn canonical_destination(url: &str) -> String {
    let Some(path) = local_folder(url) else {
        return crate::redact::redact_url(url);
    };
    let Ok(absolute) = std::path::absolute(&path) else {
        return url.to_owned();
    };
    let parts: Vec<std::path::Component<'_>> = absolute.components().collect();
    // The longest leading part that exists, resolved; the root always does.
    let (mut out, rest) = (1..=parts.len())
        .rev()
        .find_map(|n| {
            let prefix: std::path::PathBuf = parts[..n].iter().collect();
            std::fs::canonicalize(prefix)
                .ok()
                .map(|real| (real, &parts[n..]))
        })
        .unwrap_or_else(|| (std::path::PathBuf::new(), &parts[..]));
    for part in rest {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.display().to_string()
}

/// An object-store error on one line, without the request details some drivers append.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(300).collect()
}

/// SHA-256 and length of a whole stream.
///
/// # Errors
/// Read errors.
pub fn fingerprint(mut source: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((crate::hex::encode(&hasher.finalize()), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn listing_failures_name_the_key_that_object_store_refuses() {
        // Keys S3 stores as they are (s3s-fs, the test server, resolves `..` and folds
        // `//` itself, so only the control character is tried against it).
        let rt = runtime();
        let inbox = Lake::open_inbox("memory://", rt.handle().clone()).unwrap();
        for (key, shown) in [
            ("incoming/../x.csv", "incoming/../x.csv"),
            ("incoming//x.csv", "incoming//x.csv"),
            ("incoming/./x.csv", "incoming/./x.csv"),
            ("incoming/a\n\u{1b}[2Jb.csv", "incoming/a\\n\\u{1b}[2Jb.csv"),
        ] {
            let source = ObjectPath::parse(key).unwrap_err();
            let e = inbox.listing_failure(&object_store::Error::InvalidPath { source });
            assert!(e.is_setup(), "{key}: exit 2, not an outage");
            let text = e.to_string();
            assert!(
                text.starts_with("inbox memory://: holds an object whose key cannot be read (")
                    && text.contains(shown)
                    && !text.contains(['\n', '\u{1b}']),
                "{text}"
            );
        }
    }

    #[test]
    fn listed_keys_are_read_as_they_are() {
        let rt = runtime();
        let store = Lake::open_inbox("memory://", rt.handle().clone()).unwrap();
        for key in ["a%23b.csv", "%2e%2e%2fx.csv", "r[1]#2.csv"] {
            let path = ObjectPath::parse(key).unwrap();
            let s = Arc::clone(&store.store);
            rt.block_on(s.put(&path, key.as_bytes().to_vec().into()))
                .unwrap();
        }
        let listed = store.list_inbox().unwrap();
        assert_eq!(listed.len(), 3);
        let dir = tempfile::tempdir().unwrap();
        for o in listed {
            let dest = dir.path().join("spooled");
            store.download(&o.key, &dest).unwrap();
            assert_eq!(std::fs::read_to_string(&dest).unwrap(), o.key);
        }
    }

    #[test]
    fn store_errors_name_the_store_they_come_from_without_secrets() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let refused = || object_store::Error::Generic {
            store: "test",
            source: "refused".into(),
        };
        let why = explain(&refused()).1;
        let folder = dir.path().join("exports").display().to_string();
        let destination = Lake::open_destination(&folder, rt.handle().clone()).unwrap();
        let canonical = destination.url().to_owned();
        assert_eq!(
            destination
                .write_error("quarter=2016Q3/x.parquet", refused())
                .to_string(),
            format!("writing export object quarter=2016Q3/x.parquet to {canonical}: {why}")
        );
        assert_eq!(
            destination
                .read_error("quarter=2016Q3/manifest.json", refused())
                .to_string(),
            format!("reading export object quarter=2016Q3/manifest.json from {canonical}: {why}")
        );
        let lake = Lake::open(&folder, rt.handle().clone()).unwrap();
        assert_eq!(
            lake.write_error("raw/k", refused()).to_string(),
            format!("writing lake object raw/k to {folder}: {why}")
        );
        // A URL holding a password shows it masked (the store never sees the URL again).
        let inbox = Lake::open_inbox("s3://user:pa55word@bucket/in", rt.handle().clone()).unwrap();
        let e = inbox.read_error("x.csv", refused()).to_string();
        assert_eq!(
            e,
            format!("reading inbox object x.csv from s3://user:***@bucket/in: {why}")
        );
        assert!(!e.contains("pa55word"));
    }

    #[test]
    fn destinations_are_named_by_their_canonical_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        let exports = real.join("exports").display().to_string();
        for typed in [
            real.join("exports"),
            real.join("a/../exports"),
            real.join("./a/./../exports/"),
            real.join("missing/../exports"),
        ] {
            let typed = typed.display().to_string();
            assert_eq!(canonical_destination(&typed), exports, "{typed}");
            assert_eq!(
                canonical_destination(&format!("file://{typed}")),
                exports,
                "file://{typed}"
            );
        }
        // Existing or not: the same name (the folder is made after it is named).
        std::fs::create_dir(real.join("exports")).unwrap();
        assert_eq!(canonical_destination(&exports), exports);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(real.join("exports"), real.join("link")).unwrap();
            let via_link = real.join("link").display().to_string();
            assert_eq!(canonical_destination(&via_link), exports);
        }
        // A relative folder becomes absolute (the test's working folder, whatever it is).
        let relative = canonical_destination("some/rel/folder");
        assert!(std::path::Path::new(&relative).is_absolute(), "{relative}");
        assert!(relative.ends_with("some/rel/folder"), "{relative}");
        // Object stores are kept as typed, without a password.
        assert_eq!(canonical_destination("s3://ml/bank"), "s3://ml/bank");
        assert!(!canonical_destination("s3://user:secret@ml/bank").contains("secret"));
    }

    #[test]
    fn inbox_listings_skip_folder_markers_and_deeper_keys() {
        let meta = |key: &str, size: u64| object_store::ObjectMeta {
            location: ObjectPath::from(key),
            last_modified: chrono::DateTime::from_timestamp(1_480_000_000, 0).unwrap(),
            size,
            e_tag: None,
            version: None,
        };
        // What object_store makes of an S3 listing of `incoming/` holding the console's
        // marker `incoming/`, `b.csv`, `a.csv`, and (without a delimiter) `sub/x.csv`.
        let got = inbox_objects(vec![
            meta("", 0),
            meta("b.csv", 3),
            meta("a.csv", 5),
            meta("sub/x.csv", 7),
        ]);
        let keys: Vec<&str> = got.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a.csv", "b.csv"]);
        assert_eq!(got[0].size, 5);
        assert_eq!(
            got[0].modified,
            std::time::UNIX_EPOCH + Duration::from_secs(1_480_000_000)
        );
    }

    #[test]
    fn lands_and_reads_back_in_a_folder() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        lake.check().unwrap();
        let data = b"a,b\n1,2\n".repeat(100_000);
        let (sha, len) = fingerprint(&data[..]).unwrap();
        let key = Lake::raw_key("kaggle-bank", (2016, 8), &sha, "csv");
        let landed = lake.land(&key, "x.csv", &data[..], &sha, None).unwrap();
        assert_eq!(landed.bytes, len);
        assert_eq!(lake.read_all(&key).unwrap(), data);
        assert!(dir.path().join(&key).exists());
    }

    #[test]
    fn landing_a_key_removes_the_partial_uploads_interrupted_attempts_left() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        let data = b"a,b\n1,2\n".to_vec();
        let (sha, _) = fingerprint(&data[..]).unwrap();
        let key = Lake::raw_key("kaggle-bank", (2016, 8), &sha, "csv");
        let object = dir.path().join(&key);
        std::fs::create_dir_all(object.parent().unwrap()).unwrap();
        // What a `kill -9` mid-upload leaves: object_store's staging files.
        let staged =
            |suffix: &str| std::path::PathBuf::from(format!("{}{suffix}", object.display()));
        for suffix in ["#1", "#2", "#4"] {
            std::fs::write(staged(suffix), b"a,b\n").unwrap();
        }
        // Not staging files of this key: kept.
        std::fs::write(staged("#x"), b"").unwrap();
        let other = object.with_file_name("other.csv#1");
        std::fs::write(&other, b"").unwrap();
        // Invisible to listings, so `verify` could never report them.
        let listed = lake.list().unwrap();
        assert!(
            listed
                .iter()
                .all(|(k, _)| !k.ends_with("#1") && !k.ends_with("#2")),
            "{listed:?}"
        );
        lake.land(&key, "x.csv", &data[..], &sha, None).unwrap();
        assert!(!staged("#1").exists() && !staged("#2").exists() && !staged("#4").exists());
        assert!(staged("#x").exists() && other.exists());
        assert_eq!(std::fs::read(&object).unwrap(), data);
        // An object store has none to remove.
        let memory = Lake::open("memory://", rt.handle().clone()).unwrap();
        assert_eq!(memory.remove_partial_uploads(&key), 0);
    }

    #[test]
    fn a_changed_source_leaves_no_object() {
        let rt = runtime();
        let lake = Lake::open("memory://", rt.handle().clone()).unwrap();
        let err = lake
            .land("raw/x", "x.csv", &b"abc"[..], "00", None)
            .unwrap_err();
        assert!(matches!(err, LakeError::Changed { .. }));
        assert!(lake.read_all("raw/x").is_err());
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            fingerprint(&b"abc"[..]).unwrap().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn store_errors_are_explained_without_the_xml_reply() {
        let body = "Error performing GET http://127.0.0.1:9000/lake/k in 2ms - Server returned \
                    non-2xx status code: 500 Internal Server Error: <?xml version=\"1.0\"?>\
                    <Error><Code>InternalError</Code><Message>We encountered an internal \
                    error</Message><RequestId>abc</RequestId></Error>";
        let e = object_store::Error::Generic {
            store: "S3",
            source: body.into(),
        };
        let (setup, text) = explain(&e);
        assert!(!setup);
        assert!(!text.contains('<'), "{text}");
        assert!(
            text.contains("InternalError: We encountered an internal error"),
            "{text}"
        );
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
                     <Error><Code>SignatureDoesNotMatch</Code></Error>"
                .into(),
        };
        let (setup, text) = explain(&e);
        assert!(setup);
        assert_eq!(
            text,
            "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and the bucket \
             policy) (SignatureDoesNotMatch)"
        );
    }

    #[test]
    fn unsupported_urls_are_refused() {
        let rt = runtime();
        assert!(matches!(
            Lake::open("ftp://x", rt.handle().clone()),
            Err(LakeError::UnsupportedUrl(_))
        ));
    }
}
