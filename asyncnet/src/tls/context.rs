//! TLS contexts (Nim's `SslContext`): what a client trusts, what a server presents.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The oldest TLS version a context accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3): the default.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// How long a server's handshake may take by default: in `accept` on a wrapped listener
/// (that client is dropped, the listener goes on accepting) and in
/// [`wrap_connected_socket`](crate::wrap_connected_socket) as a server (`TimedOut`). A
/// client that never speaks, or never reads the answer, cannot hold a server's socket
/// longer than this. Client handshakes get no timeout of their own (bound them with
/// [`with_timeout`](crate::with_timeout)).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) enum Config {
    Client(Arc<ClientConfig>),
    Server(Arc<ServerConfig>),
}

/// A TLS configuration, shared by every socket wrapped with it (cheap to clone).
///
/// A client context verifies the server's certificate chain and host name by default; a
/// server context presents a certificate chain and key. Build one with
/// [`TlsContext::client`], [`TlsContext::client_builder`] or [`TlsContext::server_builder`],
/// then wrap sockets with [`wrap_socket`](crate::wrap_socket) or
/// [`wrap_connected_socket`](crate::wrap_connected_socket).
///
/// # Examples
///
/// A TLS line echo over loopback, with a self-signed certificate made on the spot (by the
/// `rcgen` crate; a real server loads its own, e.g. with
/// [`server_from_files`](TlsContext::server_from_files)). The client trusts that certificate
/// and nothing else; a client of public servers uses [`TlsContext::client`] (the system's
/// roots) instead, as in the crate docs' [TLS client](crate#a-tls-client).
///
/// ```
/// use asyncnet::{spawn, wait_for, wrap_socket, AsyncSocket, TlsContext};
///
/// // A certificate for "localhost", and its private key, as PEM.
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
///     .map_err(std::io::Error::other)?;
/// let cert_pem = cert.cert.pem();
/// let key_pem = cert.signing_key.serialize_pem();
///
/// // The server presents it; the client trusts it as a root.
/// let server_ctx = TlsContext::server_builder(cert_pem.as_bytes(), key_pem.as_bytes()).build()?;
/// let client_ctx = TlsContext::client_builder().add_root_pem(cert_pem.as_bytes()).build()?;
///
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     wrap_socket(&server_ctx, &server)?; // what `accept` returns has done its handshake
///     let port = server.local_addr()?.1;
///     spawn(async move {
///         let peer = server.accept().await?;
///         while let Some(line) = peer.recv_line().await? {
///             peer.send(format!("{line}\r\n")).await?;
///         }
///         Ok::<(), std::io::Error>(())
///     });
///
///     let client = AsyncSocket::new()?;
///     wrap_socket(&client_ctx, &client)?;
///     // TCP, then the handshake: the chain and the name "localhost" are verified.
///     client.connect("localhost", port).await?;
///     client.send("hello over TLS\r\n").await?;
///     assert_eq!(client.recv_line().await?.as_deref(), Some("hello over TLS"));
///     let info = client.tls_info().expect("the handshake is done");
///     assert_eq!(info.server_name.as_deref(), Some("localhost"));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsContext {
    pub(crate) config: Config,
    /// How long a server's handshake may take (client contexts carry the default, unused).
    pub(crate) handshake_timeout: Duration,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.config {
            Config::Client(_) => "client",
            Config::Server(_) => "server",
        };
        f.debug_struct("TlsContext").field("kind", &kind).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Certificates from PEM text (every `CERTIFICATE` block, in order).
fn certs_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the PEM text"));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(format!("bad PEM private key: {e}")))
}

impl TlsContext {
    /// A client context that trusts the system's root certificates and verifies chain and
    /// host name.
    ///
    /// # Errors
    ///
    /// No root certificate could be loaded from the system store.
    pub fn client() -> io::Result<TlsContext> {
        TlsContext::client_builder().system_roots().build()
    }

    /// Options for a client context.
    pub fn client_builder() -> ClientBuilder {
        ClientBuilder {
            roots: RootCertStore::empty(),
            system: false,
            alpn: Vec::new(),
            min_version: TlsVersion::Tls12,
            identity: None,
            no_verification: false,
            errors: Vec::new(),
        }
    }

