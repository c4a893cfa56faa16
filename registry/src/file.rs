//! `file:///DIR`: providers and consumers of one host find each other through files.
//!
//! Layout: `DIR/<encoded service>/<pid>-<url hash>.url`, one file per registered URL,
//! holding the URL, the owner's host name and pid, and when its lease runs out. The
//! owner rewrites it (atomically: a temporary file renamed over it) every third of the
//! lease. Consumers watch the service folder (inotify and the like, through `notify`) and
//! rescan it periodically, since a lease running out or a process dying makes no file
//! event: an entry counts while its lease runs and, on the same host, its process lives.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use notify::Watcher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::subscription::Topics;
use crate::url::path_segment;
use crate::{Error, ProviderUrl, Registry, RegistryAddress, Subscription};

/// A registry in a directory shared by the processes of one host.
#[derive(Debug)]
pub struct FileRegistry {
    address: RegistryAddress,
    dir: PathBuf,
    lease: Duration,
    scan: Duration,
    mine: Arc<Mutex<BTreeMap<ProviderUrl, PathBuf>>>,
    topics: Arc<Topics>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl FileRegistry {
    /// How long a provider file counts without being renewed (`lease_ms`).
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
    /// How often consumers rescan a service folder besides watching it (`scan_ms`).
    pub const DEFAULT_SCAN: Duration = Duration::from_millis(500);

    /// Opens the registry in the directory of `address` (`file:///DIR?lease_ms=..&scan_ms=..`),
    /// creating it when missing.
    pub fn open(address: RegistryAddress) -> Result<FileRegistry, Error> {
        let dir = PathBuf::from(address.location());
        let lease = address.millis("lease_ms", Self::DEFAULT_LEASE)?;
        let scan = address.millis("scan_ms", Self::DEFAULT_SCAN)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
        Ok(FileRegistry {
            address,
            dir,
            lease,
            scan,
            mine: Arc::default(),
            topics: Arc::default(),
            tasks: Mutex::default(),
        })
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn service_dir(&self, service: &str) -> PathBuf {
        self.dir.join(path_segment(service))
    }

    fn file_of(&self, url: &ProviderUrl) -> PathBuf {
        let text = url.to_string();
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.service_dir(url.service())
            .join(format!("{}-{hash:016x}.url", std::process::id()))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(tokio::spawn(task));
    }

    fn lock_mine(&self) -> std::sync::MutexGuard<'_, BTreeMap<ProviderUrl, PathBuf>> {
        self.mine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registry for FileRegistry {
    fn address(&self) -> &RegistryAddress {
        &self.address
    }

    fn register(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let url = url.clone();
        Box::pin(async move {
            if url.is_consumer() {
                // The file registry serves one host: nothing reads consumers from it.
                return Ok(());
            }
            let path = self.file_of(&url);
            write_lease(&path, &url, self.lease)?;
            let first = {
                let mut mine = self.lock_mine();
                let first = mine.is_empty();
                mine.insert(url, path);
                first
            };
            if first {
                self.spawn(renew(self.mine.clone(), self.lease));
            }
            Ok(())
        })
    }

    fn unregister(&self, url: &ProviderUrl) -> BoxFuture<'_, Result<(), Error>> {
        let path = self
            .lock_mine()
            .remove(url)
            .unwrap_or_else(|| self.file_of(url));
        Box::pin(async move {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::Io(format!("cannot remove {}: {e}", path.display())))
                }
                _ => Ok(()),
            }
        })
    }

    fn subscribe(&self, service: &str) -> BoxFuture<'_, Result<Subscription, Error>> {
        let service = service.to_owned();
        Box::pin(async move {
            let dir = self.service_dir(&service);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
            let (subscription, first) = self.topics.subscribe(&service);
            if first {
                let mut watch = FolderWatch::new(dir, service, self.lease, self.topics.clone());
                // The first set is there before subscribe returns: no caller sees a
                // registry with providers as empty for a moment.
                watch.scan();
                self.spawn(watch.run(self.scan));
            }
            Ok(subscription)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.stop();
        Box::pin(async {})
    }
}

impl FileRegistry {
    fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
        for (_, path) in std::mem::take(&mut *self.lock_mine()) {
            let _ = std::fs::remove_file(path);
        }
        self.topics.close();
    }
}

