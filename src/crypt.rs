//! Encryption at rest of lake objects: AES-256-GCM in authenticated chunks under a
//! per-object data key, itself wrapped by the operator's master key.
//!
//! Why envelope encryption: the data key never leaves the process in clear, and the
//! wrapped data key lives in the catalog (`files.key_id`, `files.wrapped_key`), not in
//! the object, so `rotate-key` re-wraps a few dozen bytes per file and never rewrites
//! data. Why chunks: a file streams through in constant memory and a reader learns of a
//! damaged chunk before it has consumed the rest.
//!
//! Object layout (version 1):
//!
//! ```text
//! header (36 bytes): "BPENC" 0x00 0x01 0x00 | chunk size u32 BE | plaintext length u64 BE
//!                    | key check: SHA-256("bankpipe key check v1" || data key)[..16]
//! chunk i:           index u64 BE | AES-256-GCM(data key, nonce = 0u32 || i u64 BE,
//!                                               aad = header || index) ciphertext+tag
//! ```
//!
//! Every chunk but the last holds `chunk size` plaintext bytes; the number of chunks
//! follows from the plaintext length (one empty chunk for an empty object). The header
//! is authenticated by every chunk, so its length cannot be edited to hide a
//! truncation; the stored index names a chunk found at the wrong place (reordering),
//! and a failing tag is tampering. Each failure is its own message, never garbage.

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const MAGIC: &[u8; 8] = b"BPENC\x00\x01\x00";
/// Header length in bytes.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 16;
const TAG_LEN: usize = 16;
const INDEX_LEN: usize = 8;
/// The algorithm name recorded in reports and docs.
pub const ALGORITHM: &str = "aes-256-gcm-chunked-v1";
/// Most bytes a master key file may hold (its base64 text is 44 characters).
const MAX_KEY_FILE_BYTES: usize = 1024;

/// A key problem: missing, malformed, wrong or unable to unwrap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The master key text is not base64 of 32 bytes.
    #[error(
        "{source_name} must hold the base64 of 32 random bytes (for example `head -c 32 /dev/urandom | base64`)"
    )]
    Malformed {
        /// Where the key came from (variable or file name; never the key).
        source_name: String,
    },
    /// The key file cannot be read. The message names the setting, never its value:
    /// a key pasted where its file name belongs must not be printed.
    #[error("cannot read the master key file named by {setting}: {reason}")]
    Unreadable {
        /// The setting that names the file.
        setting: String,
        /// Cause (the I/O error, without the path).
        reason: String,
    },
    /// An object is encrypted but no master key is configured.
    #[error(
        "encrypted under master key id {key_id}: set BANKPIPE_MASTER_KEY or BANKPIPE_MASTER_KEY_FILE"
    )]
    NoMasterKey {
        /// Key id recorded in the catalog.
        key_id: String,
    },
    /// The configured master key is not the one the object's data key is wrapped by.
    #[error(
        "wrong master key: the object's data key is wrapped by key id {expected}, the configured master key has id {configured}"
    )]
    WrongMasterKey {
        /// Key id recorded in the catalog.
        expected: String,
        /// Id of the configured key.
        configured: String,
    },
    /// The wrapped data key does not open under the master key (damaged catalog entry).
    #[error(
        "the wrapped data key recorded for this object does not open under master key id {key_id} (damaged catalog entry)"
    )]
    Unwrap {
        /// Key id.
        key_id: String,
    },
    /// No randomness from the operating system.
    #[error("the system random generator failed")]
    Random,
}

/// The operator's key-encryption key. Its `Debug` shows only the key id.
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

/// A data key wrapped by a master key, as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the master key that wraps it.
    pub key_id: String,
    /// base64(nonce || AES-256-GCM(master, data key) || tag).
    pub wrapped: String,
}

/// A per-object data key (zeroed on drop).
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0[..]).expect("32-byte key"))
    }

    /// A short public tag of this data key (8 hex digits of its check value), to name
    /// the object it encrypts.
    pub fn tag(&self) -> String {
        crate::hex::encode(&self.check_value()[..4])
    }

    fn check_value(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"bankpipe key check v1");
        h.update(&self.0[..]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize()[..16]);
        out
    }
}