    /// Options for a server context presenting `cert_chain_pem` (leaf first) with the private
    /// key `key_pem` (PKCS#8, PKCS#1 or SEC1, PEM).
    ///
    /// # Examples
    ///
    /// Where the PEM text comes from, and a client and server talking: [`TlsContext`]'s
    /// example.
    ///
    /// ```
    /// use std::time::Duration;
    /// use asyncnet::TlsContext;
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
    /// #     .map_err(std::io::Error::other)?;
    /// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    /// let ctx = TlsContext::server_builder(cert_pem.as_bytes(), key_pem.as_bytes())
    ///     .alpn(&[b"http/1.1"])
    ///     .handshake_timeout(Duration::from_secs(5)) // slow clients are dropped sooner
    ///     .build()?;
    /// assert!(!ctx.is_client());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn server_builder(cert_chain_pem: &[u8], key_pem: &[u8]) -> ServerBuilder {
        let identity = certs_from_pem(cert_chain_pem).and_then(|c| Ok((c, key_from_pem(key_pem)?)));
        ServerBuilder {
            identity,
            alpn: Vec::new(),
            min_version: TlsVersion::Tls12,
            client_roots: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A server context from PEM files.
    ///
    /// # Errors
    ///
    /// A file cannot be read, or holds no usable certificate or key.
    pub fn server_from_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> io::Result<TlsContext> {
        let chain = std::fs::read(cert_chain)?;
        let key = std::fs::read(key)?;
        TlsContext::server_builder(&chain, &key).build()
    }

    /// Whether this context is for clients.
    pub fn is_client(&self) -> bool {
        matches!(self.config, Config::Client(_))
    }
}

/// Options for a client [`TlsContext`].
#[derive(Debug)]
pub struct ClientBuilder {
    roots: RootCertStore,
    system: bool,
    alpn: Vec<Vec<u8>>,
    min_version: TlsVersion,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    no_verification: bool,
    errors: Vec<String>,
}

impl ClientBuilder {
    /// Trust the system's root certificates.
    pub fn system_roots(mut self) -> Self {
        self.system = true;
        self
    }

    /// Trust the CA certificates in `pem`.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Self {
        match certs_from_pem(pem) {
            Ok(certs) => {
                for c in certs {
                    if let Err(e) = self.roots.add(c) {
                        self.errors.push(format!("unusable root certificate: {e}"));
                    }
                }
            }
            Err(e) => self.errors.push(e.to_string()),
        }
        self
    }

    /// Trust the CA certificates in the PEM file at `path`.
    pub fn add_root_file(self, path: impl AsRef<Path>) -> Self {
        match std::fs::read(path.as_ref()) {
            Ok(pem) => self.add_root_pem(&pem),
            Err(e) => {
                let mut b = self;
                b.errors.push(format!("{}: {e}", path.as_ref().display()));
                b
            }
        }
    }

    /// Offer these ALPN protocols, most preferred first (e.g. `b"h2"`, `b"http/1.1"`).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// The oldest protocol version to accept (default TLS 1.2).
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min_version = v;
        self
    }

    /// Present a client certificate chain (leaf first) and key, both PEM.
    pub fn client_cert(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Self {
        match certs_from_pem(chain_pem).and_then(|c| Ok((c, key_from_pem(key_pem)?))) {
            Ok(id) => self.identity = Some(id),
            Err(e) => self.errors.push(e.to_string()),
        }
        self
    }

    /// **Dangerous**: accept any server certificate, for any name, expired or not. The
    /// connection is then encrypted but not authenticated: anyone on the path can read and
    /// change it. For tests against throw-away certificates only.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.no_verification = true;
        self
    }

    /// Build the context.
    ///
    /// # Errors
    ///
    /// A root or client certificate given was unusable, or no root is trusted at all (and
    /// verification is on).
    pub fn build(mut self) -> io::Result<TlsContext> {
        if self.system {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system store may hold a few certificates webpki cannot parse; skip them.
                let _ = self.roots.add(c);
            }
        }
        if !self.errors.is_empty() {
            return Err(invalid(self.errors.join("; ")));
        }
        if self.roots.is_empty() && !self.no_verification {
            return Err(invalid(
                "no trusted root certificate: add roots or use the system store",
            ));
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.min_version))
            .map_err(invalid)?;
        let builder = if self.no_verification {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            builder.with_root_certificates(self.roots)
        };
        let mut config = match self.identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(invalid)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        Ok(TlsContext {
            config: Config::Client(Arc::new(config)),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }
}

/// Options for a server [`TlsContext`].
#[derive(Debug)]
pub struct ServerBuilder {
    identity: io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    min_version: TlsVersion,
    client_roots: Option<io::Result<RootCertStore>>,
    handshake_timeout: Duration,
}

impl ServerBuilder {
    /// Accept these ALPN protocols, most preferred first.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// The oldest protocol version to accept (default TLS 1.2).
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min_version = v;
        self
    }

    /// Require every client to present a certificate that chains to a CA in `ca_pem`.
    pub fn require_client_cert(mut self, ca_pem: &[u8]) -> Self {
        self.client_roots = Some(certs_from_pem(ca_pem).and_then(|certs| {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(invalid)?;
            }
            Ok(roots)
        }));
        self
    }

    /// How long one client's handshake may take, in `accept` on a wrapped listener and in
    /// [`wrap_connected_socket`](crate::wrap_connected_socket) (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Build the context.
    ///
    /// # Errors
    ///
    /// The certificate or key is unusable (or they do not match), or the client CA is.
    pub fn build(self) -> io::Result<TlsContext> {
        let (chain, key) = self.identity?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.min_version))
            .map_err(invalid)?;
        let builder = match self.client_roots {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots?), provider())
                        .build()
                        .map_err(invalid)?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(invalid)?;
        config.alpn_protocols = self.alpn;
        Ok(TlsContext {
            config: Config::Server(Arc::new(config)),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// The verifier of [`ClientBuilder::danger_accept_invalid_certs`]: signatures are still
/// checked (the handshake needs them), certificates are not.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
