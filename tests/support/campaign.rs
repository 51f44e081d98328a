//! What the crash and fault campaign (`tests/campaign_crash.rs`) needs besides the
//! warehouse snapshot: a seeded, printed, reproducible source of random moments; the
//! three monthly files; processes run with a bound and killed at a moment; a small tmpfs
//! for full-disk faults; a look at what a lake folder physically holds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bankpipe::generate::{GenerateOptions, OutputFormat, generate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The variable that replays a campaign: its moments (and which worker is killed) are a
/// pure function of this seed.
pub const SEED_VAR: &str = "BANKPIPE_CAMPAIGN_SEED";

/// A seeded random source; the seed is printed, and taken from [`SEED_VAR`] when set.
pub struct Moments {
    pub seed: u64,
    rng: ChaCha8Rng,
}

impl Moments {
    /// The seed from [`SEED_VAR`], or a fresh one (printed either way, with how to replay
    /// it). `salt` separates the tests of one campaign run that share a seed.
    pub fn new(test: &str, salt: u64) -> Moments {
        let seed = match std::env::var(SEED_VAR) {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{SEED_VAR}={s:?} is not a number: {e}")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        eprintln!("{test}: campaign seed {seed} (replay with {SEED_VAR}={seed})");
        Moments {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// A duration drawn uniformly in `[0, max]`.
    pub fn within(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros() as u64;
        Duration::from_micros(self.rng.random_range(0..=micros))
    }

    /// An index drawn uniformly in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n as u64) as usize
    }
}

/// Writes a generated Kaggle-layout CSV file and returns its rows as lines (header
/// first), for building overlaps.
pub fn generated(opts: &GenerateOptions) -> Vec<u8> {
    let mut out = Vec::new();
    generate(opts, &mut out).expect("generating rows in memory");
    out
}

/// The three monthly files of the campaign, realistic as bank exports are:
///
/// - `2016-07.csv`: `rows` rows of July 2016, 1% defects.
/// - `2016-08.csv`: `rows` rows of August, 1% defects, whose first 2% of ids were
///   already sent in July with other content (rejected `conflicting_duplicate`), and
///   that ends with 1% of July's rows sent again unchanged (identical duplicates,
///   recorded in `duplicate_rows`).
/// - `2016-09.csv.gz`: `rows` rows of September, gzip, 8% defects: about 7% of its
///   rows are rejected, so at the default `max_reject_share` (5%) the file **fails**
///   (loads nothing, keeps its rejects) and `reprocess --max-reject-share 0.2` loads it.
///
/// Deterministic: the same `rows` always give the same bytes.
pub fn monthly_files(inbox: &Path, rows: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(inbox).unwrap();
    let opts = |seed, month, first_id, defects| GenerateOptions {
        rows,
        seed,
        defects,
        format: OutputFormat::Csv,
        first_id,
        month: Some((2016, month)),
    };
    let jul = generated(&opts(701, 7, 1, 0.01));
    let overlap = rows / 50;
    let mut aug = generated(&opts(801, 8, rows + 1 - overlap, 0.01));
    let resent = (rows / 100) as usize;
    let jul_lines: Vec<&[u8]> = jul
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for line in &jul_lines[jul_lines.len() - resent..] {
        aug.extend_from_slice(line);
        aug.push(b'\n');
    }
    let sep = generated(&opts(901, 9, 3 * rows, 0.08));
    let paths = vec![
        inbox.join("2016-07.csv"),
        inbox.join("2016-08.csv"),
        inbox.join("2016-09.csv.gz"),
    ];
    std::fs::write(&paths[0], &jul).unwrap();
    std::fs::write(&paths[1], &aug).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        BufWriter::new(std::fs::File::create(&paths[2]).unwrap()),
        flate2::Compression::fast(),
    );
    gz.write_all(&sep).unwrap();
    gz.finish().unwrap().flush().unwrap();
    paths
}

/// Copies a folder tree (files and folders only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What a finished process wrote, and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// Both streams, for messages.
    pub fn text(&self) -> String {
        format!(
            "exit {:?} after {:.2} s\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// stdout as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.text()))
    }
}

/// Runs a command to its end, at most `limit` (then kills it and panics): every wait of
/// the campaign is bounded.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Finished {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("{cmd:?} still running after {limit:?}: killed"));
    Finished {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for a child at most `limit`; on timeout kills it (and returns `None`).
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How a process sent a `kill -9` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Killed (SIGKILL) while running.
    Killed,
    /// It had already exited, with this status, when its moment came.
    Exited(Option<i32>),
}

/// Starts `cmd` (stdout discarded, stderr to `log`), waits `delay`, then `kill -9`s it
/// unless it already ended.
pub fn kill_at(cmd: &mut Command, delay: Duration, log: &Path) -> Ended {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    std::thread::sleep(delay);
    match child.try_wait().unwrap() {
        Some(status) => Ended::Exited(status.code()),
        None => {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            Ended::Killed
        }
    }
}

/// What a local lake (or export) folder physically holds: objects by key with their
/// size, and the staging files of uploads that never completed (`<key>#<n>`, which
/// object_store's folder backend writes before renaming into place and never lists).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FolderContent {
    pub objects: BTreeMap<String, u64>,
    pub staging: Vec<String>,
}

