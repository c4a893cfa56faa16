//! What a subscriber is pushed, and the per-service fan-out every registry shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::ProviderUrl;

/// One push of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The full provider set of the service, sorted, without duplicates. May be empty:
    /// what to make of an empty set (a real one, or a wiped one) is the subscriber's call.
    Providers(Arc<[ProviderUrl]>),
    /// The registry cannot be reached (connecting, outage, session lost): the last set
    /// pushed may be out of date. The next [`Update::Providers`] follows reconnection.
    Unreachable(String),
}

/// The provider sets of one service, pushed by a registry as they change.
#[derive(Debug)]
pub struct Subscription {
    service: String,
    receiver: watch::Receiver<Option<Update>>,
}

impl Subscription {
    /// The service followed.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Waits for the next update; the first call returns the current one if the registry
    /// has one. Only the latest update is kept: a slow subscriber skips intermediate sets,
    /// never the newest. `None` once the registry is closed.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            self.receiver.changed().await.ok()?;
            if let Some(update) = self.receiver.borrow_and_update().clone() {
                return Some(update);
            }
        }
    }

    /// The latest update, without waiting (`None` before the first).
    pub fn latest(&self) -> Option<Update> {
        self.receiver.borrow().clone()
    }
}

/// The subscriptions of one registry handle, by service.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    senders: Mutex<HashMap<String, watch::Sender<Option<Update>>>>,
}

impl Topics {
    /// A subscription to `service`, and whether it is the first (the caller then starts
    /// watching the service).
    pub(crate) fn subscribe(&self, service: &str) -> (Subscription, bool) {
        let mut senders = self.lock();
        let mut first = false;
        let sender = senders.entry(service.to_owned()).or_insert_with(|| {
            first = true;
            watch::Sender::new(None)
        });
        let mut receiver = sender.subscribe();
        receiver.mark_changed();
        let subscription = Subscription {
            service: service.to_owned(),
            receiver,
        };
        (subscription, first)
    }

    /// Pushes `urls` as the providers of `service`, if they differ from the last push.
    pub(crate) fn publish(&self, service: &str, mut urls: Vec<ProviderUrl>) {
        urls.sort_by_cached_key(ProviderUrl::to_string);
        urls.dedup();
        let senders = self.lock();
        if let Some(sender) = senders.get(service) {
            sender.send_if_modified(|current| match current {
                Some(Update::Providers(old)) if **old == *urls => false,
                _ => {
                    *current = Some(Update::Providers(urls.into()));
                    true
                }
            });
        }
    }

    /// Tells the subscribers of every service that the registry is unreachable (once, not
    /// again until a set was pushed in between).
    pub(crate) fn unreachable(&self, reason: &str) {
        for sender in self.lock().values() {
            sender.send_if_modified(|current| match current {
                Some(Update::Unreachable(_)) => false,
                _ => {
                    *current = Some(Update::Unreachable(reason.to_owned()));
                    true
                }
            });
        }
    }

    /// Ends every subscription.
    pub(crate) fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Option<Update>>>> {
        self.senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ProviderUrl {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn subscribers_get_the_current_set_then_changes_only() {
        let topics = Topics::default();
        let (mut early, first) = topics.subscribe("a.A");
        assert!(first);
        topics.publish("a.A", vec![url("tcp://h:2/a.A"), url("tcp://h:1/a.A")]);
        let (mut late, first) = topics.subscribe("a.A");
        assert!(!first);
        let expected = Update::Providers(vec![url("tcp://h:1/a.A"), url("tcp://h:2/a.A")].into());
        assert_eq!(early.next().await, Some(expected.clone()));
        assert_eq!(late.next().await, Some(expected));
        // The same set again is not a change.
        topics.publish("a.A", vec![url("tcp://h:1/a.A"), url("tcp://h:2/a.A")]);
        topics.unreachable("down");
        topics.unreachable("still down");
        assert_eq!(early.next().await, Some(Update::Unreachable("down".into())));
        topics.close();
        assert_eq!(early.next().await, None);
    }
}
