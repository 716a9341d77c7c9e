//! Conversions: `AsFd` (so that `socket2::SockRef::from(&sock)` needs no `unsafe`), adopting
//! the standard library's sockets, and taking them back out without losing a byte.

mod support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd};
#[cfg(unix)]
use std::os::unix::net::UnixStream;

use asyncnet::AsyncSocket;
use socket2::SockRef;
use support::run;

/// The handle the socket lends (`AsFd` on Unix, `AsSocket` on Windows).
#[cfg(unix)]
fn lent(s: &AsyncSocket) -> asyncnet::RawSocket {
    s.as_fd().as_raw_fd()
}
#[cfg(windows)]
fn lent(s: &AsyncSocket) -> asyncnet::RawSocket {
    use std::os::windows::io::{AsRawSocket, AsSocket};
    s.as_socket().as_raw_socket()
}

#[cfg(unix)]
const ENOTSOCK: i32 = libc::ENOTSOCK;
/// `WSAENOTSOCK`.
#[cfg(windows)]
const ENOTSOCK: i32 = 10038;

async fn tcp_pair() -> io::Result<(AsyncSocket, AsyncSocket)> {
    let server = support::listener(support::Family::V4)?;
    let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    Ok((client, server.accept().await?))
}

#[test]
fn sock_ref_reaches_options_the_socket_does_not_offer_without_unsafe() {
    run(async {
        let (client, _peer) = tcp_pair().await?;
        let r = SockRef::from(&client);
        r.set_ttl_v4(42)?;
        r.set_tcp_keepalive(
            &socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(30)),
        )?;
        assert_eq!(SockRef::from(&client).ttl_v4()?, 42);
        assert!(SockRef::from(&client).keepalive()?);
        assert_eq!(lent(&client), client.fd());
        Ok(())
    })
}

#[test]
fn a_closed_socket_lends_no_socket_so_calls_fail_with_enotsock() {
    run(async {
        let (client, _peer) = tcp_pair().await?;
        client.close()?;
        let e = SockRef::from(&client).ttl_v4().expect_err("no socket");
        assert_eq!(e.raw_os_error(), Some(ENOTSOCK), "{e}");
        Ok(())
    })
}

/// A socket whose handle was lent (options set through `SockRef`), closed by one task while
/// another holds a clone: the peer gets every byte, then the end of the stream, at once, as
/// from any other socket; the handle stays allocated until the last clone is gone.
#[test]
fn a_lent_socket_closed_while_a_clone_lives_ends_its_connection() {
    run(async {
        let (client, peer) = tcp_pair().await?;
        SockRef::from(&client).set_keepalive(true)?;
        let clone = client.clone();
        // Queued when `close` comes: written first, then the end.
        client.send("last words\n").await?;
        client.close()?;
        assert_eq!(peer.recv_line().await?.as_deref(), Some("last words"));
        assert_eq!(peer.recv_line().await?, None);
        assert_eq!(
            lent(&clone),
            lent(&client),
            "the handle stays while a clone lives"
        );
        drop(clone);
        Ok(())
    })
}

#[test]
#[cfg(unix)]
fn a_lent_number_stays_allocated_after_close_and_the_connection_still_ends() {
    run(async {
        let (client, peer) = tcp_pair().await?;
        let lent = client.as_fd().as_raw_fd();
        client.send("last words\n").await?;
        client.close()?;
        // The peer gets every byte, then the end of the stream.
        assert_eq!(peer.recv_line().await?.as_deref(), Some("last words"));
        assert_eq!(peer.recv_line().await?, None);
        // The number is not handed to the next file while the socket's handle lives.
        let files: Vec<_> = (0..32)
            .map(|_| std::fs::File::open("/dev/null"))
            .collect::<Result<_, _>>()?;
        assert!(
            files.iter().all(|f| f.as_raw_fd() != lent),
            "number {lent} reused"
        );
        assert_eq!(client.as_fd().as_raw_fd(), lent);
        let e = SockRef::from(&client)
            .ttl_v4()
            .expect_err("no socket any more");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e}");
        Ok(())
    })
}

#[test]
fn std_sockets_are_adopted_and_serve_as_asyncnet_sockets() {
    run(async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = AsyncSocket::try_from(listener)?;
        let std_client = TcpStream::connect(("127.0.0.1", port))?;
        let peer = server.accept().await?;
        let client = AsyncSocket::try_from(std_client)?;
        client.send("hi\n").await?;
        assert_eq!(peer.recv_line().await?.as_deref(), Some("hi"));

        let udp = AsyncSocket::try_from(UdpSocket::bind("127.0.0.1:0")?)?;
        let to = udp.local_socket_addr()?;
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        sender.send_to(b"ping", to)?;
        assert_eq!(udp.recv_from(100).await?.0, b"ping");

        #[cfg(unix)]
        {
            let (a, b) = UnixStream::pair()?;
            let a = AsyncSocket::try_from(a)?;
            let b = AsyncSocket::try_from(b)?;
            a.send("over unix\n").await?;
            assert_eq!(b.recv_line().await?.as_deref(), Some("over unix"));
        }
        Ok(())
    })
}

#[test]
fn taking_a_socket_back_out_refuses_to_lose_or_split_anything() {
    run(async {
        let (client, peer) = tcp_pair().await?;
        // Another handle exists.
        let clone = client.clone();
        let client = match TcpStream::try_from(client) {
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
                clone
            }
            Ok(_) => panic!("taken out with a clone alive"),
        };
        // Received bytes wait in the buffer: `recv(1)` on a buffered socket reads ahead.
        peer.send("ab").await?;
        peer.flush().await?;
        assert_eq!(client.recv(1).await?, b"a");
        let e = UdpSocket::try_from(client.clone()).expect_err("a TCP socket is no UDP socket");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(client.has_data_buffered(), "recv(1) read ahead");
        let e = TcpStream::try_from(client.clone()).expect_err("a byte waits in the buffer");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(client.recv(1).await?, b"b");
        let mut std_client = TcpStream::try_from(client)?;
        std_client.set_nonblocking(false)?;
        peer.send("c").await?;
        peer.flush().await?;
        let mut byte = [0u8; 1];
        std_client.read_exact(&mut byte)?;
        assert_eq!(&byte, b"c");
        std_client.write_all(b"d\n")?;
        assert_eq!(peer.recv_line().await?.as_deref(), Some("d"));
        Ok(())
    })
}
