//! Generic invoke: calling a method by name with JSON arguments, without its Rust types
//! (Dubbo's generic service; what an admin endpoint's "invoke" form and a CLI use).

use std::sync::Arc;

use serde_json::Value;

use super::{Client, Shared};
use crate::format::{Encode, Serde};
use crate::{Codec, Error, Result};

impl Client {
    /// A copy of this client whose calls use `codec`; it shares the providers, balancing,
    /// layers and statistics.
    pub fn with_codec(&self, codec: Codec) -> Client {
        let shared = &self.shared;
        Client {
            shared: Arc::new(Shared {
                service: shared.service.clone(),
                version: shared.version.clone(),
                codec,
                timeout: shared.timeout,
                stack: shared.stack.clone(),
                cluster: shared.cluster.clone(),
                descriptor: shared.descriptor,
                stats: shared.stats.clone(),
                method_timeouts: shared.method_timeouts.clone(),
                deadline_enforced: shared.deadline_enforced,
            }),
            timeout: self.timeout,
            attachments: self.attachments.clone(),
        }
    }

    /// Calls `method` (by name) with JSON arguments and returns its JSON result, through
    /// the normal consumer path (cluster mode, load balancing, retries, statistics), in
    /// the JSON codec whatever this client's codec.
    ///
    /// `args` is a JSON array with one element per argument, or an object keyed by the
    /// argument names of the service's descriptor. A method's own result `Err(e)` comes
    /// back as `{"Err": e}` (serde's form for `Result`).
    ///
    /// Fails with [`Error::MethodNotFound`] when the client has no descriptor or the
    /// descriptor no such method, and with [`Error::Codec`] when `args` does not fit the
    /// method's argument list (wrong count, unknown or missing names). Arguments of the
    /// wrong type are refused by the provider, which cannot decode them.
    pub async fn call_json(&self, method: &str, args: Value) -> Result<Value> {
        let not_found = || Error::MethodNotFound {
            service: self.service().to_owned(),
            method: method.to_owned(),
        };
        let descriptor = self.descriptor().ok_or_else(not_found)?;
        let index = descriptor.method_index(method).ok_or_else(not_found)?;
        let method = &descriptor.methods[index];
        let args = arguments(method, args)?;
        let hash_key = self.needs_hash_key(method).then(|| {
            let position = method
                .hash_arg
                .and_then(|name| method.args.iter().position(|arg| *arg == name))
                .unwrap_or(0);
            let key = args.get(position).unwrap_or(&Value::Null);
            <Serde as Encode<Value>>::hash_key(key)
        });
        let client = match self.codec() {
            Codec::Json => self.clone(),
            _ => self.with_codec(Codec::Json),
        };
        // The stub encodes its argument tuple: `()` for no arguments, which JSON writes
        // as null, else an array.
        let args = match args.is_empty() {
            true => Value::Null,
            false => Value::Array(args),
        };
        if method.oneway {
            client
                .call_oneway_in::<Serde, Value>(method, &args, hash_key)
                .await?;
            return Ok(Value::Null);
        }
        match client
            .call_in::<Serde, Value, Value>(method, &args, hash_key)
            .await
        {
            Err(Error::Failsafe(_)) => Ok(Value::Null),
            other => other,
        }
    }
}

/// `args` as the positional list `method` takes.
fn arguments(method: &crate::MethodDescriptor, args: Value) -> Result<Vec<Value>> {
    let bad = |message: String| Error::Codec {
        codec: "json",
        message: format!("arguments of {}: {message}", method.name),
    };
    let expected = method.args.len();
    match args {
        Value::Array(values) if values.len() == expected => Ok(values),
        Value::Array(values) => Err(bad(format!(
            "expected {expected} ({}), got {}",
            method.args.join(", "),
            values.len()
        ))),
        Value::Object(mut named) => {
            let values = method
                .args
                .iter()
                .map(|name| {
                    named.remove(*name).ok_or_else(|| {
                        bad(format!(
                            "missing argument {name:?} (it takes {})",
                            method.args.join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            match named.keys().next() {
                Some(extra) => Err(bad(format!(
                    "no argument named {extra:?} (it takes {})",
                    method.args.join(", ")
                ))),
                None => Ok(values),
            }
        }
        Value::Null if expected == 0 => Ok(Vec::new()),
        other if expected == 1 => Ok(vec![other]),
        _ => Err(bad(format!(
            "expected an array or an object of {expected} arguments ({})",
            method.args.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MethodDescriptor;
    use serde_json::json;

    static GREET: MethodDescriptor = MethodDescriptor {
        args: &["name", "times"],
        ..MethodDescriptor::new("greet")
    };

    #[test]
    fn arguments_come_by_position_or_by_name() {
        assert_eq!(
            arguments(&GREET, json!(["a", 2])).unwrap(),
            vec![json!("a"), json!(2)]
        );
        assert_eq!(
            arguments(&GREET, json!({"times": 2, "name": "a"})).unwrap(),
            vec![json!("a"), json!(2)]
        );
    }

    #[test]
    fn argument_lists_that_do_not_fit_are_refused_with_the_expected_names() {
        for bad in [
            json!(["a"]),
            json!({"name": "a"}),
            json!({"name": "a", "times": 1, "extra": 0}),
            json!("a"),
        ] {
            let error = arguments(&GREET, bad.clone()).unwrap_err();
            assert!(matches!(error, Error::Codec { .. }), "{bad}: {error}");
            assert!(error.to_string().contains("name"), "{error}");
        }
    }
}
