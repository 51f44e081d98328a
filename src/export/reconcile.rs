//! The check before anything is published (issue #10): the rows of
//! `transactions.parquet`, the sum of `customers.txn_count` and of `daily.txn_count` all
//! equal the warehouse's own count of the quarter's loaded transactions, and their
//! exact amount sums (minor units) equal its exact sum. The warehouse's figures come
//! from its own SQL (`Warehouse::quarter_control`), not from the rows the features were
//! computed from, so a row lost or changed on the way shows here.

use super::features::Scale;

/// Rows and exact amount of one dataset (or of the warehouse).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Rows (transactions counted).
    pub rows: u64,
    /// Exact sum, minor units at the export scale.
    pub amount: i128,
}

/// Checks every dataset's totals against the control totals; the error says every
/// mismatch.
///
/// # Errors
/// A sentence naming each dataset that does not add up, and by how much.
pub fn reconcile(control: Totals, datasets: &[(&str, Totals)], scale: Scale) -> Result<(), String> {
    let mut wrong = Vec::new();
    for (name, t) in datasets {
        if t.rows != control.rows {
            wrong.push(format!(
                "{name} counts {} transactions, the warehouse {}",
                t.rows, control.rows
            ));
        }
        if t.amount != control.amount {
            wrong.push(format!(
                "{name} sums to {}, the warehouse to {}",
                scale.text(t.amount),
                scale.text(control.amount)
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL: Totals = Totals {
        rows: 3,
        amount: 1_050,
    };

    #[test]
    fn equal_totals_pass() {
        assert!(reconcile(CONTROL, &[("a", CONTROL), ("b", CONTROL)], Scale(2)).is_ok());
    }

    #[test]
    fn a_row_or_a_cent_off_fails_naming_the_dataset() {
        let fewer = Totals {
            rows: 2,
            amount: 1_050,
        };
        let cent = Totals {
            rows: 3,
            amount: 1_049,
        };
        let e = reconcile(
            CONTROL,
            &[
                ("transactions.parquet", fewer),
                ("daily", CONTROL),
                ("customers", cent),
            ],
            Scale(2),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "transactions.parquet counts 2 transactions, the warehouse 3; \
             customers sums to 10.49, the warehouse to 10.50"
        );
    }
}
