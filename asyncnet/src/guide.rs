//! From Nim to Rust: every proc of Nim's `asyncnet` (and the `asyncdispatch` procs users
//! touch) with its counterpart here, and every place where this crate deliberately behaves
//! differently.
//!
//! # Names
//!
//! Nim names become Rust names by case only (`recvLine` → `recv_line`). Nim's default
//! parameters become a plain method plus a `_with` variant that takes them
//! (`recv_line()` / `recv_line_with(flags, max_length)`). Errors are `std::io::Error`.
//!
//! | Nim | Rust |
//! | --- | --- |
//! | `newAsyncSocket(domain, sockType, protocol, buffered, inheritable)` | [`AsyncSocket::new`], [`AsyncSocket::builder`] `.domain(..).sock_type(..).protocol(..).buffered(..).inheritable(..).build()` |
//! | `newAsyncSocket(fd, ...)` | [`AsyncSocket::from_fd`] (takes ownership, registers) |
//! | `newAsyncSocket(cint, cint, cint)` | [`AsyncSocket::new_raw`] |
//! | `dial(address, port, protocol, buffered)` | [`dial`](crate::dial), [`dial_with`](crate::dial_with); with options: [`Dialer`](crate::Dialer) |
//! | `connect(socket, address, port)` | [`AsyncSocket::connect`]; one address: [`AsyncSocket::connect_addr`] |
//! | `bindAddr(socket, port, address)` | [`AsyncSocket::bind_addr`] |
//! | `listen(socket, backlog)` | [`AsyncSocket::listen`], [`AsyncSocket::listen_backlog`] |
//! | `accept(socket)` | [`AsyncSocket::accept`] |
//! | `acceptAddr(socket)` | [`AsyncSocket::accept_addr`]; typed: [`AsyncSocket::accept_socket_addr`] |
//! | `send(socket, data)`, `send(socket, buf, size)` | [`AsyncSocket::send`] (any `AsRef<[u8]>`), [`AsyncSocket::send_with`] |
//! | `recv(socket, size)` | [`AsyncSocket::recv`], [`AsyncSocket::recv_with`] (returns `Vec<u8>`) |
//! | `recvInto(socket, buf, size)` | [`AsyncSocket::recv_into`], [`AsyncSocket::recv_into_with`] |
//! | `recvLine(socket, flags, maxLength)` | [`AsyncSocket::recv_line`], [`AsyncSocket::recv_line_with`] |
//! | `recvLineInto(socket, resString, flags, maxLength)` | [`AsyncSocket::recv_line_into`], [`AsyncSocket::recv_line_into_with`] |
//! | `getLocalAddr`, `getPeerAddr` | [`AsyncSocket::local_addr`], [`AsyncSocket::peer_addr`]; typed: `local_socket_addr`, `peer_socket_addr` |
//! | `getSockOpt`, `setSockOpt` (`SOBool`) | [`AsyncSocket::get_sock_opt`], [`AsyncSocket::set_sock_opt`] ([`SoBool`](crate::SoBool)) |
//! | `getFd` | [`AsyncSocket::fd`] (and `AsRawFd`; `AsRawSocket` on Windows) |
//! | `isClosed` | [`AsyncSocket::is_closed`] |
//! | `hasDataBuffered` | [`AsyncSocket::has_data_buffered`] |
//! | `close` | [`AsyncSocket::close`] (returns a write error nobody has heard of yet) |
//! | (the kernel has every byte: what Nim's `send` waits for) | [`AsyncSocket::flush`] |
//! | `BufferSize`, `MaxLineLength`, `SOMAXCONN` | [`BUFFER_SIZE`](crate::BUFFER_SIZE), [`MAX_LINE_LENGTH`](crate::MAX_LINE_LENGTH), [`SOMAXCONN`](crate::SOMAXCONN) |
//! | `SocketFlag.Peek`, `SocketFlag.SafeDisconn` | [`Flags::PEEK`](crate::Flags::PEEK), [`Flags::SAFE_DISCONN`](crate::Flags::SAFE_DISCONN) (the default, as in Nim) |
//! | `Domain`, `SockType`, `Protocol` | [`Domain`](crate::Domain), [`SockType`](crate::SockType), [`Protocol`](crate::Protocol) (from `socket2`) |
//! | `waitFor` | [`wait_for`](crate::wait_for) |
//! | `asyncCheck` | [`spawn`](crate::spawn) (drop the handle; failures go to [`set_task_failure_handler`](crate::set_task_failure_handler)'s handler) |
//! | `runForever`, `poll`, `drain` | [`run_forever`](crate::run_forever), [`poll`](crate::poll), [`drain`](crate::drain) |
//! | `hasPendingOperations`, `callSoon` | [`has_pending_operations`](crate::has_pending_operations), [`call_soon`](crate::call_soon) |
//! | `sleepAsync`, `withTimeout` | [`sleep_async`](crate::sleep_async), [`with_timeout`](crate::with_timeout) (and [`with_deadline`](crate::with_deadline), [`IoTimeout`](crate::IoTimeout)) |
// Unix-only methods are linked only where they exist (the Windows docs have none).
#![cfg_attr(
    unix,
    doc = "| `sendTo(socket, address, port, data)` | [`AsyncSocket::send_to`]; also [`AsyncSocket::send_to_addr`], [`AsyncSocket::send_to_unix`] |"
)]
#![cfg_attr(
    not(unix),
    doc = "| `sendTo(socket, address, port, data)` | [`AsyncSocket::send_to`]; also [`AsyncSocket::send_to_addr`], `AsyncSocket::send_to_unix` (Unix only) |"
)]
//! | `recvFrom(socket, size)` (tuple) | [`AsyncSocket::recv_from`], [`AsyncSocket::recv_from_with`] → `(Vec<u8>, String, u16)` |
//! | `recvFrom(socket, data, size, address, port)` (`FutureVar`s) | [`AsyncSocket::recv_from_into`] (`&mut [u8]`, `&mut String`, `&mut u16`); typed, for IP: [`AsyncSocket::recv_from_addr`] |
#![cfg_attr(
    unix,
    doc = "| `bindUnix`, `connectUnix` | [`AsyncSocket::bind_unix`], [`AsyncSocket::connect_unix`] (Unix only, as in Nim) |"
)]
#![cfg_attr(
    not(unix),
    doc = "| `bindUnix`, `connectUnix` | `AsyncSocket::bind_unix`, `AsyncSocket::connect_unix` (Unix only, as in Nim) |"
)]
//! | `newContext` (`net`) | [`TlsContext::client`](crate::TlsContext::client), [`TlsContext::client_builder`](crate::TlsContext::client_builder), [`TlsContext::server_builder`](crate::TlsContext::server_builder), [`TlsContext::server_from_files`](crate::TlsContext::server_from_files) |
//! | `wrapSocket(ctx, socket)` | [`wrap_socket`](crate::wrap_socket) |
//! | `wrapConnectedSocket(ctx, socket, handshake, hostname)` | [`wrap_connected_socket`](crate::wrap_connected_socket) (async: the handshake completes in the call) with [`HandshakeAs`](crate::HandshakeAs) |
//! | `getPeerCertificates` | [`AsyncSocket::peer_certificates`] (DER, leaf first) |
//! | `sslHandle` | [`AsyncSocket::tls_info`] (version, cipher suite, ALPN, server name) |
//! | `isSsl` | [`AsyncSocket::is_ssl`] |
//!
//! # Where we differ from Nim, and why
//!
//! | case | Nim 1.6 | here |
//! | --- | --- | --- |
//! | lone `\r` in a line | ends the line and the next byte is lost | ordinary data; no byte is ever lost |
//! | empty line | returned as `"\r\n"` to tell it from end-of-stream | `Some("")`; end-of-stream is `None` |
//! | end-of-stream mid-line | the partial line is lost | returned as a line, then `None` |
//! | line longer than `maxLength` | silently split into two lines | error [`LineTooLong`](crate::LineTooLong); the bytes stay buffered |
//! | invalid UTF-8 | Nim strings hold any bytes | error [`InvalidUtf8Line`](crate::InvalidUtf8Line) carrying the bytes; the line is consumed |
//! | `Peek` on lines | assertion failure | works, buffered and unbuffered |
//! | `recv(0)` unbuffered | crash | empty result |
//! | send to a dead peer under `SafeDisconn` | "succeeds" forever, data dropped | that send completes, the socket records it ([`AsyncSocket::is_disconnected`]), later sends fail with `BrokenPipe` |
//! | `SIGPIPE` | depends on the host program | never raised (`MSG_NOSIGNAL` / `SO_NOSIGPIPE`) |
//! | send or recv on a closed socket | assertion or "fd not registered" | error of kind `NotConnected`; a call waiting when the socket closes gets it too |
//! | accept and `EMFILE` | the future fails; a plain accept loop dies | the call waits (5 ms doubling to 0.5 s) and retries; [`AsyncSocket::take_accept_error`] shows the error |
//! | `OptNoDelay` with the default level | sets `SO_DEBUG` at `SOL_SOCKET` | always `TCP_NODELAY` at `IPPROTO_TCP`; each option knows its level |
//! | `acceptAddr` text | IPv4-mapped shown as IPv4 | the same: `to_canonical()` |
//! | DNS in `dial`/`connect` | blocks the whole loop | a helper thread resolves; other tasks run on |
//! | `withTimeout` | the inner future runs on | the inner future is dropped (cancelled) |
//! | deadlines | `withTimeout` only, which leaves the operation running and its bytes to whoever reads next | per call ([`IoTimeout`](crate::IoTimeout)) and per socket ([`AsyncSocket::set_read_deadline`], [`AsyncSocket::set_write_deadline`]) on every operation that waits; a timeout loses nothing ([Deadlines](crate#deadlines)) |
//! | cancellation | none | dropping any future cancels it; each method documents what that loses (reads: nothing) |
//! | closing | callbacks run after `close(2)` (fd reuse race, Nim #12652) | the fd leaves the poller and waiters are failed before `close(2)` |
//! | `dial` | tries addresses in turn, each until the OS gives up | races them (Happy Eyeballs v2, RFC 8305): a dead address costs 250 ms, not a TCP timeout ([`dial`](#dial)) |
//! | TLS hostname verification in `connect` | none: any valid certificate is accepted | always on for clients (chain and name; IP addresses against IP names) unless `danger_accept_invalid_certs` |
//! | `wrapConnectedSocket` handshake | deferred to the first I/O | completes in the call |
//! | TLS `close` | no close_notify | close_notify sent, after the queued bytes, in the background if the kernel cannot take it at once |
//! | TLS peer closes without close_notify | looks like a clean end | `UnexpectedEof` error (truncation) |
//! | TLS handshake cut off by the peer | reported as success | `UnexpectedEof` error |
//! | a client that fails its handshake on a wrapped listener | the accept fails | that client is dropped, the error recorded ([`AsyncSocket::take_accept_error`]), the listener goes on |
//! | `send("")` on TLS | crash | no-op |
//! | when `send` completes | when the kernel has every byte: one system call per message | at once, the bytes coalesced (the rule: [Write coalescing](crate#write-coalescing)); `flush().await` or [`Flags::NONE`](crate::Flags::NONE) give Nim's meaning |
//! | a failed `asyncCheck` task | `waitFor` raises its exception: one client's bad input can end a server | reported on stderr and the loop goes on (a handler can count, collect, or [`raise`](crate::TaskFailure::raise) it as Nim does: [When a detached task fails](crate#when-a-detached-task-fails)) |
//! | awaited by another runtime | (no other runtime) | fails at once with `Unsupported` naming the fix, never hangs ([Living next to tokio](crate#living-next-to-tokio)) |
//! | buffered `recv(n)` | reads `BufferSize` ahead | the same: at least [`BUFFER_SIZE`](crate::BUFFER_SIZE) asked of the kernel, the rest kept |
//! | `close` with bytes still to send | the pending sends' futures fail, their bytes dropped | bytes of completed (or dropped) sends are still written (the rule: [`CLOSE_LINGER`](crate::CLOSE_LINGER)); a write error nobody has heard of is returned |
//! | UDP datagram larger than `size` | silently truncated | error [`DatagramTruncated`](crate::DatagramTruncated) with the kept bytes and the sender |
//! | `sendTo` on a TCP socket | undefined | `InvalidInput` |
//! | `getLocalAddr`/`getPeerAddr` on Unix sockets | error | the path and port 0 (`""` unnamed, `@name` abstract) |
//! | `acceptAddr` on a Unix socket | `"unix"` | the peer's path (`""`: clients are rarely bound) |
//! | Unix path too long or with a NUL inside | cut short by the kernel | `InvalidInput`; a leading NUL is a Linux abstract name |
//! | `send`/`recv` on a connected datagram socket | through the stream buffer | one datagram each; `recv` reports truncation |
//!
//! # `dial`
//!
//! A host with an IPv6 address behind a broken route (a "black hole": SYNs vanish) is the
//! classic trap: a client that tries addresses one after another waits out a whole TCP
//! connect timeout (about 2 minutes on Linux) before it tries IPv4. [`dial`](crate::dial)
//! and [`Dialer`](crate::Dialer) race the addresses as RFC 8305 (Happy Eyeballs v2) says.
//!
//! | | Nim 1.6 `dial` | Go `net.Dialer` (RFC 6555) | RFC 8305 | here |
//! | --- | --- | --- | --- | --- |
//! | lookups | one `getaddrinfo` for both families, blocking the loop | both families, connecting after both answered | AAAA and A separately, in parallel | AAAA and A separately, in parallel, on helper threads (or a [`Resolver`](crate::Resolver) of the user's) |
//! | connecting starts | after the lookup | after the lookup | on the first answer; if A comes first, wait up to the Resolution Delay (50 ms) for AAAA | the same ([`RESOLUTION_DELAY`](crate::RESOLUTION_DELAY)) |
//! | order | the resolver's | the first address's family ("primaries"), then the other ("fallbacks") | interleaved families, First Address Family Count 1 by default, IPv6 first | interleaved, one address per family in turn, IPv6 first ([`FamilyPreference`](crate::FamilyPreference) changes it); each family in its resolver's order (`getaddrinfo` sorts by RFC 6724); late answers join the queue |
//! | next attempt | when the last one failed | the fallback family 300 ms later (`FallbackDelay`), or when the primaries failed; within a family, one after another | Connection Attempt Delay: 250 ms recommended, at least 100 ms (never below 10 ms), at most 2 s; at once when an attempt fails | 250 ms ([`DEFAULT_ATTEMPT_DELAY`](crate::DEFAULT_ATTEMPT_DELAY)), configurable, clamped to [100 ms, 2 s]; at once when an attempt fails |
//! | cost of a black-holed first address | a TCP timeout | 300 ms (only across families: a black hole among one family's addresses still costs a timeout, or its share of `Timeout`) | one attempt delay | one attempt delay, whatever the family |
//! | the losers | (none run) | cancelled | cancelled | dropped the moment one wins, their sockets closed |
//! | every attempt failed | the last error | the first error | (not said) | one error naming each address and why, kind of the most telling ([`DialError`](crate::DialError)) |
//! | options | protocol, buffered | `Timeout`, `LocalAddr`, `FallbackDelay`, `Resolver`, `Control`, ... | | [`Dialer`](crate::Dialer): attempt delay, timeout, families, local address, protocol, buffered, TLS on the winner, resolver, `on_attempt` (as Go's `Control`) |
//!
//! Not done from RFC 8305: remembering which family won for the next dial (section 4's
//! historical data), NAT64 address synthesis (section 7), and reordering by measured round
//! trip times. IP literals skip the resolver (one attempt). Over UDP a "connect" completes
//! at once, so the first address in RFC 8305's order wins.
//!
//! On one existing socket of a fixed family, [`AsyncSocket::connect`] and
//! [`AsyncSocket::send_to`] by name keep Nim's meaning (try the addresses in turn): an IPv4
//! socket looks up A records only, an IPv6-only socket (Windows' default) AAAA only; a
//! dual-stack IPv6 socket looks up both families in parallel, in RFC 8305's order, with the Resolution Delay. They cannot race: one socket makes one
//! connection at a time, and a datagram must reach its peer once, not once per address.
//!
//! # Platforms
//!
//! Every proc of the table above exists on Linux, macOS, the BSDs and Windows, except the
//! Unix-domain ones (`bindUnix`, `connectUnix`, and our `send_to_unix`), which are POSIX only
//! in Nim too: on Windows they are absent (not compiled), not stubs that fail. Tested: Linux
//! (64-bit, and 32-bit x86), and Windows under Wine (CI runs the suite there); checked to
//! compile: FreeBSD, macOS, ARM Linux, NetBSD, illumos, Android, big-endian Linux (s390x, whose
//! tests `.ci/big-endian` runs under qemu). The io_uring driver is built for 64-bit Linux only
//! (on x86-64, ARM, RISC-V, LoongArch, POWER: the architectures the `io-uring` crate has
//! bindings for). Where the platforms differ (each item's `# Portability` note says more):
//!
//! | item | Linux | macOS, the BSDs | Windows |
//! | --- | --- | --- | --- |
//! | readiness | epoll (mio), edge-triggered | kqueue (mio) | mio's AFD polling; the seam re-arms it whenever readiness is cleared |
//! | [`AsyncSocket::fd`], `from_fd`, `into_fd` | `RawFd` / `OwnedFd`, -1 once closed | the same | `RawSocket` / `OwnedSocket`, `INVALID_SOCKET` once closed ([`RawSocket`](crate::RawSocket), [`OwnedSocket`](crate::OwnedSocket), [`INVALID_SOCKET`](crate::INVALID_SOCKET)) |
//! | lending the handle | `AsFd`, `AsRawFd`; a lent number points at `/dev/null` after `close` | the same | `AsSocket`, `AsRawSocket`; a lent handle stays allocated until the last handle of the socket is dropped, and `close` ends the connection with a shutdown |
//! | `SIGPIPE` on a write to a reset peer | never (`MSG_NOSIGNAL`) | never (`MSG_NOSIGNAL`; macOS: `SO_NOSIGPIPE`) | no such signal |
//! | accept | `accept4`, one system call | `accept4` (macOS: `accept` + non-blocking) | `accept` + non-blocking; Wine's `WSAENOTCONN` for a connection reset before it was taken is skipped like `ECONNABORTED` |
//! | [`SoBool::ReusePort`](crate::SoBool::ReusePort) | `SO_REUSEPORT` | `SO_REUSEPORT` (illumos, Solaris: `Unsupported` error) | `Unsupported` error |
//! | [`SoBool::ReuseAddr`](crate::SoBool::ReuseAddr) | rebind in `TIME_WAIT` | the same | Winsock's meaning: may also bind a port in use |
//! | [`Server`](crate::Server) (several threads on one address) | a `SO_REUSEPORT` listener per thread, balanced by the kernel (by hash) | one listener shared by the threads (`SO_REUSEPORT` does not balance there) | one listener shared by the threads (no `SO_REUSEPORT`) |
//! | `Debug`, `DontRoute` | honoured (`Debug` needs privileges) | honoured | taken and ignored by the providers |
//! | [`SOMAXCONN`](crate::SOMAXCONN) | 4096 | 128 | `0x7fffffff` (the provider's maximum) |
//! | a disconnection ([`Flags::SAFE_DISCONN`](crate::Flags::SAFE_DISCONN)) | `ECONNRESET`, `EPIPE`, `ENETRESET` | the same | `WSAECONNRESET`, `WSAECONNABORTED`, `WSAENETRESET`, `WSAESHUTDOWN` |
//! | `local_addr` of an unbound socket | `0.0.0.0:0` (or `[::]:0`) | the same | error `WSAEINVAL` |
//! | IPv6 sockets | dual stack unless `net.ipv6.bindv6only` | dual stack | IPv6-only by default: `socket2::SockRef::from(&s).set_only_v6(false)` for dual stack |
//! | unbuffered [`Flags::PEEK`](crate::Flags::PEEK) of a line the peer ended without a line break | returns the partial line | the same | waits for more bytes (the end is reported only after the bytes before it are read) |
//! | Unix-domain sockets | yes (abstract names too) | yes | absent |
//!
//! # Buffering and cancel safety
//!
//! A read future holds no bytes while it waits: what it took from the kernel and cannot
//! return yet goes into the socket's buffer before it yields. A send's bytes are in the
//! socket's output buffer before it first returns `Pending`, and a background task writes
//! them if the send is dropped. So dropping a future (directly, or through
//! [`with_timeout`](crate::with_timeout)) never loses received bytes and never cuts a
//! message in two. Both buffers exist only while bytes are in them.
//!
//! An unbuffered [`recv`](crate::AsyncSocket::recv) reads into one scratch buffer of the
//! loop's, then copies what came into a `Vec` of its size, so a connection between messages
//! holds no buffer at all. [`recv_into`](crate::AsyncSocket::recv_into) a buffer of the
//! connection's own saves that allocation and copy, but with thousands of connections the
//! kernel writes each message into a different buffer that has left the cache: at 5,000
//! connections on our bench machine, a 4 KiB buffer per connection cost even a hand-written
//! C server 7–37 % more per round trip in three runs (`bench/README.md` in the repository,
//! "What a buffer per connection costs").
#![forbid(unsafe_code)]

#[allow(unused_imports)]
use crate::AsyncSocket;
