//! The relay's application server key (VAPID, RFC 8292): made once and kept in the data
//! directory, so browsers' subscriptions outlive restarts. Each push request carries a claim
//! signed with it, which the push service checks against the key the browser subscribed with.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

/// The key's file (PKCS#8 DER) in the data directory's `push/`.
const KEY_FILE: &str = "vapid-key.pk8";
/// How long a signed claim holds; push services refuse more than 24 hours.
const CLAIM_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The relay's signing key and the contact it names to push services.
pub struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    contact: String,
}

impl Vapid {
    /// Reads the key from `dir`, or makes one there (readable by the relay's user only).
    pub fn load_or_create(dir: &Path, contact: String) -> anyhow::Result<Self> {
        let path = dir.join(KEY_FILE);
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(&path) {
            Ok(pkcs8) => pkcs8,
            Err(error) if error.kind() == io::ErrorKind::NotFound => create(&path, &rng)?,
            Err(error) => {
                return Err(anyhow::anyhow!("cannot read {}: {error}", path.display()));
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a P-256 key ({e}): move it away and the relay makes a new one \
                     (browsers then subscribe again)",
                    path.display()
                )
            })?;
        Ok(Self { key, rng, contact })
    }

    /// The contact the claims name (`--push-contact`).
    pub fn contact(&self) -> &str {
        &self.contact
    }

    /// The public key, base64url: what browsers subscribe with.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    /// The `Authorization` header for a push service at `audience` (its origin).
    pub fn authorization(&self, audience: &str) -> String {
        let expires = (SystemTime::now() + CLAIM_LIFETIME)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({ "aud": audience, "exp": expires, "sub": self.contact });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .expect("signing with a valid P-256 key does not fail");
        format!(
            "vapid t={signed}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.public_key()
        )
    }
}

/// Makes a key at `path`, mode 600.
fn create(path: &Path, rng: &SystemRandom) -> anyhow::Result<Vec<u8>> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| anyhow::anyhow!("no random bytes for the push key"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::auth::token::write_private(path, pkcs8.as_ref())?;
    tracing::info!(path = %path.display(), "made the relay's push key");
    Ok(pkcs8.as_ref().to_vec())
}
