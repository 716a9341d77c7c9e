//! TLS handshakes: certificate verification (chain, validity, host name, IP SANs), SNI,
//! `wrap_socket` before connect/accept, `wrap_connected_socket` in both roles, what
//! `is_ssl`/`peer_certificates`/`tls_info` report, protocol versions, ALPN and client
//! certificates. Every certificate is made here with rcgen.
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]

#[macro_use]
mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use asyncnet::rustls::{self, CertificateError};
use asyncnet::{
    spawn, with_timeout, wrap_connected_socket, wrap_socket, AsyncSocket, Domain, HandshakeAs,
    TlsContext, TlsVersion,
};
use support::{run, Family};
use tls_support::*;

// ---- verification ---------------------------------------------------------------------------

/// A server presenting `leaf` on a plain listener that does the handshake itself (so a failed
/// handshake is reported, not skipped); the client, trusting `ca`, connects to `host`.
/// Returns the client's and the server's handshake results.
async fn handshake_with(
    leaf: &Leaf,
    client: TlsContext,
    host: &str,
) -> io::Result<(io::Result<AsyncSocket>, io::Result<AsyncSocket>)> {
    let listener = plain_listener()?;
    let port = port_of(&listener);
    let server_ctx = server_ctx(leaf);
    let server = spawn(async move {
        let s = listener.accept().await?;
        wrap_connected_socket(&server_ctx, &s, HandshakeAs::Server, "").await?;
        Ok::<_, io::Error>(s)
    });
    let client = tls_connect(&client, host, port).await;
    if client.is_err() {
        // Our client told the server why (an alert), so the server's handshake fails too.
        let server = server.await;
        return Ok((client, server));
    }
    let server = server.await;
    Ok((client, server))
}

/// The client's verification error (asserting the kind and the typed source), and the
/// server's handshake error.
async fn refused(leaf: &Leaf, ca: &Ca, host: &str) -> (io::Error, rustls::Error, io::Error) {
    let (client, server) = handshake_with(leaf, client_ctx(ca), host)
        .await
        .expect("setup");
    let err = match client {
        Ok(_) => panic!("the client accepted a bad certificate for {host}"),
        Err(e) => e,
    };
    let server_err = match server {
        Ok(_) => panic!("the server completed a handshake its client refused"),
        Err(e) => e,
    };
    let tls = rustls_error(&err);
    (err, tls, server_err)
}

/// Our client told the server why it gave up: a fatal alert, not a bare close.
fn server_heard_the_alert(server_err: &io::Error) {
    assert!(
        matches!(
            source::<rustls::Error>(server_err),
            Some(rustls::Error::AlertReceived(_))
        ),
        "the server should receive the client's alert, got {server_err:?} (kind {:?})",
        server_err.kind()
    );
}

fn cert_error(e: &rustls::Error) -> &CertificateError {
    match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => panic!("not a certificate error: {other:?}"),
    }
}

#[test]
fn a_ca_signed_certificate_for_localhost_is_accepted_and_the_server_sees_the_sni_name() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        let ci = client.tls_info().expect("client handshake done");
        let si = server.tls_info().expect("server handshake done");
        assert_eq!(ci.server_name.as_deref(), Some("localhost"));
        assert_eq!(si.server_name.as_deref(), Some("localhost"), "SNI");
        client.send("ping\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("ping"));
        Ok(())
    })
}

#[test]
fn connecting_by_ip_verifies_against_the_ip_san_and_sends_no_sni() {
    let ca = Ca::new("ip CA");
    // Only an IP name: a DNS name could not make this pass.
    let leaf = ca.leaf(&["127.0.0.1"]);
    run(async {
        let (client, server) = handshake_with(&leaf, client_ctx(&ca), "127.0.0.1").await?;
        let (client, server) = (client?, server?);
        assert_eq!(client.tls_info().expect("done").server_name, None);
        assert_eq!(
            server.tls_info().expect("done").server_name,
            None,
            "no SNI for an IP address"
        );
        server.send("over ip\n").await?;
        assert_eq!(client.recv_line().await?.as_deref(), Some("over ip"));
        Ok(())
    })
}

#[test]
fn connect_addr_verifies_the_ip_address_it_was_given() {
    let ca = Ca::new("ip CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    run(async {
        let listener = tls_listener(&server_ctx(&leaf))?;
        let port = port_of(&listener);
        let ctx = client_ctx(&ca);
        let c = spawn(async move {
            let s = AsyncSocket::new()?;
            wrap_socket(&ctx, &s)?;
            s.connect_addr(([127, 0, 0, 1], port).into()).await?;
            Ok::<_, io::Error>(s)
        });
        let server = listener.accept().await?;
        let client = c.await?;
        assert!(client.tls_info().is_some() && server.tls_info().is_some());
        Ok(())
    })
}

