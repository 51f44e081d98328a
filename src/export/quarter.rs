//! Calendar quarters of `transaction_at` (issue #10): `2016Q3` is July to September
//! 2016. The stored timestamps are wall-clock texts `YYYY-MM-DD HH:MM:SS` without zone,
//! so a quarter's bounds are the texts of its first instant and of the next quarter's
//! first instant, compared as text by both warehouses.

use std::fmt;

use crate::model::Date;

/// One calendar quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quarter {
    /// Year, e.g. 2016.
    pub year: i32,
    /// Quarter of the year, 1 to 4.
    pub q: u8,
}

impl Quarter {
    /// Parses `2016Q3` (the `Q` in either case).
    pub fn parse(text: &str) -> Option<Quarter> {
        let text = text.trim();
        let (year, q) = text.split_once(['Q', 'q'])?;
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) || q.len() != 1 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let q: u8 = q.parse().ok()?;
        ((1..=4).contains(&q) && year >= 1).then_some(Quarter { year, q })
    }

    /// The quarter holding `date`.
    pub fn of(date: Date) -> Quarter {
        Quarter {
            year: date.year,
            q: (date.month - 1) / 3 + 1,
        }
    }

    /// The three months, as (year, month).
    pub fn months(self) -> [(i32, u8); 3] {
        let first = (self.q - 1) * 3 + 1;
        [
            (self.year, first),
            (self.year, first + 1),
            (self.year, first + 2),
        ]
    }

    /// The first day.
    pub fn first_day(self) -> Date {
        Date {
            year: self.year,
            month: (self.q - 1) * 3 + 1,
            day: 1,
        }
    }

    /// The last day.
    pub fn last_day(self) -> Date {
        Date::from_days_since_epoch(self.next().first_day().days_since_epoch() - 1)
    }

    /// Number of days (90 to 92).
    pub fn days(self) -> usize {
        (self.next().first_day().days_since_epoch() - self.first_day().days_since_epoch()) as usize
    }

    /// The quarter before.
    pub fn previous(self) -> Quarter {
        if self.q == 1 {
            Quarter {
                year: self.year - 1,
                q: 4,
            }
        } else {
            Quarter {
                year: self.year,
                q: self.q - 1,
            }
        }
    }

    /// The quarter after.
    pub fn next(self) -> Quarter {
        if self.q == 4 {
            Quarter {
                year: self.year + 1,
                q: 1,
            }
        } else {
            Quarter {
                year: self.year,
                q: self.q + 1,
            }
        }
    }

    /// Seconds since 1970-01-01 00:00:00 (wall clock) of the quarter's first instant.
    pub fn start_seconds(self) -> i64 {
        self.first_day().days_since_epoch() * 86_400
    }

    /// Seconds of the next quarter's first instant (the exclusive end).
    pub fn end_seconds(self) -> i64 {
        self.next().start_seconds()
    }

    /// `YYYY-MM-DD 00:00:00` of the first instant, as stored timestamps compare.
    pub fn start_text(self) -> String {
        format!("{} 00:00:00", self.first_day())
    }

    /// The exclusive end as stored timestamps compare (the next quarter's start).
    pub fn end_text(self) -> String {
        self.next().start_text()
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Q{}", self.year, self.q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let q = Quarter::parse("2016Q3").unwrap();
        assert_eq!(q, Quarter { year: 2016, q: 3 });
        assert_eq!(q.to_string(), "2016Q3");
        assert_eq!(Quarter::parse("2016q1").unwrap().to_string(), "2016Q1");
        for bad in [
            "2016Q5", "2016Q0", "16Q3", "2016-Q3", "2016Q", "Q3", "2016Q33", "",
        ] {
            assert_eq!(Quarter::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bounds_and_neighbours() {
        let q = Quarter::parse("2016Q3").unwrap();
        assert_eq!(q.first_day().to_string(), "2016-07-01");
        assert_eq!(q.last_day().to_string(), "2016-09-30");
        assert_eq!(q.days(), 92);
        assert_eq!(q.start_text(), "2016-07-01 00:00:00");
        assert_eq!(q.end_text(), "2016-10-01 00:00:00");
        assert_eq!(q.previous().to_string(), "2016Q2");
        assert_eq!(
            Quarter::parse("2016Q1").unwrap().previous().to_string(),
            "2015Q4"
        );
        assert_eq!(
            Quarter::parse("2016Q4").unwrap().next().to_string(),
            "2017Q1"
        );
        assert_eq!(Quarter::parse("2016Q1").unwrap().days(), 91, "leap year");
        assert_eq!(Quarter::parse("2015Q1").unwrap().days(), 90);
        assert_eq!(
            Quarter::of(Date::new(2016, 9, 30).unwrap()),
            Quarter::parse("2016Q3").unwrap()
        );
        assert_eq!(q.months(), [(2016, 7), (2016, 8), (2016, 9)]);
    }
}
