//! Run with: cargo run --example tls_client HOST PORT [PATH] [--ca FILE] [--insecure]
//!
//! A minimal HTTPS client: connects with TLS, sends `GET PATH HTTP/1.0`, and prints what was
//! negotiated, the subjects of the certificate chain the server presented, and the response
//! head (status line and headers). The body is not read.
//!
//! The server is verified against the system's root certificates, or only against the CA
//! certificates in `--ca FILE` (PEM). `--insecure` turns verification off (for throw-away test
//! certificates only). Try it with the TLS echo server (`cargo run --example tls_echo_server`
//! prints the certificate file to pass with `--ca`), or with
//! `openssl s_server -accept 127.0.0.1:8443 -cert cert.pem -key key.pem -www` and
//! `cargo run --example tls_client 127.0.0.1 8443 / --ca cert.pem`.

use std::io;

use asyncnet::{wait_for, wrap_socket, AsyncSocket, TlsContext};

struct Options {
    host: String,
    port: u16,
    path: String,
    ca: Option<String>,
    insecure: bool,
}

fn usage() -> ! {
    eprintln!("usage: tls_client HOST PORT [PATH] [--ca FILE] [--insecure]");
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut positional = Vec::new();
    let mut ca = None;
    let mut insecure = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ca" => ca = Some(args.next().unwrap_or_else(|| usage())),
            "--insecure" => insecure = true,
            "-h" | "--help" => usage(),
            s if s.starts_with("--") => usage(),
            _ => positional.push(a),
        }
    }
    if !(2..=3).contains(&positional.len()) {
        usage();
    }
    let port = positional[1].parse().unwrap_or_else(|_| {
        eprintln!("bad port {:?}", positional[1]);
        usage()
    });
    Options {
        host: positional[0].clone(),
        port,
        path: positional.get(2).cloned().unwrap_or_else(|| "/".into()),
        ca,
        insecure,
    }
}

fn context(opts: &Options) -> io::Result<TlsContext> {
    if opts.insecure {
        eprintln!("WARNING: --insecure: the server's certificate is NOT verified.");
        eprintln!("WARNING: this connection is encrypted but not authenticated: anyone on the");
        eprintln!("WARNING: path can read and change it. Use only with throw-away test servers.");
        return TlsContext::client_builder()
            .danger_accept_invalid_certs()
            .build();
    }
    match &opts.ca {
        Some(file) => TlsContext::client_builder().add_root_file(file).build(),
        None => TlsContext::client(),
    }
}

/// `subject` of one DER certificate, or why it cannot be shown.
fn subject(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let subject = cert.subject().to_string();
            let issuer = cert.issuer().to_string();
            if subject == issuer {
                format!("{subject} (self-signed)")
            } else {
                format!("{subject} (issued by {issuer})")
            }
        }
        Err(e) => format!("(unparsable certificate: {e})"),
    }
}

async fn fetch_head(opts: &Options) -> io::Result<()> {
    let ctx = context(opts)?;
    let sock = AsyncSocket::new()?;
    wrap_socket(&ctx, &sock)?;
    // Connects, then runs the handshake: verifies the chain and that it names `host`.
    sock.connect(&opts.host, opts.port).await?;
    if let Some(info) = sock.tls_info() {
        println!(
            "connected to {}:{} with {} {}",
            opts.host, opts.port, info.protocol_version, info.cipher_suite
        );
    }
    println!("certificate chain (leaf first):");
    for (i, der) in sock.peer_certificates().iter().enumerate() {
        println!("  {i}: {}", subject(der));
    }

    sock.send(format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        opts.path, opts.host
    ))
    .await?;
    println!("response head:");
    let mut lines = 0;
    loop {
        match sock.recv_line().await? {
            Some(line) if line.is_empty() => break,
            Some(line) => {
                println!("  {line}");
                lines += 1;
            }
            None => break,
        }
    }
    if lines == 0 {
        println!("  (none: the server closed the connection)");
    }
    sock.close()?;
    Ok(())
}

fn main() {
    let opts = parse_args();
    if let Err(e) = wait_for(fetch_head(&opts)) {
        eprintln!("tls_client: {e}");
        std::process::exit(1);
    }
}
