//! Signal names and numbers as `kill` takes them, as runc does: "9", "KILL", "SIGKILL",
//! "sigkill", any number up to 64 (0 only checks that the container's init is there), and the
//! real-time signals as "RTMIN", "RTMIN+3", "RTMAX-1" in runc's (Go's, glibc's) numbering, where
//! RTMIN is 34: what "RTMIN+3" means to the container does not depend on the libc chitin was
//! built with (musl's RTMIN is 35).

use std::str::FromStr;

use nix::sys::signal::Signal;

const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

pub fn parse(s: &str) -> Option<i32> {
    let (min, max) = (RTMIN, RTMAX);
    if let Ok(n) = s.parse::<i32>() {
        return (0..=max).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, rest: &str| -> Option<i32> {
        let n = match rest.as_bytes().first() {
            None => base,
            Some(b'+') => base.checked_add(rest[1..].parse::<i32>().ok()?)?,
            Some(b'-') => base.checked_sub(rest[1..].parse::<i32>().ok()?)?,
            _ => return None,
        };
        (min..=max).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(min, rest);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(max, rest);
    }
    Signal::from_str(&format!("SIG{name}"))
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("KILL"), Some(9));
        assert_eq!(parse("sigterm"), Some(15));
        assert_eq!(parse("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("NOPE"), None);
        assert_eq!(parse("99"), None);
        assert_eq!(parse("-1"), None);
    }

    #[test]
    fn real_time_signals() {
        assert_eq!(parse("RTMIN"), Some(34));
        assert_eq!(parse("SIGRTMIN+3"), Some(37));
        assert_eq!(parse("rtmin+3"), Some(37));
        assert_eq!(parse("RTMAX-1"), Some(63));
        assert_eq!(parse("RTMAX"), Some(64));
        assert_eq!(parse("37"), Some(37));
        assert_eq!(parse("64"), Some(64));
        assert_eq!(parse("RTMAX+1"), None);
        assert_eq!(parse("RTMIN-1"), None);
        assert_eq!(parse("RTMIN+x"), None);
        // libc's own, but the kernel's all the same: runc sends them too.
        assert_eq!(parse("32"), Some(32));
    }
}