impl Drop for FileRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Rewrites every file of `mine` each third of the lease, until the registry goes.
async fn renew(mine: Arc<Mutex<BTreeMap<ProviderUrl, PathBuf>>>, lease: Duration) {
    let mut every = tokio::time::interval(lease / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let entries: Vec<_> = mine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(url, path)| (url.clone(), path.clone()))
            .collect();
        for (url, path) in entries {
            if let Err(error) = write_lease(&path, &url, lease) {
                tracing::warn!(%error, "file registry: cannot renew a provider's lease");
            }
        }
    }
}

/// Writes the file of `url` with a lease running `lease` from now: a temporary file
/// renamed over the old one, so a reader never sees half a file.
fn write_lease(path: &Path, url: &ProviderUrl, lease: Duration) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let expires = epoch_ms().saturating_add(lease.as_millis() as u64);
    let text = format!(
        "url={url}\nhost={}\npid={}\nexpires_ms={expires}\n",
        host_name(),
        std::process::id()
    );
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, text).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// One entry as read back, or why it is not one.
#[derive(Debug, PartialEq)]
struct Entry {
    url: ProviderUrl,
    host: String,
    pid: u32,
    expires_ms: u64,
}

/// Largest provider file read: a bigger one is garbage, not a URL.
const MAX_FILE: u64 = 64 * 1024;

fn parse_entry(text: &str) -> Result<Entry, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line without '=': {:?}", truncate(line)))?;
        fields.insert(key, value);
    }
    let field = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("no {key} field"))
    };
    Ok(Entry {
        url: field("url")?.parse().map_err(|e: Error| e.to_string())?,
        host: field("host")?.to_owned(),
        pid: field("pid")?.parse().map_err(|_| "pid is not a number")?,
        expires_ms: field("expires_ms")?
            .parse()
            .map_err(|_| "expires_ms is not a number")?,
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Follows one service folder: pushes its live entries to the subscribers.
struct FolderWatch {
    dir: PathBuf,
    service: String,
    lease: Duration,
    topics: Arc<Topics>,
    /// Files already warned about, so a garbage file is reported once, not every scan.
    warned: HashSet<PathBuf>,
}

impl FolderWatch {
    fn new(dir: PathBuf, service: String, lease: Duration, topics: Arc<Topics>) -> FolderWatch {
        FolderWatch {
            dir,
            service,
            lease,
            topics,
            warned: HashSet::new(),
        }
    }

    async fn run(mut self, every: Duration) {
        // File events only wake the scan; a full channel already holds a wake-up.
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |_event| {
            let _ = wake.try_send(());
        })
        .and_then(|mut watcher| {
            watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let _watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, dir = %self.dir.display(), "file registry: cannot watch; rescanning only");
                None
            }
        };
        let mut rescan = tokio::time::interval(every);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = rescan.tick() => {}
                Some(()) = woken.recv() => {}
            }
            self.scan();
        }
    }

    fn scan(&mut self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) => {
                self.topics
                    .unreachable(&format!("cannot read {}: {error}", self.dir.display()));
                return;
            }
        };
        let now = epoch_ms();
        let here = host_name();
        let mut urls = Vec::new();
        let mut present = HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "url") {
                continue;
            }
            present.insert(path.clone());
            match read_entry(&path) {
                Ok(entry) => {
                    let live =
                        entry.expires_ms > now && (entry.host != here || process_alive(entry.pid));
                    if live {
                        urls.push(entry.url);
                    } else if entry
                        .expires_ms
                        .saturating_add(self.lease.as_millis() as u64)
                        < now
                        || (entry.host == here && !process_alive(entry.pid))
                    {
                        // Long dead: tidy up, so the folder does not grow forever.
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Err(reason) => {
                    if self.warned.insert(path.clone()) {
                        tracing::warn!(file = %path.display(), %reason, "file registry: skipping an unreadable provider file");
                    }
                }
            }
        }
        self.warned.retain(|path| present.contains(path));
        self.topics.publish(&self.service, urls);
    }
}

