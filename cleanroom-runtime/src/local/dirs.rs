//! Where the local engine keeps its servers and its cache.
//!
//! Servers live under `/dev/shm/cleanroom-local-<uid>/<session>/<service>`
//! (memory, as the container's tmpfs; `/tmp` where there is no `/dev/shm`): each run has a directory of its own there, removed with
//! the run. These directories are readable by all (mode 0755) because a
//! server may run as another user than cleanroom (Postgres refuses root);
//! what must stay private is in the server's own data directory (0700, its
//! user's) and in the runtime directory (the records, with passwords).
//!
//! The cache keeps one initialised Postgres cluster per version, user and
//! `initdb` arguments: a cold start copies it instead of running `initdb`.

use std::path::{Path, PathBuf};

/// The local engine's directory for this user.
pub(crate) fn base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    // Not `$TMPDIR` elsewhere: macOS's (`/var/folders/…/T/`) leaves too
    // little of a socket address's 104 bytes for Postgres's socket.
    let parent = if cfg!(target_os = "linux") && shm.is_dir() { shm } else { Path::new("/tmp") };
    parent.join(format!("cleanroom-local-{}", crate::util::os::uid()))
}

/// The directory of `session`'s servers.
pub(crate) fn session_dir(session: &str) -> PathBuf {
    base_dir().join(session)
}

/// Creates `dir` (mode 0755) if missing and checks that it is a directory
/// of this user's, not a link: its parent is shared by everyone (`/dev/shm`,
/// `/tmp`) and another user could have made it first.
pub(crate) fn create_shared_dir(dir: &Path) -> std::io::Result<()> {
    match crate::util::os::create_dir_with_mode(dir, 0o755) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let mode_and_owner = crate::util::os::mode_and_owner(&meta);
    if !meta.is_dir() || mode_and_owner.is_some_and(|(_, owner)| owner != crate::util::os::uid()) {
        return Err(std::io::Error::other(format!(
            "{} is not a directory of yours (uid {}); remove it",
            dir.display(),
            crate::util::os::uid()
        )));
    }
    if mode_and_owner.is_some_and(|(mode, _)| mode & 0o7777 != 0o755) {
        crate::util::os::set_mode(dir, 0o755)?;
    }
    Ok(())
}

/// The cache of initialised clusters: `$XDG_CACHE_HOME/cleanroom/local`,
/// else `~/.cache/cleanroom/local`, else in the runtime directory.
pub(crate) fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache"));
    match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()).map(PathBuf::from).or(home) {
        Some(dir) => dir.join("cleanroom").join("local"),
        None => crate::util::paths::runtime_dir().join("local-cache"),
    }
}

/// Copies `from` to `to` as it is (owners, modes).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| format!("could not run cp: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cp -a {} {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Copies the cached cluster `key` to `data` (which must not exist);
/// `false` when there is none (or the copy failed: the caller runs
/// `initdb` instead).
pub(crate) fn restore(key: &str, data: &Path) -> bool {
    let cached = cache_dir().join(key);
    if !cached.join("PG_VERSION").is_file() {
        return false;
    }
    match copy_tree(&cached, data) {
        Ok(()) => true,
        Err(_) => {
            let _ = std::fs::remove_dir_all(data);
            false
        }
    }
}

/// Keeps a copy of the freshly initialised cluster `data` as `key`, for the
/// next cold start. Made aside and renamed into place: a concurrent run
/// never copies half of one.
pub(crate) fn fill(key: &str, data: &Path) -> Result<(), String> {
    let root = cache_dir();
    crate::util::paths::create_private_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let aside = root.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    copy_tree(data, &aside)?;
    if std::fs::rename(&aside, root.join(key)).is_err() {
        // Another run filled it first.
        let _ = std::fs::remove_dir_all(&aside);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn make_a_shared_directory_and_refuse_a_link_in_its_place() {
            let root = std::env::temp_dir().join(format!("cleanroom-local-dirs-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let dir = root.join("mine");
            create_shared_dir(&dir).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
            let link = root.join("link");
            std::os::unix::fs::symlink(&dir, &link).unwrap();
            assert!(create_shared_dir(&link).is_err(), "a link is not the directory asked for");
            let _ = std::fs::remove_dir_all(&root);
        }

        #[test]
        fn restore_only_a_complete_cluster() {
            let key = format!("test-{}", std::process::id());
            let data = std::env::temp_dir().join(format!("cleanroom-local-restore-{}", std::process::id()));
            assert!(!restore(&key, &data), "nothing cached under a new key");
            assert!(!data.exists());
        }
    }
}
