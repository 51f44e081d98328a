//! Inputs as real exports write them (issue 9), through the real binary, SQLite
//! warehouse and folder lake: delimiters, mixed date formats with per-format counts,
//! currency minor units, columns a profile does not map, JSON keys it does not use,
//! whitespace, the lake key of a mislabelled gzip file, and the inbox rules (no
//! recursion, `min_file_age`). The S3 inbox is in `tests/inbox_s3.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const KAGGLE: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// A temporary data folder with an inbox.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        let w = Workdir {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(w.inbox()).unwrap();
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn inbox(&self) -> PathBuf {
        self.path().join("inbox")
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.inbox().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn config(&self, toml: &str) {
        std::fs::write(self.path().join("bankpipe.toml"), toml).unwrap();
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(self.path())
            .arg("--data-dir")
            .arg(self.path());
        for var in [
            "BANKPIPE_WAREHOUSE_URL",
            "BANKPIPE_LAKE_URL",
            "BANKPIPE_INBOX",
            "BANKPIPE_DATA_DIR",
            "BANKPIPE_CONFIG",
            "BANKPIPE_MASTER_KEY",
            "BANKPIPE_MASTER_KEY_FILE",
            "BANKPIPE_MIN_FILE_AGE",
        ] {
            c.env_remove(var);
        }
        c.env("BANKPIPE_LOG", "warn").stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `bankpipe <args> --json`: the one JSON object on stdout and the exit status.
    fn json(&self, args: &[&str]) -> (Value, i32) {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (v, out.status.code().unwrap())
    }

    fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(self.path().join("warehouse.db")).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Null => "NULL".to_owned(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                })
                .collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

fn file<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// The README's own profile example, which is semicolon-separated like most EUR
/// exports; kept in step with README.md by this test.
const README_PROFILE: &str = r#"
[[profile]]
name = "acme-eur"
currency = "EUR"              # or map a currency column
max_amount = "250000"
null_values = ["", "NA"]
# delimiter = ";"             # detected from the header when not given
[profile.columns]
transaction_id = "Ref"
customer_id = "Client"
transaction_date = "BookingDate"
transaction_time = "BookingTime"
amount = "Amount"
location = "City"
[profile.formats]
transaction_date = ["%d.%m.%y", "%d.%m.%Y"]  # tried in order
transaction_time = "iso"       # hhmmss (integer, Kaggle), iso (HH:MM:SS), or strftime
"#;

#[test]
fn the_readme_eur_example_is_semicolon_separated_and_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(README_PROFILE.trim()),
        "README.md's profile example differs from the one tested here"
    );
    let w = Workdir::new();
    w.config(README_PROFILE);
    w.put(
        "acme.csv",
        "Ref;Client;BookingDate;BookingTime;Amount;City\n\
         A1;K1;02.08.2016;10:11:12;12.50;\"Saint-Denis; Paris\"\n\
         A2;K1;03.08.16;10:11:12;7;Lyon\n\
         A3;K1;2016-08-04;10:11:12;1;Lyon\n",
    );
    let (r, code) = w.json(&["run", "--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "acme.csv");
    assert_eq!(f["profile"], "acme-eur", "{f}");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(f["rejects"]["invalid_transaction_date"], 1, "{f}");
    assert_eq!(
        f["formats"]["transaction_date"],
        serde_json::json!({"%d.%m.%Y": 1, "%d.%m.%y": 1})
    );
    assert_eq!(
        f["warnings"],
        serde_json::json!({}),
        "no dob/gender/balance columns"
    );
    assert_eq!(
        w.query("SELECT transaction_id, amount, location FROM transactions ORDER BY 1"),
        [
            ["A1", "12.50", "Saint-Denis; Paris"],
            ["A2", "7.00", "Lyon"]
        ]
    );
}

#[test]
fn tab_and_pipe_files_and_a_profile_that_names_its_delimiter() {
    let w = Workdir::new();
    w.config(
        r#"
[[profile]]
name = "pipes"
currency = "EUR"
delimiter = "|"
[profile.columns]
transaction_id = "id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
"#,
    );
    let tab = KAGGLE.replace(',', "\t");
    w.put(
        "tab.tsv",
        format!("{tab}\nT1\tC1\t10/1/94\tF\tX, Y\t1.00\t2/8/16\t143207\t25.0\n"),
    );
    w.put(
        "pipe.csv",
        "id|customer|at|amount\nP1|C1|2016-08-02T10:00:00|1,5\nP2|C1|2016-08-02T10:00:00|2\n",
    );
    // The same header with commas matches no profile: "pipes" allows only `|`, and the
    // error says the header looks `,`-separated.
    w.put(
        "commas.csv",
        "id,customer,at,amount\nQ1,C1,2016-08-02T10:00:00,2\n",
    );
    let (r, code) = w.json(&["run", "--max-reject-share", "0.5"]);
    assert_eq!(code, 1, "{r}");
    let f = file(&r, "tab.tsv");
    assert_eq!(
        (&f["profile"], &f["rows_loaded"]),
        (&"kaggle-bank".into(), &1.into()),
        "{f}"
    );
    let f = file(&r, "pipe.csv");
    assert_eq!(f["profile"], "pipes");
    assert_eq!(f["rows_loaded"], 1);
    assert_eq!(
        f["rejects"]["invalid_amount"], 1,
        "`1,5` is not a plain decimal"
    );
    let f = file(&r, "commas.csv");
    assert_eq!(f["status"], "failed");
    assert_eq!(
        f["error"],
        "the header does not split at \"|\" (profile pipes says delimiter = \"|\"): it looks \
         \",\"-separated; set delimiter = \",\" in the profile, or remove delimiter to have it \
         detected",
        "{f}"
    );
    assert_eq!(
        w.query("SELECT location FROM transactions WHERE transaction_id = 'T1'"),
        [["X, Y"]]
    );
}

#[test]
fn mixed_kaggle_dates_load_and_each_format_is_counted_in_run_and_files() {
    let w = Workdir::new();
    let mut text = format!("{KAGGLE}\n");
    for (i, date) in ["2/8/16", "2/8/2016", "21-10-2016", "3/8/16", "13/1/16"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!("T{i},C1,10/1/94,F,X,1.00,{date},143207,25.0\n"));
    }
    text.push_str("T9,C1,1/1/1800,F,X,1.00,1/13/16,143207,25.0\n");
    w.put("mixed.csv", text);
    let (r, code) = w.json(&["run", "--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "mixed.csv");
    assert_eq!(f["rows_loaded"], 5, "{f}");
    assert_eq!(
        f["rejects"]["invalid_transaction_date"], 1,
        "month-first is never guessed"
    );
    let want = serde_json::json!({
        "transaction_date": {"d/m/yy": 3, "d/m/yyyy": 1, "d-m-yyyy": 1},
        "transaction_time": {"hhmmss": 5},
        "customer_dob": {"d/m/yy": 5},
    });
    assert_eq!(f["formats"], want, "{f}");
    assert_eq!(
        w.query("SELECT transaction_at FROM transactions WHERE transaction_id = 'T2'"),
        [["2016-10-21 14:32:07"]]
    );
    // Stored in the warehouse: `files --json` shows the same counts.
    let (files, code) = w.json(&["files"]);
    assert_eq!(code, 0);
    let entry = files
        .as_array()
        .or_else(|| files["files"].as_array())
        .unwrap_or_else(|| panic!("{files}"))
        .iter()
        .find(|e| e["original_name"] == "mixed.csv")
        .unwrap()
        .clone();
    assert_eq!(entry["formats"], want, "{entry}");
    // `check` reports them too.
    let (c, _) = w.json(&["check", "inbox/mixed.csv"]);
    assert_eq!(file(&c, "inbox/mixed.csv")["formats"], want, "{c}");
}

/// `formats` describes the file's layout: every value that parsed with a format, in the
/// rows that passed validation, whatever the load then made of them: rows loaded,
/// identical duplicates, conflicting duplicates (rejected at load), and birth dates set
/// aside with a warning. Rows that failed validation are counted under `rejects` only.
#[test]
fn formats_count_every_valid_row_also_duplicates_conflicts_and_set_aside_dobs() {
    let w = Workdir::new();
    w.put(
        "a.csv",
        format!(
            "{KAGGLE}\nA1,C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\n\
             A2,C1,10/1/94,F,X,1.00,2/8/16,143207,30.0\n"
        ),
    );
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0, "{r}");
    w.put(
        "b.csv",
        format!(
            "{KAGGLE}\n\
             A1,C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\n\
             A2,C1,10/1/94,F,X,1.00,2/8/16,143207,99.0\n\
             B1,C2,1/1/1800,M,Y,1.00,2/8/2016,143207,5.0\n\
             B2,C3,10/1/2020,M,Y,1.00,3/8/16,143207,6.0\n\
             B3,C4,10/1/94,M,Y,1.00,3/8/16,143207,-1.0\n"
        ),
    );
    let (r, code) = w.json(&["run", "--max-reject-share", "0.9"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "b.csv");
    assert_eq!(
        (&f["rows_loaded"], &f["rows_duplicate"], &f["rows_rejected"]),
        (&Value::from(2), &Value::from(1), &Value::from(2)),
        "{f}"
    );
    assert_eq!(
        f["rejects"],
        serde_json::json!({"conflicting_duplicate": 1, "negative_amount": 1}),
        "{f}"
    );
    assert_eq!(
        f["warnings"],
        serde_json::json!({"placeholder_dob": 1, "dob_after_transaction": 1}),
        "{f}"
    );
    // loaded 2 + duplicate 1 + conflicting_duplicate 1; the negative amount is not a
    // valid row.
    let want = serde_json::json!({
        "transaction_date": {"d/m/yy": 3, "d/m/yyyy": 1},
        "transaction_time": {"hhmmss": 4},
        "customer_dob": {"d/m/yy": 2, "d/m/yyyy": 2},
    });
    assert_eq!(f["formats"], want, "{f}");
    let total: u64 = f["formats"]["transaction_date"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        f["rows_loaded"].as_u64().unwrap()
            + f["rows_duplicate"].as_u64().unwrap()
            + f["rejects"]["conflicting_duplicate"].as_u64().unwrap()
    );
    // As stored (`files --json`, table `file_formats`) and as `check` sees the file.
    let (files, code) = w.json(&["files"]);
    assert_eq!(code, 0);
    let entry = files
        .as_array()
        .unwrap_or_else(|| panic!("{files}"))
        .iter()
        .find(|e| e["original_name"] == "b.csv")
        .unwrap()
        .clone();
    assert_eq!(entry["formats"], want, "{entry}");
    let (c, _) = w.json(&["check", "inbox/b.csv"]);
    assert_eq!(file(&c, "inbox/b.csv")["formats"], want, "{c}");
}

#[test]
fn amounts_follow_the_currency_minor_units_unless_amount_scale_says_otherwise() {
    let w = Workdir::new();
    let profile = |name: &str, currency: &str, extra: &str| {
        format!(
            r#"
[[profile]]
name = "{name}"
currency = "{currency}"
{extra}
[profile.columns]
transaction_id = "{name}_id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
"#
        )
    };
    w.config(&format!(
        "{}{}{}",
        profile("yen", "JPY", ""),
        profile("dinar", "KWD", ""),
        profile("yen2", "JPY", "amount_scale = 2")
    ));
    let at = "2016-08-02T10:00:00";
    w.put(
        "yen.csv",
        format!("yen_id,customer,at,amount\nY1,C,{at},100\nY2,C,{at},100.5\nY3,C,{at},7.0\n"),
    );
    w.put(
        "dinar.csv",
        format!("dinar_id,customer,at,amount\nD1,C,{at},1.234\nD2,C,{at},2\n"),
    );
    w.put(
        "yen2.csv",
        format!("yen2_id,customer,at,amount\nZ1,C,{at},100.5\n"),
    );
    // The canonical profile has a currency column: each row's amount must fit its own
    // currency, amounts are kept at 2 decimals.
    w.put(
        "canonical.csv",
        format!(
            "transaction_id,customer_id,transaction_at,amount,currency\n\
             K1,C,{at},100.5,JPY\nK2,C,{at},100,JPY\nK3,C,{at},100.5,EUR\n"
        ),
    );
    let (r, code) = w.json(&["run", "--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "yen.csv");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(f["rejects"]["invalid_amount"], 1);
    assert_eq!(f["amount_loaded"], "107");
    let f = file(&r, "dinar.csv");
    assert_eq!(
        (&f["rows_loaded"], &f["amount_loaded"]),
        (&2.into(), &"3.234".into())
    );
    assert_eq!(file(&r, "yen2.csv")["amount_loaded"], "100.50");
    let f = file(&r, "canonical.csv");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(f["rejects"]["invalid_amount"], 1);
    assert_eq!(
        w.query(
            "SELECT transaction_id, amount, currency FROM transactions ORDER BY transaction_id"
        ),
        [
            ["D1", "1.234", "KWD"],
            ["D2", "2.000", "KWD"],
            ["K2", "100.00", "JPY"],
            ["K3", "100.50", "EUR"],
            ["Y1", "100", "JPY"],
            ["Y3", "7", "JPY"],
            ["Z1", "100.50", "JPY"],
        ]
    );
    // The catalog's totals are at each file's scale too.
    assert_eq!(
        w.query("SELECT amount_loaded FROM files WHERE original_name = 'yen.csv'"),
        [["107"]]
    );
}

/// A fixed currency ISO 4217 does not list is a configuration error (exit 2) naming
/// the profile and the code, unless the profile says its amount scale itself.
#[test]
fn a_mistyped_fixed_currency_stops_at_config_load_unless_amount_scale_is_given() {
    let w = Workdir::new();
    let profile = |currency: &str, extra: &str| {
        format!(
            r#"
[[profile]]
name = "yen"
currency = "{currency}"
{extra}
[profile.columns]
transaction_id = "id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
"#
        )
    };
    w.put(
        "yen.csv",
        "id,customer,at,amount\nY1,C,2016-08-02T10:00:00,100\n",
    );
    w.config(&profile("JYP", ""));
    for args in [&["run"][..], &["check", "inbox/yen.csv"]] {
        let out = w.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("profile yen") && stderr.contains("\"JYP\"") && stderr.contains("JPY?"),
            "{stderr}"
        );
    }
    assert!(
        !w.path().join("warehouse.db").exists(),
        "nothing was created"
    );
    // A private code with an explicit scale loads at that scale.
    w.config(&profile("JYP", "amount_scale = 0"));
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(file(&r, "yen.csv")["amount_loaded"], "100");
    assert_eq!(w.query("SELECT currency FROM transactions"), [["JYP"]]);
}

#[test]
fn columns_a_file_lacks_give_no_warnings_and_unused_json_keys_may_nest() {
    let w = Workdir::new();
    let at = "2016-08-02T10:00:00";
    w.put(
        "lean.csv",
        format!("transaction_id,customer_id,transaction_at,amount,currency\nL1,C,{at},1,EUR\n"),
    );
    w.put(
        "nested.ndjson",
        format!(
            "{{\"transaction_id\":\"N1\",\"customer_id\":\"C\",\"transaction_at\":\"{at}\",\"amount\":1,\"currency\":\"EUR\",\"meta\":{{\"tags\":[1,2]}},\"gender\":\"F\"}}\n\
             {{\"transaction_id\":\"N2\",\"customer_id\":\"C\",\"transaction_at\":\"{at}\",\"amount\":2,\"currency\":\"EUR\",\"meta\":[],\"gender\":null}}\n"
        ),
    );
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "lean.csv");
    assert_eq!(f["rows_loaded"], 1);
    assert_eq!(f["warnings"], serde_json::json!({}), "{f}");
    let f = file(&r, "nested.ndjson");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(
        f["warnings"],
        serde_json::json!({"missing_gender": 1}),
        "a key the file has, null in one row, still warns"
    );
}

#[test]
fn whitespace_around_ids_dates_and_amounts_is_trimmed_and_blank_lines_skipped() {
    let w = Workdir::new();
    w.put(
        "ws.csv",
        format!(
            "{KAGGLE}\n\
             \" T1 \",\"C1 \",10/1/94,F,\" X \",1.00,\" 2/8/16\",\"143207 \",\" 25.0 \"\n\
             \x20\x20\t \n\
             \"  \",C2,10/1/94,F,X,1.00,2/8/16,143207,5\n\
             T3,\"\t\",10/1/94,F,X,1.00,2/8/16,143207,5\n"
        ),
    );
    let (r, code) = w.json(&["run", "--max-reject-share", "0.9"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "ws.csv");
    assert_eq!(f["rows_read"], 3, "the blank line is no row: {f}");
    assert_eq!(f["rows_loaded"], 1);
    assert_eq!(f["rejects"]["missing_transaction_id"], 1);
    assert_eq!(f["rejects"]["missing_customer_id"], 1);
    assert!(f["rejects"].get("malformed_row").is_none());
    assert_eq!(
        w.query("SELECT transaction_id, customer_id, amount, location FROM transactions"),
        [["T1", "C1", "25.00", " X "]]
    );
    let rejected = w.query("SELECT line_no FROM rejected_rows ORDER BY line_no");
    assert_eq!(
        rejected,
        [["4"], ["5"]],
        "line numbers count the blank line"
    );
}

#[test]
fn the_lake_key_extension_is_the_detected_format_and_compression() {
    use std::io::Write;
    let w = Workdir::new();
    let text = format!("{KAGGLE}\nT1,C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    w.put("really-gzip.csv", &gz);
    let zst = zstd::encode_all(text.replace("T1,", "T2,").as_bytes(), 1).unwrap();
    w.put("really-zstd.csv", &zst);
    w.put("plain.csv.gz", text.replace("T1,", "T3,"));
    // No inner extension: the key names the format read from the bytes.
    let gzip = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    w.put("c.gz", gzip(&text.replace("T1,", "T4,")));
    let record = |id: &str| {
        format!(
            "{{\"transaction_id\":\"{id}\",\"customer_id\":\"C\",\
             \"transaction_at\":\"2016-08-02T10:00:00\",\"amount\":\"1\",\"currency\":\"EUR\"}}"
        )
    };
    w.put("j.gz", gzip(&format!("[{}]\n", record("J1"))));
    w.put("n.gz", gzip(&format!("{}\n", record("N1"))));
    w.put("lines.jsonl", format!("{}\n", record("N2")));
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0, "{r}");
    for (name, ext) in [
        ("really-gzip.csv", ".csv.gz"),
        ("really-zstd.csv", ".csv.zst"),
        ("plain.csv.gz", ".csv"),
        ("c.gz", ".csv.gz"),
        ("j.gz", ".json.gz"),
        ("n.gz", ".ndjson.gz"),
        ("lines.jsonl", ".ndjson"),
    ] {
        let key = file(&r, name)["lake_key"].as_str().unwrap().to_owned();
        let sha = file(&r, name)["sha256"].as_str().unwrap().to_owned();
        assert!(key.ends_with(&format!("{sha}{ext}")), "{name}: {key}");
        assert!(w.path().join("lake").join(&key).exists(), "{key}");
    }
}

/// A file whose modification time is `secs` in the past.
fn age(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
        .unwrap();
}

fn kaggle_file(id: &str) -> String {
    format!("{KAGGLE}\n{id},C1,10/1/94,F,X,1.00,2/8/16,143207,25.0\n")
}

#[test]
fn the_folder_inbox_does_not_recurse_and_skips_files_younger_than_min_file_age() {
    let w = Workdir::new();
    let old = w.put("old.csv", kaggle_file("T1"));
    age(&old, 7200);
    w.put("fresh.csv", kaggle_file("T2"));
    let deep = w.put("sub/deep.csv", kaggle_file("T3"));
    age(&deep, 7200);
    let (r, code) = w.json(&["run", "--min-file-age", "1h"]);
    assert_eq!(code, 0, "a file too recent is not a failure: {r}");
    assert_eq!(r["status"], "ok");
    let names: Vec<&str> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["old.csv", "fresh.csv"],
        "sub-folders are not searched"
    );
    assert_eq!(file(&r, "old.csv")["status"], "loaded");
    let f = file(&r, "fresh.csv");
    assert_eq!(f["status"], "too_recent", "{f}");
    assert!(f["error"].is_null());
    let reason = f["reason"].as_str().unwrap();
    assert!(reason.contains("min_file_age is 3600s"), "{reason}");
    assert_eq!(
        w.query("SELECT counts FROM runs")
            .iter()
            .filter(|c| c[0].contains("\"too_recent\":1"))
            .count(),
        1,
        "the run summary counts it"
    );
    // The table says so too; from the environment this time.
    let out = w
        .cmd()
        .args(["run"])
        .env("BANKPIPE_MIN_FILE_AGE", "2h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("fresh.csv: too_recent: modified ") && table.contains("is 7200s"),
        "{table}"
    );
    // From the config file; once old enough, the file loads.
    w.config("min_file_age = \"30s\"\n");
    let (r, _) = w.json(&["run"]);
    assert_eq!(file(&r, "fresh.csv")["status"], "too_recent");
    age(&w.inbox().join("fresh.csv"), 31);
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0);
    assert_eq!(file(&r, "fresh.csv")["status"], "loaded", "{r}");
    // The flag wins over the file; a bad value is a configuration error.
    let (r, _) = w.json(&["run", "--min-file-age", "0"]);
    assert_eq!(r["files"].as_array().unwrap().len(), 2, "{r}");
    for bad in ["30", "1d", "-5s"] {
        let out = w.run(&["run", &format!("--min-file-age={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--min-file-age"),
            "names the setting"
        );
    }
}

/// A JSON record's keys say only what that record has: an optional field the first
/// record omits is still read from every later record. An absent key is NULL without a
/// warning (like a column a CSV header lacks); a key holding null or "" warns.
#[test]
fn json_fields_the_first_record_omits_are_read_from_every_record() {
    let w = Workdir::new();
    w.config(
        r#"
[[profile]]
name = "lean-json"
currency = "EUR"
[profile.columns]
transaction_id = "id"
customer_id = "cust"
transaction_at = "at"
amount = "amt"
customer_dob = "dob"
gender = "sex"
"#,
    );
    let at = "2016-08-02T10:00:00";
    w.put(
        "people.json",
        format!(
            "[{{\"id\":\"A1\",\"cust\":\"C\",\"at\":\"{at}\",\"amt\":\"1\"}},\n\
             {{\"id\":\"A2\",\"cust\":\"C\",\"at\":\"{at}\",\"amt\":\"2\",\"dob\":\"1980-05-05\",\"sex\":\"F\"}},\n\
             {{\"id\":\"A3\",\"cust\":\"C\",\"at\":\"{at}\",\"amt\":\"3\",\"dob\":\"1800-01-01\",\"sex\":null}}]\n"
        ),
    );
    let (r, code) = w.json(&["run"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "people.json");
    assert_eq!(f["rows_loaded"], 3, "{f}");
    assert_eq!(
        f["warnings"],
        serde_json::json!({"placeholder_dob": 1, "missing_gender": 1}),
        "{f}"
    );
    assert_eq!(
        f["formats"]["customer_dob"],
        serde_json::json!({"iso": 2}),
        "{f}"
    );
    assert_eq!(
        w.query("SELECT transaction_id, customer_dob, gender FROM transactions ORDER BY 1"),
        [
            ["A1", "NULL", "NULL"],
            ["A2", "1980-05-05", "F"],
            ["A3", "NULL", "NULL"]
        ]
    );
}

/// The built-in Kaggle profile in NDJSON: the first record omits null fields, its
/// customer id among them; it is rejected alone and the others load with every field.
#[test]
fn kaggle_ndjson_whose_first_record_omits_keys_loads_row_by_row() {
    let w = Workdir::new();
    let rec = |id: &str, cust: Option<&str>, dob: Option<&str>, sex: &str, loc: &str| {
        let mut s = format!("{{\"TransactionID\":\"{id}\"");
        if let Some(c) = cust {
            s.push_str(&format!(",\"CustomerID\":\"{c}\""));
        }
        if let Some(d) = dob {
            s.push_str(&format!(",\"CustomerDOB\":\"{d}\""));
        }
        s.push_str(&format!(
            ",\"CustGender\":\"{sex}\",\"CustLocation\":\"{loc}\",\"CustAccountBalance\":\"1.00\",\
             \"TransactionDate\":\"2/8/16\",\"TransactionTime\":\"143207\",\"TransactionAmount (INR)\":\"25.0\"}}\n"
        ));
        s
    };
    let text = [
        rec("K1", None, None, "M", "PUNE"),
        rec("K2", Some("C2"), Some("10/1/94"), "F", "DELHI"),
        rec("K3", Some("C3"), Some("99/99/99"), "", ""),
    ]
    .concat();
    w.put("kaggle.ndjson", text);
    let (r, code) = w.json(&["run", "--max-reject-share", "0.5"]);
    assert_eq!(code, 0, "{r}");
    let f = file(&r, "kaggle.ndjson");
    assert_eq!(f["status"], "loaded", "{f}");
    assert_eq!(f["rows_loaded"], 2, "{f}");
    assert_eq!(
        f["rejects"],
        serde_json::json!({"missing_customer_id": 1}),
        "{f}"
    );
    assert_eq!(
        f["warnings"],
        serde_json::json!({"invalid_dob": 1, "missing_gender": 1, "missing_location": 1}),
        "{f}"
    );
    assert_eq!(
        w.query("SELECT transaction_id, customer_dob FROM transactions ORDER BY 1"),
        [["K2", "1994-01-10"], ["K3", "NULL"]]
    );
}
