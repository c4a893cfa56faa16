//! Plain HTTP `POST /{service}/{method}` with a JSON body, on the gRPC port, so `curl` can
//! call any method:
//!
//! ```text
//! curl -d '{"a": 2, "b": 3}' -H 'content-type: application/json' \
//!     http://127.0.0.1:50051/demo.Greeter/add
//! ```
//!
//! The body is a JSON object keyed by argument name (the names come from the method's
//! descriptor) or an array of the arguments; the answer is the JSON of the result. A
//! failure is a JSON object `{"code", "grpc_status", "message"}` with a fitting 4xx/5xx.

use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use rpc_core::server::IncomingCall;
use rpc_core::{Code, Codec, Context, Error, MessageKind};
use serde_json::Value;

use super::body::Unary;
use super::server::{Connection, split_path};
use super::status::{GrpcStatus, message_for, parse_timeout, tri_name};
use super::{MAX_MESSAGE_LEN_SETTING, VERSION_HEADER, metadata};

/// True for the content types of the JSON gateway: `application/json`, or none at all
/// (`curl -d` without `-H` sends a form type, which is refused with a hint).
pub(super) fn accepts(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.is_empty() || essence.eq_ignore_ascii_case(b"application/json")
}

pub(super) async fn call<B>(connection: &Connection, request: Request<B>) -> Response<Unary>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.method() != Method::POST {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadRequest,
            "call a method with POST /{service}/{method} and a JSON body",
        );
    }
    let (parts, body) = request.into_parts();
    let Some((service, method)) = split_path(parts.uri.path()) else {
        return failure(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            &format!("path {:?} is not /{{service}}/{{method}}", parts.uri.path()),
        );
    };
    let version = parts
        .headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(parts.uri.query(), "version"))
        .unwrap_or_default();
    let shared = &connection.shared;
    let resolved = match shared.dispatcher.resolve(service, version, method) {
        Ok(resolved) => resolved,
        Err(error) => return error_response(&error),
    };
    let received = Instant::now();
    let timeout = match parts.headers.get("grpc-timeout") {
        Some(value) => match parse_timeout(value.as_bytes()) {
            Some(timeout) => timeout,
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    Code::BadRequest,
                    "invalid grpc-timeout header",
                );
            }
        },
        None => shared.config.json_timeout,
    };
    let deadline = received + timeout;
    let limit = shared.config.max_message_len;
    let read = Limited::new(body, limit as usize).collect();
    let bytes = match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(u64::from(limit) + 1);
            let error = Error::request_too_large(declared, limit.into(), MAX_MESSAGE_LEN_SETTING);
            return error_response(&error);
        }
        Ok(Err(error)) => {
            return failure(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                &format!("reading the body failed: {error}"),
            );
        }
        Err(_) => return error_response(&Error::Timeout(timeout)),
    };
    // A service from a .proto file takes its one request message as itself (its JSON
    // object), not a tuple of arguments.
    let one_message = resolved.service().codecs.first() == Some(&Codec::Protobuf);
    let args = match one_message {
        true => message_body(&bytes),
        false => arguments(&bytes, resolved.descriptor().args),
    };
    let args = match args {
        Ok(args) => args,
        Err(message) => return failure(StatusCode::BAD_REQUEST, Code::BadRequest, &message),
    };
    let call = IncomingCall {
        service,
        version,
        method,
        codec: Codec::Json,
        context: Context::new(
            metadata::attachments(&parts.headers),
            Some(deadline),
            Some(connection.peer),
        ),
        body: args,
    };
    match connection.run(call).await {
        Ok(response) => {
            let mut reply = Response::new(Unary::data(response.body));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            reply
        }
        Err(error) => error_response(&error),
    }
}

/// The JSON codec's encoding of the argument tuple, from an object keyed by argument name
/// or an array; the error says what the body should look like.
fn arguments(body: &[u8], names: &[&str]) -> Result<Bytes, String> {
    let expected = || {
        format!(
            "the body must be a JSON object keyed by argument name ({}) or an array of the \
             arguments",
            names.join(", ")
        )
    };
    let value: Value = if body.trim_ascii().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?
    };
    // A method without arguments takes `()`, which JSON writes as `null`.
    if names.is_empty() {
        return match value {
            Value::Null => Ok(Bytes::from_static(b"null")),
            Value::Array(items) if items.is_empty() => Ok(Bytes::from_static(b"null")),
            Value::Object(fields) if fields.is_empty() => Ok(Bytes::from_static(b"null")),
            _ => Err("the method takes no arguments: send {}, [] or nothing".into()),
        };
    }
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut fields) => {
            let items: Vec<Value> = names
                .iter()
                .map(|name| fields.remove(*name).unwrap_or(Value::Null))
                .collect();
            if let Some(unknown) = fields.keys().next() {
                return Err(format!("unknown argument {unknown:?}; {}", expected()));
            }
            items
        }
        _ => return Err(expected()),
    };
    if items.len() != names.len() {
        return Err(format!(
            "{} arguments given, the method takes {}; {}",
            items.len(),
            names.len(),
            expected()
        ));
    }
    serde_json::to_vec(&items)
        .map(Bytes::from)
        .map_err(|e| format!("arguments cannot be encoded: {e}"))
}

/// The body of a one-message (protobuf) method: a JSON object, passed on as it is.
fn message_body(body: &[u8]) -> Result<Bytes, String> {
    if body.trim_ascii().is_empty() {
        return Ok(Bytes::from_static(b"{}"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => Ok(Bytes::copy_from_slice(body)),
        Ok(_) => Err("the body must be a JSON object: the method's request message".into()),
        Err(e) => Err(format!("invalid JSON body: {e}")),
    }
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The HTTP status of a failed call.
fn http_status(error: &Error) -> StatusCode {
    if let Error::MessageTooLarge {
        kind: MessageKind::Request,
        ..
    } = error.root()
    {
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    match error.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        // Arguments that do not decode are the caller's mistake.
        Code::BadRequest | Code::Codec | Code::ClientError => StatusCode::BAD_REQUEST,
        Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(error: &Error) -> Response<Unary> {
    failure(http_status(error), error.code(), &message_for(error))
}

fn failure(status: StatusCode, code: Code, message: &str) -> Response<Unary> {
    let body = serde_json::json!({
        "code": tri_name(code),
        "grpc_status": GrpcStatus::for_code(code).number(),
        "message": message,
    });
    let mut response = Response::new(Unary::data(body.to_string().into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_arrays_become_the_argument_tuple() {
        let names = &["a", "b"];
        assert_eq!(
            &arguments(br#"{"b": 3, "a": 2}"#, names).unwrap()[..],
            b"[2,3]"
        );
        assert_eq!(&arguments(b"[2, 3]", names).unwrap()[..], b"[2,3]");
        assert_eq!(&arguments(br#"{"a": 2}"#, names).unwrap()[..], b"[2,null]");
        assert_eq!(&arguments(b"", &[]).unwrap()[..], b"null");
        assert_eq!(&arguments(b"{}", &[]).unwrap()[..], b"null");
        for bad in [&br#"{"a": 1, "c": 2}"#[..], b"[1]", b"7", b"{", b"\"a\""] {
            assert!(arguments(bad, names).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_of_the_gateway() {
        assert!(accepts(b""));
        assert!(accepts(b"application/json; charset=utf-8"));
        assert!(!accepts(b"application/x-www-form-urlencoded"));
        assert!(!accepts(b"text/plain"));
    }
}
