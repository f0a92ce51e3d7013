//! How a cloud is reached over HTTPS: the TLS keys of a clouds.yaml entry (`cacert`,
//! `verify` / `insecure`, `cert` / `key`), the HTTP client built from them, and what a
//! failed handshake means in words a release engineer can act on.
//!
//! osauth builds its own client from `cacert` alone, so the session is opened with this
//! client instead (see `auth::connect_to`). The client trusts three sets of CAs at once:
//! the entry's `cacert` bundle, the system trust store (rustls-native-certs:
//! `/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), and the web PKI roots
//! built into reqwest.

use std::path::{Path, PathBuf};

/// The TLS settings of one cloud entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// A PEM bundle of extra CAs to trust (`cacert`).
    pub cacert: Option<PathBuf>,
    /// Whether the server's certificate is checked (`verify: false` or `insecure: true` turn
    /// it off, as in openstacksdk).
    pub verify: bool,
    /// A client certificate (`cert`), and its key (`key`) when it is not in the same file.
    pub client_cert: Option<(PathBuf, Option<PathBuf>)>,
}

/// A TLS key of an entry that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key has a value of the wrong kind.
    #[error("`{key}` must be {expected}")]
    Value {
        /// The clouds.yaml key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A certificate or key file cannot be read.
    #[error("cannot read the `{key}` file {}", path.display())]
    Read {
        /// The clouds.yaml key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::bounded::Error,
    },
    /// A certificate or key file is not usable PEM.
    #[error("the `{key}` file {} is not a PEM {expected}", path.display())]
    Pem {
        /// The clouds.yaml key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
        /// reqwest's reason.
        #[source]
        source: reqwest::Error,
    },
    /// reqwest could not build the client.
    #[error("cannot build the HTTPS client")]
    Build(#[source] reqwest::Error),
}

/// Certificate and key files are small: a bound keeps a wrong path (a device, a disk image)
/// from being read for ever.
const MAX_PEM_BYTES: u64 = 1 << 20;

impl Tls {
    /// Takes the TLS keys out of a cloud entry (osauth must not see them: it would build a
    /// client of its own from `cacert`).
    pub fn take_from(entry: &mut serde_json::Map<String, serde_json::Value>) -> Result<Tls, Error> {
        let path =
            |entry: &mut serde_json::Map<String, serde_json::Value>, key: &'static str| match entry
                .remove(key)
            {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(PathBuf::from(s))),
                Some(_) => Err(Error::Value {
                    key,
                    expected: "the path of a PEM file",
                }),
            };
        let flag =
            |entry: &mut serde_json::Map<String, serde_json::Value>, key: &'static str| match entry
                .remove(key)
            {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
                Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => {
                    Ok(Some(true))
                }
                Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => {
                    Ok(Some(false))
                }
                Some(_) => Err(Error::Value {
                    key,
                    expected: "true or false",
                }),
            };
        let cacert = path(entry, "cacert")?;
        let verify = flag(entry, "verify")?;
        let insecure = flag(entry, "insecure")?;
        let cert = path(entry, "cert")?;
        let key = path(entry, "key")?;
        let client_cert = match (cert, key) {
            (Some(c), k) => Some((c, k)),
            (None, Some(_)) => {
                return Err(Error::Value {
                    key: "key",
                    expected: "given together with `cert` (the client certificate)",
                })
            }
            (None, None) => None,
        };
        Ok(Tls {
            cacert,
            // openstacksdk: `insecure: true` means `verify: false`; an explicit `verify` wins.
            verify: verify.unwrap_or(!insecure.unwrap_or(false)),
            client_cert,
        })
    }

    /// The HTTP client of a cloud with these settings.
    pub fn client(&self) -> Result<reqwest::Client, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &self.cacert {
            let pem = read_pem("cacert", ca)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| Error::Pem {
                    key: "cacert",
                    path: ca.clone(),
                    expected: "certificate bundle",
                    source,
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.client_cert {
            let mut pem = read_pem("cert", cert)?;
            if let Some(key) = key {
                pem.push(b'\n');
                pem.extend(read_pem("key", key)?);
            }
            let identity = reqwest::Identity::from_pem(&pem).map_err(|source| Error::Pem {
                key: "cert",
                path: cert.clone(),
                expected: "certificate and private key",
                source,
            })?;
            builder = builder.identity(identity);
        }
        if !self.verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder.build().map_err(Error::Build)
    }
}

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    crate::bounded::read(path, MAX_PEM_BYTES).map_err(|source| Error::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Why a TLS handshake failed, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The server's certificate is not signed by any CA the client trusts.
    Untrusted,
    /// The certificate is valid, but not for the host name (or address) that was dialled.
    WrongName,
    /// Another certificate or handshake problem, in rustls's words.
    Other(String),
}

/// The TLS refusal at the root of `err`, if a handshake failed.
pub fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    Refusal::Untrusted
                }
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ) => Refusal::WrongName,
                other => Refusal::Other(other.to_string()),
            });
        }
        // io::Error::source() skips the error it wraps (hyper nests io::Errors around
        // rustls's), so a wrapped one is followed by hand.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn take(v: serde_json::Value) -> Result<(Tls, serde_json::Value), Error> {
        let mut map = v.as_object().cloned().unwrap();
        let tls = Tls::take_from(&mut map)?;
        Ok((tls, serde_json::Value::Object(map)))
    }

    #[test]
    fn tls_keys_are_taken_out_and_read_as_openstacksdk_does() {
        let (tls, rest) = take(json!({"cacert": "ca.pem", "region_name": "R"})).unwrap();
        assert_eq!(tls.cacert.as_deref(), Some(Path::new("ca.pem")));
        assert!(tls.verify);
        assert_eq!(rest, json!({"region_name": "R"}));
        assert!(!take(json!({"verify": false})).unwrap().0.verify);
        assert!(!take(json!({"insecure": true})).unwrap().0.verify);
        assert!(!take(json!({"insecure": "True"})).unwrap().0.verify);
        assert!(
            take(json!({"insecure": true, "verify": true}))
                .unwrap()
                .0
                .verify
        );
        let (tls, _) = take(json!({"cert": "c.pem", "key": "k.pem"})).unwrap();
        assert_eq!(
            tls.client_cert,
            Some((PathBuf::from("c.pem"), Some(PathBuf::from("k.pem"))))
        );
    }

    #[test]
    fn wrong_tls_values_are_named() {
        for (entry, key) in [
            (json!({"verify": "perhaps"}), "verify"),
            (json!({"cacert": 3}), "cacert"),
            (json!({"key": "k.pem"}), "key"),
        ] {
            let err = take(entry).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn a_missing_or_bad_cacert_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Tls {
            cacert: Some(dir.path().join("nope.pem")),
            verify: true,
            client_cert: None,
        };
        let err = missing.client().unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let bad = Tls {
            cacert: Some(garbage),
            ..missing
        };
        let err = bad.client().unwrap_err();
        assert!(err.to_string().contains("is not a PEM"), "{err}");
    }
}
