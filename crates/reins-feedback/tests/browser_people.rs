//! The people page in a real browser (headless Chromium): an admin disables a user, removes
//! a member and adds a user to a second project, and sees each change on the page; the
//! disabled user's login form says to ask an admin. Screenshots at 1280 and 390 px (nothing
//! may overflow on a phone). Also an OpenID Connect sign-in through the login page's button
//! against the mock issuer on another site, landing on the deep link, and a newcomer joining
//! through an invite page's button; a reset link and a password change. Skipped when Chromium
//! or chromedriver is missing.
mod common;
#[path = "common/oidc_issuer.rs"]
mod oidc_issuer;
use common::browser::*;
use common::*;
use reins_feedback::{Role, ServerConfig};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_admin_manages_people() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let alpha = reins_feedback::create_project(&st.db, "alpha", &pairwise_config(1)).await.unwrap();
    let beta = reins_feedback::create_project(&st.db, "beta", &pairwise_config(1)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &alpha.id, &items_jsonl(3)).await.unwrap();
    for name in ["ann", "bob", "carol.long-name@example.org"] {
        let u = reins_feedback::create_user(&st.db, name, "annotator-pw", Role::Annotator).await.unwrap();
        st.db.add_member(&alpha.id, &u.id).await.unwrap();
    }
    let dbh = st.db.clone();
    let server = spawn_server(st).await;
    // bob holds a claim that the removal must release.
    label_via_api(&server, &alpha.id, "bob", 1, json!({"preference": {"choice": "a"}}), 1000).await;
    let login = json!({"username": "bob", "password": "annotator-pw"}).to_string();
    let (_, text) = http(&server, "POST", "/api/login", &[], &login).await.unwrap();
    let token = serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let (status, _) = http(
        &server,
        "GET",
        &format!("/api/projects/{}/next", alpha.id),
        &[("Authorization", format!("Bearer {token}"))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "bob opens a second task");

    // Clicks a form button and returns the notice of the page that answers (not the old one).
    let act = |css: String| async move {
        d.js("document.body.dataset.stale = '1'").await;
        d.click(&css).await;
        let fresh = "if (document.body.dataset.stale) return null; \
                     const n = document.getElementById('notice'); return n && n.textContent";
        d.wait_for(fresh, &format!("the page after clicking {css}")).await
    };
    let run = async {
        d.viewport(1280, false).await;
        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.click("#people-link").await;
        d.wait_for("return location.pathname === '/people'", "the people page").await;

        let said = act("button[aria-label='Disable ann']".into()).await;
        assert_eq!(said, "Disabled ann: their sessions ended; their labels stay.");
        let row = "const r = document.querySelector('#users tr[data-user=\"ann\"]'); \
                   return r && [r.querySelector('.status').textContent, r.querySelector('button').textContent]";
        assert_eq!(d.js(row).await, json!(["disabled", "Enable"]));

        let said =
            act(format!("section[data-project='{}'] button[aria-label='Remove bob from alpha']", alpha.id)).await;
        assert_eq!(said, "Removed bob from alpha: 1 unfinished task(s) went back to the pool; their labels stay.");
        let members = format!(
            "return [...document.querySelectorAll(\"section[data-project='{}'] tr[data-member]\")].map(r => r.dataset.member)",
            alpha.id
        );
        assert_eq!(d.js(&members).await, json!(["ann", "carol.long-name@example.org"]));

        let beta_section = format!("section[data-project='{}']", beta.id);
        d.js_with("document.querySelector(arguments[0] + ' select').value = 'ann'", json!([beta_section])).await;
        let said = act(format!("{beta_section} button.add")).await;
        assert_eq!(said, "Added ann to beta.");
        let beta_members = format!(
            "return [...document.querySelectorAll(\"{beta_section} tr[data-member]\")].map(r => r.dataset.member)"
        );
        assert_eq!(d.js(&beta_members).await, json!(["ann"]));
        let projects_of = "return document.querySelector('#users tr[data-user=\"ann\"] .projects-of').textContent";
        assert_eq!(d.js(projects_of).await, json!("alpha, beta"));
        d.screenshot("people-1280").await;
        // Dark mode: the notice keeps light text on a dark background.
        d.viewport(1280, true).await;
        let colours =
            "const s = getComputedStyle(document.getElementById('notice')); return [s.backgroundColor, s.color]";
        assert_eq!(d.js(colours).await, json!(["rgb(58, 51, 32)", "rgb(243, 230, 179)"]));

        d.viewport(390, false).await;
        d.goto(&format!("http://{server}/people")).await;
        d.wait_for("return document.getElementById('users') !== null", "the people page").await;
        let over = d.overflowing().await;
        assert_eq!(over, json!([]), "nothing overflows at 390 px");
        d.screenshot("people-390").await;

        // What ann sees now.
        d.cmd("DELETE", "/cookie", json!({})).await;
        d.goto(&format!("http://{server}/login")).await;
        d.type_into("#username", "ann").await;
        d.type_into("#password", "annotator-pw").await;
        d.click("#login").await;
        let error =
            d.wait_for("const e = document.querySelector('.error'); return e && e.textContent", "the refusal").await;
        assert_eq!(error, "the account `ann` is disabled: ask an admin to enable it again");
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("browser session finished in time");
    drop(b);

    let ann = dbh.user_by_name("ann").await.unwrap().unwrap();
    assert!(dbh.is_disabled(&ann.id).await.unwrap());
    assert!(dbh.is_member(&beta.id, &ann.id).await.unwrap());
    let bob = dbh.user_by_name("bob").await.unwrap().unwrap();
    assert!(!dbh.is_member(&alpha.id, &bob.id).await.unwrap());
    let e = reins_feedback::export_project(&dbh, &alpha.id, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 1, "bob's label stays");
}

/// The issuer runs on `localhost`, the server on 127.0.0.1: another site, as in real use, so
/// the redirect back is cross-site and the SameSite=Strict session cookie must still work
/// on the page the sign-in started from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_openid_and_lands_on_the_deep_link() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let (mock, _) = oidc_issuer::start_mock("localhost").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap().to_string();
    let oidc = reins_feedback::oidc::OidcConfig::from_options(
        Some(mock.issuer.clone()),
        Some(oidc_issuer::CLIENT_ID.into()),
        Some(oidc_issuer::SECRET.into()),
        Some("Test IdP".into()),
        vec![],
    )
    .unwrap();
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig { base_url: format!("http://{server}"), oidc, ..Default::default() }).await;
    let p = reins_feedback::create_project(&st.db, "deep", &pairwise_config(1)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &items_jsonl(2)).await.unwrap();
    let ann = reins_feedback::create_user(&st.db, "ann@example.org", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.link_oidc(&mock.issuer, "sub-ann", &ann.id, Some("ann@example.org")).await.unwrap();
    st.db.add_member(&p.id, &ann.id).await.unwrap();
    let invite = st.db.create_invite(Role::Annotator, Some(&p.id), None, 3_600_000).await.unwrap();
    tokio::spawn(reins_feedback::app::serve(st, listener, std::future::pending()));

    let run = async {
        d.viewport(390, false).await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        let button = d
            .wait_for(
                "const e = document.getElementById('oidc-login'); return e && e.textContent",
                "the sign-in button",
            )
            .await;
        assert_eq!(button, "Sign in with Test IdP");
        assert_eq!(d.overflowing().await, json!([]), "nothing overflows at 390 px");
        d.screenshot("oidc-login-390").await;
        d.click("#oidc-login").await;
        let landed = format!(
            "return location.host === '{server}' && location.pathname === '/p/{}' && document.getElementById('task') !== null",
            p.id
        );
        d.wait_for(&landed, "the label page of the deep link, signed in").await;
        let who = d.js("const e = document.querySelector('header .who'); return e && e.textContent").await;
        assert_eq!(who, "ann@example.org (annotator)");

        // A newcomer from another domain joins with an invite through the same button.
        *mock.who.lock().unwrap() = ("sub-eve".into(), "eve@elsewhere.net".into());
        d.cmd("DELETE", "/cookie", json!({})).await;
        d.goto(&format!("http://{server}/invite/{invite}")).await;
        let button = d
            .wait_for("const e = document.getElementById('oidc-login'); return e && e.textContent", "the invite button")
            .await;
        assert_eq!(button, "Sign in with Test IdP instead");
        d.click("#oidc-login").await;
        let home = "const l = document.querySelector('.projects'); \
                    return location.pathname === '/' && l && l.textContent.trim()";
        assert_eq!(d.wait_for(home, "the home page of the new account").await, "deep");
        let who = d.js("return document.querySelector('header .who').textContent").await;
        assert_eq!(who, "eve@elsewhere.net (annotator)");
    };
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    assert_eq!(*mock.pkce_ok.lock().unwrap(), 2);
}

