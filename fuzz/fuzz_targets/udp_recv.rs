//! The datagram receive paths (`recv_from`, `recv_from_into`, `recv_from_addr`, `recv`,
//! `recv_into`, with and without `PEEK`) on a real pair of sockets on one loop (UDP over
//! loopback, or a Unix datagram pair), datagrams of arbitrary sizes (empty included) read
//! with arbitrary buffer sizes; and the sender-address text (`addr_text`) of arbitrary IP and
//! Unix addresses.
//!
//! Properties: a datagram that fits comes back whole, with its sender; one that does not is
//! a `DatagramTruncated` error holding exactly the bytes that fit, never passed off as whole;
//! one datagram per receive, in order, `PEEK` taking none; a zero-size `recv` takes none;
//! addresses read back as the address they came from.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use asyncnet::fuzzing::{addr_text_ip, addr_text_unix};
use asyncnet::{wait_for, AsyncSocket, DatagramTruncated, Flags, SockType};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Exact(u16),
    Huge,
}

impl Size {
    fn get(self) -> usize {
        match self {
            Size::Exact(n) => usize::from(n),
            Size::Huge => usize::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Receive {
    From(Size),
    FromPeek(Size),
    FromInto(u16),
    FromAddr(u16),
    Recv(Size),
    RecvPeek(Size),
    RecvInto(u16),
}

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16, u32, u32),
    Unix(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send(Vec<u8>),
    SendRun(u8, u16),
    Receive(Receive),
    Addr(Addr),
}

#[derive(Arbitrary, Debug)]
struct Input {
    udp: bool,
    ops: Vec<Op>,
}

/// At most this many datagrams wait, so that no send waits and no queue overflows.
const MAX_QUEUED: usize = 8;

fn check_addr(a: Addr) {
    match a {
        Addr::V4(ip, port) => {
            let addr = SocketAddr::from((Ipv4Addr::from(ip), port));
            let (text, p) = addr_text_ip(addr).expect("IPv4 text");
            assert_eq!((text.parse::<IpAddr>().ok(), p), (Some(addr.ip()), port));
        }
        Addr::V6(ip, port, flow, scope) => {
            let ip = Ipv6Addr::from(ip);
            let addr = SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope));
            let (text, p) = addr_text_ip(addr).expect("IPv6 text");
            // A v4-mapped address reads as its IPv4 form.
            assert_eq!(
                (text.parse::<IpAddr>().ok(), p),
                (Some(ip.to_canonical()), port)
            );
        }
        Addr::Unix(path) => {
            let Ok((text, port)) = addr_text_unix(Path::new(std::ffi::OsStr::from_bytes(&path)))
            else {
                return; // does not fit a sockaddr_un
            };
            assert_eq!(port, 0);
            if !path.contains(&0) {
                assert_eq!(text, String::from_utf8_lossy(&path), "a path's text");
            } else if path[0] == 0 && !path[1..].contains(&0) {
                let want = format!("@{}", String::from_utf8_lossy(&path[1..]));
                assert_eq!(text, want, "an abstract name's text");
            }
        }
    }
}

