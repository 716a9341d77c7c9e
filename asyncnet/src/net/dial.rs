//! `dial` and [`Dialer`]: a connected socket from a host name and port, racing the
//! addresses as RFC 8305 (Happy Eyeballs v2) says (the race itself: `eyeballs.rs`).
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use socket2::{Protocol, Type};

use super::dial_error::DialError;
use super::eyeballs::{race, AttemptHook, AttemptLog, Candidates, Plan};
use super::resolve::{ip_literal, Family, Resolver, SystemResolver};
#[cfg(feature = "tls")]
use super::secure::wrap_connected_socket;
use super::socket::AsyncSocket;
#[cfg(feature = "tls")]
use crate::tls::{HandshakeAs, TlsContext};

/// RFC 8305's Connection Attempt Delay, the default of
/// [`Dialer::attempt_delay`]: how long one attempt runs alone before the next address is
/// tried too.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);
const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(100);
const MAX_ATTEMPT_DELAY: Duration = Duration::from_secs(2);

/// Which address families a [`Dialer`] looks up and tries, in which order.
///
/// # Examples
///
/// ```
/// use asyncnet::{AsyncSocket, Dialer, FamilyPreference, wait_for};
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     // No AAAA lookup, no IPv6 attempt.
///     let v4 = Dialer::new().families(FamilyPreference::Ipv4Only);
///     let client = v4.dial("localhost", server.local_addr()?.1).await?;
///     assert!(client.peer_socket_addr()?.is_ipv4());
///     // A literal of an excluded family is refused before any attempt.
///     let e = v4.dial("::1", 80).await.unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FamilyPreference {
    /// Both, IPv6 first (RFC 8305's default).
    #[default]
    Ipv6First,
    /// Both, IPv4 first.
    Ipv4First,
    /// IPv6 only: no A lookup.
    Ipv6Only,
    /// IPv4 only: no AAAA lookup.
    Ipv4Only,
}

impl FamilyPreference {
    fn families(self) -> Vec<Family> {
        match self {
            FamilyPreference::Ipv6First => vec![Family::Ipv6, Family::Ipv4],
            FamilyPreference::Ipv4First => vec![Family::Ipv4, Family::Ipv6],
            FamilyPreference::Ipv6Only => vec![Family::Ipv6],
            FamilyPreference::Ipv4Only => vec![Family::Ipv4],
        }
    }
}