impl MasterKey {
    /// A master key from raw bytes.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8], source_name: &str) -> Result<MasterKey, KeyError> {
        let malformed = || KeyError::Malformed {
            source_name: source_name.to_owned(),
        };
        if bytes.len() != 32 {
            return Err(malformed());
        }
        let mut h = Sha256::new();
        h.update(b"bankpipe master key id v1");
        h.update(bytes);
        let id = format!("mk-{}", &crate::hex::encode(&h.finalize())[..16]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| malformed())?);
        Ok(MasterKey { key, id })
    }

    /// A master key from its base64 text (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`KeyError::Malformed`].
    pub fn from_base64(text: &str, source_name: &str) -> Result<MasterKey, KeyError> {
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| KeyError::Malformed {
            source_name: source_name.to_owned(),
        })?);
        MasterKey::from_bytes(&bytes, source_name)
    }

    /// A master key from a file holding its base64 text, or exactly 32 raw bytes;
    /// `setting` names where the path came from, for messages.
    ///
    /// # Errors
    /// [`KeyError::Unreadable`], [`KeyError::Malformed`].
    pub fn from_file(path: &std::path::Path, setting: &str) -> Result<MasterKey, KeyError> {
        let name = format!("the file named by {setting}");
        let unreadable = |e: std::io::Error| KeyError::Unreadable {
            setting: setting.to_owned(),
            reason: std::io::Error::from(e.kind()).to_string(),
        };
        // At most a little more than any key file holds: a path naming a large file or
        // a device (`/dev/zero`) is refused, not read into memory without end. The
        // buffer never grows, so no copy of the key is left behind unzeroed.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES + 1));
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_KEY_FILE_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(unreadable)?;
        if bytes.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::Malformed { source_name: name });
        }
        // 32 bytes that are not all printable are the raw key (a base64 text of 32
        // bytes is 44 characters long; a 32-character text is a mistake, not a key).
        if bytes.len() == 32 && !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return MasterKey::from_bytes(&bytes, &name);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Malformed {
            source_name: name.clone(),
        })?;
        MasterKey::from_base64(text, &name)
    }

    /// The key's public id (`mk-` and 16 hex digits of a hash of it): recorded in the
    /// catalog, safe to print.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh random data key for the object whose content digest is `object`, and
    /// its wrapping. The digest is authenticated with the wrapping, so a wrapped key
    /// copied onto another catalog row does not open.
    ///
    /// # Errors
    /// [`KeyError::Random`].
    pub fn new_data_key(&self, object: &str) -> Result<(DataKey, Sealed), KeyError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut raw[..])
            .map_err(|_| KeyError::Random)?;
        let key = DataKey(raw);
        let sealed = self.wrap(&key, object)?;
        Ok((key, sealed))
    }

    fn wrap(&self, key: &DataKey, object: &str) -> Result<Sealed, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let mut body = Zeroizing::new(key.0.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(object.as_bytes()),
                &mut *body,
            )
            .map_err(|_| KeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        Ok(Sealed {
            key_id: self.id.clone(),
            wrapped: B64.encode(out),
        })
    }

    /// Opens the data key of `object`.
    ///
    /// # Errors
    /// [`KeyError::WrongMasterKey`] when `sealed` names another key id,
    /// [`KeyError::Unwrap`] when it does not open.
    pub fn unwrap(&self, sealed: &Sealed, object: &str) -> Result<DataKey, KeyError> {
        if sealed.key_id != self.id {
            return Err(KeyError::WrongMasterKey {
                expected: sealed.key_id.clone(),
                configured: self.id.clone(),
            });
        }
        let fail = || KeyError::Unwrap {
            key_id: self.id.clone(),
        };
        let raw = Zeroizing::new(B64.decode(&sealed.wrapped).map_err(|_| fail())?);
        if raw.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(fail());
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).map_err(|_| fail())?;
        let mut body = Zeroizing::new(raw[NONCE_LEN..].to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(object.as_bytes()), &mut body)
            .map_err(|_| fail())?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(plain);
        Ok(DataKey(key))
    }

    /// The same data key, wrapped by `new` instead of this key.
    ///
    /// # Errors
    /// As [`MasterKey::unwrap`].
    pub fn rewrap(
        &self,
        sealed: &Sealed,
        object: &str,
        new: &MasterKey,
    ) -> Result<Sealed, KeyError> {
        let key = self.unwrap(sealed, object)?;
        new.wrap(&key, object)
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(header: &[u8; HEADER_LEN], index: u64) -> [u8; HEADER_LEN + INDEX_LEN] {
    let mut a = [0u8; HEADER_LEN + INDEX_LEN];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..].copy_from_slice(&index.to_be_bytes());
    a
}

/// Number of chunks of a plaintext of `len` bytes.
fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK as u64).max(1)
}

