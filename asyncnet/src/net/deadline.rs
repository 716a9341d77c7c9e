//! Per-socket deadlines (Go's `SetDeadline`, `SetReadDeadline`, `SetWriteDeadline`). The
//! seam keeps them (`driver/deadline.rs`), so every wait of a direction obeys them; the
//! rule users see is in the crate docs ([Deadlines](crate#deadlines)).
#![forbid(unsafe_code)]

use std::time::Instant;

use super::socket::AsyncSocket;
use crate::driver::Direction;

impl AsyncSocket {
    /// Set the deadline of every operation that waits to receive (`recv`, `recv_into`,
    /// `recv_line`, `recv_from`, `accept`, the reading half of a TLS handshake), or clear it
    /// with `None`. It holds, for every clone of the socket, until it is changed or cleared;
    /// operations waiting now obey the new value at once.
    ///
    /// After the deadline an operation that would have to wait fails with `TimedOut`; one that
    /// can complete at once (its bytes are buffered) still completes. Nothing is lost: bytes
    /// that arrived stay buffered for the next call. The whole rule: [Deadlines](crate#deadlines).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     peer.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)));
    ///     client.send("hel").await?;
    ///     // Half a line, then silence: the read fails at the deadline...
    ///     let e = peer.recv_line().await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    ///     // ...and loses nothing: with the deadline cleared, the line comes back whole.
    ///     peer.set_read_deadline(None);
    ///     client.send("lo\n").await?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("hello"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_read_deadline(&self, deadline: Option<Instant>) {
        self.inner.io.set_deadline(Direction::Read, deadline);
    }

    /// Set the deadline of every operation that waits to send (`send` and `flush` under
    /// back-pressure, `send_to`, `connect`, the writing half of a TLS handshake), or clear it
    /// with `None`. It holds until changed or cleared; operations waiting now obey the new
    /// value at once.
    ///
    /// A send that fails with `TimedOut` has still handed over its whole message: it stays
    /// queued and is written in order, after the bytes before it (do not send it again). The
    /// bytes of completed sends keep being written in the background whatever the deadline.
    /// The whole rule: [Deadlines](crate#deadlines).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?; // never reads until the end
    ///     client.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)));
    ///     let chunk = vec![7u8; 1 << 20];
    ///     let mut sent = 0;
    ///     // The peer's window fills up; a send waits, and the deadline ends the wait.
    ///     let e = loop {
    ///         match client.send(&chunk).await {
    ///             Ok(()) => sent += chunk.len(),
    ///             Err(e) => break e,
    ///         }
    ///     };
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    ///     sent += chunk.len(); // the timed-out send's message is queued, whole
    ///     client.close()?; // the queue is still written (within `CLOSE_LINGER`)
    ///     let mut got = 0;
    ///     while !peer.recv(1 << 16).await?.is_empty() {
    ///         got += 1 << 16;
    ///     }
    ///     assert_eq!(got, sent);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_write_deadline(&self, deadline: Option<Instant>) {
        self.inner.io.set_deadline(Direction::Write, deadline);
    }

    /// Set both deadlines ([`set_read_deadline`](AsyncSocket::set_read_deadline) and
    /// [`set_write_deadline`](AsyncSocket::set_write_deadline)) to `deadline`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use asyncnet::AsyncSocket;
    /// let s = AsyncSocket::new()?;
    /// let at = Instant::now() + Duration::from_secs(30);
    /// s.set_deadline(Some(at));
    /// assert_eq!((s.read_deadline(), s.write_deadline()), (Some(at), Some(at)));
    /// s.set_deadline(None);
    /// assert_eq!((s.read_deadline(), s.write_deadline()), (None, None));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.set_read_deadline(deadline);
        self.set_write_deadline(deadline);
    }

    /// The read deadline, if one is set.
    pub fn read_deadline(&self) -> Option<Instant> {
        self.inner.io.deadline(Direction::Read)
    }

    /// The write deadline, if one is set.
    pub fn write_deadline(&self) -> Option<Instant> {
        self.inner.io.deadline(Direction::Write)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::{Duration, Instant};

    use crate::net::test_support::tcp_pair;
    use crate::wait_for;

    #[test]
    fn a_deadline_pushed_later_before_every_read_keeps_one_timer_and_close_cancels_it() {
        wait_for(async {
            let (client, server) = tcp_pair().await?;
            let timers = || server.inner.io.driver().deadlines.len();
            for _ in 0..1000 {
                // Go's idle-timeout idiom: a new deadline before each read.
                server.set_read_deadline(Some(Instant::now() + Duration::from_secs(60)));
                client.send("x").await?;
                assert_eq!(server.recv(1).await?, b"x");
                assert_eq!(timers(), 1, "one lazy timer, however often it moves later");
            }
            // An earlier deadline re-arms, replacing the later timer.
            server.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
            client.send("y").await?;
            assert_eq!(server.recv(1).await?, b"y");
            assert_eq!(timers(), 1);
            server.close()?;
            assert_eq!(timers(), 0, "a closed socket's timer is cancelled");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
