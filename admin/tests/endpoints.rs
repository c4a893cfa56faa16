//! Every read-only route: status codes, JSON shape, counters that move with calls.

mod common;

use std::time::Duration;

use admin::Admin;
use common::*;
use rpc_core::stats::Stats;
use serde_json::Value;
use transports::TcpTransport;

/// A provider and a consumer of it in one process, both shown by one admin endpoint.
struct Fixture {
    server: rpc_core::Server,
    client: CalcClient,
    admin: admin::AdminHandle,
}

async fn fixture() -> Fixture {
    let stats = Stats::new();
    let server = provider(None, &stats).await;
    let client = CalcClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .stats(stats.clone())
        .build()
        .unwrap();
    let admin = Admin::builder()
        .stats(stats)
        .application("admin-test")
        .server(server.control())
        .client(client.client().clone())
        .start()
        .await
        .unwrap();
    Fixture {
        server,
        client,
        admin,
    }
}

fn method<'a>(stats: &'a Value, side: &str, name: &str) -> &'a Value {
    stats["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["side"] == side && m["method"] == name)
        .unwrap_or_else(|| panic!("no {side} {name} in {stats}"))
}

#[tokio::test]
async fn health_is_up_and_unknown_routes_are_404() {
    let f = fixture().await;
    let health = get(&format!("{}health", f.admin.url())).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "up");
    let missing = get(&format!("{}nope", f.admin.url())).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
    assert!(
        f.admin.local_addr().ip().is_loopback(),
        "bound to loopback by default"
    );
}

#[tokio::test]
async fn ready_is_503_before_anything_is_attached_200_while_serving_and_503_while_draining() {
    let stats = Stats::new();
    let admin = Admin::builder().stats(stats.clone()).start().await.unwrap();
    let url = format!("{}ready", admin.url());
    let starting = get(&url).await;
    assert_eq!(starting.status, 503, "{}", starting.body);
    assert_eq!(starting.json()["ready"], false);

    let server = provider(None, &stats).await;
    admin.add_server(server.control());
    let serving = get(&url).await;
    assert_eq!(serving.status, 200, "{}", serving.body);
    assert_eq!(serving.json()["servers"][0]["state"], "serving");

    // A call that outlasts the start of shutdown keeps the server draining for a while.
    let client = CalcClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let slow = tokio::spawn(async move { client.sleep(1500).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(server.shutdown());
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&url).await.status == 503
        })
        .await,
        "ready turns 503 while draining"
    );
    assert_eq!(get(&url).await.json()["reason"], "a server is draining");
    assert_eq!(
        slow.await.unwrap().unwrap(),
        1500,
        "the running call was drained"
    );
    shutdown.await.unwrap();
    assert_eq!(get(&url).await.status, 503);
}

