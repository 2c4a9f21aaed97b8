//! Signal names and numbers as `kill` takes them: "9", "KILL", "SIGKILL", "sigkill".

use std::str::FromStr;

use nix::sys::signal::Signal;

pub fn parse(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9"), Some(Signal::SIGKILL));
        assert_eq!(parse("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse("NOPE"), None);
        assert_eq!(parse("99"), None);
    }
}
