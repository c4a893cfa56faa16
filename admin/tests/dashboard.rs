//! The dashboard in a real browser: headless Chromium driven through chromedriver, whose
//! address scripts/test.sh exports as RPC_TEST_CHROMEDRIVER. Without it the test fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use admin::Admin;
use common::*;
use fantoccini::{ClientBuilder, Locator};
use rpc_core::stats::Stats;
use serde_json::{Value, json};
use transports::TcpTransport;

fn chromedriver() -> String {
    std::env::var("RPC_TEST_CHROMEDRIVER").expect(
        "RPC_TEST_CHROMEDRIVER is not set: run through scripts/test.sh, or \
         `source scripts/servers.sh && start_chromedriver` first",
    )
}

/// Where test artifacts go: the target directory.
fn artifact(name: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn browser(webdriver: &str) -> fantoccini::Client {
    let profile = std::env::temp_dir().join(format!(
        "admin-dashboard-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1400",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a chromium session")
}

/// The browser console's entries so far (chromedriver's log endpoint).
async fn console(webdriver: &str, session: &str) -> Vec<Value> {
    let answer = http(
        "POST",
        &format!("{webdriver}/session/{session}/se/log"),
        None,
        Some(serde_json::to_vec(&json!({ "type": "browser" })).unwrap()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn text(browser: &fantoccini::Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Polls the page until `check` holds for the text of `css`, at most 20 s.
async fn wait_text(
    browser: &fantoccini::Client,
    css: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && check(&text)
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} never matched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn number(text: &str) -> f64 {
    let text = text.trim();
    let (digits, scale) = match text.strip_suffix('k') {
        Some(d) => (d, 1e3),
        None => match text.strip_suffix('M') {
            Some(d) => (d, 1e6),
            None => (text, 1.0),
        },
    };
    digits
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
        * scale
}

#[tokio::test]
async fn the_dashboard_shows_live_numbers_and_invokes_from_its_form() {
    let webdriver = chromedriver();
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
        .application("dashboard-test")
        .server(server.control())
        .client(client.client().clone())
        .start()
        .await
        .unwrap();

    // Traffic while the page watches: about 100 calls a second, for at most a minute.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = {
        let running = running.clone();
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..6_000 {
                if !running.load(Ordering::Relaxed) {
                    break;
                }
                let _ = client.add(i, 1).await;
                if i % 10 == 0 {
                    let _ = client.sleep(2).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let browser = browser(&webdriver).await;
    let session = browser.session_id().await.unwrap().expect("a session id");
    browser.goto(&admin.url()).await.unwrap();

    // Services and methods are listed.
    wait_text(&browser, "#services", |t| {
        t.contains("test.Calc") && t.contains("add(a, b)")
    })
    .await;
    assert!(text(&browser, "#app").await.contains("dashboard-test"));
    wait_text(&browser, "#ready", |t| t == "ready").await;
    wait_text(&browser, "#providers", |t| {
        t.contains(&server.local_addr().to_string())
    })
    .await;

    // The numbers move between refreshes.
    let row = "#methods tr[data-key='provider|test.Calc|add'] td.total";
    let first = number(&wait_text(&browser, row, |t| !t.is_empty()).await);
    let later = number(&wait_text(&browser, row, |t| number(t) > first + 20.0).await);
    assert!(later > first);
    let qps = "#methods tr[data-key='provider|test.Calc|add'] td.qps";
    let rate = number(&wait_text(&browser, qps, |t| number(t) > 1.0).await);
    assert!(rate > 1.0, "{rate}");
    // Charts have drawn lines.
    let drawn = browser
        .execute(
            "return document.querySelectorAll('#methods svg.spark path.line[d^=\"M\"]').length",
            vec![],
        )
        .await
        .unwrap();
    assert!(drawn.as_u64().unwrap() >= 2, "sparklines drawn: {drawn}");

    // A generic invoke from the form.
    browser
        .find(Locator::Css("#invoke-service"))
        .await
        .unwrap()
        .select_by_value("test.Calc")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#invoke-method"))
        .await
        .unwrap()
        .select_by_value("add")
        .await
        .unwrap();
    let args = browser.find(Locator::Css("#invoke-args")).await.unwrap();
    args.clear().await.unwrap();
    args.send_keys("[20, 22]").await.unwrap();
    browser
        .find(Locator::Css("#invoke-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = wait_text(&browser, "#invoke-result", |t| t.contains("via")).await;
    assert!(result.starts_with("42"), "{result}");

    // A bad one shows the error, not a broken page.
    args.clear().await.unwrap();
    args.send_keys("[\"x\", 1]").await.unwrap();
    browser
        .find(Locator::Css("#invoke-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait_text(&browser, "#invoke-result", |t| t.starts_with("400")).await;
    assert!(error.contains("codec"), "{error}");

    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = artifact("admin-dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // The 400 above is the one failed request the console may report; nothing else.
    let entries = console(&webdriver, &session).await;
    let errors: Vec<&Value> = entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            !e["message"].as_str().unwrap_or_default().contains(
                "/api/invoke - Failed to load resource: the server responded with a status of 400",
            )
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    running.store(false, Ordering::Relaxed);
    browser.close().await.unwrap();
    traffic.await.unwrap();
}
