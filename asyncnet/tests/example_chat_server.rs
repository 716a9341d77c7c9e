//! The `chat_server` example (its own `listen`, `serve` and `Room`, included from
//! `examples/chat_server.rs`): a member that never reads is disconnected without stalling
//! the others. (Churn is in `example_chat_churn.rs`: it counts the process's descriptors,
//! so it runs alone in its own test binary.)

#[path = "support/chat.rs"]
mod chat;
mod support;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod example;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat::{connect, eventually, join, start, GENEROUS};
use support::{run, sees_the_end};

#[test]
fn a_member_that_never_reads_is_dropped_and_the_others_still_get_every_line() {
    run(async {
        let (room, port) = start()?;
        // The member that never reads, with a small receive buffer: the kernel holds little
        // for it, and its queue at the server fills soon.
        let idle = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        idle.set_recv_buffer_size(4096)?;
        idle.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let idle = TcpStream::from(idle);
        idle.set_read_timeout(Some(GENEROUS))?;
        let reader = connect(port)?;
        let mut sender = connect(port)?;
        eventually("three members", || room.len() == 3).await;

        let pad = "x".repeat(4000);
        let stop = Arc::new(AtomicBool::new(false));
        let send = {
            let (stop, pad) = (stop.clone(), pad.clone());
            thread::spawn(move || -> io::Result<u64> {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    writeln!(sender, "{n} {pad}")?;
                    n += 1;
                    assert!(n < 200_000, "the idle member was never dropped");
                }
                writeln!(sender, "end")?;
                Ok(n)
            })
        };
        let read = thread::spawn(move || -> io::Result<u64> {
            for (n, line) in (0u64..).zip(BufReader::new(reader).lines()) {
                let line = line?;
                if line == "end" {
                    return Ok(n);
                }
                assert_eq!(line, format!("{n} {pad}"), "line {n}");
            }
            Err(io::ErrorKind::UnexpectedEof.into())
        });
        eventually("the idle member is dropped", || {
            room.departures().too_slow == 1
        })
        .await;
        assert_eq!(
            room.len(),
            2,
            "the idle member left the room, the others are in"
        );
        stop.store(true, Ordering::SeqCst);
        let sent = join(send).await?;
        let got = join(read).await?;
        assert_eq!(got, sent, "the reader got every line");
        assert!(sent > 0);
        assert!(join(sees_the_end(idle)).await, "its connection was closed");
        Ok(())
    })
}

#[test]
fn hostile_members_leave_and_the_others_still_chat() {
    run(async {
        let (room, port) = start()?;
        let a = connect(port)?;
        let mut b = connect(port)?;
        eventually("two members", || room.len() == 2).await;
        // A line that is not UTF-8, a 2 MB line, garbage, a reset mid-line.
        let hostile: Vec<Vec<u8>> = vec![
            b"bad \xff\n".to_vec(),
            vec![b'x'; 2 << 20],
            (0..10_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            b"half a li".to_vec(),
        ];
        let n = hostile.len();
        for (i, bytes) in hostile.into_iter().enumerate() {
            let mut s = connect(port)?;
            if i == n - 1 {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            }
            // The server may close on the member before taking every byte.
            let _ = s.write_all(&bytes);
            drop(s);
        }
        eventually("the hostile members left", || room.len() == 2).await;
        writeln!(b, "still here")?;
        let mut line = String::new();
        let mut a = BufReader::new(a);
        // What the hostile members sent before their bad bytes may arrive first.
        let deadline = Instant::now() + GENEROUS;
        while line.trim_end() != "still here" {
            assert!(Instant::now() < deadline, "the line never came");
            line.clear();
            let a_line = join(thread::spawn(move || {
                let mut l = String::new();
                let r = a.read_line(&mut l);
                (a, l, r.map(|_| ()))
            }))
            .await;
            a = a_line.0;
            a_line.2?;
            line = a_line.1;
        }
        Ok(())
    })
}
