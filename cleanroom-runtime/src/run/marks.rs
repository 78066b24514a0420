//! What the processes of a run share on disk besides the reaper: ready marks
//! (a container passed its checks), and run marks (which process pulls an
//! image or makes the network, and how that went).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::liveness::{live_clients, session_alive};
use super::session::ProcessId;
use super::sweep::STALE_LOCK_AGE;
use crate::docker::{Docker, MANAGED_LABEL};
use crate::util::paths::runtime_dir;

pub(super) fn ready_dir() -> PathBuf {
    runtime_dir().join("ready")
}

/// Records that the container `id` passed its health checks.
pub(crate) fn mark_ready(id: &str) {
    if std::fs::create_dir_all(ready_dir()).is_ok() {
        let _ = std::fs::write(ready_dir().join(id), b"");
    }
}

/// Whether a process of this user saw the container `id` pass its checks.
pub(crate) fn seen_ready(id: &str) -> bool {
    ready_dir().join(id).exists()
}

/// Takes back the ready mark of a container that died or was removed: an
/// attaching process must not take it for a live one. Its creator's marks
/// go with it.
pub(crate) fn forget_ready(id: &str) {
    let _ = std::fs::remove_file(ready_dir().join(id));
    let _ = std::fs::remove_file(creator_mark(id, CREATOR));
    let _ = std::fs::remove_file(creator_mark(id, FAILED));
}

/// Suffixes of the marks a shared container's creator leaves next to its
/// ready mark: who it is, and why the start failed.
const CREATOR: &str = ".creator";
const FAILED: &str = ".failed";

/// The creator's mark `suffix` of the container `id`.
fn creator_mark(id: &str, suffix: &str) -> PathBuf {
    ready_dir().join(format!("{id}{suffix}"))
}

/// Records that this process created the shared container `id` and is
/// making it Ready: the run's other processes, waiting for its ready mark,
/// can then tell a creator at work from one that died.
pub(crate) fn mark_creator(id: &str) {
    // Without its start time a creator could not be told from a later
    // process with its pid: no mark, and the others wait as they did.
    let Some(me) = ProcessId::current() else { return };
    if std::fs::create_dir_all(ready_dir()).is_ok() {
        let _ = std::fs::write(creator_mark(id, CREATOR), me.encode());
    }
}

/// Why a creator could not make its shared container Ready, as the run's
/// processes waiting for it take it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The creator's error, as it gave it.
    pub(crate) reason: String,
    /// The creator's error's verdict: whether the same start may succeed
    /// again ([`crate::Error::is_transient`]). The waiting processes fail
    /// with that verdict, not a guess of their own.
    pub(crate) transient: bool,
}

impl Failure {
    /// The mark's text: the verdict on its first line, then the reason.
    fn encode(&self) -> String {
        format!("{}\n{}", if self.transient { "transient" } else { "permanent" }, self.reason)
    }

    fn decode(text: &str) -> Failure {
        match text.split_once('\n') {
            Some(("transient", reason)) => Failure { reason: reason.to_string(), transient: true },
            Some(("permanent", reason)) => Failure { reason: reason.to_string(), transient: false },
            // Not this format: all reason, and worth another try.
            _ => Failure { reason: text.to_string(), transient: true },
        }
    }
}

/// Records why this process could not make the shared container `id` Ready,
/// for the run's processes that wait for it. Whole or not at all (written
/// aside, then renamed): a reader never takes half a reason.
pub(crate) fn mark_failed(id: &str, failure: &Failure) {
    if std::fs::create_dir_all(ready_dir()).is_ok() {
        let aside = ready_dir().join(format!(".{id}{FAILED}.{}", std::process::id()));
        if std::fs::write(&aside, failure.encode()).is_ok() {
            let _ = std::fs::rename(&aside, creator_mark(id, FAILED));
        }
    }
}

/// Whether the process that created the shared container `id` ended (its
/// pid no longer runs with the start time it recorded). `false` without
/// its mark.
pub(crate) fn creator_ended(id: &str) -> bool {
    let creator = std::fs::read_to_string(creator_mark(id, CREATOR)).unwrap_or_default();
    ProcessId::decode(creator.trim()).is_some_and(|creator| !creator.is_alive())
}

