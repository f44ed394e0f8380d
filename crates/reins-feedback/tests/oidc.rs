//! OpenID Connect sign-in against an in-process mock issuer (`common/oidc_issuer.rs`, an
//! axum server on loopback): discovery, JWKS, an authorize endpoint that redirects back with
//! a code, and a token endpoint that checks the PKCE verifier against the challenge and
//! signs ID tokens with a test RSA key generated in the test. The test plays the browser.
mod common;
#[path = "common/oidc_issuer.rs"]
mod oidc_issuer;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use common::*;
use oidc_issuer::*;
use reins_feedback::oidc::OidcConfig;
use reins_feedback::{Db, ServerConfig};
use tower::ServiceExt;

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

async fn get_with(router: &Router, uri: &str, cookie: Option<&str>) -> Res {
    let mut b = Request::builder().uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let res = router.clone().oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    // Pages escape `/` in attributes; a browser reads it back as `/`.
    Res { status, headers, text: String::from_utf8_lossy(&bytes).replace("&#x2f;", "/") }
}

fn location(r: &Res) -> String {
    r.headers.get(header::LOCATION).unwrap().to_str().unwrap().to_string()
}

fn set_cookie(r: &Res, name: &str) -> Option<String> {
    r.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or_default().to_string())
    })
}

struct Setup {
    reins: Router,
    db: Db,
    mock: Mock,
    issuer: Router,
    _dir: TestDb,
}

async fn setup() -> Setup {
    setup_on(sqlite_db()).await
}

async fn setup_on(db: TestDb) -> Setup {
    let (mock, issuer) = start_mock("127.0.0.1").await;
    let oidc = OidcConfig::from_options(
        Some(mock.issuer.clone()),
        Some(CLIENT_ID.into()),
        Some(SECRET.into()),
        Some("Test IdP".into()),
        vec!["example.org".into()],
    )
    .unwrap();
    let st = state(&db.url, ServerConfig { base_url: "http://reins.test".into(), oidc, ..Default::default() }).await;
    Setup { db: st.db.clone(), reins: reins_feedback::app(st), mock, issuer, _dir: db }
}

/// Until the issuer sends the browser back: `(callback path and query, state cookie)`.
async fn to_issuer_and_back(s: &Setup, next: &str) -> (String, String) {
    to_issuer_and_back_from(s, &format!("/oidc/login?next={next}")).await
}

async fn to_issuer_and_back_from(s: &Setup, login: &str) -> (String, String) {
    let r = get_with(&s.reins, login, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = set_cookie(&r, "reins_oidc").expect("state cookie");
    let to = location(&r);
    let path = to.strip_prefix(&s.mock.issuer).expect("redirected to the issuer");
    let r = get_with(&s.issuer, path, None).await;
    let back = location(&r);
    let callback = back.strip_prefix("http://reins.test").expect("back to the redirect URI").to_string();
    assert!(callback.starts_with("/oidc/callback?code="), "{callback}");
    (callback, format!("reins_oidc={cookie}"))
}

async fn sign_in(s: &Setup, next: &str) -> Res {
    let (callback, cookie) = to_issuer_and_back(s, next).await;
    get_with(&s.reins, &callback, Some(&cookie)).await
}

fn error_of(r: &Res) -> String {
    r.text.clone()
}

#[tokio::test]
async fn a_full_login_creates_the_account_and_lands_on_the_deep_link() {
    full_login(setup().await).await;
}

#[tokio::test]
async fn a_full_login_on_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    full_login(setup_on(db).await).await;
}

