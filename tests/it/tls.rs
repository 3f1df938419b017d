//! HTTPS checks against real loopback servers with certificates of a test CA: the
//! certificate's expiry on the check (`Check::tls_not_after`), `probe.ca_file` as an extra
//! trusted root, and expired or untrusted certificates as `tls` failures. Its fixtures
//! (`TestCa`, `https_server`) are for any test that needs an HTTPS service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use mcp_healthd::config::{Config, ProbeConfig};
use mcp_healthd::plan::target::{Method, Target};
use mcp_healthd::probe::{Check, ErrorKind, Prober};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A certificate authority made for one test: its certificate is PEM in a file of its own
/// temporary directory (kept as long as this lives), ready for `probe.ca_file`.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcp-healthd test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let now = Utc::now();
        set_validity(
            &mut params,
            now - TimeDelta::days(365),
            now + TimeDelta::days(3650),
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("test-ca.pem");
        std::fs::write(&pem_path, certificate.pem()).unwrap();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem_path,
            _dir: dir,
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// A leaf certificate for 127.0.0.1 and localhost, valid from a day before `not_after`
    /// (or yesterday, if earlier) until `not_after`, and its private key.
    fn issue(&self, not_after: DateTime<Utc>) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let yesterday = Utc::now() - TimeDelta::days(1);
        set_validity(
            &mut params,
            yesterday.min(not_after - TimeDelta::days(1)),
            not_after,
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        (certificate.der().clone(), key.into())
    }
}

/// Sets the certificate's validity, to the second (rcgen takes the `time` crate's dates).
fn set_validity(
    params: &mut rcgen::CertificateParams,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since_epoch =
        |at: DateTime<Utc>| Duration::from_secs(u64::try_from(at.timestamp()).expect("after 1970"));
    params.not_before = epoch + since_epoch(not_before);
    params.not_after = epoch + since_epoch(not_after);
}

/// An HTTPS server on 127.0.0.1 that answers every request `200 OK`, body `ok`, then closes
/// the connection; it stops when dropped.
pub struct HttpsServer {
    addr: SocketAddr,
    not_after: DateTime<Utc>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT`, a base URL: every path answers.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The notAfter its certificate says: the one asked for, to the second.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTPS on a free loopback port with a certificate of `ca` for 127.0.0.1 and
/// localhost that expires at `not_after` (already expired if that is in the past).
pub async fn https_server(ca: &TestCa, not_after: DateTime<Utc>) -> HttpsServer {
    let not_after = not_after.with_nanosecond(0).expect("0 ns is valid");
    let (certificate, key) = ca.issue(not_after);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to serve.
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = answer_ok(stream).await;
                }
            });
        }
    });
    HttpsServer {
        addr,
        not_after,
        task,
    }
}

/// Reads one request's head (at most 16 KiB), answers `200 OK` with body `ok`, and closes.
async fn answer_ok(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await?;
    stream.shutdown().await
}

/// The default probe settings, with `ca_file` (given as the operator would, in TOML).
fn probe_config(ca_file: Option<&Path>) -> ProbeConfig {
    let toml = match ca_file {
        Some(path) => format!("[probe]\nca_file = {:?}\n", path.to_str().unwrap()),
        None => String::new(),
    };
    Config::from_toml(&toml, "test", None).unwrap().probe
}

/// One GET of `url` by a prober with `config`.
async fn check(config: &ProbeConfig, url: &str) -> Check {
    mcp_healthd::install_crypto_provider();
    let target = Target {
        service_type: "tls".into(),
        url: url.parse().unwrap(),
        method: Method::Get,
        timeout: Duration::from_secs(10),
        expected_status: config.expected_status.clone(),
        headers: Vec::new(),
        body_contains: Some("ok".into()),
    };
    Prober::new(config).unwrap().check(&target).await
}

#[tokio::test]
async fn a_certificate_of_the_ca_file_is_trusted_and_its_expiry_reported() {
    let ca = TestCa::new();
    let server = https_server(&ca, Utc::now() + TimeDelta::days(5)).await;
    let config = probe_config(Some(ca.pem_path()));
    for url in [
        server.url(),
        format!("https://localhost:{}/health", server.port()),
    ] {
        let check = check(&config, &url).await;
        assert!(check.outcome.is_success(), "{url}: {check:?}");
        assert_eq!(check.tls_not_after, Some(server.not_after()), "{url}");
    }
}

#[tokio::test]
async fn an_expired_certificate_is_a_tls_failure() {
    let ca = TestCa::new();
    let server = https_server(&ca, Utc::now() - TimeDelta::days(2)).await;
    let check = check(&probe_config(Some(ca.pem_path())), &server.url()).await;
    assert_eq!(check.outcome.kind(), Some(ErrorKind::Tls), "{check:?}");
    let message = check.outcome.error_message().unwrap();
    assert!(message.to_lowercase().contains("expired"), "{message}");
    assert_eq!(check.tls_not_after, None, "no handshake, no response");
}

#[tokio::test]
async fn without_the_ca_file_the_certificate_is_untrusted() {
    let ca = TestCa::new();
    let server = https_server(&ca, Utc::now() + TimeDelta::days(5)).await;
    let check = check(&probe_config(None), &server.url()).await;
    assert_eq!(check.outcome.kind(), Some(ErrorKind::Tls), "{check:?}");
    assert_eq!(check.tls_not_after, None);
}

#[tokio::test]
async fn plain_http_has_no_certificate_expiry() {
    let server = crate::fleet::spawn(crate::fleet::Behaviour::Healthy).await;
    let check = check(
        &probe_config(None),
        &format!("http://127.0.0.1:{}/health", server.port),
    )
    .await;
    assert!(check.outcome.is_success(), "{check:?}");
    assert_eq!(check.tls_not_after, None);
}

#[test]
fn a_ca_file_that_cannot_be_used_fails_the_prober_naming_key_and_path() {
    mcp_healthd::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let not_base64 = dir.path().join("not-base64.pem");
    std::fs::write(
        &not_base64,
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_a_certificate = dir.path().join("not-a-certificate.pem");
    std::fs::write(
        &not_a_certificate,
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let no_certificate = dir.path().join("key-only.pem");
    std::fs::write(
        &no_certificate,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    for (path, why) in [
        (dir.path().join("missing.pem"), "cannot be read"),
        (not_base64, "is not valid PEM"),
        (not_a_certificate, "holds an invalid certificate"),
        (no_certificate, "holds no PEM certificate"),
    ] {
        let mut config = probe_config(None);
        config.ca_file = Some(path.clone());
        let error = format!("{:#}", Prober::new(&config).err().expect("an error"));
        assert!(error.starts_with("probe.ca_file: "), "{error}");
        assert!(error.contains(path.to_str().unwrap()), "{error}");
        assert!(error.contains(why), "{error}");
    }
}
