//! Rule schedules: which days and hours a rule applies, evaluated against a clock the caller
//! passes in (the config's time zone), so that matching stays pure and testable.
//!
//! Owns: parsing `days`/`from`/`to` values and deciding whether an instant falls in the window.
//! Must not read the system clock or know about YAML positions (the caller locates errors).

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Timelike};

/// Minutes in a day: the exclusive end of a window that runs to midnight.
const DAY_MINUTES: u16 = 24 * 60;

/// When a rule applies. A window whose `from` is later than its `to` wraps past midnight: it
/// starts on a listed day and ends on the next morning (`{days: [fri], from: "18:00", to:
/// "09:00"}` holds on Friday 23:00 and on Saturday 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Bit 0 = Monday … bit 6 = Sunday: the days on which a window starts.
    days: u8,
    /// Start of the window, minutes after midnight (inclusive).
    from: u16,
    /// End of the window, minutes after midnight (exclusive); `DAY_MINUTES` for midnight.
    to: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
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
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| format!("`{name}` is not a day; use mon, tue, wed, thu, fri, sat or sun"))
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
        let mut mask = 0u8;
        for &day in days {
            if day > 6 {
                return Err(format!("day {day} is out of range"));
            }
            mask |= 1 << day;
        }
        if days.is_empty() {
            mask = 0x7f;
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

    /// Does `now` fall in the window?
    pub fn holds<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> bool {
        let day = now.weekday().num_days_from_monday();
        let minute = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
        if self.from < self.to {
            self.on(day) && self.from <= minute && minute < self.to
        } else {
            // Wraps past midnight: the evening part belongs to today, the morning part to the
            // window that started yesterday.
            let yesterday = (day + 6) % 7;
            (self.on(day) && minute >= self.from) || (self.on(yesterday) && minute < self.to)
        }
    }
}

impl fmt::Display for Schedule {
    /// `sat,sun 18:00-09:00`, `mon-sun 09:00-18:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..7u32)
                .filter(|&d| self.on(d))
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
