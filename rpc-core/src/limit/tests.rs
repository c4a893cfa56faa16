//! Each algorithm on tokio's paused clock: exact counts for scripted bursts.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// How many of `calls` calls at `now` are admitted without waiting.
fn burst(limiter: &dyn RateLimiter, now: Instant, calls: u32) -> u32 {
    (0..calls)
        .filter(|_| {
            matches!(
                limiter.acquire(now, Duration::ZERO),
                Acquire::Ready(Permit::Granted)
            )
        })
        .count() as u32
}

#[tokio::test(start_paused = true)]
async fn the_token_bucket_admits_its_burst_then_the_rate() {
    let bucket = TokenBucket::new(10, ms(1000), 10);
    let t0 = Instant::now();
    assert_eq!(burst(&bucket, t0, 25), 10, "a full bucket");
    assert_eq!(burst(&bucket, t0 + ms(99), 5), 0, "no token yet");
    assert_eq!(burst(&bucket, t0 + ms(100), 5), 1, "one token per 100 ms");
    assert_eq!(burst(&bucket, t0 + ms(550), 5), 4);
    // A quiet spell refills the bucket, never beyond its size.
    assert_eq!(burst(&bucket, t0 + ms(10_000), 25), 10);
}

#[tokio::test(start_paused = true)]
async fn a_smaller_burst_caps_what_passes_at_once() {
    let bucket = TokenBucket::new(100, ms(1000), 5);
    let t0 = Instant::now();
    assert_eq!(burst(&bucket, t0, 50), 5);
    assert_eq!(
        burst(&bucket, t0 + ms(1000), 500),
        5,
        "refilled up to the burst only"
    );
}

#[tokio::test(start_paused = true)]
async fn the_leaky_bucket_spaces_calls_evenly() {
    let bucket = LeakyBucket::new(10, ms(1000));
    let t0 = Instant::now();
    let mut slots = Vec::new();
    let mut denied = 0;
    for _ in 0..20 {
        match bucket.acquire(t0, ms(1000)) {
            Acquire::Ready(Permit::Granted) => slots.push(t0),
            Acquire::Ready(Permit::GrantedAt(at)) => slots.push(at),
            Acquire::Ready(Permit::Denied { .. }) => denied += 1,
            _ => panic!("a local limiter decides at once"),
        }
    }
    assert_eq!(slots.len(), 11, "slots at 0, 100, ..., 1000 ms");
    assert_eq!(denied, 9);
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], ms(100), "{slots:?}");
    }
    assert_eq!(
        burst(&LeakyBucket::new(10, ms(1000)), t0, 20),
        1,
        "no burst without waiting"
    );
}

#[tokio::test(start_paused = true)]
async fn the_fixed_window_counts_per_window() {
    let window = FixedWindow::new(10, ms(1000));
    let t0 = Instant::now();
    assert_eq!(burst(&window, t0, 25), 10);
    assert_eq!(burst(&window, t0 + ms(999), 5), 0);
    assert_eq!(burst(&window, t0 + ms(1000), 25), 10, "a new window");
    assert_eq!(
        burst(&window, t0 + ms(3500), 25),
        10,
        "windows stay aligned"
    );
    assert_eq!(burst(&window, t0 + ms(3999), 1), 0);
}

#[tokio::test(start_paused = true)]
async fn the_sliding_window_never_admits_more_than_its_limit_in_any_window() {
    let window = SlidingWindow::new(10, ms(1000));
    let t0 = Instant::now();
    let mut admitted = Vec::new();
    // Uneven arrivals: bursts of 7 every 130 ms, and singles every 17 ms, for 6 s.
    let mut arrivals: Vec<u64> = (0..6000).step_by(17).collect();
    for start in (0..6000).step_by(130) {
        arrivals.extend(std::iter::repeat_n(start, 7));
    }
    arrivals.sort_unstable();
    for at in arrivals {
        let now = t0 + ms(at);
        if burst(&window, now, 1) == 1 {
            admitted.push(now);
        }
    }
    for (i, end) in admitted.iter().enumerate() {
        let in_window = admitted[..=i]
            .iter()
            .filter(|at| *end - **at < ms(1000))
            .count();
        assert!(
            in_window <= 10,
            "{in_window} in the window ending at {end:?}"
        );
    }
    // It still admits close to the rate: at least 9 of 10 per second over 6 s.
    assert!(admitted.len() >= 54, "{}", admitted.len());
}

