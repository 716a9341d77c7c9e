//! Run with: cargo run --example chat_server [PORT]
//!
//! The reference's chat server: every line a client sends goes to every other client.
//! Listens on 127.0.0.1 (default port 12345). Try it with two `nc 127.0.0.1 12345`.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use asyncnet::{spawn, wait_for, AsyncSocket, SoBool};

type Clients = Rc<RefCell<Vec<AsyncSocket>>>;

async fn process_client(client: AsyncSocket, clients: Clients) -> io::Result<()> {
    while let Some(line) = client.recv_line().await? {
        // Copy the list: it may change while we wait on a slow client.
        let others: Vec<AsyncSocket> = clients
            .borrow()
            .iter()
            .filter(|c| **c != client)
            .cloned()
            .collect();
        for c in others {
            // A client that went away must not stop the others from getting the line.
            if let Err(e) = c.send(format!("{line}\r\n")).await {
                eprintln!("send failed: {e}");
            }
        }
    }
    Ok(())
}

async fn serve(port: u16) -> io::Result<()> {
    let clients: Clients = Rc::default();
    let server = AsyncSocket::new()?;
    server.set_sock_opt(SoBool::ReuseAddr, true)?;
    server.bind_addr(port, "127.0.0.1")?;
    server.listen()?;
    let (address, port) = server.local_addr()?;
    println!("chat server listening on {address}:{port}");
    loop {
        let client = server.accept().await?;
        clients.borrow_mut().push(client.clone());
        let clients = clients.clone();
        spawn(async move {
            if let Err(e) = process_client(client.clone(), clients.clone()).await {
                eprintln!("client error: {e}");
            }
            clients.borrow_mut().retain(|c| *c != client);
            if let Err(e) = client.close() {
                eprintln!("client error: {e}");
            }
        });
    }
}

fn main() -> io::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}")))?,
        None => 12345,
    };
    wait_for(serve(port))
}
