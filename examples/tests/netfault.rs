//! A stalled network path (issue 12, scenario 9): a consumer reaches provider A through
//! the relay of `examples::relay` and provider B directly. The relay stalls: A's
//! connection stays open and carries nothing. The consumer's idle timeout gives it up,
//! the idempotent `add` fails over to B meanwhile and no call outlives its deadline; when
//! the relay passes again, A is called again.
//!
//! The detection time printed (`--nocapture`) is a measurement, never an assertion: the
//! bounds are generous so a loaded CI machine does not fail them.

use std::time::{Duration, Instant};

use examples::relay::{Closer, Event, Mode, Relay};
use examples::{GreeterClient, GreeterServer, Greeting};
use rpc_core::Server;
use transports::{TcpConfig, TcpTransport};

const HEARTBEAT: Duration = Duration::from_millis(100);
const IDLE_TIMEOUT: Duration = Duration::from_millis(600);
const DEADLINE: Duration = Duration::from_secs(3);

async fn provider(name: &str) -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(GreeterServer::new(Greeting::new(name)))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_given_up_and_calls_move_to_the_other_provider() {
    let a = provider("a").await;
    let b = provider("b").await;
    let relay = Relay::start("127.0.0.1:0", &a.local_addr().to_string())
        .await
        .unwrap();
    let mut events = relay.subscribe();
    let greeter: GreeterClient = GreeterClient::builder()
        .transport(TcpTransport::new(
            TcpConfig::default().heartbeat(HEARTBEAT, IDLE_TIMEOUT),
        ))
        .addresses([relay.local_addr().to_string(), b.local_addr().to_string()])
        .load_balance_by_name("roundrobin")
        .timeout(DEADLINE)
        .build()
        .unwrap();

    // Both providers answer, A through the relay.
    let answered_by_a = |text: &str| text.ends_with("(from a)");
    let mut seen_a = false;
    for n in 0..20 {
        let text = greeter.greet(format!("warm-{n}")).await.unwrap().unwrap();
        seen_a |= answered_by_a(&text);
    }
    assert!(seen_a, "provider A was never called through the relay");

    relay.set_mode(Mode::Stall);
    let stalled = Instant::now();
    // Calls keep coming while the connection to A is stalled, given up and reconnected
    // (into the same stall): failover takes every one to B within its deadline.
    let load = {
        let greeter = greeter.clone();
        tokio::spawn(async move {
            let mut calls = Vec::new();
            for n in 0..150i64 {
                let greeter = greeter.clone();
                calls.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let sum = tokio::time::timeout(DEADLINE * 3, greeter.add(n, 1)).await;
                    (n, sum, started.elapsed())
                }));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.unwrap());
            }
            results
        })
    };

    // The consumer, not the relay, closes the silent connection: its idle timeout fired.
    let detected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.unwrap() {
                Event::Closed {
                    by: Closer::Client,
                    mode: Mode::Stall,
                    ..
                } => return stalled.elapsed(),
                _ => continue,
            }
        }
    })
    .await
    .expect("the stalled connection was never closed by the consumer");
    eprintln!(
        "stalled connection given up {detected:?} after the stall \
         (heartbeat {HEARTBEAT:?}, idle timeout {IDLE_TIMEOUT:?})"
    );
    assert!(
        detected >= IDLE_TIMEOUT / 2,
        "closed too early: {detected:?}"
    );

    let mut slowest = Duration::ZERO;
    for (n, sum, took) in load.await.unwrap() {
        let sum = sum.unwrap_or_else(|_| panic!("add({n}, 1) outlived its deadline"));
        assert_eq!(sum.unwrap(), n + 1, "add({n}, 1)");
        assert!(
            took <= DEADLINE + Duration::from_secs(1),
            "add({n}, 1) took {took:?}"
        );
        slowest = slowest.max(took);
    }
    eprintln!("150 calls during the stall all answered; the slowest took {slowest:?}");

    // The path heals: A is called again.
    relay.set_mode(Mode::Pass);
    let healed = Instant::now();
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        let mut n = 0;
        loop {
            n += 1;
            if let Ok(Ok(text)) = greeter.greet(format!("after-{n}")).await
                && answered_by_a(&text)
            {
                return healed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("provider A was not called again after the relay passed again");
    eprintln!("provider A answered again {back:?} after the relay passed again");
}
