//! A command line for RPC services, in the manner of grpcurl and Dubbo's telnet `invoke`:
//! list services, describe one, call a method with JSON arguments.
//!
//! ```text
//! rpcctl --admin http://127.0.0.1:8080 list
//! rpcctl --admin http://127.0.0.1:8080 describe demo.Greeter
//! rpcctl --admin http://127.0.0.1:8080 call demo.Greeter add '[40, 2]'
//! rpcctl --registry file:///tmp/rpc-registry describe demo.Greeter
//! rpcctl --address 127.0.0.1:20880 call demo.Greeter greet '["ada"]'
//! ```
//!
//! Through an admin endpoint, `call` is the endpoint's generic invoke (argument names
//! known, so arguments may also be an object by name). Through a registry or an address it
//! calls the provider directly in the JSON codec; arguments are then an array.

use std::time::Duration;

use clap::{Parser, Subcommand};
use examples::exit_code;
use rpc_core::{Client, Codec, MethodDescriptor, ServiceDescriptor};
use serde_json::Value;
use transports::TcpTransport;

/// List, describe and call RPC services.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// An admin endpoint (http://HOST:PORT) to ask.
    #[arg(long, env = "RPC_ADMIN", conflicts_with_all = ["registry", "address"])]
    admin: Option<String>,
    /// Bearer token for the admin endpoint's invoke.
    #[arg(long, env = "RPC_ADMIN_TOKEN")]
    token: Option<String>,
    /// A registry (memory://, file://DIR, zookeeper://, etcd://) to find providers in.
    #[arg(long, env = "RPC_REGISTRY", conflicts_with = "address")]
    registry: Option<String>,
    /// A provider address (HOST:PORT) to call directly.
    #[arg(long)]
    address: Option<String>,
    /// Timeout of a call, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The services an admin endpoint's process provides and consumes.
    List,
    /// One service: its methods (admin) or its providers and their methods (registry).
    Describe {
        /// Service name, e.g. demo.Greeter.
        service: String,
    },
    /// Calls a method with JSON arguments and prints the JSON result.
    Call {
        /// Service name.
        service: String,
        /// Method name.
        method: String,
        /// Arguments: a JSON array (or, through an admin endpoint, an object by name).
        #[arg(default_value = "[]")]
        args: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        examples::init_logging();
    }
    exit_code("rpcctl", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), String> {
    match (&args.admin, &args.command) {
        (Some(admin), _) => through_admin(admin.trim_end_matches('/'), &args).await,
        (None, Command::List) => Err(
            "list needs --admin: a registry lists the providers of a service you name \
             (use describe SERVICE --registry URL)"
                .into(),
        ),
        (None, Command::Describe { service }) => describe_from_registry(&args, service).await,
        (
            None,
            Command::Call {
                service,
                method,
                args: json,
            },
        ) => call_directly(&args, service, method, json).await,
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

async fn get_json(url: &str) -> Result<Value, String> {
    let (status, body) = examples::http::request("GET", url, None, None).await?;
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    match status {
        200 => Ok(value),
        _ => Err(format!(
            "{url}: {status}: {}",
            value["error"].as_str().unwrap_or(&body)
        )),
    }
}

fn signature(method: &Value) -> String {
    let args: Vec<&str> = method["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{}({})",
        method["name"].as_str().unwrap_or("?"),
        args.join(", ")
    )
}

async fn through_admin(admin: &str, args: &Args) -> Result<(), String> {
    match &args.command {
        Command::List => {
            let services = get_json(&format!("{admin}/api/services")).await?;
            for (side, list) in [
                ("provides", &services["provided"]),
                ("consumes", &services["consumed"]),
            ] {
                for service in list.as_array().into_iter().flatten() {
                    let methods: Vec<String> = service["methods"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(signature)
                        .collect();
                    println!(
                        "{side} {} {}",
                        service["service"].as_str().unwrap_or("?"),
                        methods.join(" ")
                    );
                }
            }
            Ok(())
        }
        Command::Describe { service } => {
            let services = get_json(&format!("{admin}/api/services")).await?;
            let found: Vec<&Value> = ["provided", "consumed"]
                .iter()
                .flat_map(|side| services[side].as_array().into_iter().flatten())
                .filter(|s| s["service"] == service.as_str())
                .collect();
            let Some(first) = found.first() else {
                return Err(format!("{admin} knows no service {service:?}"));
            };
            println!("service {service}");
            for method in first["methods"].as_array().into_iter().flatten() {
                let settings: Vec<String> = [
                    "timeout_ms",
                    "retries",
                    "cluster",
                    "loadbalance",
                    "hash_arg",
                ]
                .iter()
                .filter(|k| !method[**k].is_null())
                .map(|k| format!("{k}={}", method[*k]))
                .chain(
                    ["oneway", "idempotent"]
                        .iter()
                        .filter(|k| method[**k] == true)
                        .map(|k| k.to_string()),
                )
                .collect();
                println!("  {} {}", signature(method), settings.join(" "));
            }
            Ok(())
        }
        Command::Call {
            service,
            method,
            args: json,
        } => {
            let arguments: Value =
                serde_json::from_str(json).map_err(|e| format!("arguments are not JSON: {e}"))?;
            let body = serde_json::json!({
                "service": service,
                "method": method,
                "args": arguments,
                "timeout_ms": args.timeout_ms,
            });
            let url = format!("{admin}/api/invoke");
            let (status, text) = examples::http::request(
                "POST",
                &url,
                args.token.as_deref(),
                Some(body.to_string()),
            )
            .await?;
            let answer: Value =
                serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))?;
            match status {
                200 => {
                    print_json(&answer["result"]);
                    Ok(())
                }
                _ => Err(format!(
                    "{status}: {}",
                    answer["error"].as_str().unwrap_or(&text)
                )),
            }
        }
    }
}

async fn describe_from_registry(args: &Args, service: &str) -> Result<(), String> {
    let Some(url) = &args.registry else {
        return Err("describe needs --admin or --registry".into());
    };
    let registry = registry::connect(url)
        .await
        .map_err(|e| format!("--registry: {e}"))?;
    let mut subscription = registry
        .subscribe(service)
        .await
        .map_err(|e| e.to_string())?;
    let providers = tokio::time::timeout(Duration::from_millis(args.timeout_ms), async {
        while let Some(update) = subscription.next().await {
            if let registry::Update::Providers(providers) = update {
                return Ok(providers);
            }
        }
        Err("the registry closed the subscription".to_owned())
    })
    .await
    .map_err(|_| format!("no answer from {url} within {} ms", args.timeout_ms))??;
    println!("service {service}: {} provider(s)", providers.len());
    for provider in providers.iter() {
        println!(
            "  {}://{} methods: {} serialization: {} weight: {}",
            provider.scheme(),
            provider.address(),
            provider.param("methods").unwrap_or("?"),
            provider.param("serialization").unwrap_or("?"),
            provider.param("weight").unwrap_or("100"),
        );
    }
    Ok(())
}

async fn call_directly(args: &Args, service: &str, method: &str, json: &str) -> Result<(), String> {
    let arguments: Value =
        serde_json::from_str(json).map_err(|e| format!("arguments are not JSON: {e}"))?;
    let count = match &arguments {
        Value::Array(values) => values.len(),
        Value::Null => 0,
        _ => {
            return Err(
                "without --admin, arguments are a JSON array (argument names are not known)".into(),
            );
        }
    };
    // The method is known only by name here: describe it for this one call. Leaking a
    // few bytes once in a command-line process is the price of `&'static` descriptors.
    let arg_names: Vec<&'static str> = (0..count).map(|i| &*format!("arg{i}").leak()).collect();
    let methods: &'static [MethodDescriptor] = Box::leak(Box::new([MethodDescriptor {
        args: arg_names.leak(),
        ..MethodDescriptor::new(String::from(method).leak())
    }]));
    let descriptor: &'static ServiceDescriptor = Box::leak(Box::new(ServiceDescriptor {
        name: String::from(service).leak(),
        version: "",
        methods,
        codecs: &Codec::SERDE,
    }));
    let mut builder = Client::builder(service.to_owned())
        .descriptor(descriptor)
        .codec(Codec::Json)
        .transport(TcpTransport::default())
        .timeout(Duration::from_millis(args.timeout_ms))
        .without_stats();
    builder = match (&args.address, &args.registry) {
        (Some(address), _) => builder.address(address.clone()),
        (None, Some(url)) => builder.registry(
            registry::connect(url)
                .await
                .map_err(|e| format!("--registry: {e}"))?,
        ),
        (None, None) => return Err("call needs --admin, --registry or --address".into()),
    };
    let client = builder.build().map_err(|e| e.to_string())?;
    let result = client
        .call_json(method, arguments)
        .await
        .map_err(|e| e.to_string())?;
    print_json(&result);
    Ok(())
}
