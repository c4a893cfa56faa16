//! Processes push their statistics to a monitor service, which shows the aggregate.

mod common;

use std::time::Duration;

use admin::Admin;
use admin::monitor::{self, MonitorClient, MonitorServer, MonitorStore};
use common::*;
use rpc_core::Server;
use rpc_core::stats::Stats;
use transports::TcpTransport;

#[tokio::test]
async fn pushed_statistics_of_two_processes_add_up_on_the_monitor() {
    // The monitor process: the monitor service, and an admin endpoint showing it.
    let store = MonitorStore::new();
    let monitor_server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(MonitorServer::new(store.clone()))
        .without_stats()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let monitor_admin = Admin::builder()
        .stats(Stats::new())
        .server(monitor_server.control())
        .monitor(store.clone())
        .start()
        .await
        .unwrap();

    // Two "processes" (separate statistics), each serving test.Calc and pushing every 100 ms.
    let mut pushes = Vec::new();
    let mut servers = Vec::new();
    for (application, calls) in [("calc-a", 3), ("calc-b", 5)] {
        let stats = Stats::new();
        let server = provider(None, &stats).await;
        let client = CalcClient::builder()
            .transport(TcpTransport::default())
            .address(server.local_addr().to_string())
            .stats(stats.clone())
            .build()
            .unwrap();
        for i in 0..calls {
            client.add(i, 1).await.unwrap();
        }
        let monitor_client = MonitorClient::builder()
            .transport(TcpTransport::default())
            .address(monitor_server.local_addr().to_string())
            .without_stats()
            .build()
            .unwrap();
        // Two reports from one pid would be one process: tell them apart by application.
        pushes.push(monitor::push(
            monitor_client,
            stats,
            application,
            Duration::from_millis(100),
        ));
        servers.push(server);
    }

    let url = format!("{}api/monitor", monitor_admin.url());
    let added_up = eventually(Duration::from_secs(10), || async {
        let body = get(&url).await.json();
        body["processes"].as_array().unwrap().len() == 2
            && body["aggregate"].as_array().unwrap().iter().any(|m| {
                m["side"] == "provider"
                    && m["method"] == "add"
                    && m["total"] == 8
                    && m["processes"] == 2
            })
    })
    .await;
    assert!(added_up, "{}", get(&url).await.body);
    let body = get(&url).await.json();
    let consumer = body["aggregate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["side"] == "consumer" && m["method"] == "add")
        .unwrap()
        .clone();
    assert_eq!(consumer["succeeded"], 8);
    assert!(consumer["p99_us"].as_u64().unwrap() > 0);
    let apps: Vec<&str> = body["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["application"].as_str().unwrap())
        .collect();
    assert_eq!(apps, ["calc-a", "calc-b"]);

    let page = get(&format!("{}monitor", monitor_admin.url())).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("rpc monitor"));

    // A process that stops pushing is forgotten after three of its intervals.
    pushes.pop();
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&url).await.json()["processes"]
                .as_array()
                .unwrap()
                .len()
                == 1
        })
        .await
    );
    assert_eq!(store.processes()[0].application, "calc-a");
}

#[tokio::test]
async fn a_process_that_is_not_a_monitor_says_so() {
    let admin = Admin::builder().stats(Stats::new()).start().await.unwrap();
    let answer = get(&format!("{}api/monitor", admin.url())).await;
    assert_eq!(answer.status, 404);
}
