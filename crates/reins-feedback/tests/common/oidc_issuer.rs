//! A mock OpenID Connect issuer for tests (an axum server on loopback): discovery, JWKS, an
//! authorize endpoint that redirects back with a code, and a token endpoint that checks the
//! client secret, the redirect URI and the PKCE verifier against the challenge, and signs ID
//! tokens with a test RSA key made here (test-only keys, never used elsewhere).
#![allow(dead_code)]
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reins_feedback::oidc::jwt::b64url;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const CLIENT_ID: &str = "reins-test-client";
pub const SECRET: &str = "test-client-secret";

/// Test-only RSA keys (made once per test binary): the issuer's, and a stranger's.
pub fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        (RsaPrivateKey::new(&mut rng, 2048).unwrap(), RsaPrivateKey::new(&mut rng, 2048).unwrap())
    })
}

/// How the mock's next ID token deviates from a good one.
#[derive(Clone, Default)]
pub struct Tweak {
    pub nonce: Option<String>,
    pub audience: Option<String>,
    pub expired: bool,
    pub stranger_key: bool,
}

struct Grant {
    challenge: String,
    nonce: String,
    redirect_uri: String,
}

#[derive(Clone)]
pub struct Mock {
    pub issuer: String,
    /// The identity the authorize endpoint signs in: (sub, email).
    pub who: Arc<Mutex<(String, String)>>,
    pub tweak: Arc<Mutex<Tweak>>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
    /// Token requests whose PKCE verifier matched the challenge.
    pub pkce_ok: Arc<Mutex<u32>>,
}

async fn discovery(State(m): State<Mock>) -> Json<Value> {
    Json(json!({"issuer": m.issuer, "authorization_endpoint": format!("{}/authorize", m.issuer),
                "token_endpoint": format!("{}/token", m.issuer), "jwks_uri": format!("{}/jwks", m.issuer)}))
}

async fn jwks() -> Json<Value> {
    let key = keys().0.to_public_key();
    Json(json!({"keys": [{"kty": "RSA", "kid": "test-key", "use": "sig", "alg": "RS256",
                          "n": b64url(&key.n().to_bytes_be()), "e": b64url(&key.e().to_bytes_be())}]}))
}

async fn authorize(State(m): State<Mock>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", m.codes.lock().unwrap().len());
    let grant = Grant {
        challenge: q["code_challenge"].clone(),
        nonce: q["nonce"].clone(),
        redirect_uri: q["redirect_uri"].clone(),
    };
    m.codes.lock().unwrap().insert(code.clone(), grant);
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

async fn token(State(m): State<Mock>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let refuse = |e: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{CLIENT_ID}:{SECRET}"));
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
        return refuse("invalid_client");
    }
    let Some(grant) = f.get("code").and_then(|c| m.codes.lock().unwrap().remove(c)) else {
        return refuse("invalid_grant");
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if b64url(&Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return refuse("invalid_grant");
    }
    *m.pkce_ok.lock().unwrap() += 1;
    if f.get("redirect_uri") != Some(&grant.redirect_uri)
        || f.get("grant_type").map(String::as_str) != Some("authorization_code")
    {
        return refuse("invalid_grant");
    }
    let t = m.tweak.lock().unwrap().clone();
    let (sub, email) = m.who.lock().unwrap().clone();
    let now = reins_feedback::db::now_ms() / 1000;
    let claims = json!({"iss": m.issuer, "sub": sub, "aud": t.audience.unwrap_or(CLIENT_ID.into()),
        "exp": if t.expired { now - 3600 } else { now + 300 }, "iat": now - 1,
        "nonce": t.nonce.unwrap_or(grant.nonce), "email": email, "email_verified": true});
    let input = format!(
        "{}.{}",
        b64url(json!({"alg": "RS256", "kid": "test-key", "typ": "JWT"}).to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = if t.stranger_key { &keys().1 } else { &keys().0 };
    let sig = key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes())).unwrap();
    Json(json!({"access_token": "unused", "token_type": "Bearer", "id_token": format!("{input}.{}", b64url(&sig))}))
        .into_response()
}

/// Serves the mock on a free loopback port, named `http://{host}:{port}` (`127.0.0.1`, or
/// `localhost` to be another site than a server on 127.0.0.1); returns it and its router.
pub async fn start_mock(host: &str) -> (Mock, Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = Mock {
        issuer: format!("http://{host}:{}", listener.local_addr().unwrap().port()),
        who: Arc::new(Mutex::new(("sub-ann".into(), "ann@example.org".into()))),
        tweak: Arc::default(),
        codes: Arc::default(),
        pkce_ok: Arc::default(),
    };
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(m.clone());
    let served = router.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    (m, router)
}
