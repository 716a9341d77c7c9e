//! Serving one address on several threads, one loop each ("thread per core"): [`Server`].
//!
//! ```text
//!  start()                      thread 0                      thread N-1
//!  bind N listeners   ──────►   loop: accept ─► spawn(h(c))    loop: accept ─► spawn(h(c))
//!  (SO_REUSEPORT)               handler made by factory()      handler made by factory()
//!        ▲                          │ shutdown(grace)              │
//!  ServerHandle ── Control ─────────┴──────── stop, wait, reset ───┘
//! ```
//!
//! The handle reaches the threads through one `Control` (a mutex and each thread's waker:
//! asyncnet wakers may be woken from any thread); everything else stays on its thread.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::socket::{AsyncSocket, Inner, SOMAXCONN};
use crate::dispatch::{report_failure, spawn, wait_for, with_deadline, JoinHandle};
use crate::{TaskFailure, TaskOutput};

/// A server that accepts connections on one address with several threads, each running its
/// own event loop, its own listener and its own copy of the connection handler ("thread per
/// core": nothing is shared or locked on the hot path, and a connection stays on the thread
/// that accepted it).
///
/// [`start`](Server::start) takes a *factory*: a `Send + Sync` function called once on each
/// thread to make that thread's handler, which may then hold `!Send` state (`Rc`, `RefCell`,
/// sockets). The handler is called with each accepted connection and returns the future that
/// serves it, run as a task of that thread's loop. A task that fails (returns `Err`, or
/// panics) goes to the thread's task failure handler like any detached task (by default:
/// written to standard error; see [`set_task_failure_handler`](crate::set_task_failure_handler),
/// which the factory may call): it never takes the server down. So does a panic of the
/// handler function itself.
///
/// [`ServerHandle::shutdown`] stops it gracefully: every thread stops accepting (closes its
/// listener), the connections in progress get until the deadline to finish, and those still
/// open then are closed forcibly (their tasks are dropped and the connection reset) and
/// counted in the [`ServeReport`].
///
/// # Examples
///
/// A line echo server on two threads; a client; a graceful shutdown.
///
/// ```
/// use std::time::Duration;
/// use asyncnet::{wait_for, AsyncSocket, Server};
///
/// let server = Server::new(0, "127.0.0.1")
///     .threads(2)
///     .start(|| {
///         // Once per thread: state made here may be `!Send` (an `Rc`, a cache, ...).
///         |client: AsyncSocket| async move {
///             while let Some(line) = client.recv_line().await? {
///                 client.send(format!("{line}\r\n")).await?;
///             }
///             Ok::<(), std::io::Error>(())
///         }
///     })?;
/// let port = server.local_addr().port();
///
/// wait_for(async {
///     let sock = asyncnet::dial("127.0.0.1", port).await?;
///     sock.send("hello\r\n").await?;
///     assert_eq!(sock.recv_line().await?.as_deref(), Some("hello"));
///     Ok::<(), std::io::Error>(())
/// })?;
///
/// // The client above closed: its connection finishes well within the grace period.
/// let report = server.shutdown(Duration::from_secs(5))?;
/// assert_eq!(report.threads, 2);
/// assert_eq!(report.closed_forcibly, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Portability
///
/// - **Linux** (and Android): each thread has a listener of its own, bound with
///   `SO_REUSEPORT` (and `SO_REUSEADDR`), and the kernel spreads new connections over them.
///   Known caveats of `SO_REUSEPORT`:
///   - the kernel picks the listener by a **hash of the connection's addresses and ports,
///     not by load**: a busy thread keeps receiving its share of new connections while
///     another idles, and a few long connections can land on the same thread;
///   - a connection waiting in one listener's accept queue belongs to that listener: if the
///     listener is closed (at shutdown, or when its thread fails) while the others go on,
///     the connections queued on it are **reset, not moved** to the others, unless the
///     `net.ipv4.tcp_migrate_req` sysctl (Linux 5.14+) is set to 1. At a shutdown every
///     listener closes at about the same time, so this concerns the connections that arrive
///     in that instant, as with any listener that closes;
///   - any socket of the same user that sets `SO_REUSEPORT` can bind the same address and
///     take a share of the connections.
/// - **macOS, the BSDs and other Unix systems**: `SO_REUSEPORT` binds there but does not
///   balance (FreeBSD's balancing option is `SO_REUSEPORT_LB`), so the threads share one
///   listener instead (`dup`'ed per thread): each thread's poller watches it, and whichever
///   thread accepts first takes a connection. Every thread may be woken for one connection
///   (the others find nothing to accept), and the spread follows which thread is free.
/// - **Windows** has no `SO_REUSEPORT`: the threads share one listener as above (duplicated
///   with `WSADuplicateSocket`; each thread's poller watches it through mio), and
///   `SO_REUSEADDR` is not set (on Windows it would let another program bind the port too).
///   The tests of `tests/serve_threads.rs` pass under Wine, all but the spreading one, which
///   is Linux's.
///
/// Only TCP over IPv4 or IPv6; TLS is the handler's to add
/// ([`wrap_connected_socket`](crate::wrap_connected_socket) on each client).
#[derive(Debug, Clone)]
pub struct Server {
    port: u16,
    address: String,
    threads: usize,
    backlog: i32,
    buffered: bool,
}