#[test]
fn connecting_by_ipv6_verifies_against_the_ipv6_san() {
    if !Family::V6.available() {
        return;
    }
    let ca = Ca::new("ipv6 CA");
    let leaf = ca.leaf(&["::1"]);
    run(async {
        let listener = AsyncSocket::builder().domain(Domain::IPV6).build()?;
        listener.bind_addr(0, "::1")?;
        listener.listen()?;
        wrap_socket(&server_ctx(&leaf), &listener)?;
        let port = port_of(&listener);
        let ctx = client_ctx(&ca);
        let c = spawn(async move {
            let s = AsyncSocket::builder().domain(Domain::IPV6).build()?;
            wrap_socket(&ctx, &s)?;
            s.connect("::1", port).await?;
            Ok::<_, io::Error>(s)
        });
        let server = listener.accept().await?;
        let client = c.await?;
        assert_eq!(server.tls_info().expect("done").server_name, None);
        client.send("v6\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("v6"));
        Ok(())
    })
}

#[test]
fn a_certificate_with_only_dns_names_is_refused_when_connecting_by_ip() {
    let ca = Ca::new("dns CA");
    let leaf = ca.leaf(&["localhost"]);
    run(async {
        let (err, tls, server_err) = refused(&leaf, &ca, "127.0.0.1").await;
        assert!(
            matches!(
                cert_error(&tls),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{tls:?}"
        );
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let ca = Ca::new("expiry CA");
    let leaf = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    run(async {
        let (err, tls, server_err) = refused(&leaf, &ca, "localhost").await;
        assert!(
            matches!(
                cert_error(&tls),
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            "{tls:?}"
        );
        assert!(err.to_string().contains("expired"), "{err}");
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn a_not_yet_valid_certificate_is_refused_as_not_valid_yet() {
    let ca = Ca::new("future CA");
    let leaf = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
    });
    run(async {
        let (err, tls, server_err) = refused(&leaf, &ca, "localhost").await;
        assert!(
            matches!(
                cert_error(&tls),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            ),
            "{tls:?}"
        );
        assert!(err.to_string().contains("not valid yet"), "{err}");
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn a_valid_certificate_for_another_name_is_refused_by_default() {
    let ca = Ca::new("name CA");
    let leaf = ca.leaf(&["other.example"]);
    run(async {
        let (err, tls, server_err) = refused(&leaf, &ca, "localhost").await;
        assert!(
            matches!(
                cert_error(&tls),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{tls:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("localhost") && text.contains("other.example"),
            "the error names what was asked and what was presented: {text}"
        );
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn a_self_signed_unknown_certificate_is_refused_as_unknown_issuer() {
    let ca = Ca::new("trusted CA");
    let stranger = self_signed(&["localhost"]);
    run(async {
        let (err, tls, server_err) = refused(&stranger, &ca, "localhost").await;
        assert_eq!(
            cert_error(&tls),
            &CertificateError::UnknownIssuer,
            "{tls:?}"
        );
        assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn a_certificate_signed_by_another_ca_is_refused_as_unknown_issuer() {
    let trusted = Ca::new("trusted CA");
    let other = Ca::new("other CA");
    let leaf = other.leaf(&["localhost"]);
    run(async {
        let (_, tls, server_err) = refused(&leaf, &trusted, "localhost").await;
        assert_eq!(
            cert_error(&tls),
            &CertificateError::UnknownIssuer,
            "{tls:?}"
        );
        server_heard_the_alert(&server_err);
        Ok(())
    })
}

#[test]
fn danger_accept_invalid_certs_accepts_an_unknown_expired_certificate_for_another_name() {
    let stranger = self_signed(&["other.example"]);
    run(async {
        let ctx = TlsContext::client_builder()
            .danger_accept_invalid_certs()
            .build()?;
        let (client, server) = handshake_with(&stranger, ctx, "localhost").await?;
        let (client, server) = (client?, server?);
        assert_eq!(client.peer_certificates(), vec![stranger.der.clone()]);
        server.send("still encrypted\n").await?;
        assert_eq!(
            client.recv_line().await?.as_deref(),
            Some("still encrypted")
        );
        Ok(())
    })
}

#[test]
fn a_client_context_without_roots_is_refused_at_build() {
    let err = TlsContext::client_builder().build().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = TlsContext::client_builder()
        .add_root_pem(b"not a pem")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

// ---- wrap_socket / wrap_connected_socket ------------------------------------------------------

#[test]
fn connect_on_a_wrapped_socket_completes_only_after_the_handshake() {
    let pki = Pki::new();
    run(async {
        // A TCP listener that never speaks TLS: the kernel completes the TCP connect, so
        // only a handshake can keep `connect` waiting.
        let silent = TcpListener::bind("127.0.0.1:0")?;
        let port = silent.local_addr()?.port();
        let s = AsyncSocket::new()?;
        wrap_socket(&pki.client_ctx(), &s)?;
        assert!(s.is_ssl(), "wrapped, before connect");
        assert!(s.tls_info().is_none());
        let r = with_timeout(s.connect("localhost", port), Duration::from_millis(200)).await;
        assert!(r.is_err(), "connect completed without a handshake: {r:?}");
        drop(silent);

        // With a TLS server, connect returns with the handshake done on both sides.
        let (client, server) = tls_pair(&pki).await?;
        assert!(
            client.tls_info().is_some(),
            "handshake done when connect returns"
        );
        assert!(
            server.tls_info().is_some(),
            "handshake done when accept returns"
        );
        Ok(())
    })
}

#[test]
fn accepted_sockets_of_a_wrapped_listener_have_completed_their_handshake() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        assert!(listener.is_ssl());
        let port = port_of(&listener);
        let config = raw_client_config(&pki.ca, false, None);
        let peer = thread::spawn(move || -> io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let mut s = raw_client(config, "localhost", port)?;
            s.write_all(b"hello from rustls\n")?;
            let mut buf = [0u8; 6];
            s.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        });
        let server = listener.accept().await?;
        let info = server
            .tls_info()
            .expect("accepted sockets are past the handshake");
        assert!(server.is_ssl());
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
        assert!(
            server.peer_certificates().is_empty(),
            "the client sent none"
        );
        assert_eq!(
            server.recv_line().await?.as_deref(),
            Some("hello from rustls")
        );
        server.send("answer").await?;
        let got = join_thread(peer).await;
        assert_eq!(got?, b"answer");
        Ok(())
    })
}

#[test]
fn wrap_connected_socket_completes_the_handshake_in_both_roles() {
    let pki = Pki::new();
    run(async {
        let listener = plain_listener()?;
        let port = port_of(&listener);
        let client = AsyncSocket::new()?;
        client.connect("127.0.0.1", port).await?;
        let server = listener.accept().await?;
        assert!(!client.is_ssl() && !server.is_ssl());

        let (sctx, s) = (pki.server_ctx(), server.clone());
        let srv = spawn(async move {
            wrap_connected_socket(&sctx, &s, HandshakeAs::Server, "ignored").await?;
            // Done in the call: no read or write needed to finish it.
            Ok::<_, io::Error>(s.tls_info())
        });
        wrap_connected_socket(&pki.client_ctx(), &client, HandshakeAs::Client, "localhost").await?;
        let ci = client
            .tls_info()
            .expect("client handshake complete in the call");
        let si = srv.await?.expect("server handshake complete in the call");
        assert_eq!(ci.server_name.as_deref(), Some("localhost"));
        assert_eq!(si.server_name.as_deref(), Some("localhost"));
        assert!(client.is_ssl() && server.is_ssl());

        client.send("after wrap\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("after wrap"));
        server.send("and back\n").await?;
        assert_eq!(client.recv_line().await?.as_deref(), Some("and back"));
        Ok(())
    })
}

#[test]
fn wrap_connected_socket_with_an_empty_hostname_verifies_the_peer_ip() {
    let ca = Ca::new("ip CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    run(async {
        let listener = tls_listener(&server_ctx(&leaf))?;
        let port = port_of(&listener);
        let ctx = client_ctx(&ca);
        let c = spawn(async move {
            let s = AsyncSocket::new()?;
            s.connect("127.0.0.1", port).await?;
            wrap_connected_socket(&ctx, &s, HandshakeAs::Client, "").await?;
            Ok::<_, io::Error>(s)
        });
        let server = listener.accept().await?;
        let client = c.await?;
        assert_eq!(client.tls_info().expect("done").server_name, None);
        assert_eq!(server.tls_info().expect("done").server_name, None);
        Ok(())
    })
}

#[test]
fn wrap_connected_socket_refuses_a_context_of_the_other_side() {
    let pki = Pki::new();
    run(async {
        let listener = plain_listener()?;
        let client = AsyncSocket::new()?;
        client.connect("127.0.0.1", port_of(&listener)).await?;
        let server = listener.accept().await?;
        let e = wrap_connected_socket(&pki.server_ctx(), &client, HandshakeAs::Client, "localhost")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = wrap_connected_socket(&pki.client_ctx(), &server, HandshakeAs::Server, "")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        Ok(())
    })
}

#[test]
fn wrap_socket_refuses_a_connected_socket_and_a_second_wrap() {
    let pki = Pki::new();
    run(async {
        let listener = plain_listener()?;
        let client = AsyncSocket::new()?;
        client.connect("127.0.0.1", port_of(&listener)).await?;
        let e = wrap_socket(&pki.client_ctx(), &client).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(!client.is_ssl(), "a refused wrap leaves the socket plain");

        let fresh = AsyncSocket::new()?;
        wrap_socket(&pki.client_ctx(), &fresh)?;
        let e = wrap_socket(&pki.client_ctx(), &fresh).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        Ok(())
    })
}

// ---- what a TLS socket reports ---------------------------------------------------------------

#[test]
fn plain_sockets_are_not_ssl_and_have_no_certificates_or_tls_info() {
    run(async {
        let listener = plain_listener()?;
        let client = AsyncSocket::new()?;
        client.connect("127.0.0.1", port_of(&listener)).await?;
        let server = listener.accept().await?;
        for s in [&client, &server, &listener] {
            assert!(!s.is_ssl());
            assert!(s.peer_certificates().is_empty());
            assert_eq!(s.tls_info(), None);
        }
        Ok(())
    })
}

#[test]
fn peer_certificates_are_the_der_chain_leaf_first() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        let chain = client.peer_certificates();
        assert_eq!(chain.first(), Some(&pki.server.der), "leaf first, DER");
        assert_eq!(
            chain,
            vec![pki.server.der.clone()],
            "the server sent its leaf only"
        );
        assert!(
            server.peer_certificates().is_empty(),
            "a client without certificate"
        );
        Ok(())
    })
}

#[test]
fn peer_certificates_include_the_intermediate_the_server_sends() {
    let ca = Ca::new("root CA");
    // Chain: leaf <- intermediate <- root; the server presents leaf + intermediate.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intermediate");
    let inter_cert = ca.leaf_with(&[], |p| *p = params.clone());
    // `leaf_with` made the intermediate with its own key; sign the leaf with that key.
    let inter_key = rcgen::KeyPair::from_pem(&inter_cert.key_pem).unwrap();
    let issuer = rcgen::Issuer::new(params, inter_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let chain_pem = format!("{}{}", leaf.pem(), inter_cert.cert_pem);
    run(async {
        let sctx =
            TlsContext::server_builder(chain_pem.as_bytes(), leaf_key.serialize_pem().as_bytes())
                .build()?;
        let (client, _server) = tls_pair_with(&sctx, &client_ctx(&ca), "localhost").await?;
        assert_eq!(
            client.peer_certificates(),
            vec![leaf.der().to_vec(), inter_cert.der.clone()]
        );
        Ok(())
    })
}

#[test]
fn tls_info_reports_tls13_and_its_cipher_suite_by_default() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        for s in [&client, &server] {
            let info = s.tls_info().expect("TLS");
            assert_eq!(info.protocol_version, "TLSv1_3");
            assert!(info.cipher_suite.starts_with("TLS13_"), "{info:?}");
            assert_eq!(info.alpn_protocol, None, "nobody configured ALPN");
        }
        assert_eq!(
            client.tls_info().unwrap().cipher_suite,
            server.tls_info().unwrap().cipher_suite
        );
        Ok(())
    })
}

#[test]
fn alpn_is_negotiated_when_both_sides_configure_it() {
    let pki = Pki::new();
    run(async {
        let sctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .alpn(&[b"http/1.1", b"h2"])
        .build()?;
        let cctx = TlsContext::client_builder()
            .add_root_pem(pki.ca.pem.as_bytes())
            .alpn(&[b"h2", b"http/1.1"])
            .build()?;
        let (client, server) = tls_pair_with(&sctx, &cctx, "localhost").await?;
        // The server's preference wins in rustls.
        let chosen = server.tls_info().unwrap().alpn_protocol;
        assert!(
            chosen.as_deref() == Some(&b"http/1.1"[..]) || chosen.as_deref() == Some(&b"h2"[..]),
            "{chosen:?}"
        );
        assert_eq!(client.tls_info().unwrap().alpn_protocol, chosen);

        // Only the client offers ALPN: nothing is chosen, the handshake still succeeds.
        let (client, server) = tls_pair_with(&pki.server_ctx(), &cctx, "localhost").await?;
        assert_eq!(client.tls_info().unwrap().alpn_protocol, None);
        assert_eq!(server.tls_info().unwrap().alpn_protocol, None);
        Ok(())
    })
}

#[test]
fn alpn_without_a_common_protocol_fails_the_handshake() {
    let pki = Pki::new();
    run(async {
        let sctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .alpn(&[b"h2"])
        .build()?;
        let cctx = TlsContext::client_builder()
            .add_root_pem(pki.ca.pem.as_bytes())
            .alpn(&[b"imap"])
            .build()?;
        let listener = plain_listener()?;
        let port = port_of(&listener);
        let srv = spawn(async move {
            let s = listener.accept().await?;
            wrap_connected_socket(&sctx, &s, HandshakeAs::Server, "").await
        });
        let e = tls_connect(&cctx, "localhost", port).await.unwrap_err();
        let se = srv.await.unwrap_err();
        assert_eq!(
            rustls_error(&se),
            rustls::Error::NoApplicationProtocol,
            "{se}"
        );
        // The server says why, and our client reports it (not a bare end of stream).
        assert_eq!(
            source::<rustls::Error>(&e),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            )),
            "the client should receive the server's alert, got {e:?}"
        );
        Ok(())
    })
}

// ---- protocol versions -----------------------------------------------------------------------

#[test]
fn a_tls12_only_client_is_served_by_default_and_reported_as_tls12() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let config = raw_client_config(&pki.ca, true, None);
        let peer = thread::spawn(move || -> io::Result<String> {
            use std::io::{BufRead, BufReader, Write};
            let mut s = raw_client(config, "localhost", port)?;
            s.write_all(b"tls12\n")?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
            Ok(line)
        });
        let server = listener.accept().await?;
        let info = server.tls_info().expect("TLS");
        assert_eq!(info.protocol_version, "TLSv1_2");
        assert!(info.cipher_suite.starts_with("TLS_ECDHE_"), "{info:?}");
        assert_eq!(server.recv_line().await?.as_deref(), Some("tls12"));
        server.send("ok\n").await?;
        assert_eq!(join_thread(peer).await?, "ok\n");
        Ok(())
    })
}

#[test]
fn our_client_talks_tls12_to_a_tls12_only_server_by_default() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config = raw_server_config(&pki.server, true);
    let peer = thread::spawn(move || -> io::Result<()> {
        use std::io::Write;
        let (s, _) = tcp.accept()?;
        let mut s = raw_server(config, s)?;
        s.write_all(b"from a tls12 server\n")?;
        s.conn.send_close_notify();
        s.flush()?;
        Ok(())
    });
    run(async {
        let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
        assert_eq!(client.tls_info().unwrap().protocol_version, "TLSv1_2");
        assert_eq!(
            client.recv_line().await?.as_deref(),
            Some("from a tls12 server")
        );
        assert_eq!(client.recv_line().await?, None, "clean close_notify end");
        join_thread(peer).await
    })
}

#[test]
fn min_version_tls13_client_refuses_a_tls12_only_server() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config = raw_server_config(&pki.server, true);
    let peer = thread::spawn(move || -> io::Result<()> {
        let (s, _) = tcp.accept()?;
        match raw_server(config, s) {
            Ok(_) => Err(io::Error::other("the TLS 1.2 server completed a handshake")),
            Err(_) => Ok(()),
        }
    });
    run(async {
        let ctx = TlsContext::client_builder()
            .add_root_pem(pki.ca.pem.as_bytes())
            .min_version(TlsVersion::Tls13)
            .build()?;
        let e = tls_connect(&ctx, "localhost", port).await.unwrap_err();
        let tls = rustls_error(&e);
        assert!(
            matches!(
                tls,
                rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
                    | rustls::Error::PeerIncompatible(_)
            ),
            "{tls:?}"
        );
        join_thread(peer).await
    })
}

#[test]
fn min_version_tls13_server_refuses_a_tls12_only_client_and_serves_the_next() {
    let pki = Pki::new();
    run(async {
        let sctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .min_version(TlsVersion::Tls13)
        .build()?;
        let listener = tls_listener(&sctx)?;
        let port = port_of(&listener);
        let config = raw_client_config(&pki.ca, true, None);
        let old = thread::spawn(move || raw_client(config, "localhost", port).is_err());
        let l = listener.clone();
        let acc = spawn(async move { l.accept().await });
        assert!(join_thread(old).await, "the TLS 1.2 client was refused");
        let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
        let server = acc.await?;
        assert_eq!(server.tls_info().unwrap().protocol_version, "TLSv1_3");
        assert_eq!(client.tls_info().unwrap().protocol_version, "TLSv1_3");
        let e = listener
            .take_accept_error()
            .expect("the refused client is recorded");
        let tls = rustls_error(&e);
        assert!(matches!(tls, rustls::Error::PeerIncompatible(_)), "{tls:?}");
        Ok(())
    })
}

// ---- client certificates ---------------------------------------------------------------------

fn mtls_server_ctx(pki: &Pki) -> TlsContext {
    TlsContext::server_builder(
        pki.server.cert_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
    )
    .require_client_cert(pki.ca.pem.as_bytes())
    .build()
    .expect("mTLS server context")
}

/// A client that presents `leaf`.
fn client_ctx_with_cert(ca: &Ca, leaf: &Leaf) -> TlsContext {
    TlsContext::client_builder()
        .add_root_pem(ca.pem.as_bytes())
        .client_cert(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .build()
        .expect("client context with certificate")
}

/// Connect with `ctx` to a listener that requires client certificates, and see the client
/// fail: at connect or (TLS 1.3: the client finishes first) at its first read. Then a client
/// with a good certificate is served. Returns the client's and the recorded server error.
async fn refused_client(pki: &Pki, ctx: TlsContext) -> io::Result<(io::Error, io::Error)> {
    let listener = tls_listener(&mtls_server_ctx(pki))?;
    let port = port_of(&listener);
    let l = listener.clone();
    let acc = spawn(async move { l.accept().await });
    let client_err = async {
        let c = tls_connect(&ctx, "localhost", port).await?;
        let got = c.recv(1).await?;
        Err::<(), _>(io::Error::other(format!(
            "a refused client read {got:?} instead of an error"
        )))
    }
    .await
    .unwrap_err();

    let good_leaf = pki.ca.leaf(&["client.example"]);
    let good = tls_connect(
        &client_ctx_with_cert(&pki.ca, &good_leaf),
        "localhost",
        port,
    )
    .await?;
    let server = acc.await?;
    assert_eq!(server.peer_certificates(), vec![good_leaf.der.clone()]);
    good.send("good\n").await?;
    assert_eq!(server.recv_line().await?.as_deref(), Some("good"));
    let server_err = listener
        .take_accept_error()
        .expect("the refused client is recorded");
    Ok((client_err, server_err))
}

#[test]
fn require_client_cert_refuses_a_client_without_certificate() {
    let pki = Pki::new();
    run(async {
        let (client_err, server_err) = refused_client(&pki, pki.client_ctx()).await?;
        rustls_error(&client_err);
        assert_eq!(
            rustls_error(&server_err),
            rustls::Error::NoCertificatesPresented,
            "{server_err}"
        );
        Ok(())
    })
}

#[test]
fn require_client_cert_refuses_a_certificate_from_another_ca() {
    let pki = Pki::new();
    let other = Ca::new("other CA");
    let stranger = other.leaf(&["client.example"]);
    run(async {
        let ctx = client_ctx_with_cert(&pki.ca, &stranger);
        let (client_err, server_err) = refused_client(&pki, ctx).await?;
        rustls_error(&client_err);
        assert_eq!(
            rustls_error(&server_err),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "{server_err}"
        );
        Ok(())
    })
}

#[test]
fn require_client_cert_accepts_a_client_signed_by_the_ca() {
    let pki = Pki::new();
    let leaf = pki.ca.leaf(&["client.example"]);
    run(async {
        let (client, server) = tls_pair_with(
            &mtls_server_ctx(&pki),
            &client_ctx_with_cert(&pki.ca, &leaf),
            "localhost",
        )
        .await?;
        assert_eq!(server.peer_certificates(), vec![leaf.der.clone()]);
        assert_eq!(client.peer_certificates(), vec![pki.server.der.clone()]);
        client.send("mutual\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("mutual"));
        server.send("indeed\n").await?;
        assert_eq!(client.recv_line().await?.as_deref(), Some("indeed"));
        Ok(())
    })
}
