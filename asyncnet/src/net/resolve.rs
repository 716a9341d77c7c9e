//! Name resolution off the loop's thread.
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