impl Server {
    /// A server for `address:port` (as [`AsyncSocket::bind_addr`] takes them: an empty
    /// address is `0.0.0.0`, a host name is resolved by [`start`](Server::start), port 0 lets
    /// the OS choose, the same port for every thread), with the defaults: one thread per CPU
    /// ([`std::thread::available_parallelism`]), a backlog of [`SOMAXCONN`], buffered
    /// sockets.
    pub fn new(port: u16, address: &str) -> Server {
        Server {
            port,
            address: address.to_string(),
            threads: 0,
            backlog: SOMAXCONN,
            buffered: true,
        }
    }

    /// How many threads (and loops) serve: 0 (the default) means one per CPU, as
    /// [`std::thread::available_parallelism`] counts them (1 if it cannot tell).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The listen backlog of each listener (default [`SOMAXCONN`]).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Whether accepted sockets are buffered (the default, as [`AsyncSocket::new`]; see
    /// [`SocketBuilder::buffered`](crate::SocketBuilder::buffered)).
    pub fn buffered(mut self, buffered: bool) -> Self {
        self.buffered = buffered;
        self
    }

    /// Bind the listeners, start the threads, and return once every thread is accepting.
    ///
    /// `factory` is called once on each server thread to make its handler; the handler is
    /// called with each connection that thread accepts, and the future it returns is spawned
    /// as a task of that thread's loop (see [`Server`]).
    ///
    /// The address is resolved and every listener is bound on the calling thread, before any
    /// thread starts, so an address in use fails here with nothing started. A thread that
    /// cannot start (no poller, or `factory` panicked) fails the call too, after the threads
    /// already started have been stopped and joined: there is never a half-started server.
    ///
    /// # Errors
    ///
    /// The address does not resolve; `socket(2)`, `bind(2)` (`AddrInUse`, permission) or
    /// `listen(2)` fails; a thread cannot be spawned; a thread's loop cannot be made (out of
    /// descriptors); `factory` panics (an error of kind `Other` naming the thread).
    ///
    /// # Examples
    ///
    /// The handler of each thread counts its own connections in an `Rc` (no atomics).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use asyncnet::{AsyncSocket, Server};
    ///
    /// let server = Server::new(0, "127.0.0.1").threads(2).start(|| {
    ///     let served = Rc::new(Cell::new(0u64));
    ///     move |client: AsyncSocket| {
    ///         served.set(served.get() + 1);
    ///         let n = served.get();
    ///         async move { client.send(format!("you are number {n} here\r\n")).await }
    ///     }
    /// })?;
    /// let port = server.local_addr().port();
    /// let line = asyncnet::wait_for(async {
    ///     let sock = asyncnet::dial("127.0.0.1", port).await?;
    ///     sock.recv_line().await
    /// })?;
    /// assert_eq!(line.as_deref(), Some("you are number 1 here"));
    /// server.shutdown(Duration::from_secs(1))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start<F, H, Fut>(self, factory: F) -> io::Result<ServerHandle>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: FnMut(AsyncSocket) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskOutput,
    {
        let threads = match self.threads {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let addr = super::resolve::resolve_blocking(&self.address, self.port)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{} has no address", self.address),
                )
            })?;
        let (local_addr, listeners) = listeners(addr, threads, self.backlog)?;
        let control = Arc::new(Control::new(threads));
        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handle = ServerHandle {
            local_addr,
            control: control.clone(),
            threads: Vec::with_capacity(threads),
        };
        let domain = Domain::for_address(local_addr);
        for (index, listener) in listeners.into_iter().enumerate() {
            let thread = Thread {
                index,
                control: control.clone(),
                buffered: self.buffered,
                domain,
            };
            let factory = factory.clone();
            let ready = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("asyncnet-serve-{index}"))
                .spawn(move || thread.run(listener, &*factory, ready));
            match spawned {
                Ok(t) => handle.threads.push(t),
                Err(e) => {
                    handle.stop_and_join();
                    return Err(e);
                }
            }
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    handle.stop_and_join();
                    return Err(e);
                }
                // A thread died before it could say (it panicked): join reports it.
                Err(mpsc::RecvError) => break,
            }
        }
        if control.stopping() {
            // A thread ended while starting: collect its reason.
            return Err(handle
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("a server thread ended while starting")));
        }
        Ok(handle)
    }
}