/// Options for [`dial`]: a builder, as Go's `net.Dialer` (Nim's `dial` takes only the
/// protocol and buffering; [`dial_with`] keeps that form).
///
/// Every dial races its addresses as RFC 8305 (Happy Eyeballs v2) says:
/// - the AAAA and A lookups run separately and in parallel, off the loop's thread (or on
///   the [`resolver`](Dialer::resolver) given); connecting starts on the first answer, but
///   when the A answer comes first it waits up to [`RESOLUTION_DELAY`](crate::RESOLUTION_DELAY)
///   (50 ms) for the AAAA answer;
/// - the addresses are tried preferred family first, then alternating families, each family
///   in its resolver's order (addresses that arrive later join the queue);
/// - one attempt starts per [`attempt_delay`](Dialer::attempt_delay) (250 ms by default), or
///   at once when an attempt fails; the first connection to complete wins, and every other
///   attempt is cancelled, its socket closed;
/// - an IP literal (`"192.0.2.1"`, `"::1"`, `"[::1]"`) skips the resolver: one attempt.
///
/// A `Dialer` is cheap to clone and belongs to its thread (it may hold a resolver of the
/// user's, which need not be `Send`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use asyncnet::{AsyncSocket, Dialer, FamilyPreference, wait_for};
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     let dialer = Dialer::new()
///         .attempt_delay(Duration::from_millis(150))
///         .timeout(Duration::from_secs(10))
///         .families(FamilyPreference::Ipv4First);
///     // "localhost" may have ::1 too: nothing listens there, 127.0.0.1 wins.
///     let client = dialer.dial("localhost", server.local_addr()?.1).await?;
///     assert_eq!(client.peer_socket_addr()?, server.local_socket_addr()?);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Dialer {
    attempt_delay: Duration,
    timeout: Option<Duration>,
    families: FamilyPreference,
    local: Option<SocketAddr>,
    protocol: Protocol,
    buffered: bool,
    #[cfg(feature = "tls")]
    tls: Option<TlsContext>,
    resolver: Rc<dyn Resolver>,
    on_attempt: Option<Rc<AttemptHook>>,
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Dialer");
        d.field("attempt_delay", &self.attempt_delay)
            .field("timeout", &self.timeout)
            .field("families", &self.families)
            .field("local", &self.local)
            .field("protocol", &self.protocol)
            .field("buffered", &self.buffered);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.field("on_attempt", &self.on_attempt.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Dialer {
    fn default() -> Dialer {
        Dialer::new()
    }
}

impl Dialer {
    /// The defaults: TCP, buffered, IPv6 first, a 250 ms attempt delay, no timeout (each
    /// attempt is bounded by the OS's connect timeout), no local address, no TLS, the
    /// system's resolver.
    pub fn new() -> Dialer {
        Dialer {
            attempt_delay: DEFAULT_ATTEMPT_DELAY,
            timeout: None,
            families: FamilyPreference::default(),
            local: None,
            protocol: Protocol::TCP,
            buffered: true,
            #[cfg(feature = "tls")]
            tls: None,
            resolver: Rc::new(SystemResolver),
            on_attempt: None,
        }
    }

    /// RFC 8305's Connection Attempt Delay: how long an attempt runs alone before the next
    /// address is tried too (an attempt that fails starts the next at once). Clamped to
    /// [100 ms, 2 s], RFC 8305's recommended bounds (its hard floor is 10 ms): a shorter
    /// delay floods hosts with connections that a slower but working path would have won,
    /// a longer one is the very wait Happy Eyeballs exists to avoid. Default: 250 ms.
    pub fn attempt_delay(mut self, delay: Duration) -> Dialer {
        self.attempt_delay = delay.clamp(MIN_ATTEMPT_DELAY, MAX_ATTEMPT_DELAY);
        self
    }

    /// Bound the whole dial (lookups, attempts, and the TLS handshake if any): past it, the
    /// dial fails with `TimedOut`, every attempt cancelled. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Dialer {
        self.timeout = Some(timeout);
        self
    }

    /// Which families to look up and try, in which order. Default: both, IPv6 first.
    pub fn families(mut self, families: FamilyPreference) -> Dialer {
        self.families = families;
        self
    }

    /// Bind each attempt's socket to `addr` before connecting (port 0: any). Only addresses
    /// of its family are then looked up and tried.
    pub fn local_addr(mut self, addr: SocketAddr) -> Dialer {
        self.local = Some(addr);
        self
    }

    /// The protocol (`Protocol::UDP` gives a connected datagram socket: a UDP "connect"
    /// completes at once, so the first address in RFC 8305's order wins). Default: TCP.
    pub fn protocol(mut self, protocol: Protocol) -> Dialer {
        self.protocol = protocol;
        self
    }

    /// Buffered reads (see [`SocketBuilder::buffered`](crate::SocketBuilder::buffered)).
    /// Default: buffered.
    pub fn buffered(mut self, buffered: bool) -> Dialer {
        self.buffered = buffered;
        self
    }

    /// Run a TLS client handshake with `ctx` on the winning connection, verifying the name
    /// given to [`dial`](Dialer::dial) (an IP literal: against the certificate's IP names).
    /// Only the winner handshakes; a handshake that fails fails the dial (no other address
    /// is tried: the host was reached).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, ctx: &TlsContext) -> Dialer {
        self.tls = Some(ctx.clone());
        self
    }

    /// Resolve names with `resolver` instead of the system's (a [`Resolver`], or a closure
    /// `Fn(String, u16, Family) -> impl Future<Output = io::Result<Vec<SocketAddr>>>`).
    /// IP literals never reach it.
    pub fn resolver(mut self, resolver: impl Resolver + 'static) -> Dialer {
        self.resolver = Rc::new(resolver);
        self
    }

    /// Call `hook` with each attempt's address and socket, before it is bound and
    /// connected (as Go's `Dialer.Control`): to set socket options, or to log or count
    /// attempts. An error fails that attempt (the next address is tried at once).
    pub fn on_attempt(
        mut self,
        hook: impl Fn(SocketAddr, &AsyncSocket) -> io::Result<()> + 'static,
    ) -> Dialer {
        self.on_attempt = Some(Rc::new(hook));
        self
    }

    /// Connect to `address:port`: look the name up and race its addresses (see
    /// [`Dialer`]), then run the TLS handshake if asked.
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: an empty address; TLS over UDP; a literal or local address of a
    ///   family the preference excludes;
    /// - every attempt failed, or no address was found, or the timeout ran out: an error
    ///   whose message names each address tried and why, with a [`DialError`] source; its
    ///   kind is explained there (`TimedOut` for the timeout; else the most telling attempt
    ///   error, e.g. `ConnectionRefused`);
    /// - the TLS handshake fails: its error, as
    ///   [`wrap_connected_socket`] reports it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes every socket it opened and abandons its lookups (a lookup
    /// no thread has started is never run; the answer of one under way is discarded).
    ///
    /// # Examples
    ///
    /// The error of a dial that connected nowhere names every address:
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, DialError, Dialer, wait_for};
    /// wait_for(async {
    ///     // A port bound by nobody listening: connections to it are refused.
    ///     let closed = AsyncSocket::new()?;
    ///     closed.bind_addr(0, "127.0.0.1")?;
    ///     let e = Dialer::new().dial("127.0.0.1", closed.local_addr()?.1).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    ///     assert!(e.to_string().contains("127.0.0.1:"));
    ///     let detail = e.get_ref().and_then(|s| s.downcast_ref::<DialError>()).unwrap();
    ///     assert_eq!(detail.attempts().len(), 1);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn dial(&self, address: &str, port: u16) -> io::Result<AsyncSocket> {
        let sock_type = if self.protocol == Protocol::UDP {
            #[cfg(feature = "tls")]
            if self.tls.is_some() {
                return Err(invalid("TLS needs a stream; dial over UDP has none"));
            }
            Type::DGRAM
        } else {
            Type::STREAM
        };
        let mut families = self.families.families();
        if let Some(local) = self.local {
            families.retain(|f| *f == Family::of(&local));
        }
        let mut candidates = if let Some(ip) = ip_literal(address) {
            let addr = SocketAddr::new(ip, port);
            families.retain(|f| *f == Family::of(&addr));
            Candidates::literal(addr)
        } else if address.is_empty() {
            return Err(invalid("empty host name"));
        } else {
            Candidates::resolve(&*self.resolver, address, port, families.clone())
        };
        if families.is_empty() {
            return Err(invalid(
                "the family preference and the local address leave no address family to dial",
            ));
        }
        let plan = Plan {
            sock_type,
            protocol: self.protocol,
            buffered: self.buffered,
            local: self.local,
            attempt_delay: self.attempt_delay,
            on_attempt: self.on_attempt.as_deref(),
        };
        let log: AttemptLog = RefCell::new(Vec::new());
        let work = async {
            let Some(socket) = race(&mut candidates, &plan, &log).await else {
                return Ok(None);
            };
            #[cfg(feature = "tls")]
            if let Some(ctx) = &self.tls {
                let name =
                    ip_literal(address).map_or_else(|| address.to_owned(), |ip| ip.to_string());
                wrap_connected_socket(ctx, &socket, HandshakeAs::Client, &name).await?;
            }
            Ok::<_, io::Error>(Some(socket))
        };
        let outcome = match self.timeout {
            Some(t) => crate::with_timeout(work, t).await.ok(),
            None => Some(work.await),
        };
        let timed_out = match outcome {
            Some(Ok(Some(socket))) => return Ok(socket),
            Some(Err(e)) => return Err(e),
            Some(Ok(None)) => None,
            None => self.timeout,
        };
        let attempts = log
            .into_inner()
            .into_iter()
            .map(|(addr, e)| {
                let e = e.unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "still connecting when the time ran out",
                    )
                });
                (addr, e)
            })
            .collect();
        Err(DialError::new(address, port, attempts, candidates.take_errors(), timed_out).into_io())
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

