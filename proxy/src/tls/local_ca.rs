//! The relay's own certificate authority (`--tls local`): made once and kept in the data
//! directory, it signs a server certificate for the names and addresses the relay is reached
//! by. A phone trusts it once, so a leaked key must not let anyone impersonate other sites to
//! that phone: the authority may only certify private addresses (RFC 1918, Tailscale's
//! 100.64.0.0/10, loopback, IPv6 unique-local and link-local) and LAN names (`.local`,
//! `.lan`, `.home.arpa`, `.internal`, `localhost`), and every browser checks that. Its name and
//! limits depend on its key alone, so they are the same every start.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// How long the authority's own certificate is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a server certificate is valid: within what Apple accepts for a TLS server.
pub const SERVER_VALIDITY: Duration = Duration::days(397);

/// The LAN domains the authority may certify (each with the names below it).
const LAN_DOMAINS: [&str; 5] = ["local", "lan", "home.arpa", "internal", "localhost"];

/// This machine and its networks: loopback, the private ranges, carrier-grade NAT (Tailscale),
/// link-local and unique-local addresses. The authority certifies only these; push services
/// are never reached on them.
fn private_ranges() -> Vec<(IpAddr, u8)> {
    let v4 = |a, b, prefix| (IpAddr::from([a, b, 0, 0]), prefix);
    vec![
        v4(10, 0, 8),
        v4(172, 16, 12),
        v4(192, 168, 16),
        v4(100, 64, 10),
        v4(127, 0, 8),
        v4(169, 254, 16),
        ("fc00::".parse().expect("an address"), 7),
        ("fe80::".parse().expect("an address"), 10),
        ("::1".parse().expect("an address"), 128),
    ]
}

/// Whether `ip` is in [`private_ranges`]: one the authority may certify.
pub fn is_private(ip: IpAddr) -> bool {
    private_ranges().into_iter().any(|(range, prefix)| {
        let (ip, range) = match (ip, range) {
            (IpAddr::V4(ip), IpAddr::V4(range)) => (
                u128::from(u32::from(ip)) << 96,
                u128::from(u32::from(range)) << 96,
            ),
            (IpAddr::V6(ip), IpAddr::V6(range)) => (u128::from(ip), u128::from(range)),
            _ => return false,
        };
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        ip & mask == range & mask
    })
}

/// Whether the authority may certify the DNS name `name`.
pub fn is_lan_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    LAN_DOMAINS
        .iter()
        .any(|domain| name == *domain || name.ends_with(&format!(".{domain}")))
}

/// The authority: its key, and its certificate as phones install it.
pub struct LocalCa {
    key: KeyPair,
    params: CertificateParams,
    certificate: CertificateDer<'static>,
}

/// A certificate chain and its key, ready for rustls.
pub struct Issued {
    /// The server certificate, then the authority's.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server certificate's key.
    pub key: PrivateKeyDer<'static>,
    /// When the server certificate expires.
    pub expires: OffsetDateTime,
}

impl LocalCa {
    /// The authority kept in `dir` (`ca-key.pem`, readable by this user only, and `ca.pem`),
    /// made there first if there is none.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let key_path = dir.join("ca-key.pem");
        let key = if key_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read {}", key_path.display()))?;
            KeyPair::from_pem(&pem)
                .with_context(|| format!("{} is not a private key", key_path.display()))?
        } else {
            let key = KeyPair::generate()?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            key
        };
        let params = authority_params(&key);
        let cert_path = dir.join("ca.pem");
        let certificate = if cert_path.exists() {
            CertificateDer::from_pem_file(&cert_path)
                .with_context(|| format!("{} is not a certificate", cert_path.display()))?
        } else {
            let certificate = params.self_signed(&key)?;
            std::fs::write(&cert_path, certificate.pem())
                .with_context(|| format!("cannot write {}", cert_path.display()))?;
            certificate.der().clone()
        };
        Ok(Self {
            key,
            params,
            certificate,
        })
    }

    /// The authority's certificate (DER), as a phone installs it.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// A server certificate for `names` and `addresses` of the machine called `machine`, valid
    /// from a little before `now` for [`SERVER_VALIDITY`]. Names and addresses the authority
    /// may not certify are left out.
    pub fn issue(
        &self,
        names: &[String],
        addresses: &[IpAddr],
        machine: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Comfy Relay on {machine}"));
        for name in names.iter().filter(|name| is_lan_name(name)) {
            if let Ok(name) = name.clone().try_into() {
                params.subject_alt_names.push(SanType::DnsName(name));
            }
        }
        for &address in addresses.iter().filter(|&&ip| is_private(ip)) {
            params.subject_alt_names.push(SanType::IpAddress(address));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVER_VALIDITY;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            chain: vec![certificate.der().clone(), self.certificate.clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            expires: params.not_after,
        })
    }
}

