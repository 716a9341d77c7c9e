//! What `BENCHMARKS.md` says about the machine: CPUs, CPU model, kernel,
//! compiler and tool versions, load, date.

/// The machine and the tools, as found when the run started: what
/// `BENCHMARKS.md` lists, item by item (`nproc`, CPU model, kernel, rustc
/// and each external tool's version, load average, date).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine(pub Vec<(String, String)>);

/// The first line of `program args`'s output, if it runs and succeeds.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let (ok, out) = crate::extpeers::probe(program, args)?;
    ok.then(|| out.lines().next().unwrap_or("").trim().to_string())
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
        let version =
            |tool: &str, args: &[&str]| first_line(tool, args).unwrap_or("not found".into());
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let items = [
            ("CPUs (`nproc`)", nproc.to_string()),
            (
                "CPU",
                cpu_model(&read("/proc/cpuinfo")).unwrap_or("unknown".into()),
            ),
            (
                "kernel",
                read("/proc/sys/kernel/osrelease").trim().to_string(),
            ),
            ("rustc", version("rustc", &["--version"])),
            ("nim", version("nim", &["--version"])),
            ("cc", version("cc", &["--version"])),
            (
                "redis-benchmark",
                version("redis-benchmark", &["--version"]),
            ),
            ("strace", version("strace", &["-V"])),
            ("taskset", version("taskset", &["--version"])),
            ("load average when the run started", {
                let load = read("/proc/loadavg");
                load.split_ascii_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            ("date", version("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ];
        Machine(items.map(|(k, v)| (k.to_string(), v)).to_vec())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Markdown list of it.
    pub fn markdown(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("- {k}: {v}\n"))
            .collect()
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
        let date = m.get("date").unwrap();
        assert!(date.ends_with(" UTC") && date.len() == 20, "{date}");
        let md = m.markdown();
        assert!(md.contains("- CPUs (`nproc`): "), "{md}");
        assert!(md.contains("- strace: "), "{md}");
    }
}
