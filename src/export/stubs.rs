//! TEMPORARY stand-ins for `export/pseudonym.rs` and `export/drift.rs`, which another
//! branch writes against the same interface. They exist only so this branch compiles and
//! its tests run end to end; this file is deleted at merge and `mod.rs` then declares
//! `pub mod pseudonym; pub mod drift;` instead of re-exporting these.
//!
//! They implement the interface honestly (a real HMAC-SHA256, a real population
//! stability index), but only minimally: no `pseudonymise` command, a plain HTML page.

/// Stand-in for `export/pseudonym.rs`.
pub mod pseudonym {
    use std::path::{Path, PathBuf};

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use ring::rand::SecureRandom as _;
    use sha2::Digest as _;

    /// Why no pseudonymisation key could be had.
    #[derive(Debug, thiserror::Error)]
    pub enum KeyError {
        /// No key configured where one is required.
        #[error(
            "no pseudonymisation key: set BANKPIPE_PSEUDONYM_KEY (base64 of 32 random bytes, e.g. \
             `head -c 32 /dev/urandom | base64`) or BANKPIPE_PSEUDONYM_KEY_FILE; every machine \
             exporting from a PostgreSQL warehouse must use the same key"
        )]
        Missing,
        /// The key is not base64 of 32 bytes.
        #[error("{0} must hold the base64 of 32 random bytes")]
        Malformed(&'static str),
        /// The key file cannot be read or written.
        #[error("pseudonymisation key file {path}: {source}")]
        File {
            /// Path.
            path: PathBuf,
            /// Cause.
            source: std::io::Error,
        },
    }

    /// The HMAC key turning raw ids into stable pseudonyms.
    pub struct PseudonymKey {
        hmac: ring::hmac::Key,
        id: String,
    }

    impl std::fmt::Debug for PseudonymKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PseudonymKey")
                .field("key_id", &self.id)
                .finish_non_exhaustive()
        }
    }

    impl PseudonymKey {
        fn from_bytes(bytes: &[u8]) -> PseudonymKey {
            let mut h = sha2::Sha256::new();
            h.update(b"bankpipe pseudonym key id\0");
            h.update(bytes);
            PseudonymKey {
                hmac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
                id: crate::hex::encode(&h.finalize()[..8]),
            }
        }

        fn from_base64(text: &str, name: &'static str) -> Result<PseudonymKey, KeyError> {
            let bytes = B64
                .decode(text.trim())
                .map_err(|_| KeyError::Malformed(name))?;
            if bytes.len() != 32 {
                return Err(KeyError::Malformed(name));
            }
            Ok(PseudonymKey::from_bytes(&bytes))
        }

        /// From `BANKPIPE_PSEUDONYM_KEY` / `BANKPIPE_PSEUDONYM_KEY_FILE`; on the embedded
        /// warehouse with neither, generated once into `DATA_DIR/pseudonym.key` (0600).
        /// `Some(path)`: generated now.
        ///
        /// # Errors
        /// [`KeyError`].
        pub fn load(
            data_dir: &Path,
            embedded: bool,
        ) -> Result<(PseudonymKey, Option<PathBuf>), KeyError> {
            if let Ok(text) = std::env::var("BANKPIPE_PSEUDONYM_KEY")
                && !text.trim().is_empty()
            {
                return Ok((
                    PseudonymKey::from_base64(&text, "BANKPIPE_PSEUDONYM_KEY")?,
                    None,
                ));
            }
            let read = |path: &Path, name| {
                let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
                    path: path.to_owned(),
                    source,
                })?;
                PseudonymKey::from_base64(&text, name)
            };
            if let Some(path) = std::env::var_os("BANKPIPE_PSEUDONYM_KEY_FILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
            {
                return Ok((read(&path, "BANKPIPE_PSEUDONYM_KEY_FILE")?, None));
            }
            if !embedded {
                return Err(KeyError::Missing);
            }
            let path = data_dir.join("pseudonym.key");
            if path.exists() {
                return Ok((read(&path, "DATA_DIR/pseudonym.key")?, None));
            }
            let mut bytes = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| KeyError::Missing)?;
            let file_err = |source| KeyError::File {
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(data_dir).map_err(file_err)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(file_err)?;
            std::io::Write::write_all(&mut file, format!("{}\n", B64.encode(bytes)).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(file_err)?;
            Ok((PseudonymKey::from_bytes(&bytes), Some(path)))
        }

        fn key(&self, kind: &str, id: &str) -> String {
            let mut ctx = ring::hmac::Context::with_key(&self.hmac);
            ctx.update(kind.as_bytes());
            ctx.update(b":");
            ctx.update(id.as_bytes());
            crate::hex::encode(&ctx.sign().as_ref()[..16])
        }

        /// Lowercase hex of the first 16 bytes of HMAC-SHA256(key, `"customer:" + id`).
        pub fn customer_key(&self, customer_id: &str) -> String {
            self.key("customer", customer_id)
        }

        /// The same with `"transaction:"`.
        pub fn transaction_key(&self, transaction_id: &str) -> String {
            self.key("transaction", transaction_id)
        }

        /// A hash of the key, never the key.
        pub fn key_id(&self) -> String {
            self.id.clone()
        }
    }
}

/// Stand-in for `export/drift.rs`.
pub mod drift {
    use std::collections::BTreeMap;

    /// One feature's values in one quarter.
    #[derive(Debug, Clone)]
    pub enum Values {
        /// A number per row, or null.
        Numeric(Vec<Option<f64>>),
        /// A category per row, or null.
        Categorical(Vec<Option<String>>),
    }

