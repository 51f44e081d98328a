//! Connecting to PostgreSQL from a `postgres://` URL, with TLS through rustls.
//!
//! `tokio-postgres` understands `sslmode` `disable`, `prefer` and `require` only, so the
//! URL is read here first and the libpq modes are mapped onto rustls verifiers:
//! - `disable`: plain TCP;
//! - `prefer` (libpq's default) and `require`: TLS without certificate checks (libpq's
//!   meaning: encryption, not authentication);
//! - `verify-ca`: the chain must lead to a trusted root (`sslrootcert`, else the system
//!   store), any host name;
//! - `verify-full`: chain and host name.
//!
//! Errors never contain the password: messages use the redacted URL.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::redact::redact_url;

/// TLS requirement, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, chain verified.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// A parsed connection target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Driver configuration (with `sslmode` mapped for tokio-postgres).
    pub config: postgres::Config,
    /// The libpq-style mode.
    pub ssl_mode: SslMode,
    /// `sslrootcert` file, if any.
    pub root_cert: Option<String>,
    /// The URL without secrets, for messages.
    pub display: String,
}

/// Why a URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid PostgreSQL URL {url}: {reason}")]
pub struct UrlError {
    /// Redacted URL.
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

impl Target {
    /// Parses `postgres://user:password@host:port/db?sslmode=...&sslrootcert=...`.
    ///
    /// # Errors
    /// [`UrlError`] for an unparseable URL or an unknown `sslmode`.
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let display = redact_url(url);
        let bad = |reason: String| UrlError {
            url: display.clone(),
            reason,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept: Vec<(String, String)> = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    ssl_mode = match v.as_ref() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "unknown sslmode {other:?}: use disable, allow, prefer, require, \
                                 verify-ca or verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(v.into_owned()),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        let driver_mode = match ssl_mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        kept.push(("sslmode".into(), driver_mode.into()));
        parsed.query_pairs_mut().clear().extend_pairs(kept);
        // Form encoding writes spaces as `+`, which tokio-postgres takes literally; a
        // literal `+` was already escaped as `%2B`.
        let text = parsed.as_str().replace('+', "%20");
        let mut config: postgres::Config = text
            .parse()
            .map_err(|e: postgres::Error| bad(super::postgres::describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("bankpipe");
        // The client side of dead-peer detection: a server or network that vanished
        // without closing the connection is noticed after ~11 s of silence (5 s idle,
        // then 3 probes 2 s apart) instead of the kernel's default of over two hours.
        // The server side is set per session by [`SESSION_SETTINGS`].
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.keepalives_interval(KEEPALIVE_INTERVAL);
        config.keepalives_retries(KEEPALIVE_COUNT);
        Ok(Target {
            config,
            ssl_mode,
            root_cert,
            display,
        })
    }

    /// Opens a connection and applies [`SESSION_SETTINGS`].
    ///
    /// # Errors
    /// The driver's error (it never includes the password), or a TLS set-up error.
    pub fn connect(&self) -> Result<postgres::Client, ConnectError> {
        let mut client = match self.ssl_mode {
            SslMode::Disable => self.config.connect(postgres::NoTls)?,
            mode => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(
                    mode,
                    self.root_cert.as_deref(),
                )?);
                self.config.connect(tls)?
            }
        };
        client.batch_execute(&session_settings_sql())?;
        Ok(client)
    }
}

/// Client-side TCP keepalives: first probe after this much silence.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Between probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes before the connection is dropped.
const KEEPALIVE_COUNT: u32 = 3;

/// Server-side settings of every bankpipe session, so that a client that died (killed,
/// crashed, its host gone) stops holding its file claims and stops making its backend
/// work within seconds (issue #8: a killed client's backend went on for minutes with
/// its advisory-lock claim, and a rerun skipped the file):
/// - `client_connection_check_interval` (PostgreSQL 14+): while a statement runs (a long
///   `COPY`, the merge, a lock wait) the backend checks every second whether the client
///   is still connected, and ends the session if not; by default it only notices when
///   it next reads from or writes to the client.
/// - `tcp_keepalives_*`: the server notices a client host that vanished without closing
///   the connection after ~11 s of silence (5 s idle, 3 probes 2 s apart) instead of the
///   kernel's default of over two hours. Ignored on Unix-socket connections.
///
/// Applied with `set_config` over `pg_settings`, so a server that lacks one of them
/// (PostgreSQL 13 has no `client_connection_check_interval`) simply skips it.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("client_connection_check_interval", "1000"),
    ("tcp_keepalives_idle", "5"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
];

fn session_settings_sql() -> String {
    let cases: String = SESSION_SETTINGS
        .iter()
        .map(|(name, value)| format!(" WHEN '{name}' THEN '{value}'"))
        .collect();
    let names: Vec<String> = SESSION_SETTINGS
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    format!(
        "SELECT set_config(name, CASE name{cases} END, false) FROM pg_settings WHERE name IN ({})",
        names.join(", ")
    )
}

/// A connection attempt that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server or network refused.
    #[error(transparent)]
    Driver(#[from] postgres::Error),
    /// TLS could not be set up (bad root certificate file).
    #[error("TLS set-up: {0}")]
    Tls(String),
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, ConnectError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ConnectError::Tls(format!("sslrootcert {path}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| ConnectError::Tls(format!("sslrootcert {path}: {e}")))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConnectError::Tls(format!(
                    "sslrootcert {path}: no certificate found"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

fn client_config(mode: SslMode, root_cert: Option<&str>) -> Result<ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let config = match mode {
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(root_cert)?)
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root_cert)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
                .with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified { provider }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `verify-ca`: a valid chain for any host name.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer`/`require`: encryption without authentication, as libpq does. Handshake
/// signatures are still checked so the session key is bound to the presented key.
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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
    fn sslmodes_are_mapped_and_passwords_hidden() {
        let t = Target::parse("postgres://u:pw@h:5433/db?sslmode=verify-full&sslrootcert=/ca.pem")
            .unwrap();
        assert_eq!(t.ssl_mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(t.config.get_dbname(), Some("db"));
        assert!(!t.display.contains("pw"));
        let t = Target::parse("postgresql://u@h/db").unwrap();
        assert_eq!(t.ssl_mode, SslMode::Prefer);
        let err = Target::parse("postgres://u:pw@h/db?sslmode=bogus").unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