/// Bind `threads` listeners (Linux: one each, `SO_REUSEPORT`; elsewhere one, duplicated),
/// listening, and the address they are bound to.
fn listeners(
    addr: SocketAddr,
    threads: usize,
    backlog: i32,
) -> io::Result<(SocketAddr, Vec<Socket>)> {
    let bound = |addr: SocketAddr| -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(backlog)?;
        Ok(socket)
    };
    let first = bound(addr)?;
    let local = first.local_addr()?.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the listener has no IP address",
        )
    })?;
    let mut all = Vec::with_capacity(threads);
    all.push(first);
    for _ in 1..threads {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        all.push(bound(local)?);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        all.push(all[0].try_clone()?);
    }
    Ok((local, all))
}

/// What one server thread needs besides its listener and factory.
struct Thread {
    index: usize,
    control: Arc<Control>,
    buffered: bool,
    domain: Domain,
}

/// Ends the whole server when a thread ends before it was asked to (an error or a panic).
struct StopOnExit(Arc<Control>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.stop(Duration::ZERO);
    }
}

impl Thread {
    /// The body of a server thread: make the loop's listener and the handler, say ready,
    /// serve until stopped.
    fn run<F, H, Fut>(
        self,
        listener: Socket,
        factory: &F,
        ready: mpsc::Sender<io::Result<()>>,
    ) -> io::Result<ThreadReport>
    where
        F: Fn() -> H,
        H: FnMut(AsyncSocket) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskOutput,
    {
        let _stop = StopOnExit(self.control.clone());
        let name = format!("asyncnet-serve-{}", self.index);
        let setup = AsyncSocket::adopt(listener, self.domain, Type::STREAM, self.buffered)
            .and_then(|listener| {
                panic::catch_unwind(AssertUnwindSafe(factory))
                    .map(|handler| (listener, handler))
                    .map_err(|p| {
                        io::Error::other(format!(
                            "{name}: the handler factory panicked: {}",
                            TaskFailure::Panic(p)
                        ))
                    })
            });
        let (listener, handler) = match setup {
            Ok(setup) => setup,
            Err(e) => {
                let kind = e.kind();
                let _ = ready.send(Err(e));
                return Err(io::Error::new(kind, format!("{name} did not start")));
            }
        };
        let _ = ready.send(Ok(()));
        drop(ready);
        let served = wait_for(self.serve(listener, handler));
        served.map_err(|e| io::Error::new(e.kind(), format!("{name}: accept failed: {e}")))
    }

    /// Accept and spawn until stopped; then wait for the connections until the deadline,
    /// and close those left.
    async fn serve<H, Fut>(&self, listener: AsyncSocket, mut handler: H) -> io::Result<ThreadReport>
    where
        H: FnMut(AsyncSocket) -> Fut,
        Fut: Future + 'static,
        Fut::Output: TaskOutput,
    {
        let conns = Rc::new(Conns::<Fut::Output>::default());
        let mut accepted = 0;
        let deadline = loop {
            let next = {
                let mut accept = pin!(listener.accept());
                poll_fn(|cx| match self.control.poll_stop(self.index, cx) {
                    Poll::Ready(deadline) => Poll::Ready(Err(deadline)),
                    Poll::Pending => accept.as_mut().poll(cx).map(Ok),
                })
                .await
            };
            match next {
                Err(deadline) => break deadline,
                Ok(Ok(client)) => {
                    accepted += 1;
                    self.control.accepted.fetch_add(1, Ordering::Relaxed);
                    conns.start(&mut handler, client);
                }
                Ok(Err(e)) => return Err(e),
            }
        };
        // Stop accepting: what is queued on this listener is reset by the kernel.
        drop(listener);
        let _ = with_deadline(conns.all_done(), deadline).await;
        Ok(ThreadReport {
            accepted,
            closed_forcibly: conns.close_all(),
        })
    }
}