/// Stored size of an encrypted object of `len` plaintext bytes (`None` past `u64`: a
/// forged length).
pub fn sealed_len(len: u64) -> Option<u64> {
    chunk_count(len)
        .checked_mul((INDEX_LEN + TAG_LEN) as u64)?
        .checked_add(HEADER_LEN as u64)?
        .checked_add(len)
}

/// Encrypts a stream of known length chunk by chunk.
pub struct Sealer {
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    index: u64,
    pending: Vec<u8>,
    started: bool,
}

impl Sealer {
    /// A sealer for `len` plaintext bytes under `key`.
    pub fn new(key: &DataKey, len: u64) -> Sealer {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(CHUNK as u32).to_be_bytes());
        header[12..20].copy_from_slice(&len.to_be_bytes());
        header[20..].copy_from_slice(&key.check_value());
        Sealer {
            key: key.aead(),
            header,
            index: 0,
            pending: Vec::with_capacity(CHUNK + TAG_LEN),
            started: false,
        }
    }

    fn seal_pending(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_be_bytes());
        self.key
            .seal_in_place_append_tag(
                nonce(self.index),
                Aad::from(aad(&self.header, self.index)),
                &mut self.pending,
            )
            .expect("chunk within AES-GCM limits");
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        self.index += 1;
    }

    /// Appends to `out` the header (first call) and every chunk `data` completes.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.header);
            self.started = true;
        }
        while !data.is_empty() {
            // A full chunk is sealed only once more data follows, so the last chunk
            // (full or not) is always sealed by `finish`.
            if self.pending.len() == CHUNK {
                self.seal_pending(out);
            }
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// Appends the last chunk.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(&self.header);
        }
        self.seal_pending(out);
    }
}

