//! Rule schedules: which days and hours a rule applies, evaluated against a clock the caller
//! passes in (the config's time zone), so that matching stays pure and testable.
//!
//! Owns: parsing `days`/`from`/`to` values and deciding whether an instant falls in the window.
//! Must not read the system clock or know about YAML positions (the caller locates errors).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike};

/// Minutes in a day: the exclusive end of a window that runs to midnight.
const DAY_MINUTES: u16 = 24 * 60;

/// When a rule applies. A window whose `from` is later than its `to` wraps past midnight: it
/// starts on a listed day and ends on the next morning (`{days: [fri], from: "18:00", to:
/// "09:00"}` holds on Friday 23:00 and on Saturday 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Bit 0 = Monday … bit 6 = Sunday, bit 7 = `workday`, bit 8 = `offday`: the days on which a
    /// window starts.
    days: u16,
    /// Start of the window, minutes after midnight (inclusive).
    from: u16,
    /// End of the window, minutes after midnight (exclusive); `DAY_MINUTES` for midnight.
    to: u16,
}

const DAY_NAMES: [&str; 9] = [
    "mon", "tue", "wed", "thu", "fri", "sat", "sun", "workday", "offday",
];
/// The `days` value of `workday` (Monday to Friday unless a holiday, plus the calendar's
/// working days).
pub const WORKDAY: u8 = 7;
/// The `days` value of `offday` (every day that is not a workday).
pub const OFFDAY: u8 = 8;
/// Every weekday bit (a schedule without `days`).
const EVERY_DAY: u16 = 0x7f;

/// Public holidays and adjusted working days (调休), merged from every rules file's
/// `calendar:`. Dates are days of the config's time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    /// Days off although Monday to Friday.
    pub holidays: BTreeSet<NaiveDate>,
    /// Working days although Saturday or Sunday.
    pub workdays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// Whether `date` is a working day: Monday to Friday unless a holiday, or a listed workday.
    pub fn is_workday(&self, date: NaiveDate) -> bool {
        if self.workdays.contains(&date) {
            return true;
        }
        date.weekday().num_days_from_monday() < 5 && !self.holidays.contains(&date)
    }
}

/// Parses `YYYY-MM-DD` or a range `YYYY-MM-DD..YYYY-MM-DD` (both ends included) into its days.
pub fn parse_dates(text: &str) -> Result<Vec<NaiveDate>, String> {
    let date = |t: &str| {
        NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").map_err(|_| {
            format!("`{t}` is not a date; write YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD")
        })
    };
    match text.split_once("..") {
        None => Ok(vec![date(text)?]),
        Some((a, b)) => {
            let (first, last) = (date(a)?, date(b)?);
            if last < first {
                return Err(format!("`{text}`: the range ends before it starts"));
            }
            if (last - first).num_days() > 366 {
                return Err(format!("`{text}`: a range may span at most a year"));
            }
            Ok(first.iter_days().take_while(|d| *d <= last).collect())
        }
    }
}
const LONG_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Parses a day name (`mon`, `Monday`, …) into 0 = Monday … 6 = Sunday.
pub fn parse_day(name: &str) -> Result<u8, String> {
    let lower = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .zip(LONG_DAY_NAMES.iter())
        .position(|(short, long)| lower == *short || lower == *long)
        .or_else(|| DAY_NAMES.iter().position(|d| lower == *d))
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| {
            format!(
                "`{name}` is not a day; use mon, tue, wed, thu, fri, sat, sun, workday or offday"
            )
        })
}

/// Parses `HH:MM` (or `H:MM`) into minutes after midnight; `24:00` only when `end_of_day`.
pub fn parse_time(text: &str, end_of_day: bool) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time; write HH:MM, e.g. \"09:00\" or \"18:30\"");
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 || hours > 24 || (hours == 24 && (minutes != 0 || !end_of_day)) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