/// How the start of a shared container stands, for a process of the run
/// that attached to it while another process made it Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartState {
    /// Its creator saw it pass its checks (and ran its init commands).
    Ready,
    /// Its creator could not make it Ready, and said why.
    Failed(Failure),
    /// Its creator ended without a word: killed, or cut short by a signal,
    /// mid-start.
    CreatorGone,
    /// Its creator is at work; or there is no word to go by (a creator of a
    /// version that leaves no mark, or one between its create and its mark).
    Starting,
}

/// How the start of the shared container `id` stands.
pub(crate) fn start_state(id: &str) -> StartState {
    let said = || {
        if seen_ready(id) {
            return Some(StartState::Ready);
        }
        let text = std::fs::read_to_string(creator_mark(id, FAILED)).ok()?;
        Some(StartState::Failed(Failure::decode(&text)))
    };
    if let Some(state) = said() {
        return state;
    }
    if !creator_ended(id) {
        return StartState::Starting;
    }
    // Its word may have come just before it ended: asked again.
    said().unwrap_or(StartState::CreatorGone)
}

/// Takes back the attach record of the container named `container_name`
/// (removed): the next run that names a container so (a reused service's
/// next run) must not read it.
pub(crate) fn forget_record(container_name: &str) {
    let _ = std::fs::remove_file(record_path(container_name));
}

/// What a process attaching to a service another process of its run made
/// Ready needs, written by the creator: with it, attaching asks the engine
/// nothing (no ping, no inspect), which under nextest is most of a test
/// process's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttachRecord {
    pub(crate) id: String,
    /// Container port → host port.
    pub(crate) ports: std::collections::BTreeMap<u16, u16>,
    /// The creator's values of the definition's variables (its password).
    pub(crate) env: std::collections::BTreeMap<String, String>,
}

impl AttachRecord {
    /// One item a line: `id <id>`, `port <container> <host>`, `env <name>
    /// <value>` with the name and value percent-encoded. Read by every
    /// process of a nextest run at its start, so read without a parser's
    /// machinery.
    fn to_text(&self) -> String {
        let mut text = format!("id {}\n", self.id);
        for (container, host) in &self.ports {
            text.push_str(&format!("port {container} {host}\n"));
        }
        for (name, value) in &self.env {
            text.push_str(&format!(
                "env {} {}\n",
                crate::util::percent::encode(name),
                crate::util::percent::encode(value)
            ));
        }
        text
    }

    /// What [`AttachRecord::to_text`] wrote; `None` for anything else.
    fn from_text(text: &str) -> Option<AttachRecord> {
        let mut record = AttachRecord { id: String::new(), ports: Default::default(), env: Default::default() };
        for line in text.lines() {
            let mut words = line.split(' ');
            match (words.next()?, words.next()?, words.next()) {
                ("id", id, None) => record.id = id.to_string(),
                ("port", container, Some(host)) => {
                    record.ports.insert(container.parse().ok()?, host.parse().ok()?);
                }
                ("env", name, Some(value)) => {
                    record.env.insert(crate::util::percent::decode(name)?, crate::util::percent::decode(value)?);
                }
                _ => return None,
            }
        }
        (!record.id.is_empty()).then_some(record)
    }
}

fn record_path(container_name: &str) -> PathBuf {
    ready_dir().join(format!("{container_name}.record"))
}

/// Writes the record of a container this process made Ready (under a hidden
/// name, then renamed: a reader never sees half of it).
pub(crate) fn write_record(container_name: &str, record: &AttachRecord) {
    if std::fs::create_dir_all(ready_dir()).is_err() {
        return;
    }
    let hidden = ready_dir().join(format!(".{container_name}.{}", std::process::id()));
    if std::fs::write(&hidden, record.to_text()).is_ok() {
        let _ = std::fs::rename(&hidden, record_path(container_name));
    }
}

