//! Generic invoke and the guards of every POST route: tokens, loopback, bad input.

mod common;

use admin::Admin;
use common::*;
use rpc_core::stats::Stats;
use serde_json::json;
use transports::TcpTransport;

async fn provider_admin(token: Option<&str>) -> (rpc_core::Server, admin::AdminHandle) {
    let stats = Stats::new();
    let server = provider(None, &stats).await;
    let mut builder = Admin::builder().stats(stats).server(server.control());
    if let Some(token) = token {
        builder = builder.token(token);
    }
    (server, builder.start().await.unwrap())
}

#[tokio::test]
async fn invoke_calls_a_provided_method_with_positional_or_named_arguments() {
    let (_server, admin) = provider_admin(None).await;
    let url = format!("{}api/invoke", admin.url());
    let answer = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "add", "args": [2, 40]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["result"], 42);
    assert_eq!(body["via"], "provider");
    assert!(body["elapsed_us"].as_u64().is_some());

    let named = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "greet", "args": {"name": "ada"}}),
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(named.json()["result"], "hello ada");

    // A single argument may be given bare.
    let bare = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "greet", "args": "bob"}),
    )
    .await;
    assert_eq!(bare.json()["result"], "hello bob");

    // The call went through the real server: its statistics saw it.
    let stats = get(&format!("{}api/stats", admin.url())).await.json();
    let add = stats["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["side"] == "provider" && m["method"] == "add")
        .unwrap()
        .clone();
    assert_eq!(add["succeeded"], 1);
}

#[tokio::test]
async fn invoke_goes_through_an_attached_client_and_its_balancing() {
    let stats = Stats::new();
    let a = provider(None, &stats).await;
    let b = provider(None, &stats).await;
    let client = CalcClient::builder()
        .transport(TcpTransport::default())
        .addresses([a.local_addr().to_string(), b.local_addr().to_string()])
        .load_balance_by_name("roundrobin")
        .stats(stats.clone())
        .build()
        .unwrap();
    let admin = Admin::builder()
        .stats(stats)
        .client(client.client().clone())
        .start()
        .await
        .unwrap();
    let url = format!("{}api/invoke", admin.url());
    for i in 0..4 {
        let answer = post(
            &url,
            None,
            &json!({"service": "test.Calc", "method": "add", "args": [i, 1]}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["result"], i + 1);
        assert_eq!(answer.json()["via"], "consumer");
    }
    // Round robin spread the four calls over both providers.
    let providers = client.client().providers();
    let calls: Vec<u64> = providers.iter().map(|p| p.stats.succeeded()).collect();
    assert_eq!(calls, [2, 2]);
}

#[tokio::test]
async fn bad_invocations_get_a_clear_4xx() {
    let (_server, admin) = provider_admin(None).await;
    let url = format!("{}api/invoke", admin.url());
    let cases = [
        (
            json!({"service": "test.Nope", "method": "add", "args": []}),
            404,
            "unknown service",
        ),
        (
            json!({"service": "test.Calc", "method": "nope", "args": []}),
            404,
            "nope",
        ),
        (
            json!({"service": "test.Calc", "method": "add", "args": ["x", 1]}),
            400,
            "codec",
        ),
        (
            json!({"service": "test.Calc", "method": "add", "args": [1]}),
            400,
            "expected 2",
        ),
        (
            json!({"service": "test.Calc", "method": "add", "args": {"a": 1, "c": 2}}),
            400,
            "missing argument",
        ),
        (json!({"service": "test.Calc", "args": []}), 400, "method"),
        (
            json!({"service": "test.Calc", "method": "add", "args": [1, 2], "extra": 1}),
            400,
            "extra",
        ),
    ];
    for (body, status, words) in cases {
        let answer = post(&url, None, &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(words), "{body}: {error}");
    }
    let malformed = http("POST", &url, None, Some(b"{\"service\": ".to_vec())).await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert!(malformed.json()["error"].as_str().unwrap().contains("JSON"));

    let oversized = http(
        "POST",
        &url,
        None,
        Some(vec![b' '; admin::DEFAULT_MAX_BODY + 1]),
    )
    .await;
    assert_eq!(oversized.status, 413, "{}", oversized.body);

    // A handler that panics is the provider's fault, not the caller's.
    let panicked = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "explode"}),
    )
    .await;
    assert_eq!(panicked.status, 502, "{}", panicked.body);

    // The endpoint still serves after all of that.
    let fine = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "add", "args": [1, 1]}),
    )
    .await;
    assert_eq!(fine.json()["result"], 2);
}

#[tokio::test]
async fn post_routes_need_the_configured_token() {
    let (_server, admin) = provider_admin(Some("s3cret")).await;
    let invoke = format!("{}api/invoke", admin.url());
    let offline = format!("{}api/services/test.Calc/offline", admin.url());
    let body = json!({"service": "test.Calc", "method": "add", "args": [1, 2]});
    for url in [&invoke, &offline] {
        let missing = post(url, None, &body).await;
        assert_eq!(missing.status, 401, "{url}: {}", missing.body);
        assert!(
            missing.json()["error"]
                .as_str()
                .unwrap()
                .contains("missing")
        );
        let wrong = post(url, Some("guess"), &body).await;
        assert_eq!(wrong.status, 401, "{url}: {}", wrong.body);
        assert!(wrong.json()["error"].as_str().unwrap().contains("wrong"));
    }
    let right = post(&invoke, Some("s3cret"), &body).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.json()["result"], 3);
    // Reading needs no token.
    assert_eq!(get(&format!("{}api/stats", admin.url())).await.status, 200);
}

#[tokio::test]
async fn without_a_token_post_routes_are_refused_beyond_loopback() {
    let stats = Stats::new();
    let server = provider(None, &stats).await;
    // Bound to every interface (the test still talks to it over loopback).
    let admin = Admin::builder()
        .bind("0.0.0.0:0")
        .stats(stats)
        .server(server.control())
        .start()
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/api/invoke", admin.local_addr().port());
    let answer = post(
        &url,
        None,
        &json!({"service": "test.Calc", "method": "add", "args": [1, 2]}),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.json()["error"].as_str().unwrap().contains("token"));
    let health = get(&format!(
        "http://127.0.0.1:{}/health",
        admin.local_addr().port()
    ))
    .await;
    assert_eq!(health.status, 200, "reading is still allowed");
}
