//! Stored rows → [`SourceRow`]s: the warehouse's canonical texts parsed into exact
//! numbers. A row that does not parse (a damaged warehouse) is not an error here: it is
//! counted and left out, and the reconciliation then refuses to publish, naming it.

use compact_str::CompactString;

use super::features::{Decimal, Scale, SourceRow};
use crate::model::{Amount, Date};
use crate::warehouse::ExportRow;

/// Rows left out because they did not parse.
#[derive(Debug, Default, Clone)]
pub struct Unreadable {
    /// How many.
    pub rows: u64,
    /// The first one: its transaction id and why.
    pub first: Option<String>,
}

impl Unreadable {
    fn add(&mut self, id: &str, why: String) {
        self.rows += 1;
        if self.first.is_none() {
            self.first = Some(format!("{id}: {why}"));
        }
    }
}

fn digits(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 10 || &text[4..5] != "-" || &text[7..8] != "-" {
        return None;
    }
    Date::new(
        digits(&text[0..4])? as i32,
        digits(&text[5..7])? as u8,
        digits(&text[8..10])? as u8,
    )
}

/// `YYYY-MM-DD HH:MM:SS` → seconds since 1970 (wall clock).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if text.len() != 19 || !text.is_char_boundary(10) || &text[10..11] != " " {
        return None;
    }
    let date = parse_date(&text[..10])?;
    let t = &text[11..];
    if &t[2..3] != ":" || &t[5..6] != ":" {
        return None;
    }
    let (h, m, s) = (digits(&t[0..2])?, digits(&t[3..5])?, digits(&t[6..8])?);
    (h < 24 && m < 60 && s < 60)
        .then(|| date.days_since_epoch() * 86_400 + i64::from(h * 3600 + m * 60 + s))
}

/// Parses one stored row at the export's money scale, or says why it cannot.
///
/// # Errors
/// Which field is damaged.
pub fn parse(row: &ExportRow<'_>, scale: Scale) -> Result<SourceRow, String> {
    if row.transaction_id.is_empty() || row.customer_id.is_empty() {
        return Err("empty transaction or customer id".into());
    }
    let at = row
        .transaction_at
        .and_then(parse_timestamp)
        .ok_or_else(|| format!("transaction_at {:?} is not a timestamp", row.transaction_at))?;
    let amount = row
        .amount
        .and_then(|a| Amount::parse(a, scale.0).ok())
        .ok_or_else(|| {
            format!(
                "amount {:?} is not a decimal at scale {}",
                row.amount, scale.0
            )
        })?
        .minor;
    let dob = match row.customer_dob {
        None => None,
        Some(t) => Some(parse_date(t).ok_or_else(|| format!("customer_dob {t:?} is not a date"))?),
    };
    let balance = match row.account_balance {
        None => None,
        Some(t) => Some(
            Decimal::parse(t).ok_or_else(|| format!("account_balance {t:?} is not a decimal"))?,
        ),
    };
    Ok(SourceRow {
        customer_id: CompactString::from(row.customer_id),
        transaction_id: CompactString::from(row.transaction_id),
        at,
        amount,
        dob,
        gender: row.gender.map(CompactString::from),
        location: row.location.map(CompactString::from),
        balance,
    })
}

/// Parses `row`, counting it in `unreadable` when it does not parse.
pub fn parse_or_count(
    row: &ExportRow<'_>,
    scale: Scale,
    unreadable: &mut Unreadable,
) -> Option<SourceRow> {
    match parse(row, scale) {
        Ok(r) => Some(r),
        Err(why) => {
            tracing::warn!(transaction_id = row.transaction_id, reason = %why, "Stored row cannot be read; left out (the reconciliation will fail).");
            unreadable.add(row.transaction_id, why);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(at: &'a str, amount: &'a str) -> ExportRow<'a> {
        ExportRow {
            transaction_id: "T1",
            customer_id: "C1",
            customer_dob: Some("1994-01-10"),
            gender: Some("F"),
            location: None,
            account_balance: Some("-12.5"),
            transaction_at: Some(at),
            amount: Some(amount),
        }
    }

    #[test]
    fn parses_stored_texts_exactly() {
        let r = parse(&row("2016-08-02 14:32:07", "25.5"), Scale(2)).unwrap();
        assert_eq!(r.amount, 2550);
        assert_eq!(
            r.at,
            Date::new(2016, 8, 2).unwrap().days_since_epoch() * 86_400 + 14 * 3600 + 32 * 60 + 7
        );
        assert_eq!(r.dob, Date::new(1994, 1, 10));
        assert_eq!(
            r.balance,
            Some(Decimal {
                minor: -125,
                scale: 1
            })
        );
        assert_eq!(r.location, None);
    }

    #[test]
    fn damaged_rows_are_counted_with_a_reason() {
        let mut u = Unreadable::default();
        for (at, amount) in [
            ("2016-09-31 12:00:00", "1.00"),
            ("2016-08-02T14:32:07", "1.00"),
            ("2016-08-02 24:00:00", "1.00"),
            ("2016-08-02 14:32:07", "12,50"),
            ("2016-08-02 14:32:07", "1.005"),
        ] {
            assert!(
                parse_or_count(&row(at, amount), Scale(2), &mut u).is_none(),
                "{at} {amount}"
            );
        }
        assert_eq!(u.rows, 5);
        assert_eq!(
            u.first.as_deref(),
            Some("T1: transaction_at Some(\"2016-09-31 12:00:00\") is not a timestamp")
        );
    }
}
