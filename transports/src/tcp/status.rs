//! The status byte of a response frame and its mapping to core's [`Code`].
//!
//! The numbers are Dubbo's own, so a capture of our traffic reads like Dubbo's. Core never
//! sees them: a provider's error becomes a [`Code`], written here as a byte, and a byte read
//! here becomes a [`Code`] again on the caller.

use rpc_core::Code;

/// Dubbo has no status for a refused caller (a bad token, a denied address): it answers
/// 40, bad request, with a message. Ours starts with this, by which a caller tells the
/// refusal from other bad requests and rebuilds [`rpc_core::Error::Unauthorized`].
pub const UNAUTHORIZED_PREFIX: &str = "unauthorized: ";

/// The status byte of a response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// 20: the call succeeded; the body holds the encoded result.
    Ok,
    /// 25: the provider could not decode the arguments or encode the result.
    SerializationError,
    /// 30: the caller's deadline passed.
    ClientTimeout,
    /// 31: the provider stopped the work because the deadline passed.
    ServerTimeout,
    /// 40: the request could not be read (unknown codec, malformed head, frame too large).
    BadRequest,
    /// 50: the response could not be read.
    BadResponse,
    /// 60: no such service, version or method on this provider.
    ServiceNotFound,
    /// 70: the handler failed (it panicked).
    ServiceError,
    /// 80: the provider failed outside the handler.
    ServerError,
    /// 90: the caller failed.
    ClientError,
    /// 100: the provider refused the call (overloaded or shutting down).
    ServerOverloaded,
    /// Any other byte, kept as received so nothing is lost.
    Other(u8),
}

impl Status {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Status::Ok => 20,
            Status::SerializationError => 25,
            Status::ClientTimeout => 30,
            Status::ServerTimeout => 31,
            Status::BadRequest => 40,
            Status::BadResponse => 50,
            Status::ServiceNotFound => 60,
            Status::ServiceError => 70,
            Status::ServerError => 80,
            Status::ClientError => 90,
            Status::ServerOverloaded => 100,
            Status::Other(code) => code,
        }
    }

    /// Reads a wire byte; unknown values are kept as [`Status::Other`].
    pub fn from_byte(code: u8) -> Status {
        match code {
            20 => Status::Ok,
            25 => Status::SerializationError,
            30 => Status::ClientTimeout,
            31 => Status::ServerTimeout,
            40 => Status::BadRequest,
            50 => Status::BadResponse,
            60 => Status::ServiceNotFound,
            70 => Status::ServiceError,
            80 => Status::ServerError,
            90 => Status::ClientError,
            100 => Status::ServerOverloaded,
            other => Status::Other(other),
        }
    }

    /// The status a provider writes for an error with `code`.
    pub fn for_code(code: Code) -> Status {
        match code {
            Code::Codec => Status::SerializationError,
            Code::Timeout => Status::ServerTimeout,
            Code::BadRequest => Status::BadRequest,
            Code::BadResponse => Status::BadResponse,
            Code::NotFound => Status::ServiceNotFound,
            Code::ServiceError => Status::ServiceError,
            Code::ClientError => Status::ClientError,
            Code::Overloaded => Status::ServerOverloaded,
            Code::Unauthorized => Status::BadRequest,
            _ => Status::ServerError,
        }
    }

    /// What a caller reads from this status (`None` for [`Status::Ok`]).
    pub fn to_code(self) -> Option<Code> {
        Some(match self {
            Status::Ok => return None,
            Status::SerializationError => Code::Codec,
            Status::ClientTimeout | Status::ServerTimeout => Code::Timeout,
            Status::BadRequest => Code::BadRequest,
            Status::BadResponse => Code::BadResponse,
            Status::ServiceNotFound => Code::NotFound,
            Status::ServiceError => Code::ServiceError,
            Status::ServerError => Code::ServerError,
            Status::ClientError => Code::ClientError,
            Status::ServerOverloaded => Code::Overloaded,
            Status::Other(_) => Code::Unknown,
        })
    }
}

/// The message a provider sends with an error of `code`: refusals of the caller get
/// [`UNAUTHORIZED_PREFIX`].
pub fn wire_message(code: Code, message: String) -> String {
    match code {
        Code::Unauthorized => format!("{UNAUTHORIZED_PREFIX}{message}"),
        _ => message,
    }
}

/// What a caller reads from an error answer: `code` as [`Status::to_code`] gave it, made
/// [`Code::Unauthorized`] (with the prefix taken off the message) for a refusal.
pub fn read_message(code: Code, message: &str) -> (Code, &str) {
    match message.strip_prefix(UNAUTHORIZED_PREFIX) {
        Some(rest) if code == Code::BadRequest => (Code::Unauthorized, rest),
        _ => (code, message),
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Status::Ok => "ok",
            Status::SerializationError => "serialization error",
            Status::ClientTimeout => "client timeout",
            Status::ServerTimeout => "server timeout",
            Status::BadRequest => "bad request",
            Status::BadResponse => "bad response",
            Status::ServiceNotFound => "service not found",
            Status::ServiceError => "service error",
            Status::ServerError => "server error",
            Status::ClientError => "client error",
            Status::ServerOverloaded => "server overloaded",
            Status::Other(_) => "unknown status",
        };
        write!(f, "{} ({name})", self.byte())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for byte in 0..=u8::MAX {
            assert_eq!(Status::from_byte(byte).byte(), byte);
        }
    }

    #[test]
    fn every_code_survives_the_wire() {
        for code in [
            Code::Codec,
            Code::Timeout,
            Code::BadRequest,
            Code::BadResponse,
            Code::NotFound,
            Code::ServiceError,
            Code::ServerError,
            Code::ClientError,
            Code::Overloaded,
        ] {
            assert_eq!(Status::for_code(code).to_code(), Some(code));
        }
        assert_eq!(Status::from_byte(7).to_code(), Some(Code::Unknown));
    }

    #[test]
    fn refusals_travel_as_bad_requests_with_a_prefix() {
        let status = Status::for_code(Code::Unauthorized);
        assert_eq!(status.byte(), 40);
        let message = wire_message(Code::Unauthorized, "missing token".into());
        let code = status.to_code().unwrap();
        assert_eq!(
            read_message(code, &message),
            (Code::Unauthorized, "missing token")
        );
        assert_eq!(
            read_message(Code::BadRequest, "bad head"),
            (Code::BadRequest, "bad head")
        );
        assert_eq!(
            read_message(Code::ServiceError, &message),
            (Code::ServiceError, message.as_str())
        );
    }
}
