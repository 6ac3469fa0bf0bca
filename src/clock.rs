//! Wall-clock time as the store and the protocol count it: Unix seconds and milliseconds. One
//! place, so that every module reads the same clock (and none reaches into another's internals
//! for it).

/// Unix seconds now.
pub fn unix_now() -> i64 {
    unix_ms().div_euclid(1000)
}

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