/// One thread's connections in progress: each task's handle and a weak handle on its socket
/// (weak: a handler that drops its socket closes it, as anywhere else).
struct Conns<T: TaskOutput> {
    live: RefCell<Slab<(JoinHandle<T>, Weak<Inner>)>>,
    /// Woken when the last connection ends.
    idle: RefCell<Option<Waker>>,
}

impl<T: TaskOutput> Default for Conns<T> {
    fn default() -> Self {
        Conns {
            live: RefCell::new(Slab::new()),
            idle: RefCell::new(None),
        }
    }
}

impl<T: TaskOutput> Conns<T> {
    /// Run the handler on `client` and its future as a tracked task.
    fn start<H, Fut>(self: &Rc<Self>, handler: &mut H, client: AsyncSocket)
    where
        H: FnMut(AsyncSocket) -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        let socket = Rc::downgrade(&client.inner);
        let future = match panic::catch_unwind(AssertUnwindSafe(|| handler(client))) {
            Ok(future) => future,
            Err(p) => {
                // As a task's panic: the handler's, the connection's end.
                report_failure(TaskFailure::Panic(p));
                return;
            }
        };
        let mut live = self.live.borrow_mut();
        let entry = live.vacant_entry();
        let leave = Leave {
            conns: self.clone(),
            key: entry.key(),
        };
        // The task starts at the next turn, after its entry is in.
        let task = spawn(async move {
            let _leave = leave;
            future.await
        });
        entry.insert((task, socket));
    }

    /// Complete when no connection is left.
    async fn all_done(&self) {
        poll_fn(|cx| {
            if self.live.borrow().is_empty() {
                Poll::Ready(())
            } else {
                *self.idle.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Drop every task left and reset its connection; how many there were.
    fn close_all(&self) -> u64 {
        let left: Vec<_> = self.live.borrow_mut().drain().collect();
        let n = left.len() as u64;
        for (task, socket) in left {
            // Held across the abort, so that dropping the task's handles does not start a
            // linger of its queued output: the reset discards it.
            let socket = socket.upgrade().map(|inner| AsyncSocket { inner });
            task.abort();
            if let Some(socket) = socket {
                socket.reset();
            }
        }
        n
    }
}

/// Held by a connection's task: its end (finished, failed, panicked, aborted) takes its entry
/// out. The handle goes with it, so the task is detached as it ends and a failure goes to the
/// failure handler.
struct Leave<T: TaskOutput> {
    conns: Rc<Conns<T>>,
    key: usize,
}

impl<T: TaskOutput> Drop for Leave<T> {
    fn drop(&mut self) {
        let entry = self.conns.live.borrow_mut().try_remove(self.key);
        let empty = entry.is_some() && self.conns.live.borrow().is_empty();
        // Outside the borrow: the socket's last handle may finish it here.
        drop(entry);
        if empty {
            if let Some(w) = self.conns.idle.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// What one thread did.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadReport {
    accepted: u64,
    closed_forcibly: u64,
}

/// The stop signal shared by the handle and the threads.
#[derive(Debug)]
struct Control {
    state: Mutex<ControlState>,
    /// Connections accepted so far, over all threads.
    accepted: AtomicU64,
}

#[derive(Debug)]
struct ControlState {
    /// Set once by the first stop: when connections still open are closed.
    deadline: Option<Instant>,
    /// Each thread's accept loop, to wake at the stop.
    wakers: Vec<Option<Waker>>,
}

impl Control {
    fn new(threads: usize) -> Control {
        Control {
            state: Mutex::new(ControlState {
                deadline: None,
                wakers: vec![None; threads],
            }),
            accepted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stop every thread, with `grace` for their connections (the first call decides).
    fn stop(&self, grace: Duration) {
        let wakers: Vec<Waker> = {
            let mut state = self.lock();
            if state.deadline.is_some() {
                return;
            }
            let now = Instant::now();
            state.deadline = Some(
                now.checked_add(grace)
                    .unwrap_or(now + Duration::from_secs(86400 * 365)),
            );
            state.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    fn stopping(&self) -> bool {
        self.lock().deadline.is_some()
    }

    /// The deadline once stopped; until then thread `index` is woken at the stop.
    fn poll_stop(&self, index: usize, cx: &mut Context<'_>) -> Poll<Instant> {
        let mut state = self.lock();
        match state.deadline {
            Some(deadline) => Poll::Ready(deadline),
            None => {
                match &mut state.wakers[index] {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// The running server of [`Server::start`]: its address, its shutdown, its threads.
///
/// It is `Send` and `Sync`. Dropping it without [`shutdown`](ServerHandle::shutdown) or
/// [`join`](ServerHandle::join) stops the server with no grace (as `shutdown(Duration::ZERO)`)
/// and waits for its threads; to stop it from elsewhere while a thread waits in `join`, take
/// a [`ShutdownTrigger`] first.
pub struct ServerHandle {
    local_addr: SocketAddr,
    control: Arc<Control>,
    threads: Vec<thread::JoinHandle<io::Result<ThreadReport>>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.threads.len())
            .field("stopping", &self.control.stopping())
            .finish()
    }
}

/// What a server did, from [`ServerHandle::shutdown`] or [`ServerHandle::join`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Threads that served.
    pub threads: usize,
    /// Connections accepted, over all threads.
    pub accepted: u64,
    /// Connections whose task was still running at the shutdown's deadline: the server
    /// dropped the task and reset the connection if it was still open (`SO_LINGER` 0:
    /// output still queued is discarded, the peer sees a reset).
    pub closed_forcibly: u64,
}

impl ServerHandle {
    /// The address every thread listens on (with the port the OS chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted so far, over all threads.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::Relaxed)
    }

    /// How many threads serve.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// A handle that can only stop the server, for another thread (a signal handler, a
    /// watchdog) while this handle waits in [`join`](ServerHandle::join).
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.control.clone())
    }

    /// Stop the server gracefully and wait for it: every thread stops accepting at once,
    /// the connections in progress have `grace` to finish, those still open then are closed
    /// forcibly (counted in the report). Blocks the calling thread for at most about `grace`
    /// (plus the time to close). If the server was already stopping, the first stop's
    /// deadline holds.
    ///
    /// Tasks that a connection's task spawned itself are not waited for: they end with
    /// their thread's loop, after the deadline.
    ///
    /// # Errors
    ///
    /// As [`join`](ServerHandle::join): a thread that failed.
    ///
    /// # Examples
    ///
    /// A connection that never ends is closed at the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use asyncnet::{AsyncSocket, Server};
    ///
    /// let server = Server::new(0, "127.0.0.1").threads(1).start(|| {
    ///     |client: AsyncSocket| async move { client.recv_line().await } // waits for a line
    /// })?;
    /// let _stuck = std::net::TcpStream::connect(server.local_addr())?; // sends none
    /// while server.accepted() == 0 {
    ///     std::thread::sleep(Duration::from_millis(1)); // until a thread has taken it
    /// }
    /// let report = server.shutdown(Duration::from_millis(50))?;
    /// assert_eq!((report.accepted, report.closed_forcibly), (1, 1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(self, grace: Duration) -> io::Result<ServeReport> {
        self.control.stop(grace);
        self.join()
    }

    /// Wait until the server has stopped (by a [`ShutdownTrigger`], or because a thread
    /// failed) and every thread has ended.
    ///
    /// # Errors
    ///
    /// A thread failed: its listener's `accept` met an error other than the ones it rides
    /// out (see [`AsyncSocket::accept`]), or its loop panicked (its poller failed, or a
    /// failure handler raised a task's failure: [`TaskFailure::raise`]). A thread that fails
    /// stops the others as [`shutdown`](ServerHandle::shutdown) with no grace would; the
    /// first failure is returned, after every thread has ended.
    pub fn join(mut self) -> io::Result<ServeReport> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<ServeReport> {
        let mut report = ServeReport {
            threads: self.threads.len(),
            ..ServeReport::default()
        };
        let mut first_error = None;
        for (index, t) in self.threads.drain(..).enumerate() {
            let ended = t.join().unwrap_or_else(|p| {
                Err(io::Error::other(format!(
                    "asyncnet-serve-{index} panicked: {}",
                    TaskFailure::Panic(p)
                )))
            });
            match ended {
                Ok(r) => {
                    report.accepted += r.accepted;
                    report.closed_forcibly += r.closed_forcibly;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// Stop now and wait (a start that failed; a dropped handle).
    fn stop_and_join(&mut self) {
        self.control.stop(Duration::ZERO);
        let _ = self.join_threads();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_and_join();
        }
    }
}

/// Stops a [`Server`] from any thread: see [`ServerHandle::shutdown_trigger`].
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<Control>);

impl ShutdownTrigger {
    /// Begin the server's graceful shutdown (as [`ServerHandle::shutdown`], without waiting:
    /// [`ServerHandle::join`] waits). Calls after the first change nothing.
    pub fn shutdown(&self, grace: Duration) {
        self.0.stop(grace);
    }
}

// The handle and the trigger cross threads (a signal handler's, a watchdog's).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ServerHandle>();
    send_sync::<ShutdownTrigger>();
    send_sync::<Server>();
};