/// The record of the container named `container_name`, if one was written
/// and the container is still marked ready.
pub(crate) fn read_record(container_name: &str) -> Option<AttachRecord> {
    let record = record_at(&record_path(container_name))?;
    seen_ready(&record.id).then_some(record)
}

/// The container id the record of `container_name` names, whether or not
/// it is still marked ready: a container of that name and id was Ready once.
pub(crate) fn recorded_id(container_name: &str) -> Option<String> {
    record_at(&record_path(container_name)).map(|r| r.id)
}

/// The record in the file at `path`, if it holds one.
fn record_at(path: &std::path::Path) -> Option<AttachRecord> {
    AttachRecord::from_text(&std::fs::read_to_string(path).ok()?)
}

/// Entries of the ready directory younger than this are never stale: their
/// container may have been made after the engine was asked which live.
const READY_ENTRY_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the entry `name` of the ready directory, `age` old, is left over:
/// a ready mark (named by its container's id) or its creator's marks
/// (`<id>.creator`, `<id>.failed`) or an attach record (named by its
/// container's name, holding the id: [`AttachRecord`]) whose container is
/// `gone`, or a file a process that died left half-written (hidden).
/// Another run's live records stay: every process of it reads them.
fn stale_ready_entry(
    name: &str,
    age: Option<std::time::Duration>,
    record_id: impl FnOnce() -> Option<String>,
    gone: impl Fn(&str) -> bool,
) -> bool {
    if age.is_none_or(|age| age < READY_ENTRY_FRESH) {
        return false;
    }
    if name.starts_with('.') {
        return true;
    }
    match name.strip_suffix(".record") {
        Some(_) => record_id().is_none_or(|id| gone(&id)),
        // A ready mark, or one of its creator's (`<id>.creator`, `<id>.failed`).
        None => gone(name.split_once('.').map_or(name, |(id, _)| id)),
    }
}

/// Removes the ready marks and run pools (`rooms::run_pool`) of containers
/// that no longer exist.
pub(super) async fn remove_stale_ready_marks(docker: &Docker) {
    let Ok(live) = docker.containers_with_labels(&format!("{MANAGED_LABEL}=true")).await else { return };
    let gone = |id: &str| !live.iter().any(|(live_id, _, _)| live_id == id);
    for entry in std::fs::read_dir(ready_dir()).into_iter().flatten().flatten() {
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        let record_id = || record_at(&entry.path()).map(|r| r.id);
        if stale_ready_entry(&entry.file_name().to_string_lossy(), age, record_id, gone) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for entry in std::fs::read_dir(crate::rooms::run_pool::root()).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        // A local server's pool goes with the server (`run::local`), or
        // here once its process is gone (killed before it could stop).
        let stale = match id.starts_with(super::local::LOCAL_ID_PREFIX) {
            true => super::local::server_gone(&id),
            false => gone(&id),
        };
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) use crate::util::paths::{run_dir, runs_dir};

/// Work one process of a run does for all of them: pulling an image under
/// `run.pull = always`, creating the run's network. Each piece of work has a
/// mark `runs/<session>/<hash of its key>`; the process that creates the
/// mark does the work and then writes the outcome into it, the others wait
/// for that outcome. The run's reaper removes the marks.
#[derive(Debug)]
pub(crate) struct RunMarks {
    dir: PathBuf,
}

/// What [`RunMarks::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// This process does the work, then calls [`RunMarks::finish`].
    Mine,
    /// Another process did it already, or is doing it.
    Theirs,
}

impl RunMarks {
    /// The marks of `session`.
    pub(crate) fn of(session: &str) -> RunMarks {
        RunMarks { dir: run_dir(session) }
    }

    #[cfg(test)]
    fn at(dir: PathBuf) -> RunMarks {
        RunMarks { dir }
    }

    fn mark(&self, key: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        // Keys hold image references, with `/` and `:`; a hash is a safe
        // file name.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.dir.join(format!("{:016x}", h.finish()))
    }

