//! `bankpipe export` end to end on the embedded warehouse (issue #10): the real binary
//! loads crafted Kaggle-layout files, exports, and the Parquet files are read back with
//! the parquet crate. Expected feature values are computed by hand in the comments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use base64::Engine as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

const HEADER: &str = "TransactionID,CustomerID,CustomerDOB,CustGender,CustLocation,CustAccountBalance,TransactionDate,TransactionTime,TransactionAmount (INR)";

/// The pseudonymisation key every test uses: bytes 1..=32.
fn key_bytes() -> Vec<u8> {
    (1..=32).collect()
}

fn key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(key_bytes())
}

/// The documented formula, computed independently of bankpipe.
fn pseudonym(kind: &str, id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes());
    let tag = ring::hmac::sign(&key, format!("{kind}:{id}").as_bytes());
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        let w = Workdir {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(w.path().join("inbox")).unwrap();
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn exports(&self) -> PathBuf {
        self.path().join("exports")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
        c.current_dir(self.path())
            .arg("--data-dir")
            .arg(self.path());
        for v in [
            "BANKPIPE_WAREHOUSE_URL",
            "BANKPIPE_LAKE_URL",
            "BANKPIPE_INBOX",
            "BANKPIPE_DATA_DIR",
            "BANKPIPE_CONFIG",
            "BANKPIPE_MASTER_KEY",
            "BANKPIPE_MASTER_KEY_FILE",
            "BANKPIPE_EXPORT_URL",
            "BANKPIPE_PSEUDONYM_KEY_FILE",
        ] {
            c.env_remove(v);
        }
        c.env("BANKPIPE_LOG", "warn")
            .env("BANKPIPE_PSEUDONYM_KEY", key_b64())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Puts a CSV of `lines` in the inbox and loads it.
    fn load(&self, name: &str, lines: &[&str]) {
        let mut text = format!("{HEADER}\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(self.path().join("inbox").join(name), text).unwrap();
        let out = self.run(&["run"]);
        assert!(
            out.status.success(),
            "run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `export ARGS --json`: the report and the exit status.
    fn export(&self, args: &[&str]) -> (Value, i32) {
        let mut all = vec!["export", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "not one JSON object ({e}): {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (v, out.status.code().unwrap())
    }

    fn version_dir(&self, report: &Value) -> PathBuf {
        let q = &report["quarters"][0];
        self.exports()
            .join(format!("quarter={}", q["quarter"].as_str().unwrap()))
            .join(format!("version={}", q["version"].as_str().unwrap()))
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path().join("warehouse.db")).unwrap()
    }
}

/// A crafted history (hand-computed values in [`features_match_hand_computed_values`]):
/// CUSTA spans 2016Q2 and 2016Q3 and has two transactions in the same second (TX10 is
/// earlier than TX9: ids compare as bytes); CUSTB's birth date is after the quarter (the
/// loader stores it as null); nulls for gender, location, balance.
const Q2_Q3: &[&str] = &[
    "TX1,CUSTA,1/8/90,M,ALPHA,1000.00,15/6/16,100000,100.00",
    "TX10,CUSTA,,,ALPHA,0.00,1/7/16,050000,25.50",
    "TX9,CUSTA,,,BETA,,1/7/16,050000,50.00",
    "TX11,CUSTA,1/8/90,F,,500.00,2/7/16,120000,10.00",
    "TX30,CUSTC,5/5/80,F,GAMMA,2000.00,15/8/16,093000,300.00",
    "TX20,CUSTB,1/12/16,M,ALPHA,10.00,30/9/16,235959,1.00",
];

/// A later month: changes nothing of 2016Q3.
const OCTOBER: &[&str] = &[
    "TX40,CUSTA,1/8/90,F,DELTA,400.00,5/10/16,080000,999.99",
    "TX41,CUSTD,1/1/70,M,ALPHA,5.00,6/10/16,080000,1.00",
];

fn read(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1, "small files read as one batch");
    batches.into_iter().next().unwrap()
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).unwrap().as_string::<i32>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
        .collect()
}

fn f64s(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn i64s(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn i32s(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    let a = b.column_by_name(name).unwrap().as_primitive::<Int32Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    let a = b.column_by_name(name).unwrap().as_boolean();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn micros(b: &RecordBatch, name: &str) -> Vec<i64> {
    let a = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    a.values().to_vec()
}

/// Seconds since 1970 of a wall-clock time.
fn secs(y: i32, m: u32, d: u32, hh: i64, mm: i64, ss: i64) -> i64 {
    let date = bankpipe::model::Date::new(y, m as u8, d as u8).unwrap();
    date.days_since_epoch() * 86_400 + hh * 3600 + mm * 60 + ss
}

/// Row index by key column value.
fn index(b: &RecordBatch, key: &str) -> BTreeMap<String, usize> {
    strings(b, key)
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k.unwrap(), i))
        .collect()
}

fn files_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    ["customers.parquet", "transactions.parquet", "daily.parquet"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

#[test]
fn features_match_hand_computed_values() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let (report, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{report}");
    let q = &report["quarters"][0];
    assert_eq!(q["status"], "exported");
    assert_eq!(q["partial"], false);
    let dir = w.version_dir(&report);

    // transactions.parquet: the quarter's five rows, by (transaction_at, transaction_key).
    let t = read(&dir.join("transactions.parquet"));
    assert_eq!(t.num_rows(), 5);
    let at = micros(&t, "transaction_at");
    let keys = strings(&t, "transaction_key");
    for i in 1..5 {
        assert!(
            (at[i - 1], keys[i - 1].as_deref()) < (at[i], keys[i].as_deref()),
            "sorted by time then key"
        );
    }
    let row = index(&t, "transaction_key");
    let r = |id: &str| row[&pseudonym("transaction", id)];
    let (tx10, tx9, tx11, tx30, tx20) = (r("TX10"), r("TX9"), r("TX11"), r("TX30"), r("TX20"));
    let custa = pseudonym("customer", "CUSTA");
    let ck = strings(&t, "customer_key");
    assert_eq!(ck[tx10].as_deref(), Some(custa.as_str()));
    assert_eq!(at[tx10], secs(2016, 7, 1, 5, 0, 0) * 1_000_000);

    let prior = i64s(&t, "prior_count");
    let mean = f64s(&t, "prior_amount_mean");
    let since = i64s(&t, "seconds_since_prev");
    let to_mean = f64s(&t, "amount_to_prior_mean");
    let to_bal = f64s(&t, "amount_to_balance");
    let new_loc = bools(&t, "location_is_new");
    let age = i32s(&t, "age_years");
    let amount = f64s(&t, "amount");
    let balance = f64s(&t, "account_balance");
    let hour = i32s(&t, "hour");
    let weekday = i32s(&t, "weekday");
    let weekend = bools(&t, "is_weekend");
    let gender = strings(&t, "gender");

    // TX10: after TX1 (100.00 on 2016-06-15 10:00), before TX9 (same second, "TX10" < "TX9").
    assert_eq!(amount[tx10], Some(25.5));
    assert_eq!(prior[tx10], Some(1));
    assert_eq!(mean[tx10], Some(100.0));
    assert_eq!(since[tx10], Some(15 * 86_400 + 19 * 3600));
    assert_eq!(to_mean[tx10], Some(0.255));
    assert_eq!(to_bal[tx10], None, "balance 0");
    assert_eq!(balance[tx10], Some(0.0));
    assert_eq!(new_loc[tx10], Some(false), "ALPHA used in June");
    assert_eq!(age[tx10], None, "no birth date on the row");
    assert_eq!(gender[tx10], None);
    assert_eq!(
        (hour[tx10], weekday[tx10], weekend[tx10]),
        (Some(5), Some(4), Some(false))
    );

    // TX9: two earlier (100 + 25.50), 0 s after TX10, a new location, no balance.
    assert_eq!(prior[tx9], Some(2));
    assert_eq!(mean[tx9], Some(62.75));
    assert_eq!(since[tx9], Some(0));
    assert_eq!(to_mean[tx9], Some(10_000.0 / 12_550.0));
    assert_eq!(new_loc[tx9], Some(true));
    assert_eq!((balance[tx9], to_bal[tx9]), (None, None));

    // TX11: three earlier (mean 58.50), 31 h later, no location, 10/500, Saturday, 25 years.
    assert_eq!(prior[tx11], Some(3));
    assert_eq!(mean[tx11], Some(58.5));
    assert_eq!(since[tx11], Some(31 * 3600));
    assert_eq!(to_mean[tx11], Some(3_000.0 / 17_550.0));
    assert_eq!(to_bal[tx11], Some(0.02));
    assert_eq!(new_loc[tx11], None, "no location");
    assert_eq!(age[tx11], Some(25));
    assert_eq!(gender[tx11].as_deref(), Some("F"));
    assert_eq!((weekday[tx11], weekend[tx11]), (Some(5), Some(true)));

    // TX30 and TX20: first transactions of their customers.
    for i in [tx30, tx20] {
        assert_eq!(prior[i], Some(0));
        assert_eq!(
            (mean[i], since[i], to_mean[i], new_loc[i]),
            (None, None, None, None)
        );
    }
    assert_eq!(age[tx30], Some(36));
    assert_eq!(
        age[tx20], None,
        "born after the transaction: stored as null"
    );
    assert_eq!(to_bal[tx30], Some(0.15));

    // customers.parquet, by customer_key.
    let c = read(&dir.join("customers.parquet"));
    assert_eq!(c.num_rows(), 3);
    let ckeys = strings(&c, "customer_key");
    assert!(ckeys.windows(2).all(|w| w[0] < w[1]), "sorted by key");
    let crow = index(&c, "customer_key");
    let a = crow[&custa];
    let b = crow[&pseudonym("customer", "CUSTB")];
    let cc = crow[&pseudonym("customer", "CUSTC")];
    assert_eq!(strings(&c, "quarter")[a].as_deref(), Some("2016Q3"));
    assert_eq!(i64s(&c, "txn_count")[a], Some(3));
    assert_eq!(f64s(&c, "amount_sum")[a], Some(85.5));
    assert_eq!(f64s(&c, "amount_mean")[a], Some(28.5));
    assert_eq!(f64s(&c, "amount_min")[a], Some(10.0));
    assert_eq!(f64s(&c, "amount_max")[a], Some(50.0));
    assert_eq!(f64s(&c, "amount_std")[a], Some(406.75f64.sqrt()));
    assert_eq!(
        micros(&c, "first_txn_at")[a],
        secs(2016, 7, 1, 5, 0, 0) * 1_000_000
    );
    assert_eq!(
        micros(&c, "last_txn_at")[a],
        secs(2016, 7, 2, 12, 0, 0) * 1_000_000
    );
    assert_eq!(i32s(&c, "recency_days")[a], Some(90));
    assert_eq!(i32s(&c, "active_days")[a], Some(2));
    assert_eq!(i32s(&c, "distinct_locations")[a], Some(2));
    assert_eq!(
        strings(&c, "home_location")[a].as_deref(),
        Some("BETA"),
        "ALPHA and BETA once each: BETA used last"
    );
    assert_eq!(strings(&c, "gender")[a].as_deref(), Some("F"));
    assert_eq!(i32s(&c, "age_years")[a], Some(26));
    assert_eq!(f64s(&c, "balance_last")[a], Some(500.0));
    assert_eq!(f64s(&c, "night_share")[a], Some(2.0 / 3.0));
    assert_eq!(f64s(&c, "weekend_share")[a], Some(1.0 / 3.0));
    assert_eq!(i64s(&c, "prior_txn_count")[a], Some(1));
    assert_eq!(i32s(&c, "tenure_days")[a], Some(107));
    // CUSTB: one transaction, on the quarter's last second; born after the quarter.
    assert_eq!(f64s(&c, "amount_std")[b], None);
    assert_eq!(i32s(&c, "age_years")[b], None);
    assert_eq!(i32s(&c, "recency_days")[b], Some(0));
    assert_eq!(i32s(&c, "tenure_days")[b], Some(0));
    assert_eq!(f64s(&c, "night_share")[b], Some(0.0));
    // CUSTC: Monday 2016-08-15, 36 on 2016-09-30.
    assert_eq!(i32s(&c, "age_years")[cc], Some(36));
    assert_eq!(i32s(&c, "recency_days")[cc], Some(46));
    assert_eq!(i32s(&c, "tenure_days")[cc], Some(46));
    assert_eq!(f64s(&c, "weekend_share")[cc], Some(0.0));
    assert_eq!(strings(&c, "home_location")[cc].as_deref(), Some("GAMMA"));

    // daily.parquet: every day of the quarter, zero days included.
    let d = read(&dir.join("daily.parquet"));
    assert_eq!(d.num_rows(), 92);
    let dates = d
        .column_by_name("date")
        .unwrap()
        .as_primitive::<Date32Type>()
        .values()
        .to_vec();
    let day0 = bankpipe::model::Date::new(2016, 7, 1)
        .unwrap()
        .days_since_epoch() as i32;
    assert_eq!(dates, (day0..day0 + 92).collect::<Vec<_>>());
    let (n, sum, mean, p50, p95, uniq, new) = (
        i64s(&d, "txn_count"),
        f64s(&d, "amount_sum"),
        f64s(&d, "amount_mean"),
        f64s(&d, "amount_p50"),
        f64s(&d, "amount_p95"),
        i64s(&d, "unique_customers"),
        i64s(&d, "new_customers"),
    );
    assert_eq!((n[0], sum[0], mean[0]), (Some(2), Some(75.5), Some(37.75)));
    assert_eq!(p50[0], Some(37.75));
    // numpy.percentile([25.5, 50.0], 95) == 48.775
    assert_eq!(p95[0], Some(48.775));
    assert_eq!((uniq[0], new[0]), (Some(1), Some(0)), "CUSTA began in June");
    assert_eq!(
        (n[2], sum[2], mean[2], p50[2]),
        (Some(0), Some(0.0), None, None)
    );
    let aug15 = 31 + 14;
    assert_eq!(
        (n[aug15], new[aug15], p95[aug15]),
        (Some(1), Some(1), Some(300.0))
    );
    assert_eq!((n[91], new[91]), (Some(1), Some(1)));
    assert_eq!(n.iter().map(|x| x.unwrap()).sum::<i64>(), 5);

    // The manifest: control totals, months, sources, schema, key id.
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["dataset"], "bankpipe-quarterly");
    assert_eq!(m["quarter"], "2016Q3");
    assert_eq!(m["control"]["rows"], 5);
    assert_eq!(m["control"]["amount_sum"], "386.50");
    assert_eq!(
        m["months"],
        serde_json::json!([
            {"month": "2016-07", "rows": 3},
            {"month": "2016-08", "rows": 1},
            {"month": "2016-09", "rows": 1}
        ])
    );
    assert_eq!(m["pseudonymisation"]["method"], "HMAC-SHA256");
    assert!(m["pseudonymisation"]["key_id"].as_str().unwrap().len() >= 8);
    assert_eq!(m["sources"][0]["original_name"], "q2q3.csv");
    assert_eq!(m["sources"][0]["rows"], 6);
    assert_eq!(m["sources"][0]["rows_in_quarter"], 5);
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for f in files {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(f["bytes"], bytes.len());
        assert_eq!(
            f["path"],
            format!(
                "quarter=2016Q3/version={}/{name}",
                m["version"].as_str().unwrap()
            )
        );
        assert!(
            f["schema"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["description"].as_str().is_some_and(|d| !d.is_empty()))
        );
    }
    let tx_schema = &files
        .iter()
        .find(|f| f["name"] == "transactions.parquet")
        .unwrap()["schema"];
    assert_eq!(
        tx_schema[2],
        serde_json::json!({"name": "transaction_at", "type": "timestamp[us]", "nullable": false, "description": tx_schema[2]["description"]})
    );
    assert_eq!(m["drift"]["previous_quarter"], "2016Q2");
    // The marker is a copy of the version's manifest.
    assert_eq!(
        std::fs::read(w.exports().join("quarter=2016Q3/manifest.json")).unwrap(),
        std::fs::read(dir.join("manifest.json")).unwrap()
    );

    // The warehouse tables: raw ids, exact money.
    let db = w.db();
    let (sum, bal, std): (String, String, f64) = db
        .query_row(
            "SELECT amount_sum, balance_last, amount_std FROM quarter_customers
             WHERE quarter = '2016Q3' AND customer_id = 'CUSTA'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (sum.as_str(), bal.as_str(), std),
        ("85.50", "500.00", 406.75f64.sqrt())
    );
    let days: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM quarter_daily WHERE quarter = '2016Q3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(days, 92);
    let (rows, amount): (i64, String) = db
        .query_row(
            "SELECT rows, amount_sum FROM exports WHERE quarter = '2016Q3'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, amount.as_str()), (5, "386.50"));
    let status = w.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("2016Q3") && text.contains(m["version"].as_str().unwrap()),
        "status lists the export: {text}"
    );
}

#[test]
fn rerun_is_up_to_date_and_force_rewrites_the_same_bytes() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let (first, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{first}");
    let dir = w.version_dir(&first);
    let before = files_bytes(&dir);
    let marker = w.exports().join("quarter=2016Q3/manifest.json");
    let marker_time = std::fs::metadata(&marker).unwrap().modified().unwrap();

    let (again, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["quarters"][0]["status"], "up_to_date");
    assert_eq!(
        again["quarters"][0]["version"],
        first["quarters"][0]["version"]
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        marker_time,
        "nothing written"
    );

    assert_eq!(again["quarters"][0]["amount_sum"], "386.50");

    let (forced, code) = w.export(&["--quarter", "2016Q3", "--force"]);
    assert_eq!(code, 0, "{forced}");
    assert_eq!(forced["quarters"][0]["status"], "exported");
    assert_eq!(files_bytes(&dir), before, "byte-identical rerun");

    // A run that stopped before the marker: the next one writes only the marker.
    std::fs::remove_file(&marker).unwrap();
    let (repaired, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(
        (code, &repaired["quarters"][0]["status"]),
        (0, &Value::from("up_to_date"))
    );
    assert_eq!(
        std::fs::read(&marker).unwrap(),
        std::fs::read(dir.join("manifest.json")).unwrap()
    );
    // One that stopped before the warehouse tables: the next one writes the version again.
    w.db().execute("DELETE FROM exports", []).unwrap();
    let (redone, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(
        (code, &redone["quarters"][0]["status"]),
        (0, &Value::from("exported"))
    );
    assert_eq!(files_bytes(&dir), before);
}

#[test]
fn a_later_month_changes_no_byte_of_an_earlier_quarter() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let (first, _) = w.export(&["--quarter", "2016Q3"]);
    let dir = w.version_dir(&first);
    let before = files_bytes(&dir);
    w.load("october.csv", OCTOBER);
    let (again, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["quarters"][0]["status"], "up_to_date", "same version");
    let (forced, code) = w.export(&["--quarter", "2016Q3", "--force"]);
    assert_eq!(code, 0, "{forced}");
    assert_eq!(files_bytes(&dir), before, "no row changed");

    // An older late file changes the quarter: a new version, the old one stays.
    w.load(
        "late.csv",
        &["TX0,CUSTA,1/8/90,M,ALPHA,1000.00,1/6/16,090000,7.00"],
    );
    let (late, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{late}");
    assert_eq!(late["quarters"][0]["status"], "exported");
    assert_ne!(
        late["quarters"][0]["version"],
        first["quarters"][0]["version"]
    );
    assert!(dir.join("manifest.json").exists(), "older versions stay");
    let marker: Value = serde_json::from_slice(
        &std::fs::read(w.exports().join("quarter=2016Q3/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["version"], late["quarters"][0]["version"]);
}

#[test]
fn an_incomplete_quarter_is_refused_unless_partial_is_allowed() {
    let w = Workdir::new();
    w.load(
        "aug.csv",
        &["TX30,CUSTC,5/5/80,F,GAMMA,2000.00,15/8/16,093000,300.00"],
    );
    let out = w.run(&["export", "--quarter", "2016Q3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2016-07, 2016-09"),
        "names the empty months: {err}"
    );
    assert!(
        !w.exports().join("quarter=2016Q3").exists(),
        "nothing written"
    );

    let (report, code) = w.export(&["--quarter", "2016Q3", "--allow-partial"]);
    assert_eq!(code, 0, "{report}");
    let m: Value = serde_json::from_slice(
        &std::fs::read(w.exports().join("quarter=2016Q3/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["partial"], true);
    assert_eq!(
        m["months"][0],
        serde_json::json!({"month": "2016-07", "rows": 0})
    );
    assert_eq!(
        m["drift"]["previous_quarter"],
        Value::Null,
        "nothing to compare"
    );

    let out = w.run(&["export", "--quarter", "2015Q1", "--allow-partial"]);
    assert_eq!(out.status.code(), Some(1), "a quarter without any row");
    let out = w.run(&["export", "--quarter", "2016Q5"]);
    assert_eq!(out.status.code(), Some(2), "not a quarter");
    let (report, code) = w.export(&["--quarter", "2016-Q3"]);
    assert_eq!(code, 2);
    assert_eq!(
        report["status"], "failed",
        "one JSON object, also for a usage error"
    );
    assert!(
        report["error"].as_str().unwrap().contains("2016Q3"),
        "{report}"
    );
}

#[test]
fn a_tampered_row_fails_the_reconciliation_and_nothing_is_published() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    // Still inside the quarter as text, but not a date: the row cannot be read.
    w.db()
        .execute(
            "UPDATE transactions SET transaction_at = '2016-09-31 12:00:00' WHERE transaction_id = 'TX20'",
            [],
        )
        .unwrap();
    let (report, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 1, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("reconciliation failed"), "{error}");
    assert!(error.contains("TX20"), "names the row: {error}");
    assert!(
        !w.exports().join("quarter=2016Q3").exists(),
        "nothing published"
    );
    let n: i64 = w
        .db()
        .query_row("SELECT COUNT(*) FROM exports", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn no_raw_id_or_birth_date_leaves_the_warehouse() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let (report, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{report}");
    let dir = w.version_dir(&report);
    let raw = ["TX1", "TX9", "CUST", "1990", "1980", "1/8/90", "5/5/80"];
    for name in ["customers.parquet", "transactions.parquet", "daily.parquet"] {
        let b = read(&dir.join(name));
        for field in b.schema().fields() {
            assert!(
                !field.name().contains("dob") && !field.name().ends_with("_id"),
                "{name}: {field:?}"
            );
            if let Some(a) = b
                .column_by_name(field.name())
                .unwrap()
                .as_string_opt::<i32>()
            {
                for v in a.iter().flatten() {
                    assert!(
                        !raw.iter().any(|r| v.contains(r)),
                        "{name}.{}: {v}",
                        field.name()
                    );
                }
            }
        }
    }
    for name in ["manifest.json", "drift.html"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(!raw.iter().any(|r| text.contains(r)), "{name}");
    }
}

#[test]
fn latest_and_all_quarters() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    w.load("october.csv", OCTOBER);
    let (latest, code) = w.export(&["--quarter", "latest", "--allow-partial"]);
    assert_eq!(code, 0, "{latest}");
    assert_eq!(latest["quarters"][0]["quarter"], "2016Q4");
    assert_eq!(latest["quarters"][0]["partial"], true);

    // Without --allow-partial the partial quarters (June only, October only) fail; the
    // complete one between them is still exported.
    let (all, code) = w.export(&["--all"]);
    assert_eq!(code, 1, "{all}");
    let statuses: Vec<(&str, &str)> = all["quarters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["quarter"].as_str().unwrap(),
                q["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("2016Q2", "failed"),
            ("2016Q3", "exported"),
            ("2016Q4", "failed")
        ]
    );
}

#[test]
fn demo_ends_with_an_export_of_its_partial_quarters() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .current_dir(dir.path())
        .args(["demo", "--rows", "3000"])
        .env("BANKPIPE_LOG", "warn")
        .env_remove("BANKPIPE_PSEUDONYM_KEY")
        .env_remove("BANKPIPE_EXPORT_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("PARTIAL quarter: no data for 2016-07"),
        "{text}"
    );
    assert!(text.contains("quarter=2016Q4/manifest.json"), "{text}");
    let demo = dir.path().join("bankpipe-demo");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("generated a pseudonymisation key"),
        "the user is told about the new key"
    );
    assert!(demo.join("pseudonym.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(demo.join("pseudonym.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for q in ["2016Q3", "2016Q4"] {
        let m: Value = serde_json::from_slice(
            &std::fs::read(demo.join(format!("exports/quarter={q}/manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["partial"], true);
        let rows: u64 = m["months"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["rows"].as_u64().unwrap())
            .sum();
        assert_eq!(m["control"]["rows"], rows);
        assert_eq!(m["files"][1]["name"], "transactions.parquet");
        let tx = read(
            &demo
                .join("exports")
                .join(m["files"][1]["path"].as_str().unwrap()),
        );
        assert_eq!(tx.num_rows() as u64, rows);
    }
}

#[test]
fn export_never_creates_a_warehouse() {
    let w = Workdir::new();
    let out = w.run(&["export", "--quarter", "latest"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no warehouse"));
    assert!(!w.path().join("warehouse.db").exists());
    assert!(!w.exports().exists());
}

/// Finding of a new-user check: `pseudonymise` run before the first export used to
/// generate a key of its own, which the export then reused — or, run against another
/// data folder, a key that matched nothing. Now only an export makes the key, and
/// `pseudonymise` on the same data folder gives the exported `customer_key` values.
#[test]
fn pseudonymise_gives_the_keys_of_the_export_that_generated_the_key() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let pseudonymise = |ids: &str| {
        use std::io::Write as _;
        let mut child = w
            .cmd()
            .env_remove("BANKPIPE_PSEUDONYM_KEY")
            .args(["pseudonymise", "--kind", "customer"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ids.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let before = pseudonymise("CUSTA\n");
    assert_eq!(
        before.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    assert!(!w.path().join("pseudonym.key").exists());

    let out = w
        .cmd()
        .env_remove("BANKPIPE_PSEUDONYM_KEY")
        .args(["export", "--json", "--quarter", "2016Q3"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.path().join("pseudonym.key").exists());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let customers = read(&w.version_dir(&report).join("customers.parquet"));
    let exported: Vec<String> = strings(&customers, "customer_key")
        .into_iter()
        .map(Option::unwrap)
        .collect();

    let after = pseudonymise("CUSTA\nCUSTB\nCUSTC\n");
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let csv = String::from_utf8(after.stdout).unwrap();
    let mut keys: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1.to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, exported, "{csv}");
}

/// The export's working folders in the data folder (`.export-*`).
fn work_dirs(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".export-")
        })
        .collect();
    v.sort();
    v
}

impl Workdir {
    /// `generate`s `rows` rows of August 2016 into the inbox and loads them.
    fn load_generated(&self, rows: u32) {
        let file = self.path().join("inbox").join("gen.csv");
        let out = self.run(&[
            "generate",
            "--rows",
            &rows.to_string(),
            "--month",
            "2016-08",
            "--out",
            file.to_str().unwrap(),
            "-q",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.run(&["run"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Finding of a new-user check: Ctrl-C (or SIGTERM) during an export left its working
/// folder (sort runs, staged files: ~150 bytes a row) in the data folder forever.
#[test]
fn an_interrupted_export_removes_its_working_folder() {
    let w = Workdir::new();
    w.load_generated(40_000);
    for (signal, code, json) in [("-INT", 130, false), ("-TERM", 143, true)] {
        let mut args = vec![
            "export",
            "--quarter",
            "2016Q3",
            "--allow-partial",
            "--force",
        ];
        if json {
            args.push("--json");
        }
        let child = w
            .cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Signalled once its working folder exists (the rows are being read or sorted).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while work_dirs(w.path()).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no working folder appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let kill = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert!(err.contains("export interrupted by SIG"), "{err}");
        assert!(
            work_dirs(w.path()).is_empty(),
            "{signal}: {:?}",
            work_dirs(w.path())
        );
        assert!(
            !w.exports().join("quarter=2016Q3/manifest.json").exists(),
            "nothing published"
        );
        if json {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["status"], "failed");
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("interrupted by SIGTERM"),
                "{v}"
            );
        }
    }
}

/// Working folders left by a killed export (`kill -9` cannot be caught) are removed by
/// the next export; one that a running export holds (its lock taken, here by
/// `flock(1)`, as another bankpipe process would) and one too young to judge are not.
#[test]
fn the_next_export_removes_stale_working_folders_only() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    // Killed: folder and lock file, nobody holding the lock.
    let dead = w.path().join(".export-dead01");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("lock"), b"").unwrap();
    std::fs::write(dead.join("source-0.run"), vec![7u8; 4096]).unwrap();
    // In use by another process.
    let busy = w.path().join(".export-busy01");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("lock"), b"").unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(busy.join("lock"))
        .args(["sleep", "120"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let probe = std::fs::File::open(busy.join("lock")).unwrap();
        match probe.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => break,
            _ => {
                drop(probe);
                assert!(std::time::Instant::now() < deadline, "flock never held it");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    // Being made right now (no lock file yet).
    let young = w.path().join(".export-young1");
    std::fs::create_dir(&young).unwrap();

    let (report, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{report}");
    let left = work_dirs(w.path());
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(left, [busy, young]);
}

/// Finding of a new-user check: a relative `--out` was recorded as typed, so the same
/// folder reached from another working folder (or typed another way) was not "up to
/// date" and was written again. Folder destinations are now recorded and compared as
/// their canonical absolute path.
#[test]
fn a_folder_destination_is_recorded_absolute_whatever_the_working_folder() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let sub = w.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let ml = std::fs::canonicalize(w.path()).unwrap().join("ml");
    let export = |cwd: &Path, out: Option<&str>, env: Option<String>| {
        let mut c = w.cmd();
        c.current_dir(cwd)
            .args(["export", "--json", "--quarter", "2016Q3"]);
        if let Some(out) = out {
            c.args(["--out", out]);
        }
        if let Some(env) = env {
            c.env("BANKPIPE_EXPORT_URL", env);
        }
        let out = c.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{v}");
        v
    };
    let first = export(w.path(), Some("ml"), None);
    assert_eq!(first["quarters"][0]["status"], "exported", "{first}");
    assert_eq!(first["destination"], ml.display().to_string(), "{first}");
    for (cwd, out, env) in [
        (&sub, Some("../ml"), None),
        (&sub, Some("./../sub/../ml/"), None),
        (&sub, None, Some(format!("file://{}", ml.display()))),
        (&sub, None, Some("../ml".to_owned())),
    ] {
        let again = export(cwd, out, env.clone());
        assert_eq!(
            again["quarters"][0]["status"], "up_to_date",
            "{out:?} {env:?}: {again}"
        );
        assert_eq!(again["destination"], ml.display().to_string());
    }
    let recorded: Vec<String> = w
        .db()
        .prepare("SELECT destination FROM exports")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(recorded, [ml.display().to_string()]);
}

/// A destination that refuses a write: the error names the export object and the
/// destination it was written to, not the lake (whose wording it used to borrow:
/// `writing lake object quarter=…`).
#[test]
fn a_refused_write_names_the_export_destination() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    let (first, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{first}");
    let version = first["quarters"][0]["version"].as_str().unwrap().to_owned();
    // The object's place taken by a folder that is not empty: writing it again fails
    // (even as root, unlike a permission).
    let taken = w.version_dir(&first).join("customers.parquet");
    std::fs::remove_file(&taken).unwrap();
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("x"), b"x").unwrap();
    let (report, code) = w.export(&["--quarter", "2016Q3", "--force"]);
    assert_ne!(code, 0, "{report}");
    let error = report["quarters"][0]["error"].as_str().unwrap();
    let destination = report["destination"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "writing export object quarter=2016Q3/version={version}/customers.parquet to {destination}: "
        )),
        "{error}"
    );
    assert!(!error.contains("lake"), "{error}");
}

/// A profile with a currency column, for [`currencies_are_never_mixed`].
const MULTI_CURRENCY_PROFILE: &str = r#"
[[profile]]
name = "multi"
[profile.columns]
transaction_id = "id"
customer_id = "customer"
transaction_at = "at"
amount = "amount"
currency = "currency"
"#;

/// Finding of a new-user check: rows in several currencies were summed together into
/// the money features, with no currency anywhere. A quarter whose rows or history hold
/// more than one currency is refused (exit 1, nothing written); a one-currency export
/// names its currency in the manifest.
#[test]
fn currencies_are_never_mixed() {
    let w = Workdir::new();
    std::fs::write(w.path().join("bankpipe.toml"), MULTI_CURRENCY_PROFILE).unwrap();
    let put = |name: &str, rows: &[&str]| {
        let mut text = String::from("id,customer,at,amount,currency\n");
        for r in rows {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(w.path().join("inbox").join(name), text).unwrap();
        let out = w.run(&["run"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    put(
        "q3-inr.csv",
        &[
            "A1,C1,2016-07-02T10:00:00,10.00,INR",
            "A2,C2,2016-08-02T10:00:00,20.00,INR",
            "A3,C1,2016-09-02T10:00:00,30.00,INR",
        ],
    );
    let (one, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 0, "{one}");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(w.exports().join("quarter=2016Q3/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["currency"], "INR");

    // A USD row in the quarter.
    put("q3-usd.csv", &["U1,C3,2016-08-15T10:00:00,5.00,USD"]);
    let (mixed, code) = w.export(&["--quarter", "2016Q3"]);
    assert_eq!(code, 1, "{mixed}");
    let error = mixed["error"].as_str().unwrap();
    assert!(error.contains("more than one currency"), "{error}");
    assert!(
        error.contains("INR: 3 rows in 2016Q3, 0 before it")
            && error.contains("USD: 1 rows in 2016Q3, 0 before it"),
        "{error}"
    );
    assert_eq!(mixed["quarters"][0]["status"], "failed");
    let versions = std::fs::read_dir(w.exports().join("quarter=2016Q3"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count();
    assert_eq!(versions, 1, "no new version written");

    // One currency in 2016Q4, another in its history: refused too (history features
    // such as prior_amount_mean would mix them).
    put(
        "q4-inr.csv",
        &[
            "B1,C1,2016-10-02T10:00:00,1.00,INR",
            "B2,C1,2016-11-02T10:00:00,1.00,INR",
            "B3,C1,2016-12-02T10:00:00,1.00,INR",
        ],
    );
    let (history, code) = w.export(&["--quarter", "2016Q4"]);
    assert_eq!(code, 1, "{history}");
    let error = history["error"].as_str().unwrap();
    assert!(
        error.contains("INR: 3 rows in 2016Q4, 3 before it")
            && error.contains("USD: 0 rows in 2016Q4, 1 before it"),
        "{error}"
    );
    assert!(!w.exports().join("quarter=2016Q4").exists());
}

/// Finding of a new-user check: `export --json` with a bad flag or value printed only
/// clap's text on stderr and nothing on stdout, where the caller reads one JSON object.
#[test]
fn usage_errors_with_json_print_one_json_object() {
    let w = Workdir::new();
    for args in [
        &["export", "--json", "--bogus"][..],
        &["export", "--json", "--quarter"],
        &["export", "--json"],
        &["export", "--quarter", "2016Q3", "--all", "--json"],
    ] {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not one JSON object ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(v["status"], "failed", "{args:?}");
        assert_eq!(v["quarters"], Value::Array(Vec::new()));
        assert!(!v["error"].as_str().unwrap().is_empty());
        // clap's own message still goes to stderr.
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
    let out = w.run(&["export", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no --json, no JSON");
}

/// Finding of a new-user check: a quarter without any row was refused, but its report
/// said `partial: false`, as if it were a complete quarter. A quarter with no data is
/// not complete: refused (exit 1, also with `--allow-partial`, which it says), with
/// `partial: true` and its three empty months.
#[test]
fn an_empty_quarter_is_refused_and_reported_partial() {
    let w = Workdir::new();
    w.load("q2q3.csv", Q2_Q3);
    for extra in [&[][..], &["--allow-partial"]] {
        let mut args = vec!["--quarter", "2016Q1"];
        args.extend_from_slice(extra);
        let (report, code) = w.export(&args);
        assert_eq!(code, 1, "{report}");
        let q = &report["quarters"][0];
        assert_eq!(q["status"], "failed", "{report}");
        assert_eq!(q["partial"], true, "{report}");
        assert_eq!(q["rows"], 0);
        assert_eq!(
            q["empty_months"],
            serde_json::json!(["2016-01", "2016-02", "2016-03"])
        );
        let error = report["error"].as_str().unwrap();
        assert!(
            error.contains("no loaded transaction is dated in 2016Q1")
                && error.contains("--allow-partial exports a quarter with at least one month"),
            "{error}"
        );
    }
    assert!(
        !w.exports().join("quarter=2016Q1").exists(),
        "nothing written"
    );
}