/// An admin hands out a reset link; the user opens it signed out, is told a short password
/// is refused, sets one, logs in with it, and changes it again at /account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_resets_and_changes_a_password() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    let dbh = st.db.clone();
    let server = spawn_server(st).await;
    let run = async {
        d.viewport(1280, false).await;
        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.goto(&format!("http://{server}/people")).await;
        d.click("button[aria-label='Password reset link for ann']").await;
        let url =
            d.wait_for("const e = document.getElementById('reset-url'); return e && e.textContent", "the link").await;
        let path = url.as_str().unwrap().split("/reset/").nth(1).map(|t| format!("/reset/{t}")).unwrap();

        d.cmd("DELETE", "/cookie", json!({})).await;
        d.goto(&format!("http://{server}{path}")).await;
        let title = d.wait_for("const h = document.querySelector('h1'); return h && h.textContent", "the form").await;
        assert_eq!(title, "Choose a new password for ann");
        d.type_into("#password", "short").await;
        d.click("#set-password").await;
        let error =
            d.wait_for("const e = document.querySelector('.error'); return e && e.textContent", "the refusal").await;
        assert_eq!(error, "passwords need 8 to 1024 bytes");
        d.type_into("#password", "brand-new-pw").await;
        d.click("#set-password").await;
        d.wait_for("const h = document.querySelector('h1'); return h && h.textContent === 'Password set'", "done")
            .await;

        d.login(&server, "ann", "brand-new-pw").await;
        d.goto(&format!("http://{server}/account")).await;
        d.type_into("#old-password", "brand-new-pw").await;
        d.type_into("#new-password", "newer-still-pw").await;
        d.click("#change-password").await;
        let said = d.wait_for("const n = document.getElementById('notice'); return n && n.textContent", "notice").await;
        assert_eq!(said, "Password changed. Your other sessions were signed out.");
    };
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    let ann = dbh.user_by_name("ann").await.unwrap().unwrap();
    assert!(reins_feedback::auth::verify_password("newer-still-pw", &ann.password_hash).await.unwrap());
}
