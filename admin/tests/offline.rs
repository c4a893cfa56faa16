//! Offline and online of a provided service, as a registry-fed consumer sees them.

mod common;

use std::time::Duration;

use admin::Admin;
use common::*;
use rpc_core::stats::Stats;
use serde_json::json;
use transports::TcpTransport;

#[tokio::test]
async fn offline_takes_a_provider_out_of_a_consumers_list_and_online_brings_it_back() {
    let registry = memory_registry("offline").await;
    let stats = Stats::new();
    let kept = provider(Some(registry.clone()), &stats).await;
    let switched = provider(Some(registry.clone()), &stats).await;
    let client = CalcClient::builder()
        .transport(TcpTransport::default())
        .registry(registry.clone())
        .registry_cache(
            std::env::temp_dir().join(format!("admin-offline-{}.cache", std::process::id())),
        )
        .stats(stats.clone())
        .build()
        .unwrap();
    // One admin endpoint per process in real life; here one for the provider to switch,
    // one for the consumer to watch.
    let provider_admin = Admin::builder()
        .stats(stats.clone())
        .server(switched.control())
        .start()
        .await
        .unwrap();
    let consumer_admin = Admin::builder()
        .stats(stats)
        .client(client.client().clone())
        .start()
        .await
        .unwrap();
    let providers_url = format!("{}api/providers", consumer_admin.url());
    let listed = || async {
        let body = get(&providers_url).await.json();
        let mut addresses: Vec<String> = body["consumed"][0]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["address"].as_str().unwrap().to_owned())
            .collect();
        addresses.sort();
        addresses
    };
    let both = {
        let mut both = vec![
            kept.local_addr().to_string(),
            switched.local_addr().to_string(),
        ];
        both.sort();
        both
    };
    assert!(eventually(Duration::from_secs(10), || async { listed().await == both }).await);

    let offline = post(
        &format!("{}api/services/test.Calc/offline", provider_admin.url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(offline.status, 200, "{}", offline.body);
    assert_eq!(offline.json()["changed"], 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            listed().await == [kept.local_addr().to_string()]
        })
        .await,
        "the offline provider left the consumer's list: {:?}",
        listed().await
    );
    let services = get(&format!("{}api/services", provider_admin.url()))
        .await
        .json();
    assert_eq!(services["provided"][0]["online"], false);
    assert_eq!(services["provided"][0]["registered"], json!([]));
    // The consumer now sends every call to the provider that stayed.
    for i in 0..10 {
        client.add(i, 0).await.unwrap();
    }
    let provider_stats = client.client().providers();
    assert_eq!(provider_stats.len(), 1);
    assert_eq!(&*provider_stats[0].address, kept.local_addr().to_string());
    // Going offline twice changes nothing.
    let again = post(
        &format!("{}api/services/test.Calc/offline", provider_admin.url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(again.json()["changed"], 0);

    let online = post(
        &format!("{}api/services/test.Calc/online", provider_admin.url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(online.status, 200, "{}", online.body);
    assert_eq!(online.json()["changed"], 1);
    assert!(
        eventually(Duration::from_secs(10), || async { listed().await == both }).await,
        "the provider is back: {:?}",
        listed().await
    );
    assert_eq!(switched.registered().len(), 1);
}

#[tokio::test]
async fn offline_of_an_unknown_service_or_without_a_registry_is_refused() {
    let stats = Stats::new();
    let server = provider(None, &stats).await;
    let admin = Admin::builder()
        .stats(stats)
        .server(server.control())
        .start()
        .await
        .unwrap();
    let unknown = post(
        &format!("{}api/services/test.Nope/offline", admin.url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let no_registry = post(
        &format!("{}api/services/test.Calc/offline", admin.url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(no_registry.status, 409, "{}", no_registry.body);
    assert!(
        no_registry.json()["error"]
            .as_str()
            .unwrap()
            .contains("registry")
    );
    let get_instead = get(&format!("{}api/services/test.Calc/offline", admin.url())).await;
    assert_eq!(get_instead.status, 405);
}