/// The authority's name, key use and limits, the same every start for the same key (its name
/// carries the key's identifier), so a lost `ca.pem` is made again as the same authority.
fn authority_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id: String = params.key_identifier(key)[..4]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Comfy Relay local CA {id}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Comfy Relay");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: LAN_DOMAINS
            .iter()
            .map(|domain| GeneralSubtree::DnsName((*domain).to_owned()))
            .chain(private_ranges().into_iter().map(|(ip, prefix)| {
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, prefix))
            }))
            .collect(),
        excluded_subtrees: Vec::new(),
    });
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + CA_VALIDITY;
    params
}

/// Writes `bytes` to a new file at `path` that only this user may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};

    fn verify(ca: &LocalCa, issued: &Issued, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate().clone()).unwrap();
        #[expect(deprecated, reason = "the provider the relay serves with")]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(
                &issued.chain[0],
                &issued.chain[1..],
                &name,
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    use std::sync::Arc;

    #[test]
    fn a_server_certificate_verifies_for_each_lan_name_and_address_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(dir.path()).unwrap();
        let names =
            ["localhost", "gpu-box.local", "gpu-box", "comfy.example.org"].map(String::from);
        let addresses: Vec<IpAddr> = ["127.0.0.1", "192.168.1.20", "100.101.1.2", "::1", "8.8.8.8"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let issued = ca
            .issue(&names, &addresses, "gpu-box", OffsetDateTime::now_utc())
            .unwrap();
        for name in [
            "localhost",
            "gpu-box.local",
            "127.0.0.1",
            "192.168.1.20",
            "100.101.1.2",
            "::1",
        ] {
            verify(&ca, &issued, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Outside what the authority may vouch for: left out of the certificate.
        for name in ["8.8.8.8", "comfy.example.org", "gpu-box", "192.168.1.21"] {
            assert!(verify(&ca, &issued, name).is_err(), "{name}");
        }
    }

    #[test]
    fn the_authority_cannot_vouch_for_a_public_site_even_if_its_key_signs_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(dir.path()).unwrap();
        let mut params = CertificateParams::new(vec!["bank.example.com".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let forged = params
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .unwrap();
        let issued = Issued {
            chain: vec![forged.der().clone(), ca.certificate().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            expires: params.not_after,
        };
        let refused = verify(&ca, &issued, "bank.example.com").unwrap_err();
        assert!(
            format!("{refused:?}").contains("NameConstraint"),
            "{refused:?}"
        );
    }

    #[test]
    fn the_authority_is_made_once_its_key_private_and_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCa::open_or_create(dir.path()).unwrap();
        let again = LocalCa::open_or_create(dir.path()).unwrap();
        assert_eq!(first.certificate(), again.certificate());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A lost ca.pem is made again as the same authority: what phones trust still verifies.
        let issued = again
            .issue(
                &[],
                &["192.168.1.20".parse().unwrap()],
                "m",
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let remade = LocalCa::open_or_create(dir.path()).unwrap();
        verify(
            &first,
            &remade
                .issue(
                    &[],
                    &["192.168.1.20".parse().unwrap()],
                    "m",
                    OffsetDateTime::now_utc(),
                )
                .unwrap(),
            "192.168.1.20",
        )
        .unwrap();
        verify(&remade, &issued, "192.168.1.20").unwrap();
    }

    #[test]
    fn private_ranges_are_told_from_public_ones() {
        let cases = [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.32.0.1", false),
            ("192.168.255.1", true),
            ("100.64.0.1", true),
            ("100.128.0.1", false),
            ("127.0.0.1", true),
            ("8.8.8.8", false),
            ("fd12::1", true),
            ("fe80::1", true),
            ("::1", true),
            ("2001:db8::1", false),
        ];
        for (ip, private) in cases {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
        assert!(is_lan_name("gpu-box.local") && is_lan_name("LOCALHOST"));
        assert!(!is_lan_name("evil-local") && !is_lan_name("example.com"));
    }
}