/// Connect to `address:port` over TCP with a new buffered socket (Nim's `dial`), racing the
/// name's addresses as RFC 8305 (Happy Eyeballs v2) says: [`Dialer`] explains the race and
/// takes options (attempt delay, timeout, families, local address, TLS, a resolver).
///
/// Where Nim tries one address after another, each until the OS gives up on it, an address
/// that does not answer (a broken IPv6 route) costs here one attempt delay (250 ms), not a
/// TCP timeout.
///
/// # Errors
///
/// As [`Dialer::dial`]: every attempt failed (the message names each address and why; the
/// kind is the most telling attempt error, see [`DialError`]), or no address was found.
///
/// # Cancel safety
///
/// Dropping the future closes every socket it had opened and abandons its lookups.
///
/// # Examples
///
/// ```
/// use asyncnet::{AsyncSocket, wait_for};
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
///     assert!(!client.is_closed());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn dial(address: &str, port: u16) -> io::Result<AsyncSocket> {
    dial_with(address, port, Protocol::TCP, true).await
}

/// [`dial`] with an explicit protocol (`Protocol::UDP` gives a connected datagram socket)
/// and buffering (Nim's `dial(address, port, protocol, buffered)`; the same as
/// `Dialer::new().protocol(protocol).buffered(buffered).dial(address, port)`).
///
/// # Errors
///
/// As [`dial`].
///
/// # Cancel safety
///
/// As [`dial`].
///
/// # Examples
///
/// ```
/// use asyncnet::{AsyncSocket, Protocol, SockType, wait_for};
/// wait_for(async {
///     let server = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     // A connected UDP socket: `send` and `recv` carry one datagram each, to and from
///     // that peer only.
///     let sock = asyncnet::dial_with("127.0.0.1", server.local_addr()?.1, Protocol::UDP, false)
///         .await?;
///     sock.send("ping").await?;
///     let (data, address, port) = server.recv_from(64).await?;
///     assert_eq!(data, b"ping");
///     server.send_to(&address, port, "pong").await?;
///     assert_eq!(sock.recv(64).await?, b"pong");
///     assert!(!sock.is_buffered());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn dial_with(
    address: &str,
    port: u16,
    protocol: Protocol,
    buffered: bool,
) -> io::Result<AsyncSocket> {
    Dialer::new()
        .protocol(protocol)
        .buffered(buffered)
        .dial(address, port)
        .await
}