/// A received datagram against the one expected: whole if it fit, else the truncation error
/// with the bytes that fit (`kept` false: `recv_from_into`'s error, whose bytes are in the
/// caller's buffer).
fn check(got: io::Result<Vec<u8>>, want: &[u8], size: usize, kept: bool) {
    match got {
        Ok(data) => {
            assert!(want.len() <= size, "a cut datagram passed off as whole");
            assert_eq!(data, want, "the datagram's bytes");
        }
        Err(e) => {
            assert!(want.len() > size, "an error for a datagram that fits: {e}");
            let cut = e
                .get_ref()
                .and_then(|s| s.downcast_ref::<DatagramTruncated>());
            let cut = cut.unwrap_or_else(|| panic!("not DatagramTruncated: {e:?}"));
            if kept {
                assert_eq!(cut.data, want[..size], "the bytes that fit");
            } else {
                assert!(cut.data.is_empty());
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let r: io::Result<()> = wait_for(async {
        let (rx, tx, from) = if input.udp {
            let dgram = || AsyncSocket::builder().sock_type(SockType::DGRAM).build();
            let rx = dgram()?;
            rx.bind_addr(0, "127.0.0.1")?;
            let tx = dgram()?;
            tx.bind_addr(0, "127.0.0.1")?;
            let from = ("127.0.0.1".to_owned(), tx.local_addr()?.1);
            (rx, tx, from)
        } else {
            let (a, b) = UnixDatagram::pair()?;
            let from = (String::new(), 0);
            (AsyncSocket::try_from(a)?, AsyncSocket::try_from(b)?, from)
        };
        let to = rx.local_socket_addr().ok();
        let max = if input.udp { 8 * 1024 } else { 16 * 1024 };
        let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
        for op in input.ops {
            let data = match op {
                Op::Send(bytes) => bytes,
                Op::SendRun(byte, n) => vec![byte; usize::from(n)],
                Op::Addr(a) => {
                    check_addr(a);
                    continue;
                }
                Op::Receive(recv) => {
                    let Some(want) = queue.front() else { continue };
                    let taken = match recv {
                        Receive::From(size) | Receive::FromPeek(size) => {
                            let peek = matches!(recv, Receive::FromPeek(_));
                            let flags = if peek { Flags::PEEK } else { Flags::default() };
                            let got = rx.recv_from_with(size.get(), flags).await;
                            if let Ok((_, address, port)) = &got {
                                assert_eq!((address, *port), (&from.0, from.1), "the sender");
                            }
                            check(got.map(|g| g.0), want, size.get(), true);
                            !peek
                        }
                        Receive::FromInto(size) => {
                            let mut buf = vec![0u8; usize::from(size)];
                            let mut address = String::from("left over");
                            let mut port = 1;
                            let got = rx.recv_from_into(&mut buf, &mut address, &mut port).await;
                            assert_eq!((&address, port), (&from.0, from.1), "the sender");
                            let n = want.len().min(buf.len());
                            assert_eq!(buf[..n], want[..n], "the bytes that fit");
                            check(got.map(|n| buf[..n].to_vec()), want, buf.len(), false);
                            true
                        }
                        Receive::FromAddr(size) => {
                            let mut buf = vec![0u8; usize::from(size)];
                            let got = rx.recv_from_addr(&mut buf).await;
                            if input.udp {
                                if let Ok((_, addr)) = &got {
                                    assert_eq!(Some(*addr), tx.local_socket_addr().ok());
                                }
                                check(got.map(|(n, _)| buf[..n].to_vec()), want, buf.len(), false);
                            } else {
                                // An unnamed Unix sender has no IP address.
                                let e = got.expect_err("an IP address for a Unix sender");
                                assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
                            }
                            true
                        }
                        Receive::Recv(size) | Receive::RecvPeek(size) => {
                            let peek = matches!(recv, Receive::RecvPeek(_));
                            let flags = if peek { Flags::PEEK } else { Flags::default() };
                            let got = rx.recv_with(size.get(), flags).await;
                            if size.get() == 0 {
                                assert!(got.expect("recv(0)").is_empty());
                                false
                            } else {
                                check(got, want, size.get(), true);
                                !peek
                            }
                        }
                        Receive::RecvInto(size) => {
                            let mut buf = vec![0u8; usize::from(size)];
                            let got = rx.recv_into(&mut buf).await;
                            if buf.is_empty() {
                                assert_eq!(got.expect("recv_into of nothing"), 0);
                                false
                            } else {
                                check(got.map(|n| buf[..n].to_vec()), want, buf.len(), true);
                                true
                            }
                        }
                    };
                    if taken {
                        queue.pop_front();
                    }
                    continue;
                }
            };
            if queue.len() >= MAX_QUEUED || data.len() > max {
                continue;
            }
            match to {
                Some(to) if input.udp => tx.send_to_addr(to, &data).await?,
                _ => tx.send(&data).await?,
            }
            queue.push_back(data);
        }
        Ok(())
    });
    r.expect("a socket call failed");
});
