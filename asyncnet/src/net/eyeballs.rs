//! Happy Eyeballs v2 (RFC 8305): the addresses of a name in the order to try them, as the
//! AAAA and A answers arrive ([`Candidates`]), and the race of connection attempts over them
//! ([`race`]).
//!
//! ```text
//!  AAAA lookup ──► v6 queue ─┐                          attempt 1 ──┐
//!                            ├─► interleave 6,4,6,.. ─► attempt 2 ──┼─► first to connect wins,
//!  A lookup ─────► v4 queue ─┘   (A first: wait ≤ 50 ms  attempt 3 ──┘   the others are dropped
//!                                 for AAAA)             (one per attempt delay, or at once
//!                                                        when one fails)
//! ```
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Type};

use super::resolve::{ip_literal, Family, ResolveFuture, Resolver, SystemResolver};
use super::socket::AsyncSocket;
use crate::dispatch::{sleep_async, Sleep};

/// RFC 8305's Resolution Delay: when the A answer comes first, how long to wait for the
/// AAAA answer before connecting over IPv4 (with IPv6 preferred; the other way round when
/// IPv4 is).
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// The addresses of one name, handed out in RFC 8305's order as the lookups answer: the
/// preferred family first, then alternating families ("First Address Family Count" 1), each
/// family in its resolver's order.
pub(super) struct Candidates {
    /// The families looked up, preferred first (one or two).
    families: Vec<Family>,
    /// Lookups still under way, by index in `families`.
    lookups: [Option<ResolveFuture>; 2],
    /// Addresses not handed out yet, by index in `families`.
    queues: [VecDeque<SocketAddr>; 2],
    /// Lookups that failed.
    errors: Vec<(Family, io::Error)>,
    /// Running when the other family answered first and the preferred one is still awaited.
    resolution_delay: Option<Sleep>,
    /// An address was handed out: no more waiting for the preferred family.
    started: bool,
    /// Index of the family the next address should come from.
    next: usize,
}

impl Candidates {
    /// One address, no lookup.
    pub(super) fn literal(addr: SocketAddr) -> Candidates {
        let mut c = Candidates::empty(vec![Family::of(&addr)]);
        c.queues[0].push_back(addr);
        c
    }

    /// Look `host` up in each of `families` (preferred first) at once.
    pub(super) fn resolve(
        resolver: &dyn Resolver,
        host: &str,
        port: u16,
        families: Vec<Family>,
    ) -> Candidates {
        let mut c = Candidates::empty(families);
        for (i, f) in c.families.iter().enumerate() {
            c.lookups[i] = Some(resolver.lookup(host, port, *f));
        }
        c
    }

    /// The candidates for `connect` and `send_to` by name on a socket of `domain` (one
    /// socket: the attempts are serial): an IPv4 socket looks up A records only, an
    /// IPv6-only socket AAAA only; a dual-stack IPv6 socket both families, in parallel, IPv6
    /// first (its IPv4 addresses are reached IPv4-mapped). An IP literal is used as is.
    fn for_socket(
        host: &str,
        port: u16,
        domain: Domain,
        reaches_ipv4: bool,
    ) -> io::Result<Candidates> {
        if let Some(ip) = ip_literal(host) {
            return Ok(Candidates::literal(SocketAddr::new(ip, port)));
        }
        if host.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty host name",
            ));
        }
        let families = match (domain == Domain::IPV6, reaches_ipv4) {
            (true, true) => vec![Family::Ipv6, Family::Ipv4],
            (true, false) => vec![Family::Ipv6],
            (false, _) => vec![Family::Ipv4],
        };
        Ok(Candidates::resolve(&SystemResolver, host, port, families))
    }

    fn empty(families: Vec<Family>) -> Candidates {
        Candidates {
            families,
            lookups: [None, None],
            queues: [VecDeque::new(), VecDeque::new()],
            errors: Vec::new(),
            resolution_delay: None,
            started: false,
            next: 0,
        }
    }

    /// The lookups that failed (taken).
    pub(super) fn take_errors(&mut self) -> Vec<(Family, io::Error)> {
        std::mem::take(&mut self.errors)
    }

    /// The next address to try: `None` once every lookup has answered and every address was
    /// handed out; pending while the lookups that may give one are under way.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<SocketAddr>> {
        for i in 0..self.families.len() {
            let Some(lookup) = self.lookups[i].as_mut() else {
                continue;
            };
            let Poll::Ready(answer) = lookup.as_mut().poll(cx) else {
                continue;
            };
            self.lookups[i] = None;
            match answer {
                Ok(addrs) => {
                    for a in addrs {
                        // A resolver may answer with the other family: queue it there.
                        if let Some(q) = self.families.iter().position(|f| *f == Family::of(&a)) {
                            if !self.queues[q].contains(&a) {
                                self.queues[q].push_back(a);
                            }
                        }
                    }
                }
                Err(e) => self.errors.push((self.families[i], e)),
            }
        }
        if !self.started && self.lookups[0].is_some() && self.queues[0].is_empty() {
            // The preferred family has not answered yet.
            if self.queues[1].is_empty() {
                return Poll::Pending;
            }
            let delay = self
                .resolution_delay
                .get_or_insert_with(|| sleep_async(RESOLUTION_DELAY));
            ready!(Pin::new(delay).poll(cx));
        }
        self.resolution_delay = None;
        let pick = if self.queues[self.next].is_empty() {
            self.next ^ 1
        } else {
            self.next
        };
        if let Some(a) = self.queues[pick].pop_front() {
            self.started = true;
            self.next = if self.families.len() == 2 {
                pick ^ 1
            } else {
                0
            };
            return Poll::Ready(Some(a));
        }
        if self.lookups.iter().any(Option::is_some) {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }

    /// [`poll_next`](Candidates::poll_next) as a future.
    pub(super) async fn next(&mut self) -> Option<SocketAddr> {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// A hook called on each attempt's socket before it connects.
pub(super) type AttemptHook = dyn Fn(SocketAddr, &AsyncSocket) -> io::Result<()>;

impl AsyncSocket {
    /// `address`'s addresses that this socket can use, in RFC 8305's order, tried one at a
    /// time until `attempt` succeeds: `connect` and `send_to` by name (one socket cannot race).
    /// Every attempt failing gives the last attempt's error; no attempt at all, the lookup's
    /// error, or `AddrNotAvailable` when no address has the socket's family.
    pub(super) async fn try_in_turn(
        &self,
        address: &str,
        port: u16,
        mut attempt: impl AsyncFnMut(SockAddr) -> io::Result<()>,
    ) -> io::Result<()> {
        let fit = self.family_map();
        let mut candidates =
            Candidates::for_socket(address, port, self.inner.domain, self.reaches_ipv4())?;
        let mut last = None;
        while let Some(addr) = candidates.next().await {
            let Some(addr) = fit(addr) else { continue };
            match attempt(SockAddr::from(addr)).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .or_else(|| candidates.take_errors().pop().map(|(_, e)| e))
            .unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{address} has no address of the socket's family"),
                )
            }))
    }
}

