//! Redis databases leased ahead for the processes of a run, by the run's
//! keeper ([`super::keeper`]): one empty file per logical database in the
//! server's directory under the run's, `<run dir>/redispool/<container>/`.
//!
//! - `ready/<db>`: leased by the keeper, flushed, free to take;
//! - `taken/<db>@<pid>:<start>`: a process's test has it (renamed there,
//!   which exactly one taker does, with the taker's identity in the name);
//! - `returned/<db>`: its test ended; the keeper flushes it and makes it
//!   ready again.
//!
//! The keeper holds every lease (renewing them while the run lasts), so a
//! process that takes a database needs no connection to Redis of its own
//! before its test: under nextest, a round trip through the engine's port
//! per test process. A database whose taker died (`kill -9`) is flushed and
//! made ready again by the keeper. The directory goes with the run. The
//! pool is used for servers cleanroom runs, not for an existing server
//! (whose databases are the user's range); a reused server outlives the
//! run, and the keeper gives its leases back at the run's end
//! ([`super::keeper::finish`]).

use crate::util::os::ProcessId;
use std::path::{Path, PathBuf};

/// How many databases the keeper holds ready ahead of demand.
pub(crate) const TARGET: usize = 4;

fn sub(pool: &Path, kind: &str) -> PathBuf {
    pool.join(kind)
}

fn names(dir: &Path) -> Vec<String> {
    let Ok(list) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> =
        list.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
    names.sort();
    names
}

fn dbs(dir: &Path) -> Vec<u32> {
    names(dir).iter().filter_map(|n| n.parse().ok()).collect()
}

/// This process as a taker names itself: `pid:start`, which no later
/// process with its pid shares.
pub(crate) fn me() -> Option<String> {
    ProcessId::current().map(|me| me.encode())
}

/// Whether the taker `holder` (`pid:start`) still runs.
pub(crate) fn alive(holder: &str) -> bool {
    ProcessId::decode(holder).is_some_and(|p| p.is_alive())
}

/// Takes a ready database, as this process (`me`, `pid:start`).
pub(crate) fn take(pool: &Path, me: &str) -> Option<u32> {
    let taken = sub(pool, "taken");
    std::fs::create_dir_all(&taken).ok()?;
    let ready = sub(pool, "ready");
    dbs(&ready)
        .into_iter()
        .find(|db| std::fs::rename(ready.join(db.to_string()), taken.join(format!("{db}@{me}"))).is_ok())
}

/// Gives back a database this process (`me`) took: for the keeper to flush.
pub(crate) fn give_back(pool: &Path, me: &str, db: u32) -> std::io::Result<()> {
    let returned = sub(pool, "returned");
    std::fs::create_dir_all(&returned)?;
    std::fs::rename(sub(pool, "taken").join(format!("{db}@{me}")), returned.join(db.to_string()))
}

/// How many databases are ready.
pub(crate) fn ready_len(pool: &Path) -> usize {
    dbs(&sub(pool, "ready")).len()
}

/// Makes `db` (leased by the keeper, flushed) ready: written under a
/// hidden name and renamed, so that it is ready only once whole.
pub(crate) fn offer(pool: &Path, db: u32) -> std::io::Result<()> {
    let ready = sub(pool, "ready");
    std::fs::create_dir_all(&ready)?;
    let hidden = ready.join(format!(".{db}"));
    std::fs::write(&hidden, b"")?;
    std::fs::rename(&hidden, ready.join(db.to_string()))
}

/// A database the keeper must flush before it is ready again: given back,
/// or taken by a process that is gone. `file` is where it is listed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToFlush {
    pub(crate) db: u32,
    pub(crate) file: PathBuf,
}

/// The databases to flush: given back, and taken by processes that no
/// longer run (`alive` says of a `pid:start`).
pub(crate) fn to_flush(pool: &Path, alive: impl Fn(&str) -> bool) -> Vec<ToFlush> {
    let returned = sub(pool, "returned");
    let mut out: Vec<ToFlush> =
        dbs(&returned).into_iter().map(|db| ToFlush { db, file: returned.join(db.to_string()) }).collect();
    let taken = sub(pool, "taken");
    for name in names(&taken) {
        let Some((db, holder)) = name.split_once('@') else { continue };
        let Ok(db) = db.parse() else { continue };
        if !alive(holder) {
            out.push(ToFlush { db, file: taken.join(&name) });
        }
    }
    out
}

/// Makes a flushed database ready again.
pub(crate) fn flushed(pool: &Path, item: &ToFlush) -> std::io::Result<()> {
    let ready = sub(pool, "ready");
    std::fs::create_dir_all(&ready)?;
    std::fs::rename(&item.file, ready.join(item.db.to_string()))
}

/// Every database the pool lists, wherever it is: the keeper's leases.
pub(crate) fn held(pool: &Path) -> Vec<u32> {
    let mut all = dbs(&sub(pool, "ready"));
    all.extend(dbs(&sub(pool, "returned")));
    all.extend(names(&sub(pool, "taken")).iter().filter_map(|n| n.split_once('@')?.0.parse::<u32>().ok()));
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn pool(tag: &str) -> PathBuf {
            std::env::temp_dir().join(format!("cleanroom-unit-redispool-{tag}-{}", std::process::id()))
        }

        #[test]
        fn hand_each_ready_database_to_one_taker_and_back_to_the_keeper() {
            let pool = pool("take");
            offer(&pool, 3).unwrap();
            offer(&pool, 5).unwrap();
            assert_eq!(ready_len(&pool), 2);
            assert_eq!(take(&pool, "1:1"), Some(3));
            assert_eq!(take(&pool, "2:2"), Some(5));
            assert_eq!(take(&pool, "3:3"), None, "nothing is handed out twice");
            assert_eq!(held(&pool), vec![3, 5]);
            give_back(&pool, "1:1", 3).unwrap();
            assert!(give_back(&pool, "1:1", 5).is_err(), "only its taker gives a database back");
            let flush = to_flush(&pool, |_| true);
            assert_eq!(flush.iter().map(|f| f.db).collect::<Vec<_>>(), vec![3]);
            flushed(&pool, &flush[0]).unwrap();
            assert_eq!(ready_len(&pool), 1);
            let _ = std::fs::remove_dir_all(&pool);
        }

        #[test]
        fn flush_what_a_dead_process_took() {
            let pool = pool("dead");
            offer(&pool, 7).unwrap();
            offer(&pool, 8).unwrap();
            assert_eq!(take(&pool, "41:9"), Some(7));
            assert_eq!(take(&pool, "42:9"), Some(8));
            let flush = to_flush(&pool, |holder| holder == "42:9");
            assert_eq!(flush.iter().map(|f| f.db).collect::<Vec<_>>(), vec![7], "only the dead taker's");
            flushed(&pool, &flush[0]).unwrap();
            assert_eq!(ready_len(&pool), 1);
            assert_eq!(held(&pool), vec![7, 8]);
            let _ = std::fs::remove_dir_all(&pool);
        }
    }
}
