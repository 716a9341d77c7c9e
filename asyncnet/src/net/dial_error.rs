//! The error of a `dial` that connected nowhere: every address tried, and why each failed.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::resolve::Family;

/// Every attempt of a [`dial`](crate::dial) failed, or its time ran out: each address tried
/// and its error, in the order the attempts started, and the lookups that failed.
///
/// Carried as the source of the `io::Error` that `dial` returns, whose message (this type's
/// `Display`) lists them all, e.g. `dial example.com port 80: every address failed:
/// [2001:db8::1]:80: Network is unreachable (os error 101); 192.0.2.1:80: Connection refused
/// (os error 111)`.
///
/// The `io::Error`'s kind:
/// - the time given to [`Dialer::timeout`](crate::Dialer::timeout) ran out: `TimedOut`;
/// - some attempt failed: the kind of the most telling attempt error, that is the first (in
///   the order attempts started) of the highest rank: an answer from the host
///   (`ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`), then a silent host
///   (`TimedOut`), then any other error, and last a routing error that never reached the
///   host (`NetworkUnreachable`, `HostUnreachable`, `NetworkDown`, `AddrNotAvailable`). So a
///   host whose IPv6 route is broken but whose IPv4 port is closed reports
///   `ConnectionRefused`, whatever order the errors came in;
/// - no address was found: the kind of the first lookup error that is not `NotFound`, or
///   `NotFound`.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use asyncnet::{AsyncSocket, DialError, Dialer, Family, wait_for};
/// wait_for(async {
///     // Two ports bound by nobody listening: both refuse.
///     let (a, b) = (AsyncSocket::new()?, AsyncSocket::new()?);
///     a.bind_addr(0, "127.0.0.1")?;
///     b.bind_addr(0, "127.0.0.1")?;
///     let both = vec![a.local_socket_addr()?, b.local_socket_addr()?];
///     let answer = both.clone();
///     let dialer = Dialer::new().resolver(move |_host: String, _port: u16, family: Family| {
///         let found = if family == Family::Ipv4 { answer.clone() } else { vec![] };
///         async move { Ok::<Vec<SocketAddr>, std::io::Error>(found) }
///     });
///     let e = dialer.dial("closed.test", 80).await.unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
///     let detail = e.get_ref().and_then(|s| s.downcast_ref::<DialError>()).unwrap();
///     let tried: Vec<SocketAddr> = detail.attempts().iter().map(|(addr, _)| *addr).collect();
///     assert_eq!(tried, both);
///     assert!(!detail.timed_out());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct DialError {
    host: String,
    port: u16,
    attempts: Vec<(SocketAddr, io::Error)>,
    lookups: Vec<(Family, io::Error)>,
    timeout: Option<Duration>,
}

impl DialError {
    pub(super) fn new(
        host: &str,
        port: u16,
        attempts: Vec<(SocketAddr, io::Error)>,
        lookups: Vec<(Family, io::Error)>,
        timeout: Option<Duration>,
    ) -> DialError {
        DialError {
            host: host.to_owned(),
            port,
            attempts,
            lookups,
            timeout,
        }
    }

    /// Each address tried and its error, in the order the attempts started. After a
    /// timeout, the attempts still under way have an error of kind `TimedOut`.
    pub fn attempts(&self) -> &[(SocketAddr, io::Error)] {
        &self.attempts
    }

    /// The lookups that failed (an AAAA or A lookup that found nothing is one).
    pub fn lookup_errors(&self) -> &[(Family, io::Error)] {
        &self.lookups
    }

    /// Whether the dial's timeout ran out (rather than every attempt failing).
    pub fn timed_out(&self) -> bool {
        self.timeout.is_some()
    }

    /// The error kind `dial` reports (see the type's docs).
    pub(super) fn kind(&self) -> io::ErrorKind {
        if self.timeout.is_some() {
            return io::ErrorKind::TimedOut;
        }
        let best = self
            .attempts
            .iter()
            .map(|(_, e)| e.kind())
            .enumerate()
            .max_by_key(|&(i, k)| (rank(k), std::cmp::Reverse(i)));
        if let Some((_, kind)) = best {
            return kind;
        }
        self.lookups
            .iter()
            .map(|(_, e)| e.kind())
            .find(|k| *k != io::ErrorKind::NotFound)
            .unwrap_or(io::ErrorKind::NotFound)
    }

    /// As an `io::Error` of [`kind`](DialError::kind).
    pub(super) fn into_io(self) -> io::Error {
        io::Error::new(self.kind(), self)
    }
}

/// How much an attempt's error says about the host (higher: more).
fn rank(kind: io::ErrorKind) -> u8 {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted => 3,
        K::TimedOut => 2,
        K::NetworkUnreachable | K::HostUnreachable | K::NetworkDown | K::AddrNotAvailable => 0,
        _ => 1,
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dial {} port {}: ", self.host, self.port)?;
        match self.timeout {
            Some(t) => write!(f, "no connection within {t:?}")?,
            None if self.attempts.is_empty() => f.write_str("no address found")?,
            None => f.write_str("every address failed")?,
        }
        let mut sep = ": ";
        for (addr, e) in &self.attempts {
            write!(f, "{sep}{addr}: {e}")?;
            sep = "; ";
        }
        for (family, e) in &self.lookups {
            let record = match family {
                Family::Ipv6 => "AAAA",
                Family::Ipv4 => "A",
            };
            write!(f, "{sep}{record} lookup: {e}")?;
            sep = "; ";
        }
        Ok(())
    }
}

impl std::error::Error for DialError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: io::ErrorKind) -> io::Error {
        io::Error::from(kind)
    }

    #[test]
    fn a_refusal_outranks_an_unreachable_network_in_any_order() {
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let v4: SocketAddr = "192.0.2.1:80".parse().unwrap();
        for attempts in [
            vec![
                (v6, err(io::ErrorKind::NetworkUnreachable)),
                (v4, err(io::ErrorKind::ConnectionRefused)),
            ],
            vec![
                (v4, err(io::ErrorKind::ConnectionRefused)),
                (v6, err(io::ErrorKind::NetworkUnreachable)),
            ],
        ] {
            let e = DialError::new("example.com", 80, attempts, vec![], None).into_io();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            let text = e.to_string();
            assert!(
                text.contains("[2001:db8::1]:80") && text.contains("192.0.2.1:80"),
                "{text}"
            );
        }
    }

    #[test]
    fn equal_ranks_report_the_first_attempt_and_a_timeout_is_timed_out() {
        let a: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:80".parse().unwrap();
        let attempts = || {
            vec![
                (a, err(io::ErrorKind::PermissionDenied)),
                (b, err(io::ErrorKind::InvalidInput)),
            ]
        };
        let e = DialError::new("h", 1, attempts(), vec![], None);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let t = DialError::new("h", 1, attempts(), vec![], Some(Duration::from_secs(1)));
        assert_eq!(t.kind(), io::ErrorKind::TimedOut);
        assert!(t.to_string().contains("no connection within 1s"));
    }

    #[test]
    fn no_address_reports_the_lookup_errors() {
        let lookups = vec![
            (Family::Ipv6, err(io::ErrorKind::NotFound)),
            (Family::Ipv4, err(io::ErrorKind::Other)),
        ];
        let e = DialError::new("nowhere.invalid", 80, vec![], lookups, None).into_io();
        assert_eq!(e.kind(), io::ErrorKind::Other);
        let text = e.to_string();
        assert!(text.contains("no address found"), "{text}");
        assert!(
            text.contains("AAAA lookup") && text.contains("; A lookup"),
            "{text}"
        );
    }
}
