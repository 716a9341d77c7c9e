//! Creating sockets (`new`, `builder`, `new_raw`, `from_fd`) and closing them, on IPv4 and
//! IPv6 loopback.

#[macro_use]
mod support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
#[cfg(unix)]
use std::os::fd::{AsRawFd, OwnedFd};

use asyncnet::{AsyncSocket, Domain, RawSocket, SoBool, SockType};
use support::{port, run, Family};

/// The C constants `new_raw` takes, from the platform's headers.
#[cfg(unix)]
mod c {
    pub use libc::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_STREAM};
}
/// The C constants `new_raw` takes, from the platform's headers (Winsock's address
/// families are `u16`: they fit `c_int`).
#[cfg(windows)]
mod c {
    use windows_sys::Win32::Networking::WinSock as ws;
    pub use ws::{IPPROTO_TCP, IPPROTO_UDP, SOCK_STREAM};
    pub const AF_INET: i32 = ws::AF_INET as i32;
    pub const AF_INET6: i32 = ws::AF_INET6 as i32;
}

/// Whether a child process would not inherit the socket (Unix: `FD_CLOEXEC`).
#[cfg(unix)]
fn cloexec(fd: RawSocket) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; `fd` is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// Whether a child process would not inherit the socket (Windows: `HANDLE_FLAG_INHERIT`
/// clear).
#[cfg(windows)]
fn cloexec(socket: RawSocket) -> bool {
    extern "system" {
        fn GetHandleInformation(handle: *mut std::ffi::c_void, flags: *mut u32) -> i32;
    }
    const HANDLE_FLAG_INHERIT: u32 = 1;
    let mut flags = 0u32;
    // SAFETY: a socket is a kernel handle; the call only reads its flags into `flags`, which
    // is valid and writable; `socket` is open.
    let ok = unsafe { GetHandleInformation(socket as usize as *mut _, &mut flags) };
    assert_ne!(
        ok,
        0,
        "GetHandleInformation: {}",
        io::Error::last_os_error()
    );
    flags & HANDLE_FLAG_INHERIT == 0
}

