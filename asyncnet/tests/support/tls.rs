//! TLS helpers for the `tls_*` tests: a throw-away PKI made with rcgen (a CA, leaves signed by
//! it, self-signed strangers), contexts built from it, wrapped listeners and connected TLS
//! pairs, and blocking peers that drive rustls by hand on a std `TcpStream` (for what our API
//! cannot do on purpose: TLS 1.2 only, tiny records, truncation, half a handshake).
//!
//! Include with `#[path = "support/tls.rs"] mod tls_support;` next to `mod support;`.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use asyncnet::rustls;
use asyncnet::rustls::pki_types::pem::PemObject;
use asyncnet::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use asyncnet::{spawn, wrap_socket, AsyncSocket, SoBool, TlsContext};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Only a guard against blocking peers that hang.
pub const PEER_GUARD: Duration = Duration::from_secs(20);

/// A test certificate authority.
pub struct Ca {
    pub pem: String,
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate alone, DER.
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid from 1975 to 4096.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names`, with its parameters changed by `tweak` (validity, ...).
    pub fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = leaf_params(names);
        tweak(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "asyncnet test leaf");
    params
}

/// A self-signed certificate that no test CA knows.
pub fn self_signed(names: &[&str]) -> Leaf {
    let params = leaf_params(names);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed cert");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// The usual test PKI: a CA and a server certificate for `localhost` and `127.0.0.1`.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("asyncnet test CA");
        let server = ca.leaf(&["localhost", "127.0.0.1"]);
        Pki { ca, server }
    }

    pub fn server_ctx(&self) -> TlsContext {
        server_ctx(&self.server)
    }

    pub fn client_ctx(&self) -> TlsContext {
        client_ctx(&self.ca)
    }
}

/// A server context presenting `leaf`.
pub fn server_ctx(leaf: &Leaf) -> TlsContext {
    TlsContext::server_builder(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .build()
        .expect("server context")
}

/// A client context trusting `ca` only.
pub fn client_ctx(ca: &Ca) -> TlsContext {
    TlsContext::client_builder()
        .add_root_pem(ca.pem.as_bytes())
        .build()
        .expect("client context")
}

/// A plain IPv4 listener on 127.0.0.1.
pub fn plain_listener() -> io::Result<AsyncSocket> {
    let s = AsyncSocket::new()?;
    s.set_sock_opt(SoBool::ReuseAddr, true)?;
    s.bind_addr(0, "127.0.0.1")?;
    s.listen()?;
    Ok(s)
}

/// A wrapped IPv4 listener on 127.0.0.1: what it accepts has completed its handshake.
pub fn tls_listener(ctx: &TlsContext) -> io::Result<AsyncSocket> {
    let s = plain_listener()?;
    wrap_socket(ctx, &s)?;
    Ok(s)
}

pub fn port_of(s: &AsyncSocket) -> u16 {
    s.local_addr().expect("local_addr").1
}

/// A wrapped IPv4 socket connected (TLS included) to `host:port`.
pub async fn tls_connect(ctx: &TlsContext, host: &str, port: u16) -> io::Result<AsyncSocket> {
    let s = AsyncSocket::new()?;
    wrap_socket(ctx, &s)?;
    s.connect(host, port).await?;
    Ok(s)
}

/// A connected TLS pair `(client, accepted)`: the client connects to `host` through a wrapped
/// listener with the server context.
pub async fn tls_pair_with(
    server: &TlsContext,
    client: &TlsContext,
    host: &str,
) -> io::Result<(AsyncSocket, AsyncSocket)> {
    let listener = tls_listener(server)?;
    let port = port_of(&listener);
    let (client, host) = (client.clone(), host.to_owned());
    let c = spawn(async move { tls_connect(&client, &host, port).await });
    let accepted = listener.accept().await?;
    let client = c.await?;
    Ok((client, accepted))
}

/// A TLS pair with the usual PKI, the client connecting to `localhost`.
pub async fn tls_pair(pki: &Pki) -> io::Result<(AsyncSocket, AsyncSocket)> {
    tls_pair_with(&pki.server_ctx(), &pki.client_ctx(), "localhost").await
}

/// The typed source of an `io::Error`, if it is a `T`.
pub fn source<T: std::error::Error + 'static>(e: &io::Error) -> Option<&T> {
    e.get_ref().and_then(|s| s.downcast_ref::<T>())
}

/// The `rustls::Error` inside a TLS failure, checking the `io::Error` kind is `InvalidData`.
pub fn rustls_error(e: &io::Error) -> rustls::Error {
    assert_eq!(
        e.kind(),
        io::ErrorKind::InvalidData,
        "a TLS failure is InvalidData: {e:?}"
    );
    source::<rustls::Error>(e)
        .unwrap_or_else(|| panic!("no rustls::Error source in {e:?}"))
        .clone()
}

// ---- blocking peers driving rustls by hand ------------------------------------------------

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(tls12_only: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    if tls12_only {
        &TLS12
    } else {
        rustls::ALL_VERSIONS
    }
}

/// A rustls client config trusting `ca`, optionally TLS 1.2 only and with small records.
pub fn raw_client_config(
    ca: &Ca,
    tls12_only: bool,
    max_fragment_size: Option<usize>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der.clone()))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls12_only))
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.max_fragment_size = max_fragment_size;
    Arc::new(config)
}

/// A rustls server config presenting `leaf`, optionally TLS 1.2 only.
pub fn raw_server_config(leaf: &Leaf, tls12_only: bool) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key pem");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls12_only))
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf.der.clone())], key)
        .expect("server cert");
    Arc::new(config)
}

/// A blocking std stream with guards against hangs.
pub fn guarded(stream: TcpStream) -> TcpStream {
    stream.set_read_timeout(Some(PEER_GUARD)).expect("timeout");
    stream.set_write_timeout(Some(PEER_GUARD)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A blocking rustls client on a std stream, handshake done.
pub fn raw_client(
    config: Arc<rustls::ClientConfig>,
    name: &str,
    port: u16,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    raw_client_on(config, name, TcpStream::connect(("127.0.0.1", port))?)
}

/// [`raw_client`] on a stream already connected.
pub fn raw_client_on(
    config: Arc<rustls::ClientConfig>,
    name: &str,
    tcp: TcpStream,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = guarded(tcp);
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let conn = rustls::ClientConnection::new(config, server_name).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A blocking rustls server on an accepted std stream, handshake done.
pub fn raw_server(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> io::Result<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, guarded(tcp));
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The first flight of a rustls client (a ClientHello record) for `name`, as bytes.
pub fn client_hello(ca: &Ca, name: &str) -> Vec<u8> {
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut conn =
        rustls::ClientConnection::new(raw_client_config(ca, false, None), server_name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The ways a client can stall a server's handshake, and the bytes it sends before it stops:
/// nothing, one byte of a record header, 60 bytes of a ClientHello, a whole ClientHello
/// (whose answer it never reads).
pub fn stalled_handshakes(pki: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    let hello = client_hello(&pki.ca, "localhost");
    assert!(hello.len() > 60);
    vec![
        ("nothing", Vec::new()),
        ("one byte of a record header", vec![0x16]),
        ("60 bytes of a ClientHello", hello[..60].to_vec()),
        ("a ClientHello, its answer never read", hello),
    ]
}

/// Wait for a peer thread without blocking the loop (our sockets keep working meanwhile).
pub async fn join_thread<T>(h: std::thread::JoinHandle<T>) -> T {
    while !h.is_finished() {
        asyncnet::sleep_async(Duration::from_millis(2)).await;
    }
    match h.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Read a std stream until end of stream or error (reset, timeout); returns what was read.
pub fn drain(mut s: &TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Write `bytes`, then end our sending side (FIN, not reset).
pub fn write_and_finish(mut s: &TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
}

/// `n` bytes of a pattern that a misplaced or lost chunk cannot reproduce.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ (i / 251) as u8)
        .collect()
}

/// Like `support::run`, with a longer hang guard for the bulk tests: an unoptimised build on
/// a loaded machine moves tens of megabytes through TLS slowly.
pub fn run_long<T>(body: impl std::future::Future<Output = io::Result<T>>) -> T {
    const LONG_GUARD: Duration = Duration::from_secs(240);
    asyncnet::set_task_failure_handler(asyncnet::TaskFailure::raise);
    match asyncnet::wait_for(asyncnet::with_timeout(body, LONG_GUARD)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("test body failed: {e} (kind {:?})", e.kind()),
        Err(_) => panic!("test body hung for {LONG_GUARD:?}"),
    }
}
