//! Back-pressure: 2,000 sends of 9,999 bytes each, issued from concurrent tasks on one
//! socket against a reader that reads slowly, all arrive whole and in order.

#[macro_use]
mod support;

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, AsyncSocket};
use support::{run, std_peer, Family};

const MESSAGES: usize = 2000;
const SIZE: usize = 9999;

/// The bytes that message bodies are cut from.
fn body_pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..SIZE as u32 - 16)
            .map(|j| (j.wrapping_mul(0x9E37_79B1) >> 24) as u8)
            .collect()
    })
}

/// Message `index` (sent by `task` as its `seq`-th): a 12-byte header, a body that depends
/// on the index (the pattern rotated), and the index again at the very end.
fn message(task: u32, seq: u32, index: u32) -> Vec<u8> {
    let pattern = body_pattern();
    let r = index as usize % pattern.len();
    let mut m = Vec::with_capacity(SIZE);
    m.extend_from_slice(&task.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(&pattern[r..]);
    m.extend_from_slice(&pattern[..r]);
    m.extend_from_slice(&index.to_be_bytes());
    m
}

/// Check a received message and return its `(task, seq, index)`.
fn check(m: &[u8]) -> (u32, u32, u32) {
    assert_eq!(m.len(), SIZE);
    let word = |at: usize| u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
    let (task, seq, index) = (word(0), word(4), word(8));
    assert!(
        m == message(task, seq, index),
        "message {index} (task {task}, seq {seq}) arrived torn or mixed"
    );
    (task, seq, index)
}

/// Our reader: slow to start, then pauses every 50 messages.
async fn slow_reader(sock: AsyncSocket) -> io::Result<Vec<(u32, u32, u32)>> {
    sleep_async(Duration::from_millis(20)).await;
    let mut got = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        if i % 50 == 0 {
            sleep_async(Duration::from_millis(1)).await;
        }
        let m = sock.recv(SIZE).await?;
        assert_eq!(m.len(), SIZE, "stream ended early, after {i} messages");
        got.push(check(&m));
    }
    assert!(
        sock.recv(1).await?.is_empty(),
        "nothing after the last message"
    );
    Ok(got)
}

fn sends_from_two_thousand_tasks_arrive_whole_in_the_order_they_started(fam: Family) {
    run(async move {
        let (client, server) = support::pair(fam, true).await?;
        let reader = spawn(slow_reader(server));
        let senders: Vec<_> = (0..MESSAGES as u32)
            .map(|i| {
                let sock = client.clone();
                spawn(async move { sock.send(message(i, 0, i)).await })
            })
            .collect();
        for h in senders {
            h.await?;
        }
        client.close()?;
        let got = reader.await?;
        let order: Vec<u32> = got.iter().map(|&(_, _, i)| i).collect();
        let expect: Vec<u32> = (0..MESSAGES as u32).collect();
        assert!(
            order == expect,
            "sends were written in the order they started"
        );
        Ok(())
    })
}

fn sends_from_twenty_tasks_keep_each_tasks_order(fam: Family) {
    run(async move {
        let (client, server) = support::pair(fam, true).await?;
        let reader = spawn(slow_reader(server));
        let tasks = 20u32;
        let per_task = MESSAGES as u32 / tasks;
        let senders: Vec<_> = (0..tasks)
            .map(|t| {
                let sock = client.clone();
                spawn(async move {
                    for seq in 0..per_task {
                        sock.send(message(t, seq, t * per_task + seq)).await?;
                    }
                    Ok::<_, io::Error>(())
                })
            })
            .collect();
        for h in senders {
            h.await?;
        }
        client.close()?;
        let got = reader.await?;
        let mut next = vec![0u32; tasks as usize];
        for (task, seq, index) in got {
            assert_eq!(index, task * per_task + seq);
            assert_eq!(
                seq, next[task as usize],
                "task {task}'s messages out of order"
            );
            next[task as usize] += 1;
        }
        assert!(next.iter().all(|&n| n == per_task), "every message arrived");
        Ok(())
    })
}

fn un_awaited_sends_against_a_slow_std_reader(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        socket2::SockRef::from(&peer).set_recv_buffer_size(32 * 1024)?;
        let reader = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            // Slow: small reads with pauses.
            std::thread::sleep(Duration::from_millis(20));
            let mut all = Vec::new();
            let mut buf = vec![0u8; 4096];
            let mut reads = 0u32;
            loop {
                let n = peer.read(&mut buf)?;
                if n == 0 {
                    return Ok(all);
                }
                all.extend_from_slice(&buf[..n]);
                reads += 1;
                if reads % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        // Detached sends (Nim's `asyncCheck socket.send(...)`): started in order, never
        // awaited one by one.
        let handles: Vec<_> = (0..MESSAGES as u32)
            .map(|i| {
                let s = sock.clone();
                spawn(async move { s.send(message(i % 7, i, i)).await })
            })
            .collect();
        for h in handles {
            h.await?;
        }
        // The join below blocks this thread, and with it the loop: every byte must be in
        // the kernel first.
        sock.flush().await?;
        sock.close()?;
        let all = reader.join().expect("reader")?;
        assert_eq!(all.len(), MESSAGES * SIZE);
        for (i, m) in all.chunks(SIZE).enumerate() {
            let (_, _, index) = check(m);
            assert_eq!(index, i as u32, "in the order they started");
        }
        Ok(())
    })
}

family_tests!(
    sends_from_two_thousand_tasks_arrive_whole_in_the_order_they_started,
    sends_from_twenty_tasks_keep_each_tasks_order,
    un_awaited_sends_against_a_slow_std_reader,
);
