//! Records of use for the cache layers whose things carry no record of
//! their own: images cleanroom pulled, and networks of reused services. One
//! file per thing under `<runtime dir>/caches/<layer>/`, reading
//! `<created> <uses> <bytes>` (seconds since the epoch, a count, the size
//! when known); its mtime is the last use. Only what has a record here is ever evicted: an image the
//! user pulled themselves has none.

use std::path::PathBuf;
use std::time::SystemTime;

/// A thing of a cache layer as its record tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) created: i64,
    pub(crate) last_use: i64,
    pub(crate) uses: u64,
    /// Its size in bytes, as last measured (0: not known).
    pub(crate) size: u64,
}

fn dir(layer: &str) -> PathBuf {
    crate::util::paths::runtime_dir().join("caches").join(layer)
}

/// A file name for `name` (an image reference has `/` and `:`).
fn file_name(name: &str) -> String {
    crate::util::percent::encode(name)
}

fn from_file_name(file: &str) -> Option<String> {
    crate::util::percent::decode(file)
}

/// Records a use of `name` in `layer`: a new record when cleanroom made it
/// just now (`made`), else one more use of a thing that has a record (a
/// thing without one is not cleanroom's to evict, and stays without).
pub(crate) fn used(layer: &str, name: &str, made: bool) {
    let path = dir(layer).join(file_name(name));
    let now = crate::util::clock::now_secs();
    let text = if made {
        format!("{now} 1 0")
    } else {
        let Ok(old) = std::fs::read_to_string(&path) else { return };
        let mut words = old.split_whitespace().map(|w| w.parse::<i64>().unwrap_or(0));
        let (created, uses, size) = (words.next().unwrap_or(now), words.next().unwrap_or(0), words.next().unwrap_or(0));
        format!("{created} {} {size}", uses + 1)
    };
    if crate::util::paths::create_runtime_dir().is_ok() && std::fs::create_dir_all(dir(layer)).is_ok() {
        let _ = std::fs::write(&path, text);
    }
}

/// Records `name`'s size, keeping its last use (the file's mtime).
pub(crate) fn sized(layer: &str, name: &str, size: u64) {
    let path = dir(layer).join(file_name(name));
    let Ok(old) = std::fs::read_to_string(&path) else { return };
    let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else { return };
    let mut words = old.split_whitespace();
    let (created, uses) = (words.next().unwrap_or("0"), words.next().unwrap_or("0"));
    if std::fs::write(&path, format!("{created} {uses} {size}")).is_ok() {
        if let Ok(file) = std::fs::File::options().write(true).open(&path) {
            let _ = file.set_modified(modified);
        }
    }
}

/// Every record of `layer`.
pub(crate) fn all(layer: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir(layer)).into_iter().flatten().flatten() {
        let Some(name) = entry.file_name().to_str().and_then(from_file_name) else { continue };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut words = text.split_whitespace().map(|w| w.parse::<i64>().unwrap_or(0));
        let last_use = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let created = words.next().unwrap_or(last_use);
        let uses = words.next().unwrap_or(0).max(0) as u64;
        let size = words.next().unwrap_or(0).max(0) as u64;
        out.push(Record { name, created, last_use, uses, size });
    }
    out
}

/// Forgets `name`'s record (it was removed).
pub(crate) fn forget(layer: &str, name: &str) {
    let _ = std::fs::remove_file(dir(layer).join(file_name(name)));
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn name_files_after_image_references_and_back() {
            for name in ["cleanroom-offline/postgres:15", "localhost:5000/a/b@sha256:00ff", "plain"] {
                let file = file_name(name);
                assert!(!file.contains('/') && !file.contains(':'), "{file}");
                assert_eq!(from_file_name(&file).as_deref(), Some(name));
            }
        }
    }
}
