//! Where a user's runs keep their sockets, locks and marks.

use std::path::PathBuf;

/// This user's id.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Where sockets and locks live: `$XDG_RUNTIME_DIR/cleanroom`, else
/// `/tmp/cleanroom-<uid>`.
pub(crate) fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cleanroom"),
        None => std::env::temp_dir().join(format!("cleanroom-{}", uid())),
    }
}

/// Creates the runtime directory, readable by this user only, and checks
/// it: other users must not connect to (and so keep alive) this user's
/// reapers, nor plant a socket or a lock for this user's runs to find.
pub(crate) fn create_runtime_dir() -> std::io::Result<()> {
    let dir = runtime_dir();
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(&dir)?,
        Err(e) => return Err(e),
    }
    check_runtime_dir(&dir, uid())
}

/// The runtime directory must be a real directory (not a symbolic link) of
/// this user's, which nobody else can read or write: otherwise another user
/// could have planted a socket there that this process would trust as its
/// reaper. A directory of this user's with a wider mode is narrowed.
pub(crate) fn check_runtime_dir(dir: &std::path::Path, me: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the runtime directory {} {why}; cleanroom keeps its reaper's socket and locks there and \
                    trusts nothing it did not make: remove it, or set XDG_RUNTIME_DIR to a \
                    directory of your own",
                dir.display()
            ),
        )
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!("belongs to uid {}, not to you (uid {me})", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// This machine, as well as it can be told apart from others that share an
/// engine: `/etc/machine-id`, else the host name (a container's is its id).
pub(crate) fn host_id() -> String {
    for file in ["/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/hostname"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            let text = text.trim();
            if !text.is_empty() {
                return text.to_string();
            }
        }
    }
    "unknown-host".to_string()
}

/// A short, stable name for `text` (8 hex digits), for labels.
pub(crate) fn short_hash(text: &str) -> String {
    format!("{:08x}", crate::util::hash::fnv1a(text.as_bytes(), crate::util::hash::FNV_OFFSET) as u32)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn scratch(tag: &str) -> std::path::PathBuf {
            let dir = std::env::temp_dir().join(format!("cleanroom-rtdir-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&dir);
            dir
        }

        #[test]
        fn refuse_a_runtime_directory_of_another_user() {
            let dir = scratch("other");
            std::fs::create_dir(&dir).unwrap();
            let err = check_runtime_dir(&dir, uid() + 1).unwrap_err().to_string();
            assert!(err.contains("belongs to uid") && err.contains("XDG_RUNTIME_DIR"), "{err}");
            std::fs::remove_dir(&dir).unwrap();
        }

        #[test]
        fn refuse_a_runtime_directory_that_is_a_symbolic_link() {
            let target = scratch("target");
            std::fs::create_dir(&target).unwrap();
            let link = scratch("link");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = check_runtime_dir(&link, uid()).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{err}");
            std::fs::remove_file(&link).unwrap();
            std::fs::remove_dir(&target).unwrap();
        }

        #[test]
        fn narrow_a_runtime_directory_of_ours_that_others_could_read() {
            use std::os::unix::fs::PermissionsExt;
            let dir = scratch("wide");
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            check_runtime_dir(&dir, uid()).unwrap();
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
            std::fs::remove_dir(&dir).unwrap();
        }

        #[test]
        fn hash_names_shortly_and_stably() {
            assert_eq!(short_hash("a"), short_hash("a"));
            assert_ne!(short_hash("a"), short_hash("b"));
            assert_eq!(short_hash("a").len(), 8);
        }
    }
}