/// How each connection attempt is made.
pub(super) struct Plan<'a> {
    pub(super) sock_type: Type,
    pub(super) protocol: Protocol,
    pub(super) buffered: bool,
    /// Bind each attempt's socket here first.
    pub(super) local: Option<SocketAddr>,
    /// How long an attempt runs alone before the next one starts.
    pub(super) attempt_delay: Duration,
    pub(super) on_attempt: Option<&'a AttemptHook>,
}

/// Every address tried, in the order the attempts started, with its error (`None`: it had
/// not failed when the race ended).
pub(super) type AttemptLog = RefCell<Vec<(SocketAddr, Option<io::Error>)>>;

/// One connection under way.
struct Attempt {
    /// Its entry in the log.
    index: usize,
    socket: AsyncSocket,
    connecting: Pin<Box<dyn Future<Output = io::Result<()>>>>,
}

impl Plan<'_> {
    /// A socket for `addr`, bound and handed to the hook, with its connect started.
    fn start(&self, addr: SocketAddr, index: usize) -> io::Result<Attempt> {
        let socket = AsyncSocket::builder()
            .domain(Domain::for_address(addr))
            .sock_type(self.sock_type)
            .protocol(self.protocol)
            .buffered(self.buffered)
            .build()?;
        if let Some(hook) = self.on_attempt {
            hook(addr, &socket)?;
        }
        if let Some(local) = self.local {
            socket.socket()?.bind(&SockAddr::from(local))?;
        }
        let s = socket.clone();
        let connecting = Box::pin(async move { s.connect_sockaddr(&SockAddr::from(addr)).await });
        Ok(Attempt {
            index,
            socket,
            connecting,
        })
    }
}

/// Race connection attempts over `candidates` (RFC 8305 section 5): one starts, the next
/// starts when the attempt delay has passed or at once when one fails; the first to connect
/// wins and every other is dropped, its socket closed. `None` when every attempt failed
/// (each failure is in `log`). Dropping the future closes every socket it opened.
pub(super) async fn race(
    candidates: &mut Candidates,
    plan: &Plan<'_>,
    log: &AttemptLog,
) -> Option<AsyncSocket> {
    let mut attempts: Vec<Attempt> = Vec::new();
    // The next attempt may start (first one, delay passed, or one failed).
    let mut want = true;
    let mut delay: Option<Sleep> = None;
    let mut exhausted = false;
    let winner = poll_fn(|cx| loop {
        let mut i = 0;
        while i < attempts.len() {
            match attempts[i].connecting.as_mut().poll(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => {
                    let won = attempts.swap_remove(i);
                    return Poll::Ready(Some(won.socket));
                }
                Poll::Ready(Err(e)) => {
                    let lost = attempts.swap_remove(i);
                    log.borrow_mut()[lost.index].1 = Some(e);
                    want = true;
                    delay = None;
                }
            }
        }
        if let Some(d) = delay.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                delay = None;
                want = true;
            }
        }
        if want && !exhausted {
            match candidates.poll_next(cx) {
                Poll::Ready(Some(addr)) => {
                    let index = {
                        let mut log = log.borrow_mut();
                        log.push((addr, None));
                        log.len() - 1
                    };
                    match plan.start(addr, index) {
                        Ok(attempt) => {
                            want = false;
                            attempts.push(attempt);
                            delay = Some(sleep_async(plan.attempt_delay));
                        }
                        Err(e) => log.borrow_mut()[index].1 = Some(e),
                    }
                    // Poll the new attempt (or take the next address at once).
                    continue;
                }
                Poll::Ready(None) => exhausted = true,
                Poll::Pending => {}
            }
        }
        if exhausted && attempts.is_empty() {
            return Poll::Ready(None);
        }
        return Poll::Pending;
    })
    .await;
    // The losers: their sockets close here.
    drop(attempts);
    winner
}