    /// Drift of one feature between two quarters.
    #[derive(serde::Serialize, Clone, Debug)]
    pub struct FeatureDrift {
        /// Feature name.
        pub feature: String,
        /// `numeric` or `categorical`.
        pub kind: String,
        /// Population stability index.
        pub psi: f64,
        /// Null share in the previous quarter.
        pub null_rate_prev: f64,
        /// Null share now.
        pub null_rate_cur: f64,
        /// PSI ≥ 0.2 or the null rate moved by ≥ 0.05.
        pub flagged: bool,
        /// Bin labels.
        pub bins: Vec<String>,
        /// Share of non-null previous values per bin.
        pub prev_shares: Vec<f64>,
        /// Share of non-null current values per bin.
        pub cur_shares: Vec<f64>,
    }

    const FLOOR: f64 = 0.0001;

    fn psi(prev: &[f64], cur: &[f64]) -> f64 {
        prev.iter()
            .zip(cur)
            .map(|(p, c)| {
                let (p, c) = (p.max(FLOOR), c.max(FLOOR));
                (c - p) * (c / p).ln()
            })
            .sum()
    }

    fn shares(counts: &[u64]) -> Vec<f64> {
        let n: u64 = counts.iter().sum();
        counts
            .iter()
            .map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 })
            .collect()
    }

    fn null_rate<T>(v: &[Option<T>]) -> f64 {
        if v.is_empty() {
            0.0
        } else {
            v.iter().filter(|x| x.is_none()).count() as f64 / v.len() as f64
        }
    }

    /// Compares one feature's values now with the previous quarter's.
    pub fn compare(feature: &str, prev: &Values, cur: &Values) -> FeatureDrift {
        let (kind, bins, p, c, nr_prev, nr_cur) = match (prev, cur) {
            (Values::Numeric(prev), Values::Numeric(cur)) => {
                let mut sorted: Vec<f64> = prev.iter().flatten().copied().collect();
                sorted.sort_by(f64::total_cmp);
                let mut edges: Vec<f64> = (1..10)
                    .filter_map(|i| sorted.get(sorted.len() * i / 10).copied())
                    .collect();
                edges.dedup();
                let bin = |x: f64| edges.partition_point(|e| *e <= x);
                let count = |v: &[Option<f64>]| {
                    let mut counts = vec![0u64; edges.len() + 1];
                    for x in v.iter().flatten() {
                        counts[bin(*x)] += 1;
                    }
                    counts
                };
                let labels = (0..=edges.len())
                    .map(
                        |i| match (i.checked_sub(1).map(|j| edges[j]), edges.get(i)) {
                            (None, Some(hi)) => format!("< {hi}"),
                            (Some(lo), Some(hi)) => format!("{lo} – {hi}"),
                            (Some(lo), None) => format!("≥ {lo}"),
                            (None, None) => "all".to_owned(),
                        },
                    )
                    .collect();
                (
                    "numeric",
                    labels,
                    shares(&count(prev)),
                    shares(&count(cur)),
                    null_rate(prev),
                    null_rate(cur),
                )
            }
            (Values::Categorical(prev), Values::Categorical(cur)) => {
                let mut freq: BTreeMap<&str, u64> = BTreeMap::new();
                for v in prev.iter().flatten() {
                    *freq.entry(v).or_default() += 1;
                }
                let mut top: Vec<(&str, u64)> = freq.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                top.truncate(20);
                let mut labels: Vec<String> = top.iter().map(|(v, _)| (*v).to_owned()).collect();
                labels.push("other".to_owned());
                let count = |v: &[Option<String>]| {
                    let mut counts = vec![0u64; labels.len()];
                    for x in v.iter().flatten() {
                        let i = labels[..labels.len() - 1]
                            .iter()
                            .position(|l| l == x)
                            .unwrap_or(labels.len() - 1);
                        counts[i] += 1;
                    }
                    counts
                };
                let (p, c) = (shares(&count(prev)), shares(&count(cur)));
                ("categorical", labels, p, c, null_rate(prev), null_rate(cur))
            }
            _ => ("mismatched", Vec::new(), Vec::new(), Vec::new(), 0.0, 0.0),
        };
        let psi = psi(&p, &c);
        FeatureDrift {
            feature: feature.to_owned(),
            kind: kind.to_owned(),
            psi,
            null_rate_prev: nr_prev,
            null_rate_cur: nr_cur,
            flagged: psi >= 0.2 || (nr_cur - nr_prev).abs() >= 0.05,
            bins,
            prev_shares: p,
            cur_shares: c,
        }
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// A self-contained HTML page: flagged features first.
    pub fn render_html(quarter: &str, previous: Option<&str>, features: &[FeatureDrift]) -> String {
        let mut html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drift {q}</title></head><body><h1>Drift {q}</h1>",
            q = escape(quarter)
        );
        match previous {
            None => html.push_str("<p>First quarter: there is nothing to compare.</p>"),
            Some(p) => {
                html.push_str(&format!("<p>Against {}.</p><table><tr><th>feature</th><th>PSI</th><th>null rate before</th><th>null rate now</th><th>flagged</th></tr>", escape(p)));
                let mut order: Vec<&FeatureDrift> = features.iter().collect();
                order.sort_by_key(|f| !f.flagged);
                for f in order {
                    html.push_str(&format!(
                        "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                        escape(&f.feature),
                        f.psi,
                        f.null_rate_prev,
                        f.null_rate_cur,
                        f.flagged
                    ));
                }
                html.push_str("</table>");
            }
        }
        html.push_str("</body></html>\n");
        html
    }
}