/// Lists `root` recursively (empty when it does not exist).
pub fn folder_content(root: &Path) -> FolderContent {
    let mut out = FolderContent::default();
    fn walk(root: &Path, dir: &Path, out: &mut FolderContent) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
                continue;
            }
            let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let staged = key
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staged {
                out.staging.push(key);
            } else {
                out.objects.insert(key, e.metadata().unwrap().len());
            }
        }
    }
    walk(root, root, &mut out);
    out.staging.sort();
    out
}

/// A tmpfs of a given size mounted on a fresh folder (the tests run as root), unmounted
/// when dropped: a full disk on demand.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB. Panics (never skips) when mounting is not possible.
    pub fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("bankpipe-tmpfs-")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs on {} failed (the full-disk tests need root and \
             mount(8)): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grows (or shrinks) the mount, keeping its content: the operator freeing space.
    pub fn resize(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes free on the mount.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.dir.path())
            .output()
            .expect("running df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep the mount forever.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An `s3s-fs` server (the S3 test server of `tests/support/s3.rs`) that can be killed
/// and started again on the same port and data folder, and whose folder can be put on a
/// [`Tmpfs`]: the S3 store stopping mid-upload, or refusing writes.
pub struct S3Fs {
    child: Option<Child>,
    root: PathBuf,
    port: u16,
}

/// Access key the server accepts.
pub const S3_ACCESS_KEY: &str = "bankpipe-test";
/// Secret key the server accepts.
pub const S3_SECRET_KEY: &str = "S3cretKeyThatMustNeverLeak";

fn s3s_fs_binary() -> PathBuf {
    if let Ok(path) = std::env::var("S3S_FS_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut candidates = vec![
        PathBuf::from(&home).join(".cargo/bin/s3s-fs"),
        PathBuf::from("/usr/local/bin/s3s-fs"),
    ];
    if let Ok(path) = std::env::var("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("s3s-fs")));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "the S3 test server s3s-fs is not installed: run \
             `cargo install s3s-fs@0.14.1 --features binary` (or set S3S_FS_BIN)"
            )
        })
}

impl S3Fs {
    /// Starts a server on a free port, serving `root` (each sub-folder a bucket; the
    /// `buckets` are made).
    pub fn start(root: &Path, buckets: &[&str]) -> S3Fs {
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut s = S3Fs {
            child: None,
            root: root.to_owned(),
            port,
        };
        s.restart();
        s
    }

    /// Starts the server again (after [`S3Fs::kill`]) on the same port and folder.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut child = Command::new(s3s_fs_binary())
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(&self.root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let up = Instant::now() + Duration::from_secs(5);
            while Instant::now() < up {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port is still held by the old socket: try again
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("s3s-fs did not start again on port {}", self.port);
    }

    /// `kill -9` of the server: requests in flight are cut, later ones refused.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The folder holding the buckets (an object `k` of bucket `b` is `root/b/k`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The environment a client needs: endpoint, keys, region, plain HTTP.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// Multipart uploads the server has begun and not completed (its
    /// `.upload-<id>.json` files).
    pub fn uploads_in_progress(&self) -> usize {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with(".upload-") && n.ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for S3Fs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback TCP proxy in front of an S3 server that, while refusing, answers every
/// write (`PUT`, `POST`, `DELETE`) with `503 SlowDown` — what S3 answers when it
/// throttles or cannot take writes — and forwards everything else unchanged (requests
/// keep their SigV4 signatures: the proxy changes no signed header). Each request gets
/// its own upstream connection (`Connection: close`), so every request is inspected.
/// Not a mock of S3: the real server answers every request that is let through.
pub struct WriteRefusingProxy {
    port: u16,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl WriteRefusingProxy {
    /// Starts a proxy to `127.0.0.1:upstream`, refusing writes.
    pub fn start(upstream: u16) -> WriteRefusingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let refusing = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, n, s) = (refusing.clone(), refused.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (r, n) = (r.clone(), n.clone());
                        std::thread::spawn(move || {
                            let _ = proxy_one(client, upstream, &r, &n);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        WriteRefusingProxy {
            port,
            refusing,
            refused,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether writes are refused from now on.
    pub fn set_refusing(&self, on: bool) {
        self.refusing
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for WriteRefusingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: u16,
    refusing: &std::sync::atomic::AtomicBool,
    refused: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    use std::net::{Shutdown, TcpStream};
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The request head.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 || buf.len() > 1 << 20 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let method = head.split(' ').next().unwrap_or_default().to_owned();
    let write = matches!(method.as_str(), "PUT" | "POST" | "DELETE");
    if write && refusing.load(std::sync::atomic::Ordering::Relaxed) {
        // Read the body first, so that the client sees the answer, not a reset.
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut got = buf.len() - head_end;
        while got < length {
            let n = client.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }
    // Forward: the head without its Connection header, plus `Connection: close`.
    let mut forwarded = String::new();
    for line in head[..head.len() - 2].split_inclusive("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.push_str(line);
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(forwarded.as_bytes())?;
    up.write_all(&buf[head_end..])?;
    let (mut c2, mut u2) = (client.try_clone()?, up.try_clone()?);
    let to_upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = to_upstream.join();
    Ok(())
}

impl S3Fs {
    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}
