//! The remote HTTP scorer against a loopback axum server: scores come back in order, and every
//! failure (non-200, malformed JSON, wrong length, timeout, nobody listening) is a clear error.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use reins_train::rewards::{HttpReward, RewardSource};
use serde_json::{json, Value};

/// Starts the scorer on an ephemeral port; returns its base URL.
fn serve() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = Router::new()
                // score = completion length in characters + 0.5 × number of prompts in the batch
                .route(
                    "/score",
                    post(|Json(v): Json<Value>| async move {
                        let n = v["prompts"].as_array().map_or(0, Vec::len) as f64;
                        let scores: Vec<f64> = v["completions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c.as_str().map_or(-1.0, |s| s.len() as f64) + 0.5 * n)
                            .collect();
                        Json(json!({ "scores": scores }))
                    }),
                )
                .route(
                    "/ids",
                    post(|Json(v): Json<Value>| async move { Json(json!({"scores": [v["completions"][0][1]]})) }),
                )
                .route("/error", post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "scorer overloaded") }))
                .route("/malformed", post(|| async { "this is not json" }))
                .route("/short", post(|| async { Json(json!({"scores": [1.0]})) }))
                .route("/strings", post(|| async { Json(json!({"scores": ["high", "low"]})) }))
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Json(json!({"scores": [0.0, 0.0]}))
                    }),
                );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn text_scorer(url: &str, timeout_ms: u64) -> HttpReward {
    let decode = |ids: &[u32]| ids.iter().map(|&i| char::from(b'a' + (i % 26) as u8)).collect::<String>();
    HttpReward::new(url, Duration::from_millis(timeout_ms), Some(Box::new(decode))).unwrap()
}

#[test]
fn http_reward_scores_in_order_and_reports_every_failure() {
    let base = serve();
    let prompts = vec![vec![1, 2], vec![3]];
    let completions = vec![vec![4, 5, 6], vec![7]];
    let s = text_scorer(&format!("{base}/score"), 5000);
    assert_eq!(s.score(&prompts, &completions).unwrap(), vec![4.0, 2.0]);
    assert_eq!(s.name(), "http");

    // Without a decoder the ids travel as arrays.
    let ids = HttpReward::new(&format!("{base}/ids"), Duration::from_secs(5), None).unwrap();
    assert_eq!(ids.score(&prompts[..1], &completions[..1]).unwrap(), vec![5.0]);

    let err = |path: &str, timeout_ms: u64| {
        text_scorer(&format!("{base}{path}"), timeout_ms).score(&prompts, &completions).unwrap_err().to_string()
    };
    let e = err("/error", 5000);
    assert!(e.contains("HTTP 503") && e.contains("scorer overloaded"), "{e}");
    let e = err("/malformed", 5000);
    assert!(e.contains("not JSON") && e.contains("this is not json"), "{e}");
    let e = err("/short", 5000);
    assert!(e.contains("1 scores for 2 completions"), "{e}");
    let e = err("/strings", 5000);
    assert!(e.contains("scores[0]") && e.contains("not a number"), "{e}");
    let e = err("/missing", 5000);
    assert!(e.contains("HTTP 404"), "{e}");
    let t = std::time::Instant::now();
    let e = err("/slow", 300);
    assert!(e.contains("timeout"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "the timeout was not honoured: {:?}", t.elapsed());
    assert!(e.contains(&base), "errors name the URL: {e}");

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = text_scorer(&format!("http://{closed}/score"), 1000).score(&prompts, &completions).unwrap_err();
    assert!(e.to_string().contains(&closed.to_string()), "{e}");
}
