//! A tiny command-line parser: `--key value`, `--key=value` and `--flag`.
//!
//! Usage: build an [`Args`] from the process arguments, `take` each option
//! with its default, then call [`Args::finish`], which rejects anything left
//! over (unknown options, stray positionals).

use std::str::FromStr;

#[derive(Debug)]
pub struct Args {
    items: Vec<String>,
}

impl Args {
    /// The process arguments, without the program name.
    pub fn from_env() -> Self {
        Self::new(std::env::args().skip(1))
    }

    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Self {
        Args {
            items: items.into_iter().map(Into::into).collect(),
        }
    }

    /// True if `--help` or `-h` was given.
    pub fn wants_help(&self) -> bool {
        self.items.iter().any(|a| a == "--help" || a == "-h")
    }

    /// Removes and returns the raw value of option `name` (without `--`),
    /// the last one if it is given several times.
    pub fn take_str(&mut self, name: &str) -> Result<Option<String>, String> {
        let long = format!("--{name}");
        let with_eq = format!("--{name}=");
        let mut found = None;
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i] == long {
                if i + 1 >= self.items.len() {
                    return Err(format!("{long} needs a value"));
                }
                found = Some(self.items.remove(i + 1));
                self.items.remove(i);
            } else if let Some(v) = self.items[i].strip_prefix(&with_eq) {
                found = Some(v.to_string());
                self.items.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    /// Removes option `name` and parses its value, or returns `default`.
    pub fn take<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.take_str(name)? {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid value {v:?} for --{name}")),
        }
    }

    /// Removes the boolean flag `--name`; true if it was present.
    pub fn take_flag(&mut self, name: &str) -> bool {
        let long = format!("--{name}");
        let before = self.items.len();
        self.items.retain(|a| *a != long);
        self.items.len() != before
    }

    /// The arguments not consumed yet.
    pub fn into_vec(self) -> Vec<String> {
        self.items
    }

    /// Fails if any argument was not consumed.
    pub fn finish(self) -> Result<(), String> {
        match self.items.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument {a:?} (try --help)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_flags() {
        let mut a = Args::new(["--rounds", "5", "--secs=2.5", "--quiet", "--conns", "7"]);
        assert_eq!(a.take("rounds", 3u32).unwrap(), 5);
        assert_eq!(a.take("secs", 1.0f64).unwrap(), 2.5);
        assert_eq!(a.take("warmup", 1.0f64).unwrap(), 1.0);
        assert!(a.take_flag("quiet"));
        assert!(!a.take_flag("verbose"));
        assert_eq!(a.take("conns", 0usize).unwrap(), 7);
        a.finish().unwrap();
    }

    #[test]
    fn rejects_bad_input() {
        let mut a = Args::new(["--rounds", "x"]);
        assert!(a.take("rounds", 3u32).is_err());
        let mut a = Args::new(["--rounds"]);
        assert!(a.take("rounds", 3u32).is_err());
        let a = Args::new(["--bogus", "1"]);
        assert!(a.finish().is_err());
    }
}