#[tokio::test]
async fn services_list_provided_and_consumed_methods_with_their_settings() {
    let f = fixture().await;
    let answer = get(&format!("{}api/services", f.admin.url())).await;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("application/json"));
    let services = answer.json();
    assert_eq!(services["application"], "admin-test");
    let provided = &services["provided"][0];
    assert_eq!(provided["service"], "test.Calc");
    assert_eq!(provided["address"], f.server.local_addr().to_string());
    assert_eq!(provided["online"], true);
    assert_eq!(provided["registry"], false);
    let methods = provided["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "sleep", "greet", "explode"]);
    assert_eq!(methods[0]["args"], serde_json::json!(["a", "b"]));
    assert_eq!(methods[2]["idempotent"], true);
    let consumed = &services["consumed"][0];
    assert_eq!(consumed["service"], "test.Calc");
    assert_eq!(consumed["codec"], "bincode");
    assert_eq!(consumed["methods"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn providers_show_what_the_consumer_sees_of_each() {
    let f = fixture().await;
    assert_eq!(f.client.add(1, 2).await.unwrap(), 3);
    let answer = get(&format!("{}api/providers", f.admin.url())).await;
    assert_eq!(answer.status, 200);
    let consumed = answer.json();
    let service = &consumed["consumed"][0];
    assert_eq!(service["service"], "test.Calc");
    let provider = &service["providers"][0];
    assert_eq!(provider["address"], f.server.local_addr().to_string());
    assert_eq!(provider["weight"], 100);
    assert_eq!(provider["state"], "reachable");
    assert_eq!(provider["succeeded"], 1);
    assert_eq!(provider["in_flight"], 0);
    assert!(provider["latency_us"].as_u64().unwrap() > 0);
    assert!(provider["last_error"].is_null());
}

#[tokio::test]
async fn stats_count_calls_on_both_sides_with_plausible_latency() {
    let f = fixture().await;
    let url = format!("{}api/stats", f.admin.url());
    let before = get(&url).await.json();
    assert!(
        before["methods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["total"] == 0)
    );

    for _ in 0..20 {
        assert_eq!(f.client.sleep(5).await.unwrap(), 5);
    }
    assert!(f.client.explode().await.is_err());
    for i in 0..30 {
        f.client.add(i, 1).await.unwrap();
    }

    let stats = get(&url).await.json();
    for side in ["provider", "consumer"] {
        let sleep = method(&stats, side, "sleep");
        assert_eq!(sleep["service"], "test.Calc");
        assert_eq!(sleep["total"], 20, "{side}: {sleep}");
        assert_eq!(sleep["succeeded"], 20);
        assert_eq!(sleep["in_flight"], 0);
        let latency = &sleep["latency_us"];
        let (p50, p99, max, avg) = (
            latency["p50"].as_u64().unwrap(),
            latency["p99"].as_u64().unwrap(),
            latency["max"].as_u64().unwrap(),
            latency["avg"].as_u64().unwrap(),
        );
        // Each call sleeps 5 ms: no percentile can be below that, and they are ordered.
        assert!(p50 >= 4_500, "{side} p50 {p50}");
        assert!(p50 <= p99 && p99 <= max, "{side}: {latency}");
        assert!(avg >= 4_500 && avg <= max, "{side}: {latency}");
        assert!(sleep["bytes_in"].as_u64().unwrap() > 0);
        assert!(sleep["bytes_out"].as_u64().unwrap() > 0);
        assert!(sleep["qps_1m"].as_f64().unwrap() >= 0.0);

        let explode = method(&stats, side, "explode");
        assert_eq!(explode["succeeded"], 0);
        assert_eq!(explode["failed_total"], 1);
        assert_eq!(explode["failed"]["handler"], 1, "{side}: {explode}");

        let add = method(&stats, side, "add");
        assert_eq!(add["total"], 30);
    }
    // The provider receives what the consumer sends.
    assert_eq!(
        method(&stats, "provider", "add")["bytes_in"],
        method(&stats, "consumer", "add")["bytes_out"]
    );
}

#[tokio::test]
async fn stats_show_calls_in_flight() {
    let f = fixture().await;
    let client = f.client.clone();
    let call = tokio::spawn(async move { client.sleep(800).await });
    let url = format!("{}api/stats", f.admin.url());
    assert!(
        eventually(Duration::from_secs(5), || async {
            let stats = get(&url).await.json();
            method(&stats, "provider", "sleep")["in_flight"] == 1
                && method(&stats, "consumer", "sleep")["in_flight"] == 1
        })
        .await
    );
    call.await.unwrap().unwrap();
    let stats = get(&url).await.json();
    assert_eq!(method(&stats, "provider", "sleep")["in_flight"], 0);
}

#[tokio::test]
async fn rates_count_the_calls_of_the_last_seconds() {
    let f = fixture().await;
    for i in 0..50 {
        f.client.add(i, i).await.unwrap();
    }
    // The rate counts whole seconds: wait for the second of the calls to end.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stats = get(&format!("{}api/stats", f.admin.url())).await.json();
    let add = method(&stats, "provider", "add");
    let qps_10s = add["qps_10s"].as_f64().unwrap();
    assert!(qps_10s > 0.0, "{add}");
    assert!(add["qps_1m"].as_f64().unwrap() > 0.0, "{add}");
    // 50 calls over at most ten seconds, at least one: between 5/s and 50/s.
    assert!((4.9..=50.0).contains(&qps_10s), "{qps_10s}");
}
