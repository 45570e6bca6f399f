//! A push message's body, encrypted for one browser as RFC 8291 says (`aes128gcm`, RFC 8188):
//! only the browser holding the subscription's private key can read it; the push service that
//! carries it cannot.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// The record size written in the header: the whole message is one record.
const RECORD_SIZE: u32 = 4096;
/// The largest plain text that fits in one record (less the delimiter and the GCM tag).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 1 - 16;
/// The length of an uncompressed P-256 point.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The length of a subscription's authentication secret.
pub const AUTH_SECRET_LEN: usize = 16;

/// Why a message could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// The browser's key is not a P-256 point.
    #[error("the subscription's key is not a P-256 public key")]
    BadKey,
    /// More than one record holds.
    #[error("the message is {0} bytes, more than one push record holds ({MAX_PLAINTEXT})")]
    TooLong(usize),
    /// The system's random source failed.
    #[error("no random bytes")]
    Random,
}

/// An output length for HKDF-Expand.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand of `prk` with `info` into `N` bytes.
fn expand<const N: usize>(prk: &ring::hkdf::Prk, info: &[&[u8]]) -> [u8; N] {
    let mut out = [0; N];
    prk.expand(info, Len(N))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 expands to at most 255 blocks");
    out
}

/// Encrypts `plaintext` for the browser whose public key is `ua_public` (65 bytes) and whose
/// authentication secret is `auth_secret` (16 bytes): the body of a push request.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8; PUBLIC_KEY_LEN],
    auth_secret: &[u8; AUTH_SECRET_LEN],
) -> Result<Vec<u8>, EncryptError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EncryptError::TooLong(plaintext.len()));
    }
    let rng = SystemRandom::new();
    let private =
        EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| EncryptError::Random)?;
    let public = private
        .compute_public_key()
        .map_err(|_| EncryptError::Random)?;
    let mut salt = [0; 16];
    rng.fill(&mut salt).map_err(|_| EncryptError::Random)?;

    let peer = UnparsedPublicKey::new(&ECDH_P256, ua_public);
    let ikm: [u8; 32] = agree_ephemeral(private, &peer, |ecdh_secret| {
        // RFC 8291 section 3.3: the input keying material, bound to both public keys.
        let prk = Salt::new(HKDF_SHA256, auth_secret).extract(ecdh_secret);
        expand(&prk, &[b"WebPush: info\0", ua_public, public.as_ref()])
    })
    .map_err(|_| EncryptError::BadKey)?;
    // RFC 8188 section 2.2 and 2.3: the content key and nonce from the message's salt.
    let prk = Salt::new(HKDF_SHA256, &salt).extract(&ikm);
    let key: [u8; 16] = expand(&prk, &[b"Content-Encoding: aes128gcm\0"]);
    let nonce: [u8; 12] = expand(&prk, &[b"Content-Encoding: nonce\0"]);

    let mut body = Vec::with_capacity(16 + 4 + 1 + PUBLIC_KEY_LEN + plaintext.len() + 1 + 16);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(public.as_ref());
    let header = body.len();
    let mut record = Vec::with_capacity(plaintext.len() + 1 + 16);
    record.extend_from_slice(plaintext);
    // The delimiter of the last (here the only) record.
    record.push(2);
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("16 bytes make an AES-128 key"))
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut record,
        )
        .expect("a record within the size limit seals");
    body.truncate(header);
    body.extend_from_slice(&record);
    Ok(body)
}
