//! `bankpipe pseudonymise` through the real binary: where the key comes from (the data
//! folder's key file that an export made, never a new one; the variables; refused on
//! PostgreSQL without them), what a bad key says, input from stdin and from a file, the
//! CSV it prints, and a closed pipe.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// bytes 0..32.
const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Under [`KEY_B64`], computed with Python's `hmac` module:
/// `hmac.new(bytes(range(32)), b"customer:C1010011", hashlib.sha256).hexdigest()[:32]`.
const C1010011: &str = "d19f4404986715aa886af927d220eef0";
/// `...b"transaction:T1"...`
const T1: &str = "7649fb1fc63adbf4c14ef402979fb4b0";

/// A temporary data folder, and the binary run against it with a clean environment.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn key_file(&self) -> PathBuf {
        self.path().join("pseudonym.key")
    }

    fn cmd(&self) -> Command {
        let mut c = self.cmd_without_data_dir();
        c.arg("--data-dir").arg(self.path());
        c
    }

    /// The binary in the work folder, clean environment, no `--data-dir`.
    fn cmd_without_data_dir(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(self.path())
            .env_remove("BANKPIPE_WAREHOUSE_URL")
            .env_remove("BANKPIPE_LAKE_URL")
            .env_remove("BANKPIPE_INBOX")
            .env_remove("BANKPIPE_DATA_DIR")
            .env_remove("BANKPIPE_CONFIG")
            .env_remove("BANKPIPE_MASTER_KEY")
            .env_remove("BANKPIPE_MASTER_KEY_FILE")
            .env_remove("BANKPIPE_PSEUDONYM_KEY")
            .env_remove("BANKPIPE_PSEUDONYM_KEY_FILE")
            .env("BANKPIPE_LOG", "warn");
        c
    }

    /// Runs `pseudonymise` with `args`, feeding `stdin`.
    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut c = self.cmd();
        c.arg("pseudonymise").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            // The command may stop reading early (an error): ignore a closed pipe.
            let _ = input.write_all(&stdin);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The data lines (without the header) of a successful run.
fn rows(out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("id,key"), "{stdout}");
    lines.map(str::to_owned).collect()
}

#[test]
fn key_from_the_variable_matches_the_published_formula() {
    let w = Workdir::new();
    let env = [("BANKPIPE_PSEUDONYM_KEY", KEY_B64)];
    let out = w.run(&["--kind", "customer"], &env, b"C1010011\n");
    assert_eq!(rows(&out), [format!("C1010011,{C1010011}")]);
    let out = w.run(&["--kind", "transaction", "-"], &env, b"T1\n");
    assert_eq!(rows(&out), [format!("T1,{T1}")]);
    // A key from the variable is never written anywhere.
    assert!(!w.key_file().exists());
}

#[test]
fn key_from_a_file_as_text_or_raw_bytes() {
    let w = Workdir::new();
    let text_key = w.path().join("text.key");
    std::fs::write(&text_key, format!("{KEY_B64}\n")).unwrap();
    let raw_key = w.path().join("raw.key");
    std::fs::write(&raw_key, (0u8..32).collect::<Vec<_>>()).unwrap();
    for file in [&text_key, &raw_key] {
        let env = [("BANKPIPE_PSEUDONYM_KEY_FILE", file.to_str().unwrap())];
        let out = w.run(&["--kind", "customer"], &env, b"C1010011\n");
        assert_eq!(rows(&out), [format!("C1010011,{C1010011}")]);
    }
    assert!(!w.key_file().exists());
}

