//! The rustls client configuration of `https://` (feature `tls`): ring as the provider and the
//! system's roots through `rustls-native-certs`, the choices pythia-redis makes for
//! `rediss://`, or only the CAs of `--http-ca-file`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Verifies servers against `ca_file`'s certificates, or the system's roots without one.
pub(super) fn config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| format!("--http-ca-file {}: {e}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no PEM certificate in the file"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "https://: no trusted root certificates found on this system{why}; \
                     install them (Debian: ca-certificates) or give --http-ca-file"
                ));
            }
        }
    }
    Ok(builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A configuration for an `http://` client, which never opens TLS.
pub(super) fn unused_config() -> Result<ClientConfig, String> {
    Ok(builder()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    // The provider pythia-redis uses for rediss:// (ring: no aws-lc build), passed in
    // rather than installed process-wide.
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_cannot_serve_says_which_and_why() {
        let e = config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.starts_with("--http-ca-file /nonexistent/ca.pem: "), "{e}");
        let dir = std::env::temp_dir().join(format!("pythia-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = config(Some(&empty)).unwrap_err();
        assert!(e.contains("no PEM certificate in the file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_system_roots_load() {
        // Debian's ca-certificates (the machines and CI have it): https:// without a CA file.
        let c = config(None).unwrap();
        assert!(
            c.alpn_protocols.is_empty(),
            "ALPN is the connector's to offer"
        );
    }
}
