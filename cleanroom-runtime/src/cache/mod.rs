//! The volume cache: initialised Postgres data directories kept in named
//! volumes between runs, so that a cold start copies a cluster (with the
//! templates its migrations made) instead of running `initdb` and the
//! migrations again.
//!
//! - **Key.** One volume per cache key, `cleanroom-cache-<service>-<hash>`:
//!   the image and the whole environment but the password (`POSTGRES_USER`,
//!   `POSTGRES_DB`, `POSTGRES_INITDB_ARGS`, locale variables... all decide
//!   what `initdb` makes), the data directory and [`FORMAT`].
//! - **Use.** The container mounts the volume at [`MOUNT`] and starts through
//!   [`RESTORE`]: the newest complete generation is copied into the (tmpfs)
//!   data directory before the image's entrypoint runs, which then sees
//!   `PG_VERSION` and skips `initdb`. A copy that fails is thrown away and the
//!   entrypoint initialises as usual.
//! - **Fill.** On a miss, once the server is Ready and before it is handed to
//!   any test, and again after a template was built from new migrations,
//!   [`FILL`] copies the running cluster in backup mode into a new generation
//!   directory and marks it complete last: a copy cut short is never used.
//!   A copy made while tests may run is settled first: a server of its own
//!   on the copy cleans it and shuts down cleanly, so that a restore copies
//!   one WAL segment, starts without recovery and skips the clean-up.
//! - **Eviction.** Every use touches `<runtime dir>/caches/<volume>`, which
//!   also holds the volume's size; when a run ends its reaper removes cache
//!   volumes unused for longer than `run.cache_ttl`, then the least recently
//!   used ones while all of them together are larger than `run.cache_size`.
//!   `cargo cleanroom prune` removes them too.
//!
//! Cache volumes carry `cleanroom.managed=true` and `cleanroom.cache=volume`
//! but no `cleanroom.session`: they belong to no run, so no run's reaper
//! removes them with its containers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::docker::{is_mine, owner_labels, ContainerRequest, Docker, MountRequest, MANAGED_LABEL};
pub(crate) mod records;

use crate::config::LayerPolicy;
use crate::engine::Engine;
use crate::eviction::{self, Item};
use crate::service::definition::GenericContainer;

/// The label that marks a cache volume, with the value `volume`.
pub const CACHE_LABEL: &str = "cleanroom.cache";
/// The label naming the service a cache volume serves.
pub const CACHE_SERVICE_LABEL: &str = "cleanroom.cache.service";
/// Bumped when the layout of a cache volume changes, so old ones are not used.
const FORMAT: u32 = 1;
/// Where the cache volume is mounted in the container.
pub(crate) const MOUNT: &str = "/cleanroom-cache";
/// Where [`RESTORE`] writes what it did, read back once the server is Ready.
const STATE_FILE: &str = "/tmp/cleanroom-volume-cache";

/// Runs before the image's entrypoint (`sh -c RESTORE cleanroom-cache <cmd…>`,
/// as the image's user: root for the Postgres images). Only POSIX `sh` and
/// busybox-compatible tools. A generation made by another major version of
/// Postgres (a moving tag such as `latest`) is not used: the server would
/// refuse it (the version is read beside the copy, which is then thrown
/// away).
const RESTORE: &str = include_str!("restore.sh");

/// Copies the running cluster into a new generation of the cache, in backup
/// mode (a consistent copy of a running server, without `pg_basebackup`,
/// which not every image has), checks that the WAL the copy starts from is
/// in it, settles it (unless the cluster is fresh: `sh -c FILL fill fresh`),
/// marks it complete, keeps the previous complete generation and
/// removes the others that nobody wrote or restored from for ten minutes,
/// and prints the volume's size in KiB. A copy cut short removes itself.
const FILL: &str = concat!(include_str!("clean.sh"), include_str!("fill.sh"));