#[test]
fn never_generates_a_key_and_says_where_it_is_expected() {
    let w = Workdir::new();
    let out = w.run(&["--kind", "customer"], &[], b"C1\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(!w.key_file().exists(), "no key may be generated");
    assert_eq!(
        std::fs::read_dir(w.path()).unwrap().count(),
        0,
        "nothing written"
    );
    for needle in [
        "no pseudonym key",
        "BANKPIPE_PSEUDONYM_KEY ",
        "BANKPIPE_PSEUDONYM_KEY_FILE",
        "BANKPIPE_DATA_DIR",
        "never makes a key",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(
        err.contains(&w.key_file().display().to_string()),
        "names where the key is expected: {err}"
    );

    // A relative --data-dir is named as an absolute path.
    let out = w
        .cmd_without_data_dir()
        .env("BANKPIPE_DATA_DIR", "rel")
        .args(["pseudonymise", "--kind", "customer"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let expected = w.path().join("rel").join("pseudonym.key");
    let canonical = w
        .path()
        .canonicalize()
        .unwrap()
        .join("rel")
        .join("pseudonym.key");
    assert!(
        err.contains(&expected.display().to_string())
            || err.contains(&canonical.display().to_string()),
        "{err}"
    );
    assert!(!w.path().join("rel").exists());
}

#[test]
fn reads_the_key_file_an_export_made_in_the_data_folder() {
    let w = Workdir::new();
    // As `bankpipe export` writes it: base64 text and a newline, mode 0600.
    std::fs::write(w.key_file(), format!("{KEY_B64}\n")).unwrap();
    let out = w.run(&["--kind", "customer"], &[], b"C1010011\n");
    assert_eq!(rows(&out), [format!("C1010011,{C1010011}")]);
    assert!(
        !text(&out.stderr).contains("generated"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(w.key_file()).unwrap(),
        format!("{KEY_B64}\n")
    );
}

#[test]
fn bad_key_exits_2_saying_how_without_the_key() {
    let w = Workdir::new();
    let secret = "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0";
    for env in [
        vec![("BANKPIPE_PSEUDONYM_KEY", secret)],
        vec![("BANKPIPE_PSEUDONYM_KEY_FILE", secret)],
        vec![
            ("BANKPIPE_PSEUDONYM_KEY", KEY_B64),
            ("BANKPIPE_PSEUDONYM_KEY_FILE", secret),
        ],
    ] {
        let out = w.run(&["--kind", "customer"], &env, b"C1\n");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(out.stdout.is_empty(), "{env:?}");
        assert!(
            err.contains("BANKPIPE_PSEUDONYM_KEY ") && err.contains("BANKPIPE_PSEUDONYM_KEY_FILE"),
            "{env:?}: {err}"
        );
        assert!(err.contains("base64 of 32"), "{env:?}: {err}");
        assert!(
            !err.contains(secret) && !err.contains(KEY_B64),
            "{env:?}: {err}"
        );
    }
    assert!(
        !w.key_file().exists(),
        "a bad key is never replaced by a generated one"
    );
}

#[test]
fn required_on_postgres() {
    let w = Workdir::new();
    // The warehouse is never contacted: the URL only says the key must be shared.
    let env = [(
        "BANKPIPE_WAREHOUSE_URL",
        "postgres://bankpipe:pw@127.0.0.1:1/bankpipe",
    )];
    let out = w.run(&["--kind", "customer"], &env, b"C1\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("PostgreSQL") && err.contains("BANKPIPE_PSEUDONYM_KEY_FILE"),
        "{err}"
    );
    assert!(!w.key_file().exists());
    let env = [env[0], ("BANKPIPE_PSEUDONYM_KEY", KEY_B64)];
    assert_eq!(
        rows(&w.run(&["--kind", "customer"], &env, b"C1010011\n")),
        [format!("C1010011,{C1010011}")]
    );
}

#[test]
fn stdin_and_file_give_the_same_csv() {
    let w = Workdir::new();
    let env = [("BANKPIPE_PSEUDONYM_KEY", KEY_B64)];
    // A byte order mark, CRLF, blanks around ids, a blank line, ids that need quoting.
    let input =
        "\u{feff}C1010011\r\n\n  C1010011 \t\na,b\nsay \"hi\"\n\u{fc}\nlast-without-newline";
    let from_stdin = rows(&w.run(&["--kind", "customer"], &env, input.as_bytes()));
    let file = w.path().join("ids.txt");
    std::fs::write(&file, input).unwrap();
    let out = w.run(&["--kind", "customer", file.to_str().unwrap()], &env, b"");
    assert_eq!(rows(&out), from_stdin);
    let ids: Vec<&str> = from_stdin
        .iter()
        .map(|l| l.rsplit_once(',').unwrap().0)
        .collect();
    assert_eq!(
        ids,
        [
            "C1010011",
            "C1010011",
            "\"a,b\"",
            "\"say \"\"hi\"\"\"",
            "\u{fc}",
            "last-without-newline"
        ]
    );
    assert_eq!(from_stdin[0], format!("C1010011,{C1010011}"));
    assert_eq!(from_stdin[1], from_stdin[0]);
    for line in &from_stdin {
        let key = line.rsplit_once(',').unwrap().1;
        assert!(
            key.len() == 32
                && key
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}

#[test]
fn unreadable_input() {
    let w = Workdir::new();
    let env = [("BANKPIPE_PSEUDONYM_KEY", KEY_B64)];
    let out = w.run(&["--kind", "customer", "no-such-file.txt"], &env, b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no-such-file.txt"));
    let out = w.run(&["--kind", "customer"], &env, b"C1\n\xff\xfe\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("line 2 of standard input is not UTF-8"));
    let out = w.run(&["--kind", "nobody"], &env, b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_pipe_ends_quietly() {
    let w = Workdir::new();
    let input = w.path().join("many.txt");
    let ids: String = (0..200_000).map(|i| format!("C{i}\n")).collect();
    std::fs::write(&input, ids).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = w
        .cmd()
        .args(["pseudonymise", "--kind", "customer"])
        .arg(&input)
        .env("BANKPIPE_PSEUDONYM_KEY", KEY_B64)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.stdout.is_empty(), "stdout went to the closed pipe");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}
