//! Connection and subscription tokens: JWTs the backend signs (HS256, RS256 or ES256).

use super::Claims;
use crate::error::TokenError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// Seconds of clock difference allowed between the backend that signs and the node that checks.
pub const LEEWAY_SECS: u64 = 60;

impl Claims {
    /// Signs the claims with HS256: what a Rust backend (or a test) hands to a browser.
    pub fn sign_hs256(&self, secret: &[u8]) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::default(), self, &EncodingKey::from_secret(secret))
            .map_err(|e| TokenError::Key(e.to_string()))
    }
}

/// The key tokens are checked with.
#[derive(Clone)]
pub struct TokenKey {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:?})", self.validation.algorithms)
    }
}

impl TokenKey {
    /// HS256 with a secret shared with the backend.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::new(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS256)
    }

    /// RS256 with the backend's RSA public key (PEM).
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    /// ES256 with the backend's P-256 public key (PEM).
    pub fn es256_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self::new(key, Algorithm::ES256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// Checks a token's signature, algorithm and expiry, and returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("token invalid: bad signature"),
                ErrorKind::InvalidAlgorithm
                | ErrorKind::MissingAlgorithm
                | ErrorKind::UnsupportedAlgorithm
                | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Invalid("token invalid: wrong algorithm")
                }
                ErrorKind::MissingRequiredClaim(_) => TokenError::Invalid("token invalid: no exp"),
                ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
                    TokenError::Invalid("token invalid: claims of the wrong type")
                }
                _ => TokenError::Invalid("token invalid: malformed"),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &[u8] = b"test secret";

    #[test]
    fn a_signed_token_round_trips() {
        let claims = Claims::new(Duration::from_secs(60))
            .user("fred")
            .session("s1")
            .channels(["private:a"]);
        let token = claims.sign_hs256(SECRET).unwrap();
        assert_eq!(TokenKey::hs256(SECRET).verify(&token), Ok(claims));
    }

    #[test]
    fn expired_forged_and_malformed_tokens_are_told_apart() {
        let key = TokenKey::hs256(SECRET);
        let old = Claims {
            exp: 1_000_000,
            ..Claims::default()
        };
        assert_eq!(
            key.verify(&old.sign_hs256(SECRET).unwrap()),
            Err(TokenError::Expired)
        );
        let forged = Claims::new(Duration::from_secs(60))
            .sign_hs256(b"another secret")
            .unwrap();
        assert_eq!(
            key.verify(&forged),
            Err(TokenError::Invalid("token invalid: bad signature"))
        );
        assert_eq!(
            key.verify("not.a.token"),
            Err(TokenError::Invalid("token invalid: malformed"))
        );
    }

    #[test]
    fn a_token_without_exp_or_with_bad_claims_is_refused() {
        let key = EncodingKey::from_secret(SECRET);
        let no_exp =
            jsonwebtoken::encode(&Header::default(), &serde_json::json!({"sub": "x"}), &key);
        assert_eq!(
            TokenKey::hs256(SECRET).verify(&no_exp.unwrap()),
            Err(TokenError::Invalid("token invalid: no exp"))
        );
        let claims = serde_json::json!({"exp": u64::MAX / 2, "channels": "not a list"});
        let bad = jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
        assert_eq!(
            TokenKey::hs256(SECRET).verify(&bad),
            Err(TokenError::Invalid(
                "token invalid: claims of the wrong type"
            ))
        );
    }

    /// Signs claims with a test private key (tests/keys).
    fn sign_with(algorithm: Algorithm, key: EncodingKey, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, &key).unwrap()
    }

    #[test]
    fn rs256_and_es256_tokens_are_checked_with_public_keys() {
        let claims = Claims::new(Duration::from_secs(60)).user("fred");
        let rsa = EncodingKey::from_rsa_pem(include_bytes!("../../tests/keys/rs256-private.pem"));
        let token = sign_with(Algorithm::RS256, rsa.unwrap(), &claims);
        let key = TokenKey::rs256_pem(include_bytes!("../../tests/keys/rs256-public.pem")).unwrap();
        assert_eq!(key.verify(&token), Ok(claims.clone()));
        let ec = EncodingKey::from_ec_pem(include_bytes!("../../tests/keys/es256-private.pem"));
        let token = sign_with(Algorithm::ES256, ec.unwrap(), &claims);
        let key = TokenKey::es256_pem(include_bytes!("../../tests/keys/es256-public.pem")).unwrap();
        assert_eq!(key.verify(&token), Ok(claims.clone()));
        assert_eq!(
            key.verify(&claims.sign_hs256(SECRET).unwrap()),
            Err(TokenError::Invalid("token invalid: wrong algorithm")),
            "an HS256 token signed with the public key as secret must not pass"
        );
        let pem = b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n";
        assert!(matches!(TokenKey::rs256_pem(pem), Err(TokenError::Key(_))));
    }
}