/// A cache volume of this definition: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeKey {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// The cache volume `def` of `service` uses, if it has one and the run has
/// the cache on.
pub(crate) fn volume_for(service: &str, def: &GenericContainer) -> Option<VolumeKey> {
    def.volume_cache?;
    // A mount may hold the data directory or init scripts (which a copied
    // cluster would skip), and a custom entrypoint would be handed the
    // restore wrapper as its command: such definitions start as written.
    // Init commands may leave roles or databases a restored cluster would
    // already hold; a replaced first check would neither clean a restored
    // cluster nor fill an empty cache.
    if !def.mounts.is_empty() || !def.entrypoint.is_empty() || !def.init.is_empty() || !has_first_check(def) {
        return None;
    }
    let mut key = String::new();
    key.push_str(&format!("format={FORMAT}\nimage={}\n", def.image));
    for (k, v) in &def.env {
        if k != "POSTGRES_PASSWORD" {
            key.push_str(&format!("env {k}={v}\n"));
        }
    }
    for (path, options) in &def.tmpfs {
        key.push_str(&format!("tmpfs {path}={options}\n"));
    }
    let hash = crate::util::hash::fnv1a(key.as_bytes(), crate::util::hash::FNV_OFFSET);
    let service_part: String =
        service.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    Some(VolumeKey {
        name: format!("cleanroom-cache-{service_part}-{hash:016x}"),
        labels: BTreeMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (CACHE_LABEL.to_string(), "volume".to_string()),
            (CACHE_SERVICE_LABEL.to_string(), service.to_string()),
        ])
        .into_iter()
        .chain(owner_labels().map(|(k, v)| (k.to_string(), v)))
        .collect(),
    })
}

/// The request Docker is given: the volume mounted (made with its labels
/// should it be gone) and the command run through [`RESTORE`]. The
/// definition's identity is the unwrapped one.
pub(crate) fn wrap(request: &mut ContainerRequest, volume: &VolumeKey) {
    request.mounts.push(MountRequest::LabelledVolume {
        source: volume.name.clone(),
        target: MOUNT.to_string(),
        labels: volume.labels.clone(),
    });
    let mut cmd = vec!["sh".to_string(), "-c".to_string(), RESTORE.to_string(), "cleanroom-cache".to_string()];
    cmd.append(&mut request.cmd);
    request.cmd = cmd;
}

/// What the container found in the cache when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestoreOutcome {
    /// A cluster was copied from this generation.
    Restored(String),
    /// The cache was empty.
    Empty,
    /// A copy failed and was thrown away; the server initialised itself.
    Failed(String),
}

impl RestoreOutcome {
    fn parse(text: &str) -> RestoreOutcome {
        let text = text.trim();
        if let Some(generation) = text.strip_prefix("restored ") {
            RestoreOutcome::Restored(generation.to_string())
        } else if let Some(generation) = text.strip_prefix("failed ") {
            RestoreOutcome::Failed(generation.to_string())
        } else {
            RestoreOutcome::Empty
        }
    }
}

/// The built-in Postgres's first health check, run as `sh -c
/// POSTGRES_FIRST_CHECK cleanroom-check FILL` by whichever process probes
/// first (the one that created the container, or one that attached to it
/// and probes because the creator is slow or gone), under a `mkdir` lock:
///
/// - after a restore from the cache of a generation the fill could not settle
///   (`fill.sh`), it makes the copied cluster as clean as a fresh one,
///   dropping the test databases it still held and making the main database
///   anew (a fill made while tests ran, after new migrations, copied their
///   clones and whatever `shared` tests wrote); templates stay. A settled
///   generation is clean already;
/// - after a start without the cache it fills the cache (a failed fill is
///   recorded, not fatal: it costs the next run its head start);
/// - then it sets the run's password again, as MD5, over the local socket.
///
/// It fails until that work is done, so a process that sees the server pass
/// its checks never sees it half clean or being copied.
pub(crate) const POSTGRES_FIRST_CHECK: &str = concat!(include_str!("clean.sh"), include_str!("first_check.sh"));