impl Schedule {
    /// A schedule from parsed parts: `days` as 0 = Monday … 6 = Sunday (empty: every day),
    /// `from`/`to` in minutes after midnight (left out: the start / end of the day).
    pub fn new(days: &[u8], from: Option<u16>, to: Option<u16>) -> Result<Schedule, String> {
        let mut mask = 0u16;
        for &day in days {
            if day > OFFDAY {
                return Err(format!("day {day} is out of range"));
            }
            mask |= 1 << day;
        }
        if days.is_empty() {
            mask = EVERY_DAY;
        }
        let from = from.unwrap_or(0);
        let to = to.unwrap_or(DAY_MINUTES);
        if from == to {
            return Err("`from` and `to` are equal: the window would be empty \
                 (leave both out for the whole day)"
                .into());
        }
        Ok(Schedule {
            days: mask,
            from,
            to,
        })
    }

    fn on(&self, day: u32) -> bool {
        day < 7 && self.days & (1 << day) != 0
    }

    /// Whether a window starts on `date`: its weekday is listed, or `workday`/`offday` is and
    /// the calendar says so.
    fn on_date(&self, date: NaiveDate, calendar: &Calendar) -> bool {
        if self.on(date.weekday().num_days_from_monday()) {
            return true;
        }
        let workday = self.days & (1 << WORKDAY) != 0;
        let offday = self.days & (1 << OFFDAY) != 0;
        if !workday && !offday {
            return false;
        }
        let is_workday = calendar.is_workday(date);
        (workday && is_workday) || (offday && !is_workday)
    }

    /// Whether the schedule names `workday` or `offday` (so depends on a calendar).
    pub fn uses_calendar(&self) -> bool {
        self.days & ((1 << WORKDAY) | (1 << OFFDAY)) != 0
    }

    /// Does `now` fall in the window (weekdays only; `workday` as Monday to Friday)?
    pub fn holds<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> bool {
        self.holds_in(now, &Calendar::default())
    }

    /// Does `now` fall in the window, with `calendar`'s holidays and working days?
    pub fn holds_in<Tz: TimeZone>(&self, now: &DateTime<Tz>, calendar: &Calendar) -> bool {
        let today = now.date_naive();
        let minute = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
        if self.from < self.to {
            self.on_date(today, calendar) && self.from <= minute && minute < self.to
        } else {
            // Wraps past midnight: the evening part belongs to today, the morning part to the
            // window that started yesterday.
            let yesterday = today.pred_opt().unwrap_or(today);
            (self.on_date(today, calendar) && minute >= self.from)
                || (self.on_date(yesterday, calendar) && minute < self.to)
        }
    }
}