/// Whether the socket is in non-blocking mode. Unix only: Windows has no call that reads a
/// socket's mode back (`FIONBIO` only sets it).
#[cfg(unix)]
fn nonblocking(fd: RawSocket) -> bool {
    // SAFETY: F_GETFL only reads the descriptor's status flags; `fd` is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

// macOS has no SO_DOMAIN.
#[cfg(all(unix, not(target_os = "macos")))]
fn socket_domain(fd: RawSocket) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid and writable; `len` holds the size of `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
    v
}

#[test]
fn new_makes_a_buffered_ipv4_tcp_socket_that_is_close_on_exec_and_nonblocking() {
    run(async {
        let s = AsyncSocket::new()?;
        assert!(!s.is_closed());
        assert!(s.is_buffered());
        assert_ne!(s.fd(), asyncnet::INVALID_SOCKET);
        #[cfg(unix)]
        assert_eq!(s.as_raw_fd(), s.fd());
        #[cfg(windows)]
        assert_eq!(std::os::windows::io::AsRawSocket::as_raw_socket(&s), s.fd());
        #[cfg(all(unix, not(target_os = "macos")))]
        assert_eq!(socket_domain(s.fd()), libc::AF_INET);
        assert!(cloexec(s.fd()), "not inheritable by default");
        #[cfg(unix)]
        assert!(nonblocking(s.fd()));
        assert!(!s.has_data_buffered());
        assert!(!s.is_disconnected());
        // It works as an IPv4 socket.
        s.bind_addr(0, "127.0.0.1")?;
        assert_eq!(s.local_addr()?.0, "127.0.0.1");
        Ok(())
    })
}

fn builder_sets_family_buffering_and_inheritance(fam: Family) {
    run(async move {
        let s = AsyncSocket::builder()
            .domain(fam.domain())
            .sock_type(SockType::STREAM)
            .protocol(asyncnet::Protocol::TCP)
            .buffered(false)
            .inheritable(true)
            .build()?;
        assert!(!s.is_buffered());
        assert!(!cloexec(s.fd()), "inheritable(true) clears close-on-exec");
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let want = if fam == Family::V4 {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            assert_eq!(socket_domain(s.fd()), want);
        }
        s.bind_addr(0, fam.loopback())?;
        assert_eq!(s.local_addr()?.0, fam.loopback());

        let d = AsyncSocket::builder().domain(fam.domain()).build()?;
        assert!(d.is_buffered());
        assert!(cloexec(d.fd()));
        Ok(())
    })
}

fn new_raw_makes_a_working_socket_from_c_constants(fam: Family) {
    run(async move {
        let af = if fam == Family::V4 {
            c::AF_INET
        } else {
            c::AF_INET6
        };
        // Explicit protocol, unbuffered.
        let server = AsyncSocket::new_raw(af, c::SOCK_STREAM, c::IPPROTO_TCP, false)?;
        assert!(!server.is_buffered());
        assert!(cloexec(server.fd()));
        server.set_sock_opt(SoBool::ReuseAddr, true)?;
        server.bind_addr(0, fam.loopback())?;
        server.listen()?;
        // Protocol 0: the OS's default for the type.
        let client = AsyncSocket::new_raw(af, c::SOCK_STREAM, 0, true)?;
        assert!(client.is_buffered());
        client.connect(fam.loopback(), port(&server)).await?;
        let peer = server.accept().await?;
        assert!(
            !peer.is_buffered(),
            "accepted sockets inherit the listener's buffering"
        );
        client.send("raw\n").await?;
        assert_eq!(peer.recv_line().await?.as_deref(), Some("raw"));
        Ok(())
    })
}

#[test]
fn new_raw_with_an_unknown_combination_fails() {
    let e = AsyncSocket::new_raw(c::AF_INET, c::SOCK_STREAM, c::IPPROTO_UDP, true)
        .expect_err("TCP stream with the UDP protocol");
    assert!(e.raw_os_error().is_some(), "the OS's error: {e}");
    let e = AsyncSocket::new_raw(12345, c::SOCK_STREAM, 0, true).expect_err("unknown family");
    assert!(e.raw_os_error().is_some(), "the OS's error: {e}");
}

// Portability: the non-blocking mode is checked on Unix only (Windows cannot read it back).
fn from_fd_adopts_a_std_listener(fam: Family) {
    run(async move {
        let std_listener = TcpListener::bind((fam.ip(), 0))?;
        let addr = std_listener.local_addr()?;
        #[cfg(unix)]
        assert!(!nonblocking(std_listener.as_raw_fd()));
        let server = AsyncSocket::from_fd(asyncnet::OwnedSocket::from(std_listener), true)?;
        #[cfg(unix)]
        assert!(
            nonblocking(server.fd()),
            "adopted sockets become non-blocking"
        );
        assert_eq!(server.local_socket_addr()?, addr);
        assert!(server.get_sock_opt(SoBool::AcceptConn)?);

        let mut client = TcpStream::connect(addr)?;
        let (from, accepted) = server.accept_addr().await?;
        assert_eq!(from, fam.loopback());
        assert!(accepted.is_buffered());
        client.write_all(b"adopted\r\n")?;
        assert_eq!(accepted.recv_line().await?.as_deref(), Some("adopted"));
        Ok(())
    })
}

fn from_fd_adopts_a_std_stream(fam: Family) {
    run(async move {
        let std_listener = TcpListener::bind((fam.ip(), 0))?;
        let stream = TcpStream::connect(std_listener.local_addr()?)?;
        let (mut far, _) = std_listener.accept()?;
        let local = stream.local_addr()?;
        let ours = AsyncSocket::from_fd(asyncnet::OwnedSocket::from(stream), false)?;
        assert!(!ours.is_buffered());
        assert_eq!(ours.local_socket_addr()?, local);
        assert_eq!(ours.peer_socket_addr()?, std_listener.local_addr()?);

        ours.send("to std").await?;
        // The read below blocks this thread: the coalesced bytes must be in the kernel first.
        ours.flush().await?;
        let mut got = [0u8; 6];
        far.read_exact(&mut got)?;
        assert_eq!(&got, b"to std");
        far.write_all(b"from std")?;
        let mut back = Vec::new();
        while back.len() < 8 {
            let chunk = ours.recv(8 - back.len()).await?;
            assert!(!chunk.is_empty(), "unexpected end of stream");
            back.extend(chunk);
        }
        assert_eq!(back, b"from std");
        Ok(())
    })
}

#[test]
#[cfg(unix)] // descriptor flags through libc
fn from_fd_refuses_a_descriptor_that_is_not_a_socket() {
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let e = AsyncSocket::from_fd(OwnedFd::from(file), true).expect_err("not a socket");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e}");
}

fn close_is_idempotent_and_fd_becomes_minus_one(fam: Family) {
    run(async move {
        let (client, peer) = support::pair(fam, true).await?;
        let fd = client.fd();
        assert_ne!(fd, asyncnet::INVALID_SOCKET);
        client.close()?;
        assert!(client.is_closed());
        assert_eq!(client.fd(), asyncnet::INVALID_SOCKET);
        client.close()?;
        assert!(client.is_closed());
        assert_eq!(client.fd(), asyncnet::INVALID_SOCKET);
        // Clones share the socket.
        let clone = peer.clone();
        peer.close()?;
        assert!(clone.is_closed());
        assert_eq!(clone.fd(), asyncnet::INVALID_SOCKET);
        // The descriptor is really closed.
        #[cfg(unix)]
        {
            // SAFETY: F_GETFD only reads flags; on a closed descriptor it fails with EBADF (the
            // number may have been reused by another test's socket, which F_GETFD does not
            // touch).
            let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if r < 0 {
                assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EBADF));
            }
        }
        Ok(())
    })
}

fn every_call_on_a_closed_socket_fails_with_not_connected(fam: Family) {
    run(async move {
        let (client, _peer) = support::pair(fam, true).await?;
        client.close()?;
        let kind = |r: io::Result<()>| r.expect_err("closed").kind();
        assert_eq!(kind(client.send("x").await), io::ErrorKind::NotConnected);
        assert_eq!(
            client.recv(1).await.expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            client.recv_line().await.expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        let mut buf = [0u8; 4];
        assert_eq!(
            client.recv_into(&mut buf).await.expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            kind(client.set_sock_opt(SoBool::NoDelay, true)),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            client
                .get_sock_opt(SoBool::NoDelay)
                .expect_err("closed")
                .kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            client.local_addr().expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            client.peer_addr().expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            kind(client.bind_addr(0, fam.loopback())),
            io::ErrorKind::NotConnected
        );
        assert_eq!(kind(client.listen()), io::ErrorKind::NotConnected);
        assert_eq!(
            kind(client.connect(fam.loopback(), 1).await),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            client.accept().await.expect_err("closed").kind(),
            io::ErrorKind::NotConnected
        );
        assert!(!client.has_data_buffered());
        Ok(())
    })
}

#[test]
fn debug_output_names_the_socket_state() {
    let s = AsyncSocket::builder().domain(Domain::IPV4).build().unwrap();
    let text = format!("{s:?}");
    assert!(text.contains("closed: false"), "{text}");
    s.close().unwrap();
    let text = format!("{s:?}");
    assert!(
        text.contains("closed: true")
            && text.contains(&format!("fd: {}", asyncnet::INVALID_SOCKET)),
        "{text}"
    );
}

family_tests!(
    builder_sets_family_buffering_and_inheritance,
    new_raw_makes_a_working_socket_from_c_constants,
    from_fd_adopts_a_std_listener,
    from_fd_adopts_a_std_stream,
    close_is_idempotent_and_fd_becomes_minus_one,
    every_call_on_a_closed_socket_fails_with_not_connected,
);
