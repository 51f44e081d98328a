//! The three Parquet files: their schemas (names, types, nullability and the one-line
//! descriptions the manifest repeats), and a writer whose bytes depend only on the rows.
//!
//! Deterministic bytes (issue #10: byte-identical on rerun and between warehouses): fixed
//! writer properties (zstd level 3, page statistics, row groups of at most 1,000,000
//! rows, a fixed `created_by` without a library version or time), rows appended in
//! batches of a fixed size, and the Arrow schema stored by the writer is itself fixed.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::features::FEATURE_VERSION;

/// Most rows in one row group (the bound).
pub const ROW_GROUP_ROWS: usize = 1_000_000;

/// Rows per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 8192;

/// Column types the datasets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    Text,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// IEEE double.
    Double,
    /// Boolean.
    Bool,
    /// Timestamp, microseconds, no time zone.
    Timestamp,
    /// Calendar date.
    Date,
}

impl Kind {
    /// The name the manifest gives the type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "string",
            Kind::Int32 => "int32",
            Kind::Int64 => "int64",
            Kind::Double => "double",
            Kind::Bool => "bool",
            Kind::Timestamp => "timestamp[us]",
            Kind::Date => "date32",
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Double => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
        }
    }
}

/// One column of a dataset: the contract of issue #10.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Whether it may be null.
    pub nullable: bool,
    /// One line for the manifest.
    pub description: &'static str,
}

const fn col(name: &'static str, kind: Kind, nullable: bool, description: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable,
        description,
    }
}

use Kind::{Bool, Date, Double, Int32, Int64, Text, Timestamp};

/// `transactions.parquet`, sorted by `(transaction_at, transaction_key)`.
pub const TRANSACTIONS: &[Column] = &[
    col(
        "transaction_key",
        Text,
        false,
        "Pseudonym of the transaction id: hex of the first 16 bytes of HMAC-SHA256(key, \"transaction:\" + id).",
    ),
    col(
        "customer_key",
        Text,
        false,
        "Pseudonym of the customer id: hex of the first 16 bytes of HMAC-SHA256(key, \"customer:\" + id).",
    ),
    col(
        "transaction_at",
        Timestamp,
        false,
        "When the transaction happened (wall clock as the source gave it, no time zone).",
    ),
    col("amount", Double, false, "Transaction amount."),
    col("hour", Int32, false, "Hour of transaction_at, 0-23."),
    col("weekday", Int32, false, "Day of the week, Monday = 0."),
    col("is_weekend", Bool, false, "Saturday or Sunday."),
    col(
        "age_years",
        Int32,
        true,
        "Customer's age in whole years on the transaction date; null without a birth date.",
    ),
    col(
        "gender",
        Text,
        true,
        "Customer gender code as loaded (M, F, T).",
    ),
    col("location", Text, true, "Customer location as loaded."),
    col(
        "account_balance",
        Double,
        true,
        "Account balance as loaded.",
    ),
    col(
        "prior_count",
        Int64,
        false,
        "Earlier transactions of the customer, any quarter (earlier: by transaction_at, then transaction id).",
    ),
    col(
        "prior_amount_mean",
        Double,
        true,
        "Mean amount of the earlier transactions; null when prior_count = 0.",
    ),
    col(
        "seconds_since_prev",
        Int64,
        true,
        "Seconds since the customer's previous transaction; null when none.",
    ),
    col(
        "amount_to_prior_mean",
        Double,
        true,
        "amount / prior_amount_mean; null when there is none or it is 0.",
    ),
    col(
        "amount_to_balance",
        Double,
        true,
        "amount / account_balance; null when the balance is null or 0.",
    ),
    col(
        "location_is_new",
        Bool,
        true,
        "No earlier transaction of the customer had this location; null when prior_count = 0 or the location is null.",
    ),
];

