//! Throwaway certificates for the TLS suites, made in the test (rcgen, pure Rust): a CA, a
//! server certificate for 127.0.0.1 and localhost and a client certificate signed by it, plus
//! the ways a deployment gets TLS wrong: an unrelated CA and an expired server certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every PEM file one TLS test needs, in a temporary directory removed on drop.
pub struct TestPki {
    /// The CA that signs `server`, `client` and `expired_server`.
    pub ca: PathBuf,
    pub server: CertFiles,
    /// A client certificate for mutual TLS (`--tls-auth-clients yes`).
    pub client: CertFiles,
    /// A CA that signed nothing here: trusting it alone must fail the handshake.
    pub wrong_ca: PathBuf,
    /// Signed by `ca` for the right names, but valid only in 2000.
    pub expired_server: CertFiles,
    dir: tempfile::TempDir,
}

/// The names a loopback Redis is reached by.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

impl TestPki {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (ca_pem, ca) = new_ca("exactly-once test CA");
        let (wrong_ca_pem, _) = new_ca("an unrelated CA");
        let server = leaf(
            &ca,
            "redis",
            &SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(&ca, "client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let mut expired = leaf_params("redis", &SERVER_NAMES, ExtendedKeyUsagePurpose::ServerAuth);
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired_server = sign(&expired, &ca);

        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path
        };
        let pair = |name: &str, (cert, key): (String, String)| CertFiles {
            cert: write(&format!("{name}.crt"), &cert),
            key: write(&format!("{name}.key"), &key),
        };
        TestPki {
            ca: write("ca.crt", &ca_pem),
            server: pair("server", server),
            client: pair("client", client),
            wrong_ca: write("wrong-ca.crt", &wrong_ca_pem),
            expired_server: pair("expired-server", expired_server),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A self-signed CA: its PEM and the issuer that signs leaves with it.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .expect("no subject alternative names cannot be invalid");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("generating a P-256 key");
    let cert = params.self_signed(&key).expect("self-signing the CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf_params(
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("the test's names are valid");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params
}

fn leaf(
    ca: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    sign(&leaf_params(common_name, names, usage), ca)
}

/// Signs `params` with `ca` under a new key: (certificate PEM, PKCS#8 key PEM).
fn sign(params: &CertificateParams, ca: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("generating a P-256 key");
    let cert = params
        .signed_by(&key, ca)
        .expect("signing with the test CA");
    (cert.pem(), key.serialize_pem())
}