/// What the container found in the cache and what its first health check
/// did about it: the start's state line and the check's outcome line.
pub(crate) async fn found(engine: &dyn Engine, id: &str) -> Result<(RestoreOutcome, String), String> {
    let script = format!("cat {STATE_FILE} 2>/dev/null || echo empty; cat {STATE_FILE}.done 2>/dev/null || echo");
    let out = engine.exec(id, &["sh".to_string(), "-c".to_string(), script]).await?;
    let mut lines = out.stdout.lines();
    let state = RestoreOutcome::parse(lines.next().unwrap_or_default());
    Ok((state, lines.next().unwrap_or_default().trim().to_string()))
}

/// The generation a just-started container's cluster was copied from, read
/// while its health checks run: the restore script writes its outcome
/// before the server starts, so this waits for that (up to 3 s), not for
/// the server. `None` when nothing was restored (or the outcome did not
/// come in time): then [`found`] asks after the checks, once a fill is done.
pub(crate) async fn restored_early(engine: &dyn Engine, id: &str) -> Option<String> {
    let script = format!(
        "i=0; while [ ! -f {STATE_FILE} ] && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done; \
         cat {STATE_FILE} 2>/dev/null || echo empty"
    );
    let out = engine.exec(id, &["sh".to_string(), "-c".to_string(), script]).await.ok()?;
    match RestoreOutcome::parse(out.stdout.lines().next().unwrap_or_default()) {
        RestoreOutcome::Restored(generation) => Some(generation),
        _ => None,
    }
}

/// The built-in Postgres's first health check (see [`POSTGRES_FIRST_CHECK`]).
pub(crate) fn postgres_first_check() -> crate::service::health::HealthCheck {
    crate::service::health::HealthCheck::command(["sh", "-c", POSTGRES_FIRST_CHECK, "cleanroom-check", FILL])
        .with_interval(Duration::from_millis(200))
        // A fill copies the cluster (about a second here); the lock makes a
        // probe that gives up early harmless.
        .with_timeout(Duration::from_secs(30))
        // Sets the password once; the login check after it keeps watching.
        .once()
}

/// Whether `def` starts with [`postgres_first_check`], which restores and
/// fills the cache.
fn has_first_check(def: &GenericContainer) -> bool {
    def.health_checks.first().is_some_and(|c| c.command_args().get(2).map(String::as_str) == Some(POSTGRES_FIRST_CHECK))
}

/// Copies the running cluster into the cache; its size in bytes.
pub(crate) async fn fill(engine: &dyn Engine, id: &str, volume: &str) -> Result<u64, String> {
    let cmd = ["sh".to_string(), "-c".to_string(), FILL.to_string()];
    let exec = engine.exec(id, &cmd);
    let out = tokio::time::timeout(FILL_TIMEOUT, exec)
        .await
        .map_err(|_| format!("the copy into cache volume {volume} took over {FILL_TIMEOUT:?}"))??;
    if out.exit_code != 0 {
        return Err(format!("the copy into cache volume {volume} failed ({}): {}", out.exit_code, out.stderr.trim()));
    }
    let kib: u64 = out.stdout.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let bytes = kib * 1024;
    touch(volume, Some(bytes), false);
    Ok(bytes)
}

/// Fills the cache of a running service again after its cluster gained a
/// template, so that the next cold start finds the migrations applied.
pub(crate) async fn refill(service: &crate::service::running::RunningService) {
    let Some(volume) = volume_for(&service.name, &service.definition) else { return };
    match fill(service.engine.as_ref(), &service.id, &volume.name).await {
        Ok(bytes) => {
            tracing::info!(service = %service.name, volume = %volume.name, bytes, "volume cache filled after new migrations")
        }
        Err(e) => crate::metrics::alert(&service.name, "cache_fill", e),
    }
}

