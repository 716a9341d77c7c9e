//! What `BENCHMARKS.md` says about the machine: CPUs, CPU model, kernel,
//! compiler and tool versions, load, date.

use std::process::Command;

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
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown".into()),
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
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.00GHz\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Some CPU @ 2.00GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn probes_this_machine() {
        let m = Machine::probe();
        assert!(m.nproc >= 1);
        assert!(m.date.ends_with(" UTC") && m.date.len() == 20, "{}", m.date);
        let md = m.markdown();
        assert!(md.contains("- CPUs (`nproc`): "), "{md}");
        assert!(md.contains("- strace: "), "{md}");
    }
}
