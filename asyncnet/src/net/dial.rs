//! `dial`: a connected socket from a host name and port.
#![forbid(unsafe_code)]

use std::io;

use socket2::{Domain, Protocol, Type};

use super::resolve::resolve;
use super::socket::AsyncSocket;

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