/// How long a refill may hold the template's lock.
const FILL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the use of cache volumes is recorded.
fn uses_dir() -> PathBuf {
    crate::util::paths::runtime_dir().join("caches")
}

/// Records a use of `volume` now (the record's mtime; `used` counts one
/// more use) and, when known, its size. The record reads `<bytes> <uses>`.
pub(crate) fn touch(volume: &str, size: Option<u64>, used: bool) {
    let _ = crate::util::paths::create_runtime_dir();
    let dir = uses_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(volume);
    let (old_size, uses) = read_record(&path);
    let size = size.unwrap_or(old_size);
    let _ = std::fs::write(&path, format!("{size} {}", uses + u64::from(used)));
}

/// A record of use: the volume's size in bytes and how many times it was
/// used (a record from before uses were counted has only the size).
fn read_record(path: &std::path::Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().unwrap_or(0));
    (words.next().unwrap_or(0), words.next().unwrap_or(0))
}

/// One cache volume as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// The service it serves.
    pub(crate) service: String,
    /// Seconds since the Unix epoch of its last use.
    pub(crate) last_use: i64,
    /// Seconds since the Unix epoch when the engine made it.
    pub(crate) created: i64,
    /// How many starts used it.
    pub(crate) uses: u64,
    pub(crate) size: u64,
}

/// The volumes to remove: those past the policy's TTL, then, while the rest
/// is over its cap, one at a time in its strategy's order (see
/// [`crate::eviction`]).
pub(crate) fn plan_eviction(entries: &[Entry], policy: &LayerPolicy, now: i64) -> Vec<String> {
    let items: Vec<Item> = entries
        .iter()
        .map(|e| Item { name: e.name.clone(), created: e.created, last_use: e.last_use, uses: e.uses, size: e.size })
        .collect();
    eviction::plan(&items, policy.eviction, policy.ttl, policy.cap, now)
}

/// This user's cache volumes with their last use and size.
pub(crate) async fn entries(docker: &Docker) -> Result<Vec<Entry>, String> {
    let volumes = docker.volumes_with_label(&format!("{CACHE_LABEL}=volume")).await?;
    // This owner's only: another machine's or another runtime directory's
    // caches have their records of use elsewhere, and caches made before
    // volumes named their owner cannot be told apart (remove those by hand:
    // docs/caches.md).
    Ok(volumes
        .into_iter()
        .filter(|v| is_mine(&v.labels))
        .map(|v| {
            let record = uses_dir().join(&v.name);
            let last_use = std::fs::metadata(&record)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64)
                .unwrap_or(v.created);
            let (size, uses) = read_record(&record);
            let service = v.labels.get(CACHE_SERVICE_LABEL).cloned().unwrap_or_default();
            Entry { name: v.name, service, last_use, created: v.created, uses, size }
        })
        .collect())
}

