//! Where a user's runs keep their sockets, locks and marks.

use std::path::PathBuf;

/// This user's id, from the owner of `/proc/self`.
pub(crate) fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// Where sockets and locks live: `$XDG_RUNTIME_DIR/cleanroom`, else
/// `/tmp/cleanroom-<uid>`.
pub(crate) fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cleanroom"),
        None => std::env::temp_dir().join(format!("cleanroom-{}", uid())),
    }
}

/// Creates the runtime directory, readable by this user only: other users
/// must not connect to (and so keep alive) this user's reapers.
pub(crate) fn create_runtime_dir() -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = runtime_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
}
