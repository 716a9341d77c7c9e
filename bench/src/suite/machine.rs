//! What `BENCHMARKS.md` says about the machine: CPUs, CPU model, kernel,
//! compiler and tool versions, load, date.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine and the tools, as found when the run started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// CPUs this process may run on (what `nproc` prints).
    pub nproc: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// The first line of each external tool's version output (or that it
    /// is missing), e.g. `("nim", "Nim Compiler Version 1.6.10 ...")`.
    pub tools: Vec<(String, String)>,
    /// `/proc/loadavg`'s first three fields.
    pub load: String,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
}

/// The first line of `program args`'s output (stdout, else stderr), if it
/// runs and succeeds.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// `YYYY-MM-DD HH:MM UTC` of a time in seconds since the Unix epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's
    // `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

impl Machine {
    /// Looks at this machine now.
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let tool = |name: &str, args: &[&str]| {
            (
                name.to_string(),
                first_line(name, args).unwrap_or_else(|| "not found".to_string()),
            )
        };
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            rustc: first_line("rustc", &["--version"]).unwrap_or_else(|| "not found".into()),
            tools: vec![
                tool("nim", &["--version"]),
                tool("cc", &["--version"]),
                tool("redis-benchmark", &["--version"]),
                tool("strace", &["-V"]),
                tool("taskset", &["--version"]),
            ],
            load: read("/proc/loadavg")
                .split_ascii_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            date: utc(secs),
        }
    }

    /// The Markdown list of it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "- CPUs (`nproc`): {}\n- CPU: {}\n- kernel: {}\n- rustc: {}\n",
            self.nproc, self.cpu, self.kernel, self.rustc
        );
        for (name, version) in &self.tools {
            out.push_str(&format!("- {name}: {version}\n"));
        }
        out.push_str(&format!(
            "- load average when the run started: {}\n- date: {}\n",
            self.load, self.date
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59 UTC");
        assert_eq!(
            utc(1_735_689_600 + 3 * 3600 + 7 * 60),
            "2025-01-01 03:07 UTC"
        );
    }

    #[test]
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.00GHz\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Some CPU @ 2.00GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn probes_this_machine() {
        let m = Machine::probe();
        assert!(m.nproc >= 1);
        assert!(m.date.ends_with(" UTC"));
        let md = m.markdown();
        assert!(md.contains("- CPUs (`nproc`): "), "{md}");
        assert!(md.contains("- strace: "), "{md}");
    }
}