/// `customers.parquet`, sorted by `customer_key`.
pub const CUSTOMERS: &[Column] = &[
    col(
        "customer_key",
        Text,
        false,
        "Pseudonym of the customer id (see transactions.parquet).",
    ),
    col("quarter", Text, false, "The quarter, e.g. 2016Q3."),
    col("txn_count", Int64, false, "Transactions in the quarter."),
    col(
        "amount_sum",
        Double,
        false,
        "Sum of amounts (summed exactly, then converted).",
    ),
    col("amount_mean", Double, false, "Mean amount."),
    col("amount_min", Double, false, "Smallest amount."),
    col("amount_max", Double, false, "Largest amount."),
    col(
        "amount_std",
        Double,
        true,
        "Sample standard deviation of amounts (n - 1); null when txn_count = 1.",
    ),
    col(
        "first_txn_at",
        Timestamp,
        false,
        "First transaction in the quarter.",
    ),
    col(
        "last_txn_at",
        Timestamp,
        false,
        "Last transaction in the quarter.",
    ),
    col(
        "recency_days",
        Int32,
        false,
        "Last day of the quarter minus the date of last_txn_at.",
    ),
    col(
        "active_days",
        Int32,
        false,
        "Distinct dates with a transaction.",
    ),
    col(
        "distinct_locations",
        Int32,
        false,
        "Distinct non-null locations.",
    ),
    col(
        "home_location",
        Text,
        true,
        "Most frequent non-null location in the quarter; ties go to the one used most recently.",
    ),
    col(
        "gender",
        Text,
        true,
        "Gender of the latest transaction in the quarter that has one.",
    ),
    col(
        "age_years",
        Int32,
        true,
        "Age in whole years on the quarter's last day, from the latest transaction with a birth date.",
    ),
    col(
        "balance_last",
        Double,
        true,
        "Latest non-null account balance in the quarter.",
    ),
    col(
        "night_share",
        Double,
        false,
        "Share of transactions with hour < 6.",
    ),
    col(
        "weekend_share",
        Double,
        false,
        "Share of transactions on Saturday or Sunday.",
    ),
    col(
        "prior_txn_count",
        Int64,
        false,
        "Transactions of the customer before the quarter.",
    ),
    col(
        "tenure_days",
        Int32,
        false,
        "Last day of the quarter minus the date of the customer's first transaction ever.",
    ),
];

/// `daily.parquet`: every date of the quarter, sorted by date.
pub const DAILY: &[Column] = &[
    col(
        "date",
        Date,
        false,
        "Calendar date (every date of the quarter).",
    ),
    col("txn_count", Int64, false, "Transactions that day."),
    col(
        "amount_sum",
        Double,
        false,
        "Sum of amounts (summed exactly, then converted).",
    ),
    col(
        "amount_mean",
        Double,
        true,
        "Mean amount; null on days without transactions.",
    ),
    col(
        "amount_p50",
        Double,
        true,
        "Median amount (linear interpolation, as numpy and DuckDB quantile_cont).",
    ),
    col(
        "amount_p95",
        Double,
        true,
        "95th percentile of amounts (linear interpolation).",
    ),
    col(
        "unique_customers",
        Int64,
        false,
        "Customers with a transaction that day.",
    ),
    col(
        "new_customers",
        Int64,
        false,
        "Customers whose first transaction ever is that day.",
    ),
];

/// Writing a Parquet file failed.
#[derive(Debug, thiserror::Error)]
#[error("writing {file}: {source}")]
pub struct WriteError {
    /// File name.
    pub file: String,
    /// Cause.
    #[source]
    pub source: parquet::errors::ParquetError,
}