#[tokio::test(start_paused = true)]
async fn waiting_lets_a_caller_through_once_a_permit_frees() {
    let bucket = TokenBucket::new(1, ms(1000), 1);
    assert_eq!(acquire(&bucket, Duration::ZERO).await, Ok(()));
    let t0 = Instant::now();
    assert!(
        acquire(&bucket, ms(500)).await.is_err(),
        "the token is 1 s away"
    );
    assert_eq!(Instant::now(), t0, "a refusal does not wait");
    assert_eq!(acquire(&bucket, ms(1500)).await, Ok(()));
    assert_eq!(Instant::now() - t0, ms(1000), "through when the token came");

    // Windows reserve nothing: the caller checks again when the window turns.
    let window = FixedWindow::new(1, ms(1000));
    assert_eq!(acquire(&window, Duration::ZERO).await, Ok(()));
    let t1 = Instant::now();
    assert_eq!(acquire(&window, ms(1200)).await, Ok(()));
    assert_eq!(Instant::now() - t1, ms(1000));
    let sliding = SlidingWindow::new(1, ms(1000));
    assert_eq!(acquire(&sliding, Duration::ZERO).await, Ok(()));
    assert!(acquire(&sliding, ms(50)).await.is_err());
    assert_eq!(acquire(&sliding, ms(2000)).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn waiting_callers_of_a_token_bucket_go_in_order_one_interval_apart() {
    let bucket = std::sync::Arc::new(TokenBucket::new(10, ms(1000), 1));
    let t0 = Instant::now();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                acquire(bucket.as_ref(), ms(350))
                    .await
                    .map(|()| Instant::now() - t0)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for waiter in waiters {
        outcomes.push(waiter.await.unwrap());
    }
    let through: Vec<_> = outcomes.iter().filter_map(|o| o.ok()).collect();
    assert_eq!(through, [ms(0), ms(100), ms(200), ms(300)], "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
}

#[test]
fn limits_of_zero_and_unknown_names_are_configuration_errors() {
    for bad in [
        RateLimit::per_second(0),
        RateLimit::new(5, Duration::ZERO),
        RateLimit::per_second(5).burst(0),
    ] {
        let Err(Error::Config(message)) = bad.validate() else {
            panic!("{bad:?} is accepted");
        };
        assert!(!message.is_empty());
    }
    assert!(Rule::default().with_executes(0).validate().is_err());
    assert!(Rule::default().with_actives(0).validate().is_err());
    assert!(
        Limits::provider()
            .set(Scope::All, Rule::rate(RateLimit::per_second(0)))
            .is_err()
    );
    assert_eq!(
        "leaky_bucket".parse::<Algorithm>().ok(),
        Some(Algorithm::LeakyBucket)
    );
    let Err(Error::Config(message)) = "leaky".parse::<Algorithm>() else {
        panic!("an unknown algorithm is accepted");
    };
    assert!(message.contains("token_bucket"), "{message}");
}

#[test]
fn a_method_default_is_weaker_than_the_attribute_and_stronger_than_the_service() {
    use crate::descriptor::MethodDescriptor;
    static ATTRIBUTED: MethodDescriptor = {
        let mut method = MethodDescriptor::new("attributed");
        method.executes = Some(3);
        method
    };
    static PLAIN: MethodDescriptor = MethodDescriptor::new("plain");
    let executes_of = |limits: &Limits, method: &'static MethodDescriptor| {
        limits
            .resolve_always("demo.S", method)
            .executes
            .as_ref()
            .map(|c| c.limit())
    };
    let limits = Limits::provider();
    let rule = |n| Rule::default().with_executes(n);
    limits
        .set(Scope::Service("demo.S".into()), rule(7))
        .unwrap();
    assert_eq!(executes_of(&limits, &PLAIN), Some(7));
    for method in ["attributed", "plain"] {
        let scope = Scope::MethodDefault("demo.S".into(), method.into());
        limits.set(scope, rule(5)).unwrap();
    }
    assert_eq!(
        executes_of(&limits, &PLAIN),
        Some(5),
        "default over service"
    );
    assert_eq!(
        executes_of(&limits, &ATTRIBUTED),
        Some(3),
        "attribute over default"
    );
    let scope = Scope::Method("demo.S".into(), "attributed".into());
    limits.set(scope, rule(2)).unwrap();
    assert_eq!(
        executes_of(&limits, &ATTRIBUTED),
        Some(2),
        "method rule over all"
    );
}
