//! `GET /metrics` parses as Prometheus text and carries the statistics.

mod common;

use admin::Admin;
use common::*;
use rpc_core::stats::Stats;
use transports::TcpTransport;

/// Checks the exposition line by line, stricter than a scraper: every sample belongs to a
/// family declared before it with `# TYPE`, names and labels are well formed, values parse,
/// histogram buckets are cumulative and end at `+Inf` equal to `_count`, and the text ends
/// with `# EOF`.
fn check_exposition(text: &str) {
    use std::collections::HashMap;
    let mut types: HashMap<String, String> = HashMap::new();
    let mut last_bucket: HashMap<String, f64> = HashMap::new();
    let mut inf: HashMap<String, f64> = HashMap::new();
    let mut counts: HashMap<String, f64> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name_ok(name), "{line}");
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap();
                    assert!(["counter", "gauge", "histogram"].contains(&t), "{line}");
                    assert!(
                        types.insert(name.to_owned(), t.to_owned()).is_none(),
                        "{line}"
                    );
                }
                "HELP" | "UNIT" => {}
                other => panic!("unknown comment {other}: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(name_ok(name), "{line}");
        let parsed = parse_labels(labels).unwrap_or_else(|| panic!("labels in {line}"));
        assert!(parsed.keys().all(|k| name_ok(k)), "{line}");
        let family = types
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"))
            .clone();
        let suffix = &name[family.len()..];
        match types[&family].as_str() {
            "counter" => assert_eq!(suffix, "_total", "{line}"),
            "gauge" => assert_eq!(suffix, "", "{line}"),
            _ => {
                let mut key = parsed.clone();
                key.remove("le");
                let mut key: Vec<_> = key.into_iter().collect();
                key.sort();
                let key = format!("{family}{key:?}");
                match suffix {
                    "_bucket" => {
                        let previous = last_bucket.insert(key.clone(), value).unwrap_or(0.0);
                        assert!(value >= previous, "buckets cumulative: {line}");
                        if parsed["le"] == "+Inf" {
                            inf.insert(key, value);
                        }
                    }
                    "_count" => {
                        counts.insert(key, value);
                    }
                    "_sum" => assert!(value >= 0.0),
                    other => panic!("histogram suffix {other}: {line}"),
                }
            }
        }
    }
    assert_eq!(inf, counts, "+Inf bucket equals _count for every histogram");

    // And what a Prometheus scraper's parser makes of it.
    let scraped = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("prometheus-parse reads it");
    assert!(!scraped.samples.is_empty());
}

/// `key="value",...` with escapes, or `None` when malformed.
fn parse_labels(text: &str) -> Option<std::collections::HashMap<String, String>> {
    let mut labels = std::collections::HashMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(chars.next()?),
                '\n' => return None,
                c => value.push(c),
            }
        }
        if labels.insert(key, value).is_some() {
            return None;
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    Some(labels)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_the_calls() {
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
        .server(server.control())
        .client(client.client().clone())
        .start()
        .await
        .unwrap();
    for i in 0..7 {
        client.add(i, 1).await.unwrap();
    }
    assert!(client.explode().await.is_err());

    let answer = get(&format!("{}metrics", admin.url())).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        answer.content_type
    );
    let text = answer.body;
    check_exposition(&text);

    let sample = |line: &str| {
        text.lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse::<f64>()
            .unwrap()
    };
    for side in ["provider", "consumer"] {
        assert_eq!(
            sample(&format!(
                "rpc_{side}_requests_total{{service=\"test.Calc\",method=\"add\",result=\"success\"}}"
            )),
            7.0
        );
        assert_eq!(
            sample(&format!(
                "rpc_{side}_requests_total{{service=\"test.Calc\",method=\"explode\",result=\"handler\"}}"
            )),
            1.0
        );
        assert_eq!(
            sample(&format!(
                "rpc_{side}_request_duration_seconds_count{{service=\"test.Calc\",method=\"add\"}}"
            )),
            7.0
        );
        assert_eq!(
            sample(&format!(
                "rpc_{side}_request_duration_seconds_bucket{{le=\"+Inf\",service=\"test.Calc\",method=\"add\"}}"
            )),
            7.0
        );
        assert_eq!(
            sample(&format!(
                "rpc_{side}_requests_in_flight{{service=\"test.Calc\",method=\"add\"}}"
            )),
            0.0
        );
    }
    assert_eq!(
        sample(&format!(
            "rpc_consumer_provider_in_flight{{service=\"test.Calc\",provider=\"{}\"}}",
            server.local_addr()
        )),
        0.0
    );
    assert_eq!(sample("rpc_ready"), 1.0);
}

#[test]
fn the_checker_rejects_broken_expositions() {
    let good = "# TYPE a counter\na_total{x=\"1\"} 2\n# EOF";
    check_exposition(good);
    for bad in [
        "a_total 1\n# EOF",                          // no TYPE
        "# TYPE a counter\na_total{x=\"1} 2\n# EOF", // broken label
        "# TYPE a counter\na_total x\n# EOF",        // bad value
        "# TYPE a counter\na_total 1\n",             // no EOF
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n# EOF",
    ] {
        let caught = std::panic::catch_unwind(|| check_exposition(bad));
        assert!(caught.is_err(), "accepted: {bad}");
    }
}
