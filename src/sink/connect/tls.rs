//! The rustls client configuration for one Postgres connection string, with libpq's `sslmode`
//! semantics: `prefer` and `require` encrypt without checking the server's certificate (unless
//! `sslrootcert` is given with `require`, which libpq treats as `verify-ca`), `verify-ca` checks
//! the chain only, `verify-full` the chain and the host name. Roots come from `sslrootcert` (a PEM
//! file), from the platform's store (`sslrootcert=system`) or, by default, from the Mozilla roots
//! compiled in (`webpki-roots`). A client certificate comes from `sslcert` + `sslkey`. Every file
//! is read here, once, when the connection string is parsed; nothing here opens a connection.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::conninfo::TlsOptions;

/// libpq's `sslmode`, all of it except `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The accepted spellings, for error messages.
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    fn parse(value: &str) -> Result<SslMode, TlsError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(TlsError::AllowUnsupported),
            other => Err(TlsError::UnknownSslMode(other.to_string())),
        }
    }

    /// What tokio-postgres is told: whether TLS is tried, and whether it is required.
    pub fn for_driver(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// A TLS option that cannot be used. Each message starts with the option's name; none contains a
/// secret (file paths and the `sslmode` value are not secrets).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode: {0:?} is not one of {names}", names = SslMode::NAMES)]
    UnknownSslMode(String),
    #[error("sslmode: \"allow\" is not supported (use prefer or disable)")]
    AllowUnsupported,
    #[error("{option}: cannot read {path}: {source}")]
    Read {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{option}: {path} is not a PEM file of the expected kind: {source}")]
    Pem {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{option}: {path} holds no certificate")]
    NoCertificate { option: &'static str, path: PathBuf },
    #[error("sslrootcert: no certificate of {path} is usable as a trust anchor: {source}")]
    Roots {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("sslrootcert: the platform's certificate store holds no usable certificate")]
    NoSystemRoots,
    #[error("{given}: given without {missing} (a client certificate needs both)")]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("sslcert/sslkey: the client certificate and key cannot be used: {0}")]
    ClientAuth(#[source] rustls::Error),
    #[error("sslmode: cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
}

/// The checked TLS settings: the mode and the rustls configuration it needs.
#[derive(Debug, Clone)]
pub struct Tls {
    pub mode: SslMode,
    pub config: Arc<ClientConfig>,
}

/// Builds the TLS settings; reads `sslrootcert`, `sslcert` and `sslkey`.
pub fn build(options: &TlsOptions) -> Result<Tls, TlsError> {
    let mode = options
        .sslmode
        .as_deref()
        .map_or(Ok(SslMode::Prefer), SslMode::parse)?;
    // libpq: with a root certificate file, `require` verifies the chain like `verify-ca`.
    let verify = match mode {
        SslMode::Require if options.sslrootcert.is_some() => SslMode::VerifyCa,
        other => other,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(WithoutNames {
            roots: None,
            provider: provider.clone(),
        }),
        SslMode::VerifyCa => Arc::new(WithoutNames {
            roots: Some(roots(options.sslrootcert.as_deref())?),
            provider: provider.clone(),
        }),
        SslMode::VerifyFull => WebPkiServerVerifier::builder_with_provider(
            roots(options.sslrootcert.as_deref())?,
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Setup(rustls::Error::General(e.to_string())))?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&options.sslcert, &options.sslkey) {
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(TlsError::Incomplete {
                given: "sslcert",
                missing: "sslkey",
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::Incomplete {
                given: "sslkey",
                missing: "sslcert",
            })
        }
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates("sslcert", cert)?, private_key(key)?)
            .map_err(TlsError::ClientAuth)?,
    };
    Ok(Tls {
        mode,
        config: Arc::new(config),
    })
}

fn read(option: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        option,
        path: PathBuf::from(path),
        source,
    })
}

fn certificates(
    option: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            option,
            path: PathBuf::from(path),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            option,
            path: PathBuf::from(path),
        });
    }
    Ok(certs)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("sslkey", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsError::Pem {
        option: "sslkey",
        path: PathBuf::from(path),
        source,
    })
}

/// The trust anchors: a PEM file, the platform store (`system`), or the Mozilla roots.
fn roots(sslrootcert: Option<&str>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    match sslrootcert {
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
        Some(path) => {
            for cert in certificates("sslrootcert", path)? {
                store.add(cert).map_err(|source| TlsError::Roots {
                    path: path.to_string(),
                    source,
                })?;
            }
        }
    }
    Ok(Arc::new(store))
}

/// The verifier of the modes that do not check the server's names: `prefer` / `require` (no
/// `roots`: the connection is encrypted, the certificate itself is not checked) and `verify-ca`
/// (`roots`: the certificate must chain to a trusted root). The handshake signature is always
/// checked.
#[derive(Debug)]
struct WithoutNames {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

    fn options(mode: Option<&str>) -> TlsOptions {
        TlsOptions {
            sslmode: mode.map(str::to_string),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn modes_default_to_prefer_and_unknown_ones_are_named() {
        assert_eq!(build(&options(None)).expect("builds").mode, SslMode::Prefer);
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(build(&options(Some(text))).expect("builds").mode, mode);
        }
        let err = build(&options(Some("verify-everything"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sslmode: \"verify-everything\" is not one of disable, prefer, require, verify-ca or verify-full"
        );
        assert!(matches!(
            build(&options(Some("allow"))),
            Err(TlsError::AllowUnsupported)
        ));
    }

    #[test]
    fn unreadable_and_incomplete_certificate_options_are_named() {
        let mut o = options(Some("verify-full"));
        o.sslrootcert = Some("/nonexistent/ca.pem".into());
        let err = build(&o).unwrap_err().to_string();
        assert!(
            err.starts_with("sslrootcert: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        let mut o = options(Some("require"));
        o.sslcert = Some("/nonexistent/client.pem".into());
        assert_eq!(
            build(&o).unwrap_err().to_string(),
            "sslcert: given without sslkey (a client certificate needs both)"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let mut o = options(Some("verify-ca"));
        o.sslrootcert = Some(path.display().to_string());
        let err = build(&o).unwrap_err().to_string();
        assert!(err.starts_with("sslrootcert: "), "{err}");
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
