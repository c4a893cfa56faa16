//! Call metadata: attachments on the caller's side, [`Context`] on the handler's.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

/// String key/value metadata travelling with a call (trace id, token, tenant...).
///
/// A small vector: calls carry a handful of entries, and a linear scan over them beats
/// hashing. Keys are case-sensitive; inserting an existing key replaces its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments {
    entries: Vec<(String, String)>,
}

impl Attachments {
    /// No entries.
    pub const fn new() -> Attachments {
        Attachments {
            entries: Vec::new(),
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.swap_remove(index).1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order (until a removal).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Attachments {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Attachments {
        let mut attachments = Attachments::new();
        for (k, v) in iter {
            attachments.insert(k, v);
        }
        attachments
    }
}

/// What a handler knows about the call it serves.
///
/// A method of a `#[service]` trait receives it when its first argument is `&Context`;
/// it is passed explicitly instead of through a thread-local so a handler can be
/// called directly in tests.
#[derive(Debug, Default)]
pub struct Context {
    attachments: Attachments,
    deadline: Option<Instant>,
    peer: Option<SocketAddr>,
    /// When the transport read the request, if it says.
    received: Option<Instant>,
    /// What the handler sends back with its answer. A mutex because handlers hold
    /// `&Context`; it is uncontended (one handler per call) and allocates nothing until
    /// an entry is set.
    reply: Mutex<Attachments>,
}

impl Clone for Context {
    fn clone(&self) -> Context {
        Context {
            attachments: self.attachments.clone(),
            deadline: self.deadline,
            peer: self.peer,
            received: self.received,
            reply: Mutex::new(self.reply_guard().clone()),
        }
    }
}

impl Context {
    /// A context for a call with these attachments, deadline and peer.
    pub fn new(
        attachments: Attachments,
        deadline: Option<Instant>,
        peer: Option<SocketAddr>,
    ) -> Context {
        Context {
            attachments,
            deadline,
            peer,
            received: None,
            reply: Mutex::new(Attachments::new()),
        }
    }

    /// This context, saying the transport read the request at `at` (the instant it
    /// computed the deadline from). The provider's statistics time the call from it, and
    /// its timeout error reports the budget from it, instead of reading the clock again:
    /// two clock reads per call fewer on the provider.
    pub fn with_received_at(mut self, at: Instant) -> Context {
        self.received = Some(at);
        self
    }

    /// When the transport read the request, if it said ([`Context::with_received_at`]).
    pub fn received_at(&self) -> Option<Instant> {
        self.received
    }

    /// The attachment `key` the caller set.
    pub fn attachment(&self, key: &str) -> Option<&str> {
        self.attachments.get(key)
    }

    /// All attachments the caller set.
    pub fn attachments(&self) -> &Attachments {
        &self.attachments
    }

    /// When the caller stops waiting; the provider aborts the handler at this instant.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The caller's address, when the transport knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Sends `key: value` back to the caller with the answer (Dubbo's server-side
    /// attachments; gRPC response metadata over HTTP/2). The caller sees them in
    /// [`crate::Response::attachments`] ([`crate::Client::invoke`], consumer layers).
    /// Only a successful answer carries them.
    pub fn set_reply_attachment(&self, key: impl Into<String>, value: impl Into<String>) {
        self.reply_guard().insert(key, value);
    }

    /// Takes what [`Context::set_reply_attachment`] set (generated skeletons call it once
    /// the handler returned).
    pub fn take_reply_attachments(&self) -> Attachments {
        std::mem::take(&mut *self.reply_guard())
    }

    fn reply_guard(&self) -> std::sync::MutexGuard<'_, Attachments> {
        // A handler that panicked while inserting leaves a valid map behind.
        self.reply.lock().unwrap_or_else(|p| p.into_inner())
    }
}