enum Builder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Text => Builder::Text(StringBuilder::new()),
            Int32 => Builder::Int32(Int32Builder::new()),
            Int64 => Builder::Int64(Int64Builder::new()),
            Double => Builder::Double(Float64Builder::new()),
            Bool => Builder::Bool(BooleanBuilder::new()),
            Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
            Date => Builder::Date(Date32Builder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// One value for the next row; its variant must match the column's [`Kind`].
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text or null.
    Text(Option<&'a str>),
    /// int32 or null.
    Int32(Option<i32>),
    /// int64 or null.
    Int64(Option<i64>),
    /// double or null.
    Double(Option<f64>),
    /// bool or null.
    Bool(Option<bool>),
    /// Seconds since 1970 (stored as microseconds).
    Timestamp(i64),
    /// Days since 1970.
    Date(i32),
}

/// Writes one dataset file, row by row, in the order given.
pub struct TableWriter {
    name: &'static str,
    schema: Arc<Schema>,
    builders: Vec<Builder>,
    pending: usize,
    rows: u64,
    writer: ArrowWriter<File>,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("name", &self.name)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl TableWriter {
    /// Creates `path` for the dataset `columns`, sorted by the columns at `sorted_by`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(
        path: &Path,
        name: &'static str,
        columns: &[Column],
        sorted_by: &[usize],
    ) -> Result<TableWriter, WriteError> {
        let err = |source| WriteError {
            file: name.to_owned(),
            source,
        };
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(c.name, c.kind.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(err)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("bankpipe export, features v{FEATURE_VERSION}"))
            // Unique 32-digit keys: a dictionary would only grow until it is dropped.
            .set_column_dictionary_enabled(ColumnPath::from("transaction_key"), false)
            .set_column_dictionary_enabled(ColumnPath::from("customer_key"), false)
            .set_sorting_columns(Some(
                sorted_by
                    .iter()
                    .map(|&i| SortingColumn {
                        column_idx: i as i32,
                        descending: false,
                        nulls_first: false,
                    })
                    .collect(),
            ))
            .build();
        let file = File::create(path).map_err(|e| err(e.into()))?;
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).map_err(err)?;
        Ok(TableWriter {
            name,
            builders: columns.iter().map(|c| Builder::new(c.kind)).collect(),
            schema,
            pending: 0,
            rows: 0,
            writer,
        })
    }

    /// Appends one row.
    ///
    /// # Errors
    /// Writing a batch failed.
    ///
    /// # Panics
    /// When the values do not match the columns in number or kind (a bug in the caller).
    pub fn append(&mut self, values: &[Value<'_>]) -> Result<(), WriteError> {
        assert_eq!(values.len(), self.builders.len(), "{}: columns", self.name);
        for (b, v) in self.builders.iter_mut().zip(values) {
            match (b, *v) {
                (Builder::Text(b), Value::Text(v)) => b.append_option(v),
                (Builder::Int32(b), Value::Int32(v)) => b.append_option(v),
                (Builder::Int64(b), Value::Int64(v)) => b.append_option(v),
                (Builder::Double(b), Value::Double(v)) => b.append_option(v),
                (Builder::Bool(b), Value::Bool(v)) => b.append_option(v),
                (Builder::Timestamp(b), Value::Timestamp(s)) => b.append_value(s * 1_000_000),
                (Builder::Date(b), Value::Date(d)) => b.append_value(d),
                (_, v) => panic!("{}: value {v:?} does not match its column", self.name),
            }
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), WriteError> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let err = |source| WriteError {
            file: self.name.to_owned(),
            source,
        };
        let batch =
            RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| err(e.into()))?;
        self.pending = 0;
        self.writer.write(&batch).map_err(err)
    }

    /// Writes what is pending and the footer; returns the rows written.
    ///
    /// # Errors
    /// Writing failed.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        self.flush_batch()?;
        let name = self.name;
        self.writer.close().map_err(|source| WriteError {
            file: name.to_owned(),
            source,
        })?;
        Ok(self.rows)
    }
}

/// Lowercase hex of a 128-bit key, as the key columns hold it.
pub fn key_hex(key: u128, buf: &mut [u8; 32]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((key >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hex_is_32_lowercase_digits() {
        let mut buf = [0u8; 32];
        assert_eq!(key_hex(0xab, &mut buf), format!("{:032x}", 0xab));
        assert_eq!(key_hex(u128::MAX, &mut buf), "f".repeat(32));
    }

    #[test]
    fn row_groups_hold_at_most_a_million_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.parquet");
        let cols = [col("x", Int32, false, "x")];
        let mut w = TableWriter::create(&path, "g", &cols, &[0]).unwrap();
        for i in 0..(ROW_GROUP_ROWS as i32 + 1) {
            w.append(&[Value::Int32(Some(i))]).unwrap();
        }
        w.finish().unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap())
                .unwrap();
        use parquet::file::reader::FileReader as _;
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, [ROW_GROUP_ROWS as i64, 1]);
    }

    #[test]
    fn same_rows_same_bytes_and_rows_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            let mut w = TableWriter::create(&path, "daily", DAILY, &[0]).unwrap();
            for d in 0..20_000 {
                let empty = d % 3 == 0;
                w.append(&[
                    Value::Date(d),
                    Value::Int64(Some(i64::from(d % 7))),
                    Value::Double(Some(f64::from(d) / 3.0)),
                    Value::Double((!empty).then_some(1.5)),
                    Value::Double(None),
                    Value::Double(None),
                    Value::Int64(Some(1)),
                    Value::Int64(Some(0)),
                ])
                .unwrap();
            }
            assert_eq!(w.finish().unwrap(), 20_000);
            std::fs::read(path).unwrap()
        };
        let (a, b) = (write("a.parquet"), write("b.parquet"));
        assert_eq!(a, b);
        let reader = parquet::file::reader::SerializedFileReader::new(
            std::fs::File::open(dir.path().join("a.parquet")).unwrap(),
        )
        .unwrap();
        use parquet::file::reader::FileReader as _;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 20_000);
        assert_eq!(
            meta.file_metadata().created_by(),
            Some("bankpipe export, features v1")
        );
        let col = meta.row_group(0).column(0);
        // The level is not stored in the file, only the codec.
        assert!(matches!(col.compression(), Compression::ZSTD(_)));
        assert!(col.statistics().is_some(), "statistics on");
    }
}
