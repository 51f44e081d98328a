//! Every cargo-fuzz target, briefly, on the stable toolchain: how CI runs the fuzz
//! targets (issue #13). For each target, every committed seed of `fuzz/corpus/<target>/`
//! is replayed through the target's body (`fuzz/harness.rs`, the same code the
//! libFuzzer binaries run), then a bounded number of pseudo-random inputs: mutations of
//! the seeds (bit flips, interesting bytes, insertions, deletions, duplications,
//! splices) and random bytes. The seed of the generator is printed; set
//! `FUZZ_REPLAY_SEED` to replay a run. A property that fails panics, and the input is
//! printed (hex) with where it came from.
//!
//! The long runs are cargo-fuzz's (`cargo +nightly fuzz run <target>`), not this test:
//! see docs/RELIABILITY.md, "Fuzzing".

#[allow(dead_code)]
#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// Generated inputs per target after the seeds: a few seconds for all five in a debug
/// build.
const GENERATED: usize = 1000;

/// SplitMix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that matter to the parsers under test.
const INTERESTING: &[u8] = b"\0\n\r\"',;|\t{}[]:.-+0159eE \\\xff\xef\xbb\xbf%#=";

fn mutate(rng: &mut Rng, seeds: &[(PathBuf, Vec<u8>)], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    let b = if rng.below(2) == 0 {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.byte()
                    };
                    input.insert(at.min(input.len()), b);
                }
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                input.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let piece = input[at..at + n].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, piece);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())].1;
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(512));
                    let to = rng.below(input.len() + 1);
                    input.splice(to..to, other[from..from + n].iter().copied());
                }
            }
            6 if len > 1 => input.truncate(rng.below(len)),
            _ if len > 0 => {
                // Keep the control bytes, change the rest.
                let at = rng.below(len);
                input[at] = rng.byte();
            }
            _ => input.push(rng.byte()),
        }
    }
}

fn seeds_of(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest an input may take before it counts as a hang (generous: a debug build on a
/// loaded machine takes milliseconds per input; a hang never ends).
const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `body` on `input` on a thread of its own; on a panic, or when it has not
/// finished after [`HANG`], says which input it was and fails.
fn run_one(target: &str, from: &str, body: fn(&[u8]), input: &[u8]) {
    let say = |what: &str| {
        eprintln!(
            "fuzz_replay {target}: {what} on {from} ({} bytes): {}",
            input.len(),
            hex(&input[..input.len().min(4096)])
        );
    };
    let (done, outcome) = std::sync::mpsc::channel();
    let owned = input.to_vec();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| body(&owned));
        let _ = done.send(result);
    });
    match outcome.recv_timeout(HANG) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => {
            say("the property failed");
            std::panic::resume_unwind(panic);
        }
        Err(_) => {
            say("no end (a hang)");
            panic!("{target}: {from} did not finish within {HANG:?}");
        }
    }
}

fn replay(target: &str) {
    let body = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .expect("a harness target");
    let seeds = seeds_of(target);
    assert!(
        !seeds.is_empty(),
        "no seeds under fuzz/corpus/{target}: commit some"
    );
    for (path, bytes) in &seeds {
        run_one(target, &path.display().to_string(), body, bytes);
    }
    let seed = std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!(
        "fuzz_replay {target}: {} seeds replayed; {GENERATED} generated inputs from seed {seed} \
         (FUZZ_REPLAY_SEED={seed} replays them)",
        seeds.len()
    );
    let mut rng = Rng(seed);
    for n in 0..GENERATED {
        let input = if n % 10 == 9 {
            (0..rng.below(512)).map(|_| rng.byte()).collect()
        } else {
            let mut input = seeds[rng.below(seeds.len())].1.clone();
            mutate(&mut rng, &seeds, &mut input);
            input
        };
        run_one(
            target,
            &format!("generated input {n} of seed {seed}"),
            body,
            &input,
        );
    }
}

#[test]
fn splitter() {
    replay("splitter");
}

#[test]
fn cells() {
    replay("cells");
}

#[test]
fn row_contract() {
    replay("row_contract");
}

#[test]
fn encrypted_reader() {
    replay("encrypted_reader");
}

#[test]
fn config() {
    replay("config");
}

/// Every target has a test above and a cargo-fuzz binary.
#[test]
fn every_target_is_replayed_and_built() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (name, _) in harness::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} has no [[bin]] in fuzz/Cargo.toml"
        );
        let this = include_str!("fuzz_replay.rs");
        assert!(
            this.contains(&format!("replay(\"{name}\")")),
            "{name} is not replayed"
        );
    }
}

/// Prints a new wrapped test data key for `harness::TEST_WRAPPED_KEY` (the encrypted
/// seeds must then be made again: `make_encrypted_seeds`).
#[test]
#[ignore = "makes the fuzz key material: run by hand"]
fn make_test_data_key() {
    let master = bankpipe::crypt::MasterKey::from_bytes(&harness::TEST_MASTER_KEY, "test")
        .expect("32 bytes");
    let (_, sealed) = master
        .new_data_key(harness::TEST_OBJECT)
        .expect("random data key");
    println!("{}", sealed.wrapped);
}

/// Writes the encrypted-reader seeds: real objects sealed by bankpipe's own writer
/// under the test data key (rows of the demo generator, an empty object), and the same
/// plaintexts as structured inputs.
#[test]
#[ignore = "writes fuzz/corpus/encrypted_reader: run by hand"]
fn make_encrypted_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/encrypted_reader");
    std::fs::create_dir_all(&dir).expect("corpus folder");
    let key = harness::test_data_key();
    let rows = b"TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)\nT1,C5841053,10/1/94,F,JAMSHEDPUR,17819.05,2/8/16,143207,25\nT2,C2142763,4/4/57,M,JHAJJAR,2270.69,2/8/16,141858,27999\n";
    for (name, mode, plain) in [
        ("seed-object-rows", 0u8, &rows[..]),
        ("seed-object-rows-with-length", 2, &rows[..]),
        ("seed-object-empty", 2, &b""[..]),
    ] {
        let mut file = vec![mode];
        file.extend(harness::seal(&key, plain, 7));
        std::fs::write(dir.join(name), file).expect("seed");
    }
}