fn read_entry(path: &Path) -> Result<Entry, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE {
        return Err(format!("{size} bytes, more than a provider file holds"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_entry(&text)
}

/// Whether process `pid` of this host still runs. Where that cannot be told (no
/// `/proc`), the lease alone decides.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.exists() || proc.join(pid.to_string()).exists()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Update;

    fn url(s: &str) -> ProviderUrl {
        s.parse().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rpc-file-registry-{name}-{}-{}",
            std::process::id(),
            epoch_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path, params: &str) -> FileRegistry {
        FileRegistry::open(format!("file://{}{params}", dir.display()).parse().unwrap()).unwrap()
    }

    async fn next_providers(subscription: &mut Subscription) -> Vec<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), subscription.next()).await {
                Ok(Some(Update::Providers(urls))) => {
                    return urls.iter().map(|u| u.address().to_owned()).collect();
                }
                Ok(Some(Update::Unreachable(_))) => continue,
                other => panic!("no providers pushed: {other:?}"),
            }
        }
    }

    #[test]
    fn entries_parse_and_garbage_is_an_error() {
        let entry = parse_entry("url=tcp://h:1/a.A\nhost=box\npid=42\nexpires_ms=7\n").unwrap();
        assert_eq!(entry.url, url("tcp://h:1/a.A"));
        assert_eq!(
            (entry.host.as_str(), entry.pid, entry.expires_ms),
            ("box", 42, 7)
        );
        for garbage in [
            "",
            "\u{0}\u{1}binary",
            "url=nope\nhost=h\npid=1\nexpires_ms=1",
            "url=tcp://h:1/a.A\nhost=h\npid=x\nexpires_ms=1",
            "url=tcp://h:1/a.A\nhost=h\npid=1",
        ] {
            assert!(parse_entry(garbage).is_err(), "{garbage:?}");
        }
    }

    #[tokio::test]
    async fn providers_come_and_go_and_garbage_is_skipped() {
        let dir = temp_dir("come-go");
        let provider = open(&dir, "");
        let consumer = open(&dir, "");
        let mut subscription = consumer.subscribe("a.A").await.unwrap();
        assert!(next_providers(&mut subscription).await.is_empty());
        provider.register(&url("tcp://h:1/a.A")).await.unwrap();
        assert_eq!(next_providers(&mut subscription).await, ["h:1"]);
        std::fs::write(
            dir.join("a.A").join("garbage.url"),
            b"\xff\xfe not a provider",
        )
        .unwrap();
        provider.register(&url("tcp://h:2/a.A")).await.unwrap();
        assert_eq!(next_providers(&mut subscription).await, ["h:1", "h:2"]);
        provider.unregister(&url("tcp://h:1/a.A")).await.unwrap();
        assert_eq!(next_providers(&mut subscription).await, ["h:2"]);
        drop(provider);
        assert!(next_providers(&mut subscription).await.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_entry_counts_while_its_lease_runs_and_its_process_lives() {
        let dir = temp_dir("lease");
        let consumer = open(&dir, "?scan_ms=50");
        let service_dir = dir.join("a.A");
        std::fs::create_dir_all(&service_dir).unwrap();
        let now = epoch_ms();
        let write = |name: &str, port: u16, pid: u32, expires_ms: u64| {
            let text = format!(
                "url=tcp://h:{port}/a.A\nhost={}\npid={pid}\nexpires_ms={expires_ms}\n",
                host_name()
            );
            std::fs::write(service_dir.join(name), text).unwrap();
        };
        let me = std::process::id();
        write("live.url", 1, me, now + 60_000);
        write("expired.url", 2, me, now - 1);
        // No process has pid 4 000 000 000 (above Linux's pid_max).
        write("dead.url", 3, 4_000_000_000, now + 60_000);
        let mut subscription = consumer.subscribe("a.A").await.unwrap();
        assert_eq!(next_providers(&mut subscription).await, ["h:1"]);
        assert!(
            !service_dir.join("dead.url").exists(),
            "a dead process's file is tidied"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_lease_is_renewed_while_the_provider_lives() {
        let dir = temp_dir("renew");
        let provider = open(&dir, "?lease_ms=300");
        let consumer = open(&dir, "?scan_ms=50");
        provider.register(&url("tcp://h:1/a.A")).await.unwrap();
        let mut subscription = consumer.subscribe("a.A").await.unwrap();
        assert_eq!(next_providers(&mut subscription).await, ["h:1"]);
        // Three leases later it is still there: renewed, not expired.
        tokio::time::sleep(Duration::from_millis(900)).await;
        match subscription.latest() {
            Some(Update::Providers(urls)) => assert_eq!(urls.len(), 1),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
