//! Extreme values from the caller (sizes, limits, durations) get an answer, never a panic or
//! an allocation of what was asked for.

mod support;

use std::time::Duration;

use asyncnet::{drain, sleep_async, spawn, Flags};
use support::{in_fresh_thread, pair, run, udp_bound, Family};

#[test]
fn recv_of_usize_max_returns_what_arrived_before_the_end() {
    run(async {
        let (a, b) = pair(Family::V4, true).await?;
        a.send("some bytes").await?;
        a.close()?;
        assert_eq!(b.recv(usize::MAX).await?, b"some bytes");
        Ok(())
    })
}

#[test]
fn recv_from_of_usize_max_receives_the_datagram() {
    run(async {
        let a = udp_bound(Family::V4)?;
        let b = udp_bound(Family::V4)?;
        b.send_to("127.0.0.1", a.local_addr()?.1, "datagram")
            .await?;
        let (data, _, port) = a.recv_from(usize::MAX).await?;
        assert_eq!((&data[..], port), (&b"datagram"[..], b.local_addr()?.1));
        Ok(())
    })
}

#[test]
fn a_line_limit_of_usize_max_is_no_limit() {
    run(async {
        let (a, b) = pair(Family::V4, true).await?;
        a.send("line\n").await?;
        let line = b.recv_line_with(Flags::default(), usize::MAX).await?;
        assert_eq!(line.as_deref(), Some("line"));
        Ok(())
    })
}

#[test]
fn drain_with_the_longest_timeout_returns_once_nothing_is_pending() {
    let r = in_fresh_thread(|| {
        drop(spawn(sleep_async(Duration::from_millis(5))));
        drain(Duration::MAX).map_err(|e| e.to_string())
    });
    assert_eq!(r, Ok(Ok(())));
}

#[test]
fn a_sleep_of_duration_max_can_be_cancelled() {
    run(async {
        let r = asyncnet::with_timeout(sleep_async(Duration::MAX), Duration::from_millis(5)).await;
        assert!(r.is_err());
        Ok(())
    })
}