impl fmt::Display for Schedule {
    /// `sat,sun 18:00-09:00`, `mon-sun 09:00-18:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == EVERY_DAY {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..9u32)
                .filter(|&d| self.days & (1 << d) != 0)
                .filter_map(|d| DAY_NAMES.get(d as usize).copied())
                .collect();
            f.write_str(&names.join(","))?;
        }
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, " {}-{}", hm(self.from), hm(self.to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    /// 2026-03-02 is a Monday.
    fn at(day_of_march: u32, hour: u32, minute: u32) -> DateTime<chrono_tz::Tz> {
        Shanghai
            .with_ymd_and_hms(2026, 3, day_of_march, hour, minute, 0)
            .single()
            .unwrap()
    }

    #[test]
    fn times_parse_and_refuse() {
        let table: &[(&str, bool, Option<u16>)] = &[
            ("09:00", false, Some(540)),
            ("9:05", false, Some(545)),
            ("23:59", false, Some(1439)),
            ("24:00", true, Some(1440)),
            ("24:00", false, None),
            ("24:01", true, None),
            ("12:60", false, None),
            ("1200", false, None),
            ("ab:cd", false, None),
            ("", false, None),
            ("123:00", false, None),
        ];
        for &(text, end, want) in table {
            assert_eq!(parse_time(text, end).ok(), want, "{text}");
        }
    }

    #[test]
    fn days_parse() {
        assert_eq!(parse_day("mon"), Ok(0));
        assert_eq!(parse_day("Sunday"), Ok(6));
        assert!(parse_day("funday").is_err());
    }

    #[test]
    fn windows_hold_at_the_right_instants() {
        // (days, from, to, instant, holds)
        type Case = (
            &'static [u8],
            Option<u16>,
            Option<u16>,
            (u32, u32, u32),
            bool,
        );
        let table: &[Case] = &[
            // Weekend all day.
            (&[5, 6], None, None, (7, 12, 0), true), // Saturday
            (&[5, 6], None, None, (8, 23, 59), true), // Sunday
            (&[5, 6], None, None, (9, 0, 0), false), // Monday
            // Office hours, every day: from inclusive, to exclusive.
            (&[], Some(540), Some(1080), (2, 9, 0), true),
            (&[], Some(540), Some(1080), (2, 17, 59), true),
            (&[], Some(540), Some(1080), (2, 18, 0), false),
            (&[], Some(540), Some(1080), (2, 8, 59), false),
            // Wrap past midnight, every day.
            (&[], Some(1080), Some(540), (2, 18, 0), true),
            (&[], Some(1080), Some(540), (2, 23, 30), true),
            (&[], Some(1080), Some(540), (3, 0, 0), true),
            (&[], Some(1080), Some(540), (3, 8, 59), true),
            (&[], Some(1080), Some(540), (3, 9, 0), false),
            (&[], Some(1080), Some(540), (3, 12, 0), false),
            // Wrap on Friday only: Saturday morning belongs to Friday's window.
            (&[4], Some(1080), Some(540), (6, 23, 0), true), // Friday night
            (&[4], Some(1080), Some(540), (7, 8, 0), true),  // Saturday morning
            (&[4], Some(1080), Some(540), (7, 23, 0), false), // Saturday night
            (&[4], Some(1080), Some(540), (6, 8, 0), false), // Friday morning
            // Sunday night wraps into Monday morning.
            (&[6], Some(1320), Some(360), (9, 5, 0), true),
            (&[6], Some(1320), Some(360), (2, 5, 0), true),
            (&[6], Some(1320), Some(360), (3, 5, 0), false),
        ];
        for (i, &(days, from, to, (d, h, m), want)) in table.iter().enumerate() {
            let schedule = Schedule::new(days, from, to).unwrap();
            assert_eq!(schedule.holds(&at(d, h, m)), want, "case {i}: {schedule}");
        }
    }

    #[test]
    fn workday_and_offday_follow_the_calendar() {
        let mut cal = Calendar::default();
        // Monday 2026-03-02 a holiday, Saturday 2026-03-07 a working day (调休).
        cal.holidays.extend(parse_dates("2026-03-02").unwrap());
        cal.workdays
            .extend(parse_dates("2026-03-07..2026-03-07").unwrap());
        let work = Schedule::new(&[WORKDAY], Some(540), Some(1080)).unwrap();
        let off = Schedule::new(&[OFFDAY], None, None).unwrap();
        assert!(!work.holds_in(&at(2, 10, 0), &cal));
        assert!(off.holds_in(&at(2, 10, 0), &cal));
        assert!(work.holds_in(&at(3, 10, 0), &cal));
        assert!(work.holds_in(&at(7, 10, 0), &cal));
        assert!(!off.holds_in(&at(7, 10, 0), &cal));
        assert!(off.holds_in(&at(8, 10, 0), &cal));
        // Without a calendar: Monday to Friday.
        assert!(work.holds(&at(2, 10, 0)));
        assert_eq!(work.to_string(), "workday 09:00-18:00");
        assert_eq!(parse_day("workday"), Ok(WORKDAY));
        assert_eq!(parse_dates("2026-10-01..2026-10-08").unwrap().len(), 8);
        assert!(parse_dates("2026-10-08..2026-10-01").is_err());
        assert!(parse_dates("2026-13-01").is_err());
    }

    #[test]
    fn an_empty_window_is_refused() {
        assert!(Schedule::new(&[], Some(540), Some(540)).is_err());
    }

    #[test]
    fn displays_for_an_operator() {
        let s = Schedule::new(&[5, 6], Some(1080), Some(540)).unwrap();
        assert_eq!(s.to_string(), "sat,sun 18:00-09:00");
        let s = Schedule::new(&[], None, None).unwrap();
        assert_eq!(s.to_string(), "daily 00:00-24:00");
    }
}
