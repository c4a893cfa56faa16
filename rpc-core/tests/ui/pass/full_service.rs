//! Every feature of `#[service]` in one trait, in a crate that denies warnings.
#![deny(warnings, missing_docs, unreachable_pub)]

use rpc_core::Context;
use serde::{Deserialize, Serialize};

/// An order.
#[derive(Serialize, Deserialize)]
pub struct Order {
    /// Id.
    pub id: u64,
}

/// A receipt.
#[derive(Serialize, Deserialize)]
pub struct Receipt {
    /// Total.
    pub total: u64,
}

/// A user error.
#[derive(Serialize, Deserialize)]
pub enum ShopError {
    /// Refused.
    Refused,
}

/// A shop.
#[rpc_core::service(name = "demo.Shop", version = "1.0.0")]
pub trait Shop {
    /// Charges.
    #[rpc(
        timeout_ms = 200,
        retries = 0,
        cluster = "failfast",
        loadbalance = "random"
    )]
    #[rpc(idempotent, hash_arg = "order")]
    async fn charge(&self, order: Order, amount: u64) -> Result<Receipt, ShopError>;
    /// Logs.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Who.
    async fn whoami(&self, cx: &Context) -> String;
    /// Ping.
    async fn ping(&self) -> ();
    /// Tuple and collection types.
    async fn many(
        &self,
        a: Vec<(String, u8)>,
        b: Option<std::collections::HashMap<String, u64>>,
    ) -> [u8; 4];
}

// A private service in the same crate: no dead-code or visibility warnings either.
#[rpc_core::service]
trait Internal {
    async fn tick(&self) -> u64;
}

struct MyShop;

impl Shop for MyShop {
    async fn charge(&self, order: Order, amount: u64) -> Result<Receipt, ShopError> {
        let _ = order.id;
        Ok(Receipt { total: amount })
    }
    async fn log(&self, _line: String) {}
    async fn whoami(&self, cx: &Context) -> String {
        cx.attachment("user").unwrap_or_default().to_owned()
    }
    async fn ping(&self) {}
    async fn many(
        &self,
        _a: Vec<(String, u8)>,
        _b: Option<std::collections::HashMap<String, u64>>,
    ) -> [u8; 4] {
        [0; 4]
    }
}

fn main() {
    let server = ShopServer::new(MyShop);
    let _: &dyn rpc_core::Skeleton = &server;
    let _ = ShopServer::from_arc(std::sync::Arc::new(MyShop)).clone();
    let _builder: rpc_core::ClientBuilder<ShopClient> = ShopClient::builder();
    assert_eq!(SHOP_DESCRIPTOR.name, "demo.Shop");
    assert_eq!(INTERNAL_DESCRIPTOR.methods.len(), 1);
}
