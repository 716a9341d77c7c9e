//! Name resolution off the loop's thread, and `dial`.
//!
//! `getaddrinfo` blocks, for as long as the DNS takes. It runs on a small pool of helper
//! threads (at most [`MAX_RESOLVERS`], each leaving after a while idle); the asking task
//! parks and is woken through its waker, which is safe to call from another thread. IP
//! literals never leave the loop's thread.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use socket2::{Domain, Protocol, Type};

use super::socket::AsyncSocket;

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
    let job = Arc::new(Job {
        host: host.to_owned(),
        port,
        state: Mutex::new(JobState::default()),
    });
    pool().submit(job.clone());
    Lookup(job).await
}

#[derive(Default)]
struct JobState {
    result: Option<io::Result<Vec<SocketAddr>>>,
    waker: Option<Waker>,
}

struct Job {
    host: String,
    port: u16,
    state: Mutex<JobState>,
}

impl Job {
    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Waits for a job's result. Dropping it abandons the job (its result is discarded).
struct Lookup(Arc<Job>);

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
                let r = (job.host.as_str(), job.port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>());
                finish(&job, r);
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
        st.result = Some(r);
        st.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

/// Connect to `address:port` over TCP with a new buffered socket (Nim's `dial`).
///
/// The name is resolved off the loop's thread; every address is tried in turn (IPv6 and IPv4
/// alike), each with a socket of its own family; the first that connects wins.
///
/// # Errors
///
/// Resolution fails, or every address fails (the last attempt's error).
///
/// # Cancel safety
///
/// Dropping the future closes any socket it had opened; nothing else is affected.
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
/// and buffering.
///
/// # Errors
///
/// As [`dial`].
///
/// # Cancel safety
///
/// As [`dial`].
pub async fn dial_with(
    address: &str,
    port: u16,
    protocol: Protocol,
    buffered: bool,
) -> io::Result<AsyncSocket> {
    let sock_type = if protocol == Protocol::UDP {
        Type::DGRAM
    } else {
        Type::STREAM
    };
    let addrs = resolve(address, port).await?;
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} resolved to no address"),
    );
    for addr in addrs {
        let domain = Domain::for_address(addr);
        let attempt = async {
            let socket = AsyncSocket::builder()
                .domain(domain)
                .sock_type(sock_type)
                .protocol(protocol)
                .buffered(buffered)
                .build()?;
            socket.connect_addr(addr).await?;
            Ok::<_, io::Error>(socket)
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
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
pub async fn resolve_host(address: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    resolve(address, port).await
}
