//! Name resolution off the loop's thread.
//!
//! `getaddrinfo` blocks, for as long as the DNS takes. It runs on a small pool of helper
//! threads (at most [`MAX_RESOLVERS`], each leaving after a while idle); the asking task
//! parks and is woken through its waker, which is safe to call from another thread. IP
//! literals never leave the loop's thread. A lookup whose future is dropped is abandoned: if
//! no thread has started it, none will; if one has, its answer is discarded.
//!
//! `dial` asks for each address family on its own ([`Family`], one getaddrinfo call per
//! family, in parallel), through the [`Resolver`] trait, so that a caller may plug in a
//! resolver of its own ([`SystemResolver`] is the default).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The most resolver threads alive at once.
pub const MAX_RESOLVERS: usize = 8;
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// An IP literal (`127.0.0.1`, `::1`, `[::1]`), without a lookup.
fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Resolve on this thread (blocking): for `bind_addr`, which is synchronous as in Nim.
pub(crate) fn resolve_blocking(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Resolve `host` with the OS resolver on a helper thread.
pub(crate) async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty host name",
        ));
    }
    submit(host, port, None).await
}

/// Start a lookup of `host` on a helper thread: every address, or (`family`) one family's.
fn submit(host: &str, port: u16, family: Option<Family>) -> Lookup {
    let job = Arc::new(Job {
        host: host.to_owned(),
        port,
        family,
        state: Mutex::new(JobState::default()),
    });
    pool().submit(job.clone());
    Lookup(job)
}

#[derive(Default)]
struct JobState {
    result: Option<io::Result<Vec<SocketAddr>>>,
    waker: Option<Waker>,
    /// The future was dropped: run nothing, keep no waker.
    abandoned: bool,
}

struct Job {
    host: String,
    port: u16,
    /// `None`: both families, as the standard library asks (one call, both answers).
    family: Option<Family>,
    state: Mutex<JobState>,
}

impl Job {
    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Waits for a job's result. Dropping it abandons the job (its result is discarded).
#[must_use = "futures do nothing unless you .await or poll them"]
struct Lookup(Arc<Job>);

impl Drop for Lookup {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.abandoned = true;
        // The waker may hold the caller's task: let it go now, not when the thread is done.
        st.waker = None;
        st.result = None;
    }
}

impl Future for Lookup {
    type Output = io::Result<Vec<SocketAddr>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.0.state();
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct Pool {
    queue: Mutex<PoolState>,
    ready: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Arc<Job>>,
    threads: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(PoolState::default()),
        ready: Condvar::new(),
    })
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&'static self, job: Arc<Job>) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.idle == 0 && st.threads < MAX_RESOLVERS {
            let spawned = std::thread::Builder::new()
                .name("asyncnet-resolver".into())
                .spawn(move || self.work());
            if spawned.is_ok() {
                st.threads += 1;
            } else if st.threads == 0 {
                // No thread at all: fail the job rather than leave it waiting forever.
                if let Some(job) = st.jobs.pop_back() {
                    drop(st);
                    finish(
                        &job,
                        Err(io::Error::other("cannot start a resolver thread")),
                    );
                }
                return;
            }
        }
        drop(st);
        self.ready.notify_one();
    }

    fn work(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                if !job.state().abandoned {
                    let r = match job.family {
                        None => (job.host.as_str(), job.port)
                            .to_socket_addrs()
                            .map(|it| it.collect::<Vec<_>>()),
                        Some(f) => lookup_family(&job.host, job.port, f),
                    };
                    finish(&job, r);
                }
                st = self.lock();
                continue;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .ready
                .wait_timeout(st, IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

fn finish(job: &Job, r: io::Result<Vec<SocketAddr>>) {
    let waker = {
        let mut st = job.state();
        if st.abandoned {
            return;
        }
        st.result = Some(r);
        st.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// Resolve `address` the way `dial` does, without connecting: every address, in the OS
/// resolver's order.
///
/// # Errors
///
/// The resolver's error (unknown host, no network).
///
/// # Cancel safety
///
/// Dropping the future abandons the lookup; its result is discarded.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use asyncnet::{resolve_host, wait_for};
/// wait_for(async {
///     // A name: looked up on a helper thread while the loop goes on.
///     let addrs = resolve_host("localhost", 80).await?;
///     assert!(!addrs.is_empty());
///     assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
///     // An IP literal (brackets allowed for IPv6): no lookup at all.
///     let v6: SocketAddr = "[::1]:443".parse().unwrap();
///     assert_eq!(resolve_host("[::1]", 443).await?, [v6]);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn resolve_host(address: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    resolve(address, port).await
}

/// An IP address family, as a [`Resolver`] is asked for it (an AAAA or an A lookup).
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use asyncnet::Family;
/// let v6: SocketAddr = "[::1]:443".parse().unwrap();
/// assert_eq!(Family::of(&v6), Family::Ipv6);
/// assert_eq!(Family::Ipv6.other(), Family::Ipv4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv6 (AAAA records).
    Ipv6,
    /// IPv4 (A records).
    Ipv4,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V6(_) => Family::Ipv6,
            SocketAddr::V4(_) => Family::Ipv4,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::Ipv6 => Family::Ipv4,
            Family::Ipv4 => Family::Ipv6,
        }
    }
}

