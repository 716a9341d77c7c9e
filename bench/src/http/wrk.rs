//! What `wrk --latency` prints at the end of a run, parsed.
//!
//! The lines read (wrk 4.x; indentation and spacing vary):
//!
//! ```text
//!   Latency Distribution
//!      50%  191.00us
//!      99%    0.88ms
//!   119060 requests in 1.00s, 8.86MB read
//!   Non-2xx or 3xx responses: 5
//!   Socket errors: connect 0, read 28725, write 0, timeout 0
//! Requests/sec: 118798.05
//! ```
//!
//! The `Non-2xx` and `Socket errors` lines appear only when there were any.
//! Latencies come in `us`, `ms`, `s` (wrk scales by 1000 up to seconds); the
//! run's duration in `s`, `m`, `h` (by 60).

/// The figures of one wrk run.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkReport {
    /// Responses completed (`N requests in ...`).
    pub requests: u64,
    /// The run's duration as wrk timed it, in seconds.
    pub secs: f64,
    /// `Requests/sec:`.
    pub rps: f64,
    /// Latency percentiles of the `Latency Distribution`, in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    /// Responses with a status other than 2xx or 3xx.
    pub non_2xx: u64,
    /// Socket errors (`Socket errors: connect C, read R, write W, timeout
    /// T`), all kinds together.
    pub socket_errors: u64,
}

/// Parses wrk's output (stdout of `wrk --latency ...`). `Err` names what is
/// missing or malformed.
pub fn parse(text: &str) -> Result<WrkReport, String> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(number(v).ok_or_else(|| format!("bad line {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = number(v).ok_or_else(|| format!("bad line {line:?}"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            socket_errors = parse_socket_errors(v).ok_or_else(|| format!("bad line {line:?}"))?;
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = Some(latency_us(v).ok_or_else(|| format!("bad line {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(latency_us(v).ok_or_else(|| format!("bad line {line:?}"))?);
        } else if let Some((n, rest)) = line.split_once(" requests in ") {
            let secs = rest.split(',').next().and_then(duration_secs);
            match (n.parse(), secs) {
                (Ok(n), Some(s)) => requests = Some((n, s)),
                _ => return Err(format!("bad line {line:?}")),
            }
        }
    }
    let missing = |what: &str| format!("no {what} in wrk's output");
    let (requests, secs) = requests.ok_or_else(|| missing("`N requests in` line"))?;
    Ok(WrkReport {
        requests,
        secs,
        rps: rps.ok_or_else(|| missing("`Requests/sec:` line"))?,
        p50_us: p50.ok_or_else(|| missing("50% latency (was --latency given?)"))?,
        p99_us: p99.ok_or_else(|| missing("99% latency (was --latency given?)"))?,
        non_2xx,
        socket_errors,
    })
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

/// `191.00us`, `0.88ms`, `1.20s` in microseconds.
fn latency_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (v, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    Some(v.parse::<f64>().ok()? * scale)
}

/// `1.00s`, `1.50m`, `1.00h` in seconds.
fn duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let scale = match s.chars().last()? {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        _ => return None,
    };
    Some(s[..s.len() - 1].parse::<f64>().ok()? * scale)
}

/// `connect 0, read 28725, write 0, timeout 0`: their sum.
fn parse_socket_errors(s: &str) -> Option<u64> {
    let mut sum = 0;
    for part in s.split(',') {
        let (name, n) = part.trim().split_once(' ')?;
        if !["connect", "read", "write", "timeout"].contains(&name) {
            return None;
        }
        sum += number::<u64>(n)?;
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from real runs: wrk 4.1.0 (Debian) against `http_asyncnet`,
    // against Python's http.server on a missing path (404s), and against a
    // server that resets every connection.
    const OK: &str = include_str!("../../tests/data/wrk-ok.txt");
    const NON_2XX: &str = include_str!("../../tests/data/wrk-non2xx.txt");
    const RESETS: &str = include_str!("../../tests/data/wrk-socket-errors.txt");

    #[test]
    fn parses_clean_and_failed_runs() {
        let r = parse(OK).unwrap();
        assert_eq!(r.requests, 119060);
        assert_eq!(r.secs, 1.0);
        assert_eq!(r.rps, 118798.05);
        assert_eq!(r.p50_us, 191.0);
        assert_eq!(r.p99_us, 880.0);
        assert_eq!(r.non_2xx, 0);
        assert_eq!(r.socket_errors, 0);
        let r = parse(NON_2XX).unwrap();
        assert_eq!((r.requests, r.non_2xx), (1873, 1873));
        assert_eq!(r.rps, 1870.38);
        assert_eq!((r.p50_us, r.p99_us), (2950.0, 6350.0));
        let r = parse(RESETS).unwrap();
        assert_eq!((r.requests, r.rps, r.p99_us), (0, 0.0, 0.0));
        assert_eq!(r.socket_errors, 28725);
    }

    #[test]
    fn units_and_failures() {
        assert_eq!(latency_us(" 1.50s"), Some(1.5e6));
        assert_eq!(latency_us("12.5ms"), Some(12500.0));
        assert_eq!(latency_us("12.5"), None);
        assert_eq!(duration_secs("2.00m"), Some(120.0));
        assert_eq!(duration_secs("1.00h"), Some(3600.0));
        assert_eq!(duration_secs("3"), None);
        // Without --latency there are no percentiles.
        let no_latency = OK
            .lines()
            .filter(|l| !l.contains('%'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse(&no_latency).unwrap_err().contains("50%"));
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        assert!(parse("Requests/sec: fast").is_err());
        assert!(parse("  Socket errors: connect 0, lost 2").is_err());
    }
}