/// Removes the volumes [`plan_eviction`] picks; a volume a container still
/// uses stays (Docker refuses). The names of those removed.
pub(crate) async fn evict(docker: &Docker, policy: &LayerPolicy) -> Vec<String> {
    let Ok(entries) = entries(docker).await else { return Vec::new() };
    let mut removed = Vec::new();
    for name in plan_eviction(&entries, policy, crate::util::clock::now_secs()) {
        if remove(docker, &name).await.is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// What each cache layer holds for this owner, as the records in the
/// runtime directory tell (no engine is asked): layer name → (entries,
/// bytes). Containers are the reused services this runtime directory
/// knows, networks and images those cleanroom made or pulled, volumes the
/// cache volumes used from here.
pub(crate) fn held(reused_services: usize) -> [(&'static str, usize, u64); 4] {
    let mut volumes = (0, 0);
    for entry in std::fs::read_dir(uses_dir()).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            volumes = (volumes.0 + 1, volumes.1 + read_record(&entry.path()).0);
        }
    }
    let images = records::all("image");
    let networks = records::all("network").len();
    [
        ("container", reused_services, 0),
        ("image", images.len(), images.iter().map(|r| r.size).sum()),
        ("network", networks, 0),
        ("volume", volumes.0, volumes.1),
    ]
}

/// What a run's end evicts, layer by layer: cache volumes and images
/// cleanroom pulled (idle reused services and their networks are the
/// keeper's, `run/keeper.rs`).
pub(crate) async fn evict_at_run_end(docker: &Docker, policies: &crate::config::CachePolicies) {
    evict(docker, &policies.volume).await;
    evict_images(docker, &policies.image).await;
    evict_networks(docker, &policies.network).await;
}

/// Removes the idle networks of reused services (of this owner, connecting
/// no container) that the network layer's policy picks over its count cap.
/// Such a network otherwise goes with its last reused service.
pub(crate) async fn evict_networks(docker: &Docker, policy: &LayerPolicy) -> Vec<String> {
    if policy.ttl.is_none() && policy.cap.is_none() {
        return Vec::new();
    }
    let mut items = Vec::new();
    for r in records::all("network") {
        match docker.network_use(&r.name).await {
            Ok(Some((0, labels))) if is_mine(&labels) => {
                items.push(Item { name: r.name, created: r.created, last_use: r.last_use, uses: r.uses, size: 0 })
            }
            Ok(None) => records::forget("network", &r.name),
            _ => {}
        }
    }
    remove_planned("network", &items, policy, |name| async move { docker.remove_network(&name).await.is_ok() }).await
}

/// Removes the images cleanroom pulled itself that the image layer's
/// policy picks (past its TTL, then over its byte cap in its strategy's
/// order); an image a container uses stays (the engine refuses), and an
/// image without a record (the user's own) is never considered. The
/// references of those removed.
pub(crate) async fn evict_images(docker: &Docker, policy: &LayerPolicy) -> Vec<String> {
    if policy.ttl.is_none() && policy.cap.is_none() {
        return Vec::new();
    }
    let mut items = Vec::new();
    for r in records::all("image") {
        match docker.image_size(&r.name).await {
            Ok(Some(size)) => {
                records::sized("image", &r.name, size);
                items.push(Item { name: r.name, created: r.created, last_use: r.last_use, uses: r.uses, size })
            }
            Ok(None) => records::forget("image", &r.name),
            Err(_) => {}
        }
    }
    remove_planned("image", &items, policy, |name| async move { docker.remove_image(&name).await.is_ok() }).await
}

/// Removes what `policy` picks of `items` (a layer with records of use)
/// with `remove`, forgetting the record of each one removed; their names.
async fn remove_planned<F, Fut>(layer: &str, items: &[Item], policy: &LayerPolicy, remove: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut removed = Vec::new();
    for name in eviction::plan(items, policy.eviction, policy.ttl, policy.cap, crate::util::clock::now_secs()) {
        if remove(name.clone()).await {
            records::forget(layer, &name);
            removed.push(name);
        }
    }
    removed
}

/// Removes a cache volume and its record of use.
pub(crate) async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    docker.remove_volume(name).await?;
    let _ = std::fs::remove_file(uses_dir().join(name));
    Ok(())
}