/// `getaddrinfo(3)` for one address family: the host's addresses of that family with `port`,
/// in the resolver's order, each once. Blocks for as long as the DNS takes (so it runs on a
/// resolver thread). Unlike the standard library's lookup, which asks for both families and
/// waits for both answers, this asks for one: Happy Eyeballs needs the AAAA and A answers
/// separately. A name without an address of that family is `NotFound`.
fn lookup_family(host: &str, port: u16, family: Family) -> io::Result<Vec<SocketAddr>> {
    use dns_lookup::{AddrFamily, AddrInfoHints, LookupErrorKind, SockType};
    let hints = AddrInfoHints {
        address: match family {
            Family::Ipv6 => AddrFamily::Inet6,
            Family::Ipv4 => AddrFamily::Inet,
        }
        .into(),
        socktype: SockType::Stream.into(),
        ..AddrInfoHints::default()
    };
    let answers = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|e| {
        let no_address = matches!(e.kind(), LookupErrorKind::NoName | LookupErrorKind::NoData);
        let e = io::Error::from(e);
        if no_address {
            io::Error::new(io::ErrorKind::NotFound, e.to_string())
        } else {
            e
        }
    })?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for answer in answers {
        let mut addr = answer?.sockaddr;
        if Family::of(&addr) != family {
            continue;
        }
        addr.set_port(port);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// The future a [`Resolver`] returns: the addresses of one family, in the order to try them.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>>>>;

/// Name resolution for [`Dialer`](crate::Dialer): one address family at a time, so that
/// the AAAA and A lookups run in parallel and connecting starts on the first answer.
///
/// [`SystemResolver`] (the OS's `getaddrinfo`, on helper threads) is the default. Plug in
/// another (a DNS-over-HTTPS client, a cache, a fixed table for tests) with
/// [`Dialer::resolver`](crate::Dialer::resolver). A closure
/// `Fn(String, u16, Family) -> impl Future<Output = io::Result<Vec<SocketAddr>>>` is a
/// resolver too.
///
/// The addresses returned are used as given (their port included), in the order given, each
/// in the queue of its own family whatever was asked. IP literals never reach a resolver.
/// Dropping the future means the answer is no longer wanted: a resolver should then stop
/// its work where it can.
///
/// # Examples
///
/// A resolver that knows one name and asks the system for every other:
///
/// ```
/// use std::net::SocketAddr;
/// use asyncnet::{Dialer, Family, ResolveFuture, Resolver, SystemResolver, AsyncSocket};
///
/// struct Hosts;
/// impl Resolver for Hosts {
///     fn lookup(&self, host: &str, port: u16, family: Family) -> ResolveFuture {
///         match (host, family) {
///             ("db.internal", Family::Ipv4) => {
///                 Box::pin(std::future::ready(Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])))
///             }
///             ("db.internal", Family::Ipv6) => Box::pin(std::future::ready(Ok(vec![]))),
///             _ => SystemResolver.lookup(host, port, family),
///         }
///     }
/// }
///
/// asyncnet::wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     let client = Dialer::new().resolver(Hosts).dial("db.internal", server.local_addr()?.1).await?;
///     assert_eq!(client.peer_socket_addr()?, server.local_socket_addr()?);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Resolver {
    /// The addresses of `host` in `family`, with `port`. An empty list and an error both
    /// mean "none of this family"; `dial` reports the error only if no address of either
    /// family connects.
    fn lookup(&self, host: &str, port: u16, family: Family) -> ResolveFuture;
}

