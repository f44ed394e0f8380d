//! ID-token checks (OpenID Connect Core 1.0, section 3.1.3.7): an RS256 signature by one of
//! the issuer's JWKS keys, then `iss`, `aud` (and `azp` when there are several audiences),
//! `exp` and `nonce`. Nothing else is accepted: no `alg: none`, no HMAC (a public key used
//! as an HMAC secret is the classic JWT forgery).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_S: i64 = 60;

/// Unpadded base64url (JWTs, JWKS numbers, PKCE challenges).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(s: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|e| format!("{what} is not base64url: {e}"))
}

fn json_part(s: &str, what: &str) -> Result<Value, String> {
    serde_json::from_slice(&b64url_decode(s, what)?).map_err(|e| format!("{what} is not JSON: {e}"))
}

/// What the caller expects of the token.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now_s: i64,
}

/// The token's claims if it passes every check, else why not (for the refusal page).
pub fn verify_id_token(token: &str, jwks: &Value, want: &Expected) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("the ID token is not a signed JWT (three dot-separated parts)".into());
    };
    let head = json_part(header, "the ID token header")?;
    if head["alg"] != "RS256" {
        return Err(format!("the ID token is signed with {}, only RS256 is accepted", head["alg"]));
    }
    let sig = b64url_decode(signature, "the ID token signature")?;
    let hashed = Sha256::digest(format!("{header}.{payload}").as_bytes());
    let keys = jwks["keys"].as_array().ok_or("the issuer's JWKS has no `keys`")?;
    let verified = keys
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .filter(|k| k["use"].is_null() || k["use"] == "sig")
        .filter(|k| k["alg"].is_null() || k["alg"] == "RS256")
        .filter(|k| head["kid"].is_null() || k["kid"].is_null() || k["kid"] == head["kid"])
        .filter_map(|k| rsa_key(k).ok())
        .any(|key| key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, &sig).is_ok());
    if !verified {
        return Err("the ID token's signature does not verify against the issuer's keys".into());
    }
    let claims = json_part(payload, "the ID token payload")?;
    if claims["iss"] != want.issuer {
        return Err(format!("the ID token comes from {}, not {}", claims["iss"], want.issuer));
    }
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == want.audience,
        Value::Array(list) => {
            list.iter().any(|a| a == want.audience) && (list.len() == 1 || claims["azp"] == want.audience)
        }
        _ => false,
    };
    if !audience_ok {
        return Err(format!("the ID token is meant for {}, not this server ({})", claims["aud"], want.audience));
    }
    // A number of seconds; some issuers write it with a fraction.
    match claims["exp"].as_f64().map(|exp| exp as i64) {
        Some(exp) if exp + LEEWAY_S > want.now_s => {}
        Some(_) => return Err("the ID token has expired: sign in again".into()),
        None => return Err("the ID token has no `exp`".into()),
    }
    if claims["nonce"] != want.nonce {
        return Err("the ID token's nonce does not match this sign-in (a replayed token?)".into());
    }
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return Err("the ID token has no subject (`sub`)".into());
    }
    Ok(claims)
}

/// A JWK's RSA public key; at least 2048 bits.
fn rsa_key(jwk: &Value) -> Result<RsaPublicKey, String> {
    let n = b64url_decode(jwk["n"].as_str().ok_or("no n")?, "n")?;
    let e = b64url_decode(jwk["e"].as_str().ok_or("no e")?, "e")?;
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).map_err(|e| e.to_string())?;
    if rsa::traits::PublicKeyParts::n(&key).bits() < 2048 {
        return Err("RSA keys under 2048 bits are refused".into());
    }
    Ok(key)
}
