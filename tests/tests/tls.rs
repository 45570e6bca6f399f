//! HTTPS on the relay's one port: the local authority's certificate verifies for loopback,
//! plain HTTP redirects and offers the authority, cookies are Secure, WebSockets work over TLS,
//! and an operator's own certificate files are served.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use testkit::stack::{Stack, StackOptions, spawn_stack_with};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn connector(root: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    #[expect(deprecated, reason = "the provider the relay serves with")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// `GET path` over `stream`, as a browser navigating: the status, the Set-Cookie headers and
/// the body.
async fn get(stream: TlsStream<TcpStream>, host: &str, path: &str) -> (u16, Vec<String>, String) {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", host)
        .header("sec-fetch-mode", "navigate")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, cookies, String::from_utf8_lossy(&body).into_owned())
}

async fn tls_stack(args: Vec<String>) -> Stack {
    spawn_stack_with(StackOptions {
        relay_args: args,
        ..StackOptions::default()
    })
    .await
}

#[tokio::test]
async fn the_local_authority_serves_https_on_the_one_port_and_plain_http_leads_there() {
    let stack = tls_stack(vec!["--tls=local".to_owned()]).await;
    let addr = stack.relay_addr;
    let host = addr.to_string();
    let authority =
        CertificateDer::from_pem_file(stack.data_dir.path().join("tls/ca.pem")).unwrap();
    let connector = connector(&authority);

    for name in ["127.0.0.1", "localhost"] {
        let stream = connect(&connector, addr, name).await.unwrap();
        let (status, cookies, _) = get(stream, &host, "/api/session").await;
        assert_eq!(status, 200, "{name}");
        assert!(!cookies.is_empty(), "a device cookie is handed out");
        assert!(
            cookies.iter().all(|c| c.ends_with("; Secure")),
            "{cookies:?}"
        );
    }
    // The certificate names only this machine's names and LAN addresses.
    assert!(
        connect(&connector, addr, "comfy.example.org")
            .await
            .is_err()
    );

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = plain
        .get(format!("http://{host}/jobs?tab=done"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("https://{host}/jobs?tab=done").as_str()
    );
    // Nothing of the app answers in plain: not its API either.
    let api = plain
        .get(format!("http://{host}/api/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 308);

    // How to trust the authority, over plain HTTP, before the phone trusts it.
    let page = plain
        .get(format!("http://{host}/tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&format!("href=\"https://{host}/\"")),
        "{page}"
    );
    assert!(page.contains("Certificate Trust Settings"));
    let download = plain
        .get(format!("http://{host}/tls/ca.crt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        download.headers()["content-type"],
        "application/x-x509-ca-cert"
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), authority.as_ref());
    let fingerprint: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(authority.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    assert!(page.contains(&fingerprint));

    // ComfyUI's socket, relayed over TLS.
    let stream = connect(&connector, addr, "127.0.0.1").await.unwrap();
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("wss://{host}/ws?clientId=phone"), stream)
            .await
            .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.to_text().unwrap().contains("\"status\""), "{first:?}");
}

#[tokio::test]
async fn a_broken_handshake_costs_one_closed_connection_and_the_relay_serves_on() {
    let stack = tls_stack(vec!["--tls=local".to_owned()]).await;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut garbage = TcpStream::connect(stack.relay_addr).await.unwrap();
    garbage
        .write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        garbage.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the relay closes a broken handshake");
    // The relay still serves.
    let authority =
        CertificateDer::from_pem_file(stack.data_dir.path().join("tls/ca.pem")).unwrap();
    let stream = connect(&connector(&authority), stack.relay_addr, "127.0.0.1")
        .await
        .unwrap();
    let (status, _, _) = get(stream, &stack.relay_addr.to_string(), "/api/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_operators_certificate_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let stack = tls_stack(vec![
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
    ])
    .await;
    let stream = connect(&connector(ca.der()), stack.relay_addr, "127.0.0.1")
        .await
        .unwrap();
    let (status, _, _) = get(stream, &stack.relay_addr.to_string(), "/api/health").await;
    assert_eq!(status, 200);
    // No authority of the relay's own to offer.
    let plain = reqwest::get(format!("http://{}/tls/ca.crt", stack.relay_addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), 404);
}
