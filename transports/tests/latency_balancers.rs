//! The balancers that read live statistics (`p2c`, `shortestresponse`, `leastactive`)
//! against real providers: when one of two providers turns slow under load, calls move to
//! the other. How long that took is printed (`--nocapture`), never asserted tightly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::Server;
use transports::TcpTransport;

/// A worker whose provider can be made slow.
#[rpc_core::service(name = "test.Worker")]
pub trait Worker {
    /// Answers with the provider's name after the provider's current delay.
    #[rpc(idempotent)]
    async fn work(&self) -> String;
}

#[derive(Clone)]
struct Slowable {
    name: &'static str,
    delay_ms: Arc<AtomicU64>,
}

impl Worker for Slowable {
    async fn work(&self) -> String {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.name.to_owned()
    }
}

async fn provider(name: &'static str, delay_ms: Arc<AtomicU64>) -> Server {
    Server::builder()
        .transport(TcpTransport::default())
        .add_service(WorkerServer::new(Slowable { name, delay_ms }))
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// Eight callers keep two providers busy; `slow` turns 20 ms slow after a while. Returns
/// how long after that calls stopped going to it (the share of `slow` in the last 50
/// answers fell under 10%).
async fn moves_off_a_provider_that_turns_slow(balancer: &str) -> Duration {
    let fast_delay = Arc::new(AtomicU64::new(1));
    let slow_delay = Arc::new(AtomicU64::new(1));
    let fast = provider("fast", fast_delay).await;
    let slow = provider("slow", slow_delay.clone()).await;
    let client = WorkerClient::builder()
        .transport(TcpTransport::default())
        .address(fast.local_addr().to_string())
        .address(slow.local_addr().to_string())
        .load_balance_by_name(balancer)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let answers = Arc::new(std::sync::Mutex::new(VecDeque::<(Instant, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, answers, stop) = (client.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let name = client.work().await.expect("every call is answered");
                    answers
                        .lock()
                        .expect("lock")
                        .push_back((Instant::now(), name == "slow"));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = share_of_slow(&answers, 200);
    assert!(
        before > 0.2,
        "{balancer}: both providers used while equal ({before:.2})"
    );

    slow_delay.store(20, Ordering::Relaxed);
    let turned = Instant::now();
    let moved = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let recent: Vec<bool> = {
            let answers = answers.lock().expect("lock");
            answers
                .iter()
                .filter(|(at, _)| *at > turned)
                .map(|(_, slow)| *slow)
                .collect()
        };
        if recent.len() >= 50 {
            let last = &recent[recent.len() - 50..];
            let slow_share = last.iter().filter(|s| **s).count() as f64 / 50.0;
            if slow_share < 0.1 {
                break turned.elapsed();
            }
        }
        assert!(
            turned.elapsed() < Duration::from_secs(20),
            "{balancer}: calls still go to the slow provider"
        );
    };
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    println!(
        "{balancer}: moved off the slow provider {moved:?} after it turned slow (share before {before:.2})"
    );
    moved
}

fn share_of_slow(answers: &std::sync::Mutex<VecDeque<(Instant, bool)>>, last: usize) -> f64 {
    let answers = answers.lock().expect("lock");
    let n = answers.len().min(last);
    let slow = answers
        .iter()
        .rev()
        .take(n)
        .filter(|(_, slow)| *slow)
        .count();
    slow as f64 / n.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_moves_off_a_provider_that_turns_slow() {
    moves_off_a_provider_that_turns_slow("p2c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortestresponse_moves_off_a_provider_that_turns_slow() {
    moves_off_a_provider_that_turns_slow("shortestresponse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leastactive_moves_off_a_provider_that_turns_slow() {
    moves_off_a_provider_that_turns_slow("leastactive").await;
}
