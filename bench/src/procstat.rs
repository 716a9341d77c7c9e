//! CPU time of a process, from `/proc/PID/stat`, and its resident memory,
//! from `/proc/PID/status` (Linux).
//!
//! `utime` and `stime` (fields 14 and 15) count clock ticks of all the
//! process's threads; `getconf CLK_TCK` gives ticks per second.

use std::io;
use std::process::Command;
use std::sync::OnceLock;

/// User and system CPU time of a process, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    /// Reads the CPU time of process `pid` so far.
    pub fn of(pid: u32) -> io::Result<CpuTicks> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        parse_stat(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat format"),
            )
        })
    }

    /// `self - earlier`, in seconds: (user, system).
    pub fn secs_since(self, earlier: CpuTicks) -> (f64, f64) {
        let hz = clock_ticks_per_sec() as f64;
        (
            self.user.saturating_sub(earlier.user) as f64 / hz,
            self.system.saturating_sub(earlier.system) as f64 / hz,
        )
    }
}

/// Parses utime and stime out of the text of `/proc/PID/stat`. The command
/// name (field 2) is in parentheses and may hold spaces or parentheses
/// itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let mut fields = rest.split_ascii_whitespace().skip(14 - 3);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// The number after `key` (e.g. `VmRSS:`, `TracerPid:`) in the text of a
/// `/proc/PID/status`.
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of process `pid` in KiB: `VmRSS` of `/proc/PID/status`.
pub fn vm_rss_kb(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_field(&text, "VmRSS:").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS in /proc/{pid}/status"),
        )
    })
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be run.
pub fn clock_ticks_per_sec() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&hz: &u64| hz > 0)
            .unwrap_or_else(|| {
                eprintln!("warning: `getconf CLK_TCK` failed; assuming 100 ticks/s");
                100
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status_and_reads_own_process() {
        let line = "1234 (echo (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 1 0 12345 1000 100 18446744073709551615";
        let want = CpuTicks {
            user: 250,
            system: 75,
        };
        assert_eq!(
            (parse_stat(line), parse_stat("garbage")),
            (Some(want), None)
        );
        let status = "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1234));
        assert_eq!(status_field("VmRSS: x kB", "VmRSS:"), None);
        assert_eq!(status_field(status, "TracerPid:"), None);
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
        let (u, s) = CpuTicks::of(std::process::id())
            .unwrap()
            .secs_since(CpuTicks::default());
        assert!(u >= 0.0 && s >= 0.0 && clock_ticks_per_sec() > 0);
    }
}
