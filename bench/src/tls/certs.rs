//! Certificates and rustls configurations of the TLS benchmark.
//!
//! One self-signed ECDSA P-256 certificate for `localhost` and `127.0.0.1`, made by the runner
//! and written to a private temporary directory; both servers load it from there. The load
//! generator *pins* it: it accepts exactly that certificate (byte for byte) and still verifies
//! the handshake's signature, so the client does no path validation and spends as little CPU
//! per handshake as a real TLS client can, leaving the server as the side measured.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// The server name the load generator asks for (sent as SNI).
pub const SERVER_NAME: &str = "localhost";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A fresh self-signed certificate (ECDSA P-256, rcgen's default) for `localhost` and
/// `127.0.0.1` and its key, PEM files in a fresh private directory under the temporary
/// directory, removed with it when dropped.
#[derive(Debug)]
pub struct IdentityFiles {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl IdentityFiles {
    pub fn generate() -> io::Result<IdentityFiles> {
        let names = vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
        let dir = tempfile::Builder::new()
            .prefix("asyncnet-tls-bench-")
            .tempdir()?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem())?;
        std::fs::write(&key, ck.signing_key.serialize_pem())?;
        Ok(IdentityFiles {
            _dir: dir,
            cert,
            key,
        })
    }
}

/// The server configuration asyncnet builds for `TlsContext::server_builder(..).build()`:
/// ring, TLS 1.2 and 1.3, no client authentication, rustls's defaults otherwise (session
/// cache, two TLS 1.3 tickets per connection). The tokio server uses it, so that both servers
/// run the same TLS.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(invalid)?;
    Ok(Arc::new(config))
}

/// The load generator's client configuration: accepts exactly `pinned` (see the module
/// documentation), and never resumes a session, so that every handshake is a full one.
pub fn client_config(pinned: &Path) -> io::Result<Arc<ClientConfig>> {
    let cert = CertificateDer::from_pem_file(pinned)
        .map_err(|e| invalid(format!("{}: {e}", pinned.display())))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(invalid)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert,
            provider: provider(),
        }))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// `localhost` as a rustls server name.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

/// Accepts one certificate, byte for byte; checks handshake signatures for real.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() && intermediates.is_empty() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented another certificate than the pinned one".into(),
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trip() {
        let files = IdentityFiles::generate().unwrap();
        let dir = files.cert.parent().unwrap().to_path_buf();
        server_config(&files.cert, &files.key).unwrap();
        client_config(&files.cert).unwrap();
        assert!(client_config(&files.key).is_err());
        drop(files);
        assert!(!dir.exists());
    }
}