impl<F, Fut> Resolver for F
where
    F: Fn(String, u16, Family) -> Fut,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>> + 'static,
{
    fn lookup(&self, host: &str, port: u16, family: Family) -> ResolveFuture {
        Box::pin(self(host.to_owned(), port, family))
    }
}

/// The OS resolver (`getaddrinfo` with the family as a hint), on a pool of at most
/// [`MAX_RESOLVERS`] helper threads, so that the loop goes on while the DNS answers. A
/// dropped lookup is abandoned: skipped if no thread has started it, its answer discarded
/// otherwise.
///
/// # Examples
///
/// ```
/// use asyncnet::{Family, Resolver, SystemResolver, wait_for};
/// wait_for(async {
///     // The A records of "localhost" only (one getaddrinfo call, with AF_INET as a hint).
///     let v4 = SystemResolver.lookup("localhost", 80, Family::Ipv4).await?;
///     assert!(!v4.is_empty());
///     assert!(v4.iter().all(|a| a.is_ipv4() && a.ip().is_loopback() && a.port() == 80));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str, port: u16, family: Family) -> ResolveFuture {
        if let Some(ip) = literal(host) {
            let addr = SocketAddr::new(ip, port);
            let found = if Family::of(&addr) == family {
                vec![addr]
            } else {
                vec![]
            };
            return Box::pin(std::future::ready(Ok(found)));
        }
        Box::pin(submit(host, port, Some(family)))
    }
}

/// The IP literal `host` stands for (`127.0.0.1`, `::1`, `[::1]`), if it is one.
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    literal(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn job() -> Arc<Job> {
        Arc::new(Job {
            host: "example.invalid".into(),
            port: 80,
            family: Some(Family::Ipv6),
            state: Mutex::new(JobState::default()),
        })
    }

    #[test]
    fn a_dropped_lookup_lets_go_of_its_waker_and_its_answer_is_discarded() {
        let job = job();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut lookup = Lookup(job.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut lookup).poll(&mut cx).is_pending());
        drop(waker);
        assert_eq!(Arc::strong_count(&count), 2, "the job holds the waker");
        drop(lookup);
        assert_eq!(Arc::strong_count(&count), 1, "the abandoned job let it go");
        assert!(job.state().abandoned, "no thread will start it");
        finish(&job, Ok(vec![]));
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "nobody woken");
        assert!(job.state().result.is_none(), "the answer was discarded");
    }

    #[test]
    fn a_lookup_still_wanted_is_woken_with_its_answer() {
        let job = job();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut lookup = Lookup(job.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut lookup).poll(&mut cx).is_pending());
        let addr: SocketAddr = "[::1]:80".parse().unwrap();
        finish(&job, Ok(vec![addr]));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        match Pin::new(&mut lookup).poll(&mut cx) {
            Poll::Ready(Ok(v)) => assert_eq!(v, [addr]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_system_resolver_answers_a_literal_for_its_own_family_only() {
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut v4 = SystemResolver.lookup("127.0.0.1", 7, Family::Ipv4);
        let mut v6 = SystemResolver.lookup("127.0.0.1", 7, Family::Ipv6);
        let addr: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert!(matches!(v4.as_mut().poll(&mut cx), Poll::Ready(Ok(v)) if v == [addr]));
        assert!(matches!(v6.as_mut().poll(&mut cx), Poll::Ready(Ok(v)) if v.is_empty()));
    }
}
