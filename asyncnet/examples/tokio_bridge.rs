//! Run with: cargo run --example tokio_bridge
//!
//! Living next to tokio: asyncnet futures run on asyncnet's own loop, so a program that also
//! runs tokio gives asyncnet a thread of its own and talks to it over channels (tokio's
//! channels work under any executor, asyncnet's included; asyncnet's wakers may be woken from
//! any thread). Awaiting an asyncnet future on a tokio runtime fails at once with an error
//! that says so, instead of hanging.
//!
//! Here a tokio runtime asks the asyncnet thread to send lines to a line echo server (served
//! by asyncnet on the same thread) and gets each answer back; then it shuts the thread down.

use std::io;
use std::thread;

use asyncnet::{spawn, wait_for, AsyncSocket};
use tokio::sync::{mpsc, oneshot};

/// A request from the tokio side: a line to send, and where to put the answer.
type Request = (String, oneshot::Sender<io::Result<String>>);

/// The asyncnet thread: an echo server, one client connection to it, and a loop that serves
/// requests from tokio until the channel closes.
fn asyncnet_thread(mut requests: mpsc::Receiver<Request>) -> io::Result<()> {
    wait_for(async move {
        let server = AsyncSocket::new()?;
        server.bind_addr(0, "127.0.0.1")?;
        server.listen()?;
        let port = server.local_addr()?.1;
        spawn(async move {
            let client = server.accept().await?;
            while let Some(line) = client.recv_line().await? {
                client.send(format!("echo: {line}\r\n")).await?;
            }
            Ok::<(), io::Error>(())
        });
        let conn = asyncnet::dial("127.0.0.1", port).await?;
        // `recv` on tokio's channel, awaited on asyncnet's loop.
        while let Some((line, reply)) = requests.recv().await {
            let answer = async {
                conn.send(format!("{line}\r\n")).await?;
                conn.recv_line()
                    .await?
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
            };
            // The tokio side may have stopped waiting; nothing to do then.
            let _ = reply.send(answer.await);
        }
        Ok(())
    })
}

/// Send three lines through the asyncnet thread from a tokio runtime; returns the answers.
pub fn run() -> io::Result<Vec<String>> {
    let (tx, rx) = mpsc::channel::<Request>(16);
    let worker = thread::spawn(move || asyncnet_thread(rx));
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let answers = runtime.block_on(async move {
        let mut answers = Vec::new();
        for line in ["one", "two", "three"] {
            let (reply, answer) = oneshot::channel();
            tx.send((line.to_owned(), reply))
                .await
                .map_err(|_| io::Error::other("the asyncnet thread is gone"))?;
            let answer = answer
                .await
                .map_err(|_| io::Error::other("the asyncnet thread dropped the request"))??;
            answers.push(answer);
        }
        Ok::<_, io::Error>(answers)
        // `tx` is dropped here: the asyncnet thread's loop ends.
    })?;
    worker
        .join()
        .map_err(|_| io::Error::other("the asyncnet thread panicked"))??;
    Ok(answers)
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    for answer in run()? {
        println!("{answer}");
    }
    Ok(())
}