/// Names of the cache volumes some container (running or not) mounts.
pub(crate) async fn volumes_in_use(docker: &Docker) -> Vec<String> {
    docker
        .volumes_mounted()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.starts_with("cleanroom-cache-"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, last_use: i64, size: u64) -> Entry {
        Entry { name: name.into(), service: "postgres".into(), last_use, created: 0, uses: 1, size }
    }

    mod should {
        use super::*;

        #[test]
        fn evict_the_expired_then_the_least_recently_used_over_the_cap() {
            let day = 86_400;
            let now = 100 * day;
            let entries = [
                entry("old", now - 8 * day, 10),
                entry("a", now - 3, 40),
                entry("b", now - 2, 40),
                entry("c", now - 1, 40),
            ];
            let week = Duration::from_secs(7 * day as u64);
            let lru = |ttl, cap| {
                LayerPolicy::new(crate::eviction::Eviction::Lru, Some(ttl), Some(crate::eviction::Cap::Bytes(cap)))
            };
            assert_eq!(plan_eviction(&entries, &lru(week, 1000), now), vec!["old"]);
            assert_eq!(plan_eviction(&entries, &lru(week, 80), now), vec!["old", "a"]);
            assert_eq!(plan_eviction(&entries, &lru(week, 39), now), vec!["old", "a", "b", "c"]);
            assert_eq!(
                plan_eviction(&entries, &lru(Duration::ZERO, u64::MAX), now).len(),
                4,
                "a TTL of 0 removes every unused one"
            );
        }

        #[test]
        fn key_the_volume_by_what_initdb_sees_and_not_by_the_password() {
            let def = crate::builtin::postgres_definition();
            let a = volume_for("postgres", &def).expect("the built-in Postgres has a volume cache");
            let b = volume_for("postgres", &crate::builtin::postgres_definition()).unwrap();
            assert_eq!(a.name, b.name, "the random password is not part of the key");
            assert!(a.name.starts_with("cleanroom-cache-postgres-"), "{}", a.name);
            let other_db = def.clone().with_env("POSTGRES_DB", "other");
            assert_ne!(volume_for("postgres", &other_db).unwrap().name, a.name);
            let other_image = def.clone().with_image("cleanroom-offline/postgres:16");
            assert_ne!(volume_for("postgres", &other_image).unwrap().name, a.name);
            assert_eq!(a.labels.get(CACHE_LABEL).map(String::as_str), Some("volume"));
            assert!(!a.labels.contains_key(crate::docker::SESSION_LABEL), "a cache belongs to no run");
            let mut off = def.clone();
            off.volume_cache = None;
            assert_eq!(volume_for("postgres", &off), None);
            let scripts = def.clone().with_volume("init-scripts", "/docker-entrypoint-initdb.d");
            assert_eq!(
                volume_for("postgres", &scripts),
                None,
                "a mount may hold init scripts a copied cluster would skip"
            );
            let own_entrypoint = def.with_entrypoint("my-entrypoint.sh");
            assert_eq!(
                volume_for("postgres", &own_entrypoint),
                None,
                "a custom entrypoint would run the wrapper as its command"
            );
        }

        #[test]
        fn keep_the_command_after_the_restore_script_when_wrapping() {
            let def = crate::builtin::postgres_definition();
            let volume = volume_for("postgres", &def).unwrap();
            let mut wrapped = def.container_request();
            wrap(&mut wrapped, &volume);
            assert_eq!(&wrapped.cmd[..2], ["sh", "-c"]);
            assert_eq!(wrapped.cmd[3], "cleanroom-cache");
            assert_eq!(&wrapped.cmd[4..], &def.cmd[..]);
            assert!(wrapped.mounts.contains(&MountRequest::LabelledVolume {
                source: volume.name.clone(),
                target: MOUNT.to_string(),
                labels: volume.labels.clone()
            }));
            assert!(RESTORE.contains(MOUNT) && FILL.contains(MOUNT) && RESTORE.contains(STATE_FILE));
            assert!(POSTGRES_FIRST_CHECK.contains(STATE_FILE) && has_first_check(&def));
        }

        #[test]
        fn read_what_the_start_found() {
            assert_eq!(RestoreOutcome::parse("restored gen-1-2\n"), RestoreOutcome::Restored("gen-1-2".into()));
            assert_eq!(RestoreOutcome::parse("failed gen-1-2"), RestoreOutcome::Failed("gen-1-2".into()));
            assert_eq!(RestoreOutcome::parse("empty"), RestoreOutcome::Empty);
            assert_eq!(RestoreOutcome::parse(""), RestoreOutcome::Empty);
        }
    }
}
