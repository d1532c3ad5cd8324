//! What a command-line value means: the parsers of option values that are
//! more than a plain string or integer (sizes, frame rates and rate limits,
//! durations, pixel formats, groups, bus modes), which the commands' options
//! name in their `#[arg(value_parser = ...)]`, and [`limit`], what a parsed
//! rate limit means to the libraries.
//!
//! A bad value is reported by the parser's `Err(String)`: one sentence that
//! quotes the value and says what to give instead. clap prints it on stderr
//! after `error: invalid value 'VALUE' for '--OPTION <OPTION>': ` and exits
//! with status 2, before any command runs.

/// `--format`: a pixel format name.
pub fn parse_format(s: &str) -> Result<shm_layout::PixelFormat, String> {
    s.parse()
        .map_err(|e: shm_layout::format::UnknownPixelFormat| e.to_string())
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("{s:?} is not a size: use WIDTHxHEIGHT, e.g. 640x480 (1 to 16384 each)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| err())?,
        h.trim().parse().map_err(|_| err())?,
    );
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(err());
    }
    Ok((w, h))
}

/// Parses a frame rate: frames per second, 0 = unpaced (as fast as
/// possible).
pub fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=100_000.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a frame rate: use a number from 0 (unpaced) to 100000"
        )),
    }
}

/// Parses a rate limit: frames per second, 0 = no limit (as `--fps 0` is
/// unpaced).
pub fn parse_max_fps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=100_000.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a rate limit: use frames per second from 0 (no limit) to 100000"
        )),
    }
}

/// A rate limit as the libraries take it: `None` for no limit (0).
pub fn limit(max_fps: Option<f64>) -> Option<f64> {
    max_fps.filter(|f| *f > 0.0)
}

/// Parses a group given as a numeric gid or a name looked up in /etc/group.
pub fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| {
        format!("cannot read /etc/group to look up {s:?} ({e}): give a numeric gid")
    })?;
    lookup_group(&groups, s).ok_or_else(|| {
        format!("no group named {s:?} in /etc/group: give an existing group name or a numeric gid (see `getent group`)")
    })
}

/// Finds `name`'s gid in the text of an /etc/group file.
fn lookup_group(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.trim().parse().ok()
    })
}

/// Parses a bus permission mode: 600 or 660 (octal, an optional leading 0).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    match s.trim_start_matches('0') {
        "600" => Ok(0o600),
        "660" => Ok(0o660),
        _ => Err(format!(
            "{s:?} is not a bus mode: use 600 (owner only) or 660 (owner and group); consumers need read and write, so other modes cannot work"
        )),
    }
}

/// Parses a duration: a number of seconds above 0 (up to 10^7).
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1e7 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a duration: use a number of seconds above 0"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_modes() {
        let groups = "root:x:0:\nvideo:x:44:alice,bob\nbroken\nvision:x:1001:\n";
        assert_eq!(lookup_group(groups, "video"), Some(44));
        assert_eq!(lookup_group(groups, "vision"), Some(1001));
        assert_eq!(lookup_group(groups, "vid"), None);
        assert_eq!(lookup_group(groups, "broken"), None);
        assert_eq!(parse_group("4242"), Ok(4242));
        assert!(parse_group("no-such-group-framebus")
            .unwrap_err()
            .contains("numeric gid"));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert!(parse_mode("644").unwrap_err().contains("600"));
        assert!(parse_mode("777").is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        assert_eq!(parse_max_fps("0"), Ok(0.0));
        assert_eq!(limit(Some(0.0)), None);
        assert_eq!(limit(None), None);
        assert_eq!(limit(Some(2.5)), Some(2.5));
        assert!(parse_max_fps("-1").unwrap_err().contains("0 (no limit)"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_size("1920X1080"), Ok((1920, 1080)));
        assert!(parse_size("x").is_err());
    }
}