    /// Claims the work `key` (`pull <image>`, `network <name>`): exactly one
    /// caller of a run gets `Mine` (the file system's create-if-absent
    /// decides, across processes too).
    pub(crate) fn claim(&self, key: &str) -> std::io::Result<Turn> {
        std::fs::create_dir_all(&self.dir)?;
        match File::options().write(true).create_new(true).open(self.mark(key)) {
            Ok(mut f) => {
                f.write_all(format!("busy {}\n", std::process::id()).as_bytes())?;
                Ok(Turn::Mine)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Turn::Theirs),
            Err(e) => Err(e),
        }
    }

    /// Records the outcome of this process's work `key`.
    pub(crate) fn finish(&self, key: &str, outcome: &Result<(), impl std::fmt::Display>) {
        let text = match outcome {
            Ok(()) => "done\n".to_string(),
            Err(reason) => format!("failed {}\n", reason.to_string().replace('\n', " ")),
        };
        let _ = std::fs::write(self.mark(key), text);
    }

    /// The outcome of another process's work `key`, once there is one;
    /// `None` if that process is gone without one (this one does the work
    /// instead, after taking the mark over).
    pub(crate) async fn outcome(&self, key: &str) -> Option<Result<(), String>> {
        let mark = self.mark(key);
        loop {
            let text = std::fs::read_to_string(&mark).unwrap_or_default();
            if text.starts_with("done") {
                return Some(Ok(()));
            }
            if let Some(reason) = text.strip_prefix("failed ") {
                return Some(Err(reason.trim_end().to_string()));
            }
            let worker = text.strip_prefix("busy ").and_then(|p| p.trim().parse::<u32>().ok());
            // The mark is written right after it is created; an empty one
            // is being written now.
            if worker.is_some_and(|pid| !crate::util::os::process_exists(pid)) {
                let _ = std::fs::write(&mark, format!("busy {}\n", std::process::id()));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[cfg(test)]
    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the shared files of runs that are over, and of runs without a
/// reaper that ended long ago. A run with a live registered process is
/// never over, whatever its lock says: its reaper may be being replaced.
pub(super) fn remove_stale_run_dirs(me: &str) {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else { return };
    for entry in entries.flatten() {
        let session = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_LOCK_AGE));
        let over = match session_alive(&session) {
            Some(alive) => !alive,
            None => old,
        };
        if session != me && over && live_clients(&session) == 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(tag: &str) -> RunMarks {
        let dir = std::env::temp_dir().join(format!("cleanroom-pulls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        RunMarks::at(dir)
    }

    fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
    }

    mod should {
        use super::*;

        #[test]
        fn sweep_only_the_ready_marks_and_records_of_containers_that_are_gone() {
            use std::time::Duration;
            let old = Some(Duration::from_secs(3600));
            let gone = |id: &str| id != "live";
            let record = |id: &'static str| move || Some(id.to_string());
            // Another run's live service: its mark and its record stay.
            assert!(!stale_ready_entry("live", old, || None, gone));
            assert!(!stale_ready_entry("cleanroom-run-postgres-x.record", old, record("live"), gone));
            // Its creator's marks stay with it.
            assert!(!stale_ready_entry("live.creator", old, || None, gone));
            assert!(!stale_ready_entry("live.failed", old, || None, gone));
            // A container that is gone: both go, and its creator's marks.
            assert!(stale_ready_entry("dead", old, || None, gone));
            assert!(stale_ready_entry("dead.creator", old, || None, gone));
            assert!(stale_ready_entry("dead.failed", old, || None, gone));
            assert!(stale_ready_entry("cleanroom-run-postgres-x.record", old, record("dead"), gone));
            // A record nobody can read, one a killed writer left, a record
            // of an earlier version (`.json`, named like no container).
            assert!(stale_ready_entry("cleanroom-run-postgres-x.record", old, || None, gone));
            assert!(stale_ready_entry(".cleanroom-run-postgres-x.123", old, || None, gone));
            assert!(stale_ready_entry("cleanroom-run-postgres-x.json", old, || None, gone));
            // Anything new stays: its container may be younger than the list.
            let new = Some(Duration::from_secs(5));
            assert!(!stale_ready_entry("dead", new, || None, gone));
            assert!(!stale_ready_entry(".cleanroom-run-postgres-x.123", new, || None, gone));
            assert!(!stale_ready_entry("dead", None, || None, gone));
        }

        #[test]
        fn tell_a_creator_at_work_from_one_that_failed_or_ended() {
            let id = format!("start-state-test-{}", std::process::id());
            let creator = creator_mark(&id, CREATOR);
            forget_ready(&id);
            assert_eq!(start_state(&id), StartState::Starting, "no word from a creator: it is waited for");
            mark_creator(&id);
            assert_eq!(start_state(&id), StartState::Starting, "this process is at work");
            // This pid with another start time: a creator that ended, its pid
            // taken since.
            std::fs::write(&creator, ProcessId { pid: std::process::id(), start: 1 }.encode()).unwrap();
            assert_eq!(start_state(&id), StartState::CreatorGone);
            let failure = Failure { reason: "its init command exited with 3\nline two".into(), transient: false };
            mark_failed(&id, &failure);
            assert_eq!(start_state(&id), StartState::Failed(failure), "the reason whole, and its verdict");
            mark_ready(&id);
            assert_eq!(start_state(&id), StartState::Ready);
            forget_ready(&id);
            assert_eq!(start_state(&id), StartState::Starting);
            assert!(!creator.exists(), "the creator's marks go with the ready mark");
        }

        #[test]
        fn read_back_an_attach_record_whatever_its_values_hold() {
            let record = AttachRecord {
                id: "0123abcd".into(),
                ports: [(5432, 49153), (6379, 1)].into(),
                env: [
                    ("POSTGRES_PASSWORD".to_string(), "p a%s s\nw:o@r/d \"é\"".to_string()),
                    ("EMPTY".to_string(), String::new()),
                    ("ODD NAME=1".to_string(), "x".to_string()),
                ]
                .into(),
            };
            assert_eq!(AttachRecord::from_text(&record.to_text()), Some(record));
            for bad in ["", "port 5432 49153\n", "id a\nport x 1\n", "id a\nenv A %G\n", "id a\nsomething else\n"] {
                assert_eq!(AttachRecord::from_text(bad), None, "{bad:?}");
            }
        }

        #[test]
        fn give_each_piece_of_work_to_exactly_one_claimant() {
            let m = marks("one");
            assert_eq!(m.claim("postgres:17-alpine").unwrap(), Turn::Mine);
            assert_eq!(m.claim("postgres:17-alpine").unwrap(), Turn::Theirs);
            assert_eq!(m.claim("redis:7-alpine").unwrap(), Turn::Mine, "each key has a mark of its own");
            m.remove();
        }

        #[test]
        fn give_the_work_to_exactly_one_of_many_threads() {
            let m = std::sync::Arc::new(marks("threads"));
            let turns: Vec<Turn> = (0..8)
                .map(|_| {
                    let m = m.clone();
                    std::thread::spawn(move || m.claim("busybox:1.35").unwrap())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(turns.iter().filter(|t| **t == Turn::Mine).count(), 1, "{turns:?}");
            m.remove();
        }

        #[test]
        fn hand_the_workers_outcome_to_the_others() {
            let m = marks("outcome");
            m.claim("a:1").unwrap();
            m.finish("a:1", &Ok::<(), String>(()));
            assert_eq!(block_on(m.outcome("a:1")), Some(Ok(())));
            m.claim("b:1").unwrap();
            m.finish("b:1", &Err::<(), String>("no such host\nat all".into()));
            assert_eq!(block_on(m.outcome("b:1")), Some(Err("no such host at all".into())));
            m.remove();
        }

        #[test]
        fn take_over_the_work_of_a_process_that_died() {
            let m = marks("dead");
            m.claim("c:1").unwrap();
            // A pid that cannot be running: above the kernel's maximum.
            std::fs::write(m.mark("c:1"), "busy 4294967295\n").unwrap();
            assert_eq!(block_on(m.outcome("c:1")), None);
            let text = std::fs::read_to_string(m.mark("c:1")).unwrap();
            assert_eq!(text, format!("busy {}\n", std::process::id()), "the mark is taken over");
            m.remove();
        }
    }
}
