//! Databases cloned ahead for every process that uses one server (all
//! processes of a run, and the runs that share a reused server): one empty
//! file per database in `<runtime dir>/pgpool/<container>/<template>/`. A
//! process takes a database by removing its file, which exactly one remover
//! does. Under nextest, where every test is a process of its own with an
//! empty pool, a test takes a database without a round trip to the server,
//! and its process clones the next one while the test runs.
//!
//! On an existing server the pool is the run's alone (its templates carry
//! the run's tag) and lives in the run's directory,
//! `<runtime dir>/runs/<session>/pgpool/<server>/`: it goes with the run,
//! and no other run's sweep takes it for a container that is gone.

use std::path::{Path, PathBuf};

/// How many databases the run's pool holds ahead of demand.
pub(crate) const TARGET: usize = 4;

pub(crate) fn root() -> PathBuf {
    crate::util::paths::runtime_dir().join("pgpool")
}

/// The pool directory of the server of `container`: under the runtime
/// directory for a server cleanroom runs (its processes and runs that share
/// it use it; it goes with the container), and under the run's directory
/// for an existing server (`session`), whose templates and clones are the
/// run's own, and which other runs on that server must not touch.
pub(crate) fn server_dir(container: &str, session: Option<&str>) -> PathBuf {
    match session {
        Some(session) => crate::util::paths::run_dir(session).join("pgpool").join(container),
        None => root().join(container),
    }
}

fn dir(server: &Path, template: &str) -> PathBuf {
    server.join(template)
}

fn entries(server: &Path, template: &str) -> Vec<String> {
    let Ok(list) = std::fs::read_dir(dir(server, template)) else { return Vec::new() };
    let mut names: Vec<String> =
        list.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    names.sort();
    names
}

/// Takes a database of the pool, if it has one.
pub(crate) fn take(server: &Path, template: &str) -> Option<String> {
    let dir = dir(server, template);
    entries(server, template).into_iter().find(|name| std::fs::remove_file(dir.join(name)).is_ok())
}

/// How many databases the pool holds.
pub(crate) fn len(server: &Path, template: &str) -> usize {
    entries(server, template).len()
}

/// Puts a database cloned from `template` into the pool.
pub(crate) fn offer(server: &Path, template: &str, database: &str) -> std::io::Result<()> {
    let _ = crate::util::paths::create_runtime_dir();
    let dir = dir(server, template);
    std::fs::create_dir_all(&dir)?;
    // Written under a hidden name and renamed: a database is in the pool
    // only once it exists.
    let hidden = dir.join(format!(".{database}"));
    std::fs::write(&hidden, b"")?;
    std::fs::rename(&hidden, dir.join(database))
}

/// The mark that `template` exists on the server of `server`: written by
/// the process of the run that built or found it, so that the others clone
/// from it without logging in to look it up (a login per test process under
/// nextest). Hidden, so it is no database of the pool.
fn template_mark(server: &Path, template: &str) -> PathBuf {
    dir(server, template).join(".template")
}

/// Records that `template` exists on the server of `server`.
pub(crate) fn template_known(server: &Path, template: &str) {
    let _ = crate::util::paths::create_runtime_dir();
    if std::fs::create_dir_all(dir(server, template)).is_ok() {
        let _ = std::fs::write(template_mark(server, template), b"");
    }
}

/// Whether a process of the run saw `template` on the server of `server`.
pub(crate) fn template_seen(server: &Path, template: &str) -> bool {
    template_mark(server, template).exists()
}

/// Where the databases of passed tests wait to be dropped, per server.
fn retired_dir(server: &Path) -> PathBuf {
    server.join(".retired")
}

/// Leaves `database` (a passed test's, whose drop this process could not
/// finish before it ended) for the next process that clones for the run's
/// pool to drop: under nextest a process ends right after its test, before
/// the drop it started is sent, and the server would keep every test's
/// database until the run's end.
pub(crate) fn retire(server: &Path, database: &str) -> std::io::Result<()> {
    write_retired(server, database, b"")
}

/// Leaves `database` for the next process to drop like [`retire`], when
/// this process sent its `CREATE DATABASE` and ended before the answer
/// came: the server may still be making it, and a drop sent before it
/// is made would find nothing and leave it behind. Its dropper first looks
/// whether the server still makes it ([`Retired::unfinished`]).
pub(crate) fn retire_unfinished(server: &Path, database: &str) -> std::io::Result<()> {
    write_retired(server, database, UNFINISHED)
}

const UNFINISHED: &[u8] = b"creating";

fn write_retired(server: &Path, database: &str, content: &[u8]) -> std::io::Result<()> {
    let _ = crate::util::paths::create_runtime_dir();
    let dir = retired_dir(server);
    std::fs::create_dir_all(&dir)?;
    // Whole when it appears: written under a hidden name, then renamed. A
    // dropper reading it half-written would take an unfinished database for
    // a finished one, drop nothing, and let the server make it after.
    let hidden = dir.join(format!(".{database}.{}", std::process::id()));
    std::fs::write(&hidden, content)?;
    std::fs::rename(&hidden, dir.join(database)).inspect_err(|_| {
        let _ = std::fs::remove_file(&hidden);
    })
}

/// A database left to drop ([`retire`], [`retire_unfinished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retired {
    pub(crate) name: String,
    /// Its `CREATE DATABASE` may still be running on the server.
    pub(crate) unfinished: bool,
}

/// The databases left to drop on this server, left on the list: the
/// run's keeper ([`super::keeper`]) takes each off once it is dropped, so
/// that until then the run still knows of it.
pub(crate) fn retired(server: &Path) -> Vec<Retired> {
    let dir = retired_dir(server);
    let Ok(list) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<Retired> = list
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let unfinished = std::fs::read(e.path()).is_ok_and(|c| c == UNFINISHED);
            Retired { name: e.file_name().to_string_lossy().into_owned(), unfinished }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Takes `database` off the list of those left to drop.
pub(crate) fn forget_retired(server: &Path, database: &str) {
    let _ = std::fs::remove_file(retired_dir(server).join(database));
}

/// Takes the databases left to drop on this server: each by removing its
/// file, which exactly one remover does.
pub(crate) fn take_retired(server: &Path) -> Vec<Retired> {
    let dir = retired_dir(server);
    retired(server).into_iter().filter(|r| std::fs::remove_file(dir.join(&r.name)).is_ok()).collect()
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{retire, retire_unfinished, retired_dir, root, take_retired, Retired};

        #[test]
        fn hand_each_retired_database_out_once_and_say_which_may_still_be_in_the_making() {
            let server = root().join(format!("unit-retired-{}", std::process::id()));
            retire(&server, "cleanroom_t_1").unwrap();
            retire_unfinished(&server, "cleanroom_t_2").unwrap();
            assert!(retired_dir(&server).join("cleanroom_t_2").exists());
            // One being written by another process: not listed until whole.
            std::fs::write(retired_dir(&server).join(".cleanroom_t_3.1"), b"").unwrap();
            let taken = take_retired(&server);
            let _ = std::fs::remove_dir_all(&server);
            assert_eq!(
                taken,
                vec![
                    Retired { name: "cleanroom_t_1".into(), unfinished: false },
                    Retired { name: "cleanroom_t_2".into(), unfinished: true },
                ]
            );
            assert!(take_retired(&server).is_empty(), "a second taker finds nothing");
        }
    }
}