async fn full_login(s: Setup) {
    let r = sign_in(&s, "/account").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("url=/account") && r.text.contains("href=\"/account\""), "{}", r.text);
    let session = set_cookie(&r, "reins_session").expect("a session");
    assert_eq!(set_cookie(&r, "reins_oidc").as_deref(), Some(""), "the state cookie is cleared");
    let page = get_with(&s.reins, "/account", Some(&format!("reins_session={session}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("ann@example.org"), "signed in as the new account");
    assert_eq!(*s.mock.pkce_ok.lock().unwrap(), 1, "the token endpoint checked the PKCE verifier");

    // The second time, the linked account signs in; a project deep link works for a member.
    let p = reins_feedback::create_project(&s.db, "deep", &pairwise_config(1)).await.unwrap();
    let ann = s.db.user_by_name("ann@example.org").await.unwrap().unwrap();
    s.db.add_member(&p.id, &ann.id).await.unwrap();
    let r = sign_in(&s, &format!("/p/{}", p.id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let session = set_cookie(&r, "reins_session").unwrap();
    let deep = format!("/p/{}", p.id);
    assert!(r.text.contains(&format!("url={deep}")), "{}", r.text);
    let page = get_with(&s.reins, &deep, Some(&format!("reins_session={session}"))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&s.db.pool).await.unwrap();
    assert_eq!(n, 2, "admin and one linked account, not a second one");
}

#[tokio::test]
async fn missing_or_wrong_state_is_refused() {
    let s = setup().await;
    let (callback, cookie) = to_issuer_and_back(&s, "/").await;
    let without_state = callback.split("&state=").next().unwrap().to_string();
    let r = get_with(&s.reins, &without_state, Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).contains("no `state`"), "{}", r.text);
    let r = get_with(&s.reins, &callback, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no state cookie: another browser");
    assert!(error_of(&r).contains("not started in this browser"), "{}", r.text);
    let forged = format!("{without_state}&state=forged");
    let r = get_with(&s.reins, &forged, Some("reins_oidc=forged")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a state the server never gave out");
    assert!(error_of(&r).contains("unknown, used or expired"), "{}", r.text);
    assert!(set_cookie(&r, "reins_session").is_none());
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let s = setup().await;
    let (callback, cookie) = to_issuer_and_back(&s, "/").await;
    assert_eq!(get_with(&s.reins, &callback, Some(&cookie)).await.status, StatusCode::OK);
    let r = get_with(&s.reins, &callback, Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).contains("unknown, used or expired"), "{}", r.text);
}

async fn refused_with(tweak: Tweak, says: &str) {
    let s = setup().await;
    *s.mock.tweak.lock().unwrap() = tweak;
    let r = sign_in(&s, "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(error_of(&r).contains(says), "expected `{says}` in {}", r.text);
    assert!(set_cookie(&r, "reins_session").is_none());
}

#[tokio::test]
async fn a_nonce_mismatch_is_refused() {
    refused_with(Tweak { nonce: Some("another-nonce".into()), ..Default::default() }, "nonce does not match").await;
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    refused_with(Tweak { stranger_key: true, ..Default::default() }, "signature does not verify").await;
}

#[tokio::test]
async fn a_wrong_audience_or_an_expired_token_is_refused() {
    refused_with(Tweak { audience: Some("someone-else".into()), ..Default::default() }, "is meant for").await;
    refused_with(Tweak { expired: true, ..Default::default() }, "has expired").await;
}

#[tokio::test]
async fn the_issuer_refuses_a_wrong_pkce_verifier() {
    let s = setup().await;
    let (callback, cookie) = to_issuer_and_back(&s, "/").await;
    sqlx::query("UPDATE oidc_logins SET verifier = 'not-the-verifier'").execute(&s.db.pool).await.unwrap();
    let r = get_with(&s.reins, &callback, Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(error_of(&r).contains("refused the sign-in code"), "{}", r.text);
    assert_eq!(*s.mock.pkce_ok.lock().unwrap(), 0);
}

#[tokio::test]
async fn disabled_users_and_strangers_are_refused() {
    let s = setup().await;
    assert_eq!(sign_in(&s, "/").await.status, StatusCode::OK);
    let ann = s.db.user_by_name("ann@example.org").await.unwrap().unwrap();
    s.db.set_disabled(&ann.id, true).await.unwrap();
    let r = sign_in(&s, "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(error_of(&r).contains("disabled: ask an admin"), "{}", r.text);

    *s.mock.who.lock().unwrap() = ("sub-eve".into(), "eve@elsewhere.net".into());
    let r = sign_in(&s, "/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(error_of(&r).contains("ask an admin for an invite"), "{}", r.text);
    assert!(s.db.user_by_name("eve@elsewhere.net").await.unwrap().is_none());
}

#[tokio::test]
async fn oidc_off_means_no_routes_and_no_button() {
    let db = sqlite_db();
    let off = reins_feedback::app(state(&db.url, ServerConfig::default()).await);
    for path in ["/oidc/login", "/oidc/callback?code=x&state=y"] {
        assert_eq!(get_with(&off, path, None).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let login = get_with(&off, "/login", None).await;
    assert!(!login.text.contains("Sign in with"), "{}", login.text);

    let on = setup().await;
    let login = get_with(&on.reins, "/login?next=/p/x", None).await;
    assert!(login.text.contains("Sign in with Test IdP"), "{}", login.text);
    assert!(login.text.contains("href=\"/oidc/login?next=%2Fp%2Fx\""), "{}", login.text);
}

#[test]
fn the_client_secret_is_required_and_never_shown() {
    let c = OidcConfig::from_options(
        Some("https://id.example.org".into()),
        Some("c".into()),
        Some("hunter2-secret".into()),
        None,
        vec!["@Example.org".into()],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.name, "id.example.org");
    assert_eq!(c.allowed_domains, ["example.org"]);
    let shown = format!("{c:?} {:?}", ServerConfig { oidc: Some(c.clone()), ..Default::default() });
    assert!(!shown.contains("hunter2"), "{shown}");
    let e = OidcConfig::from_options(Some("https://id.example.org".into()), Some("c".into()), None, None, vec![]);
    assert!(e.unwrap_err().to_string().contains("REINS_OIDC_CLIENT_SECRET"));
    assert!(OidcConfig::from_options(None, None, None, None, vec![]).unwrap().is_none());
}

/// Someone outside the allowed domains gets in with an invite: the invite page offers the
/// issuer's button, the account gets the invite's role and project, and the invite is used.
#[tokio::test]
async fn an_invite_lets_a_first_time_identity_in() {
    let s = setup().await;
    let p = reins_feedback::create_project(&s.db, "invited", &pairwise_config(1)).await.unwrap();
    let token = s.db.create_invite(reins_feedback::Role::Annotator, Some(&p.id), None, 3_600_000).await.unwrap();
    let page = get_with(&s.reins, &format!("/invite/{token}"), None).await;
    assert!(page.text.contains(&format!("href=\"/oidc/login?invite={token}\"")), "{}", page.text);
    assert!(page.text.contains("Sign in with Test IdP instead"), "{}", page.text);

    *s.mock.who.lock().unwrap() = ("sub-eve".into(), "eve@elsewhere.net".into());
    let (callback, cookie) = to_issuer_and_back_from(&s, &format!("/oidc/login?invite={token}")).await;
    let r = get_with(&s.reins, &callback, Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let eve = s.db.user_by_name("eve@elsewhere.net").await.unwrap().expect("an account from the invite");
    assert!(s.db.is_member(&p.id, &eve.id).await.unwrap());
    assert!(!s.db.invite_valid(&token).await.unwrap(), "the invite is used");

    *s.mock.who.lock().unwrap() = ("sub-mallory".into(), "mallory@elsewhere.net".into());
    let r = get_with(&s.reins, &format!("/oidc/login?invite={token}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.text.contains("unknown, used or expired"), "{}", r.text);
}