/// A reader of plaintext out of an encrypted object, every chunk authenticated before
/// any of its bytes are returned. Failures are `InvalidData` errors naming the object.
pub struct Opener<R> {
    inner: R,
    label: String,
    key: LessSafeKey,
    check: [u8; 16],
    stored_len: Option<u64>,
    header: Option<[u8; HEADER_LEN]>,
    plain_len: u64,
    chunks: u64,
    index: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: Read> Opener<R> {
    /// Decrypts `inner` (the stored bytes of object `label`, `stored_len` bytes long if
    /// known) with `key`.
    pub fn new(inner: R, key: &DataKey, label: &str, stored_len: Option<u64>) -> Opener<R> {
        Opener {
            inner,
            label: label.to_owned(),
            key: key.aead(),
            check: key.check_value(),
            stored_len,
            header: None,
            plain_len: 0,
            chunks: 0,
            index: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn bad(&self, what: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("lake object {} is corrupt: {what}", self.label),
        )
    }

    /// Reads up to `buf.len()` bytes, fewer only at the end of the stream.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn read_header(&mut self) -> std::io::Result<()> {
        let mut header = [0u8; HEADER_LEN];
        let n = self.fill(&mut header)?;
        let magic = n.min(5);
        if header[..magic] != b"BPENC"[..magic] || n == 0 {
            return Err(self.bad("not a bankpipe encrypted object (no BPENC header)".into()));
        }
        if n < HEADER_LEN {
            return Err(self.bad(format!(
                "truncated in the header ({n} of {HEADER_LEN} bytes)"
            )));
        }
        if header[..8] != MAGIC[..] {
            return Err(self.bad(format!("unknown format version {}", header[6])));
        }
        let chunk = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        if chunk != CHUNK {
            return Err(self.bad(format!("header tampered (chunk size {chunk})")));
        }
        if header[20..] != self.check {
            return Err(self.bad(
                "the data key recorded in the catalog is not this object's (header or catalog entry altered)"
                    .into(),
            ));
        }
        self.plain_len = u64::from_be_bytes(header[12..20].try_into().expect("8 bytes"));
        self.chunks = chunk_count(self.plain_len);
        let Some(expected) = sealed_len(self.plain_len) else {
            return Err(self.bad("header tampered (impossible length)".into()));
        };
        if let Some(stored) = self.stored_len {
            if stored < expected {
                return Err(self.bad(format!(
                    "truncated: {stored} bytes stored, {expected} expected"
                )));
            }
            if stored > expected {
                return Err(self.bad(format!(
                    "{} unexpected bytes after the last chunk",
                    stored - expected
                )));
            }
        }
        self.header = Some(header);
        Ok(())
    }

    /// Reads, checks and decrypts the next chunk into `buf`.
    fn next_chunk(&mut self) -> std::io::Result<bool> {
        let header = self.header.expect("header read first");
        if self.index == self.chunks {
            let mut extra = [0u8; 1];
            if self.fill(&mut extra)? > 0 {
                return Err(self.bad("unexpected bytes after the last chunk".into()));
            }
            return Ok(false);
        }
        let plain = if self.index + 1 == self.chunks {
            (self.plain_len - self.index * CHUNK as u64) as usize
        } else {
            CHUNK
        };
        let mut stored = vec![0u8; INDEX_LEN + plain + TAG_LEN];
        let n = self.fill(&mut stored)?;
        if n < stored.len() {
            return Err(self.bad(format!(
                "truncated in chunk {} of {} ({n} of {} bytes)",
                self.index,
                self.chunks,
                stored.len()
            )));
        }
        let found = u64::from_be_bytes(stored[..INDEX_LEN].try_into().expect("8 bytes"));
        if found != self.index {
            return Err(self.bad(format!(
                "chunks reordered: chunk {found} found at position {}",
                self.index
            )));
        }
        let mut body = stored.split_off(INDEX_LEN);
        let len = self
            .key
            .open_in_place(
                nonce(self.index),
                Aad::from(aad(&header, self.index)),
                &mut body,
            )
            .map_err(|_| {
                self.bad(format!(
                    "chunk {} fails authentication (tampered)",
                    self.index
                ))
            })?
            .len();
        body.truncate(len);
        self.buf = body;
        self.pos = 0;
        self.index += 1;
        Ok(true)
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.header.is_none() {
            self.read_header()?;
        }
        while self.pos == self.buf.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32], "test").unwrap()
    }

    fn seal(key: &DataKey, data: &[u8], pieces: usize) -> Vec<u8> {
        let mut s = Sealer::new(key, data.len() as u64);
        let mut out = Vec::new();
        for part in data.chunks(pieces.max(1)) {
            s.update(part, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn open(key: &DataKey, stored: &[u8], with_len: bool) -> std::io::Result<Vec<u8>> {
        let len = with_len.then_some(stored.len() as u64);
        let mut out = Vec::new();
        Opener::new(stored, key, "raw/x", len).read_to_end(&mut out)?;
        Ok(out)
    }

    fn err(key: &DataKey, stored: &[u8], with_len: bool) -> String {
        open(key, stored, with_len).unwrap_err().to_string()
    }

    #[test]
    fn round_trips_every_length_and_write_size() {
        let m = master(1);
        let (key, _) = m.new_data_key("abc").unwrap();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for pieces in [1, 1000, CHUNK, 1 << 20] {
                let stored = seal(&key, &data, pieces);
                assert_eq!(Some(stored.len() as u64), sealed_len(len as u64));
                assert_eq!(open(&key, &stored, true).unwrap(), data, "{len} {pieces}");
                assert_eq!(open(&key, &stored, false).unwrap(), data);
            }
        }
    }

    #[test]
    fn stored_bytes_hold_no_plaintext() {
        let (key, _) = master(1).new_data_key("abc").unwrap();
        let data = b"T1,C5841053,10/1/94,F,JAMSHEDPUR,17819.05,2/8/16,143207,25\n".repeat(5000);
        let stored = seal(&key, &data, 4096);
        assert!(!stored.windows(10).any(|w| w == b"JAMSHEDPUR"));
    }

    #[test]
    fn data_keys_wrap_and_unwrap_and_rotate() {
        let (old, new) = (master(1), master(2));
        let (key, sealed) = old.new_data_key("sha-a").unwrap();
        assert_eq!(sealed.key_id, old.id());
        assert!(!sealed.wrapped.is_empty());
        assert_eq!(old.unwrap(&sealed, "sha-a").unwrap().0[..], key.0[..]);
        // Bound to its object.
        assert!(matches!(
            old.unwrap(&sealed, "sha-b"),
            Err(KeyError::Unwrap { .. })
        ));
        // Wrong master key.
        assert!(matches!(
            new.unwrap(&sealed, "sha-a"),
            Err(KeyError::WrongMasterKey { .. })
        ));
        let rotated = old.rewrap(&sealed, "sha-a", &new).unwrap();
        assert_eq!(rotated.key_id, new.id());
        assert_eq!(new.unwrap(&rotated, "sha-a").unwrap().0[..], key.0[..]);
        // Same key id but another key's wrapping (forged id): does not open.
        let forged = Sealed {
            key_id: new.id().to_owned(),
            wrapped: sealed.wrapped.clone(),
        };
        assert!(matches!(
            new.unwrap(&forged, "sha-a"),
            Err(KeyError::Unwrap { .. })
        ));
    }

    #[test]
    fn keys_parse_from_base64_and_files_and_never_print() {
        let text = B64.encode([7u8; 32]);
        let m = MasterKey::from_base64(&format!("  {text}\n"), "BANKPIPE_MASTER_KEY").unwrap();
        assert!(m.id().starts_with("mk-") && m.id().len() == 19);
        assert!(!format!("{m:?}").contains(&text));
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [0xffu8; 32]).unwrap();
        assert!(MasterKey::from_file(&raw, "X").is_ok());
        let b64 = dir.path().join("b64.key");
        std::fs::write(&b64, format!("{text}\n")).unwrap();
        assert_eq!(MasterKey::from_file(&b64, "X").unwrap().id(), m.id());
        // A 32-character text is not taken as 32 raw bytes.
        let short = dir.path().join("short.key");
        std::fs::write(&short, "0123456789abcdef0123456789abcdef").unwrap();
        assert!(MasterKey::from_file(&short, "X").is_err());
        // A file far larger than a key, or a device, is refused after 1 KiB.
        let big = dir.path().join("big.key");
        std::fs::write(&big, format!("{text}\n").repeat(100)).unwrap();
        for path in [big.as_path(), std::path::Path::new("/dev/zero")] {
            assert!(
                matches!(
                    MasterKey::from_file(path, "X"),
                    Err(KeyError::Malformed { .. })
                ),
                "{}",
                path.display()
            );
        }
        // A key pasted where a file name belongs is never echoed.
        let e = MasterKey::from_file(std::path::Path::new(&text), "BANKPIPE_MASTER_KEY_FILE")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains(&text) && e.contains("BANKPIPE_MASTER_KEY_FILE"),
            "{e}"
        );
        for bad in ["", "abc", &B64.encode([1u8; 31])] {
            let e = MasterKey::from_base64(bad, "BANKPIPE_MASTER_KEY").unwrap_err();
            assert!(e.to_string().contains("BANKPIPE_MASTER_KEY must hold"));
        }
    }

    #[test]
    fn damage_is_named() {
        let m = master(1);
        let (key, _) = m.new_data_key("abc").unwrap();
        let data = vec![b'x'; 3 * CHUNK + 100];
        let stored = seal(&key, &data, 1 << 20);
        let stride = INDEX_LEN + CHUNK + TAG_LEN;

        // A flipped byte in chunk 1's ciphertext.
        let mut t = stored.clone();
        t[HEADER_LEN + stride + 100] ^= 1;
        assert!(err(&key, &t, true).contains("chunk 1 fails authentication (tampered)"));

        // Chunks 0 and 1 swapped.
        let mut r = stored.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + stride);
        let first = r[a..b].to_vec();
        let second = r[b..b + stride].to_vec();
        r[a..a + stride].copy_from_slice(&second);
        r[b..b + stride].copy_from_slice(&first);
        assert!(err(&key, &r, true).contains("chunks reordered: chunk 1 found at position 0"));

        // Swapped and re-indexed: the tag still catches it.
        r[a..a + INDEX_LEN].copy_from_slice(&0u64.to_be_bytes());
        assert!(err(&key, &r, true).contains("chunk 0 fails authentication"));

        // Truncated: a whole chunk, or mid-chunk; with and without the stored length.
        for cut in [
            stored.len() - (100 + INDEX_LEN + TAG_LEN),
            stored.len() - 7,
            50,
        ] {
            assert!(
                err(&key, &stored[..cut], true).contains("truncated"),
                "{cut}"
            );
            assert!(
                err(&key, &stored[..cut], false).contains("truncated"),
                "{cut}"
            );
        }

        // Extra bytes.
        let mut x = stored.clone();
        x.extend_from_slice(b"more");
        assert!(err(&key, &x, true).contains("unexpected bytes after the last chunk"));
        assert!(err(&key, &x, false).contains("unexpected bytes after the last chunk"));

        // Length in the header edited to hide a truncation: authenticated.
        let mut h = stored[..stored.len() - (100 + INDEX_LEN + TAG_LEN)].to_vec();
        h[12..20].copy_from_slice(&(3 * CHUNK as u64).to_be_bytes());
        assert!(err(&key, &h, true).contains("fails authentication"));

        // Another object's data key.
        let (other, _) = m.new_data_key("abc").unwrap();
        assert!(err(&other, &stored, true).contains("not this object's"));

        // A forged length near u64::MAX, and a cut header.
        let mut f = stored.clone();
        f[12..20].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(err(&key, &f, true).contains("impossible length"));
        assert!(err(&key, &stored[..20], true).contains("truncated in the header"));

        // Not encrypted at all.
        assert!(
            err(&key, b"TransactionID,CustomerID\n", true).contains("not a bankpipe encrypted")
        );
    }
}
