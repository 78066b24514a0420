//! Where a user's runs keep their sockets, locks and marks.

use std::path::{Path, PathBuf};

pub(crate) use super::os::uid;

/// Where sockets and locks live: `$XDG_RUNTIME_DIR/cleanroom`, else
/// `/tmp/cleanroom-<uid>`.
pub(crate) fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cleanroom"),
        None => std::env::temp_dir().join(format!("cleanroom-{}", uid())),
    }
}

/// Where the runs' own directories are ([`run_dir`]).
pub(crate) fn runs_dir() -> PathBuf {
    runtime_dir().join("runs")
}

/// Files the processes of one run share (its `RunMarks`, the pools of the
/// existing servers it uses); removed with the run.
pub(crate) fn run_dir(session: &str) -> PathBuf {
    runs_dir().join(session)
}

/// Creates the runtime directory, readable by this user only, and checks
/// it: other users must not connect to (and so keep alive) this user's
/// reapers, nor plant a socket or a lock for this user's runs to find.
pub(crate) fn create_runtime_dir() -> std::io::Result<()> {
    create_private_dir(&runtime_dir())
}

/// Creates `dir` (and its parents) if missing, then checks it as the
/// runtime directory is checked.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    match super::os::create_dir_with_mode(dir, 0o700) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
        Err(e) => return Err(e),
    }
    check_runtime_dir(dir, uid())
}

/// Where the socket named `stem` (`<stem>.sock`) lives: in `dir` when the
/// path fits in a socket address (`max` bytes); else under a hash of the
/// stem in `dir`; else under that hash in `fallback`. macOS's `$TMPDIR`
/// (`/var/folders/…/T/`) leaves little of its 103 bytes for a session id.
pub(crate) fn fit_socket_path(dir: &Path, fallback: &Path, stem: &str, max: usize) -> PathBuf {
    let fits = |p: &PathBuf| p.as_os_str().len() <= max;
    let plain = dir.join(format!("{stem}.sock"));
    if fits(&plain) {
        return plain;
    }
    let hashed = format!("{:016x}.sock", crate::util::hash::fnv1a(stem.as_bytes(), crate::util::hash::FNV_OFFSET));
    let short = dir.join(&hashed);
    if fits(&short) {
        return short;
    }
    fallback.join(hashed)
}

/// Where the socket named `stem` lives for this user (see [`fit_socket_path`]):
/// the runtime directory, else `/tmp/cleanroom-<uid>` (Windows: the
/// user's temporary directory, which a path of 259 bytes always fits).
pub(crate) fn socket_path(stem: &str) -> PathBuf {
    let tmp = if cfg!(windows) { std::env::temp_dir() } else { PathBuf::from("/tmp") };
    let fallback = tmp.join(format!("cleanroom-{}", uid()));
    fit_socket_path(&runtime_dir(), &fallback, stem, super::os::MAX_SOCKET_PATH)
}

/// The runtime directory must be a real directory (not a symbolic link) of
/// this user's, which nobody else can read or write: otherwise another user
/// could have planted a socket there that this process would trust as its
/// reaper. A directory of this user's with a wider mode is narrowed.
pub(crate) fn check_runtime_dir(dir: &Path, me: u32) -> std::io::Result<()> {
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
    // Windows has no owner uid or mode bits: the directory is in the
    // user's profile, whose access rules keep other accounts out.
    let Some((mode, owner)) = super::os::mode_and_owner(&meta) else { return Ok(()) };
    if owner != me {
        return Err(refuse(format!("belongs to uid {owner}, not to you (uid {me})")));
    }
    if mode & 0o077 != 0 {
        super::os::set_mode(dir, 0o700)?;
    }
    Ok(())
}

/// This machine, as well as it can be told apart from others that share an
/// engine: `/etc/machine-id`, else the host name (a container's is its id).
pub(crate) fn host_id() -> String {
    // Read once: every shared container's name and labels carry it.
    static HOST_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST_ID
        .get_or_init(|| {
            for file in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
                if let Ok(text) = std::fs::read_to_string(file) {
                    let text = text.trim();
                    if !text.is_empty() {
                        return text.to_string();
                    }
                }
            }
            super::os::host_name().unwrap_or_else(|| "unknown-host".to_string())
        })
        .clone()
}

/// A short, stable name for `text` (8 hex digits), for labels.
pub(crate) fn short_hash(text: &str) -> String {
    format!("{:08x}", crate::util::hash::fnv1a(text.as_bytes(), crate::util::hash::FNV_OFFSET) as u32)
}

/// The directory a crate's relative paths (migrations, init files) start
/// from: `CARGO_MANIFEST_DIR` as this process sees it when it is set (cargo
/// and nextest set it; `nextest run --workspace-remap` points it at the
/// extracted workspace), else `compiled`, the directory the test binary was
/// built in.
pub(crate) fn crate_dir(compiled: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| compiled.into())
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
        fn keep_a_socket_path_that_fits_as_it_is() {
            let got = fit_socket_path(Path::new("/run/user/1000/cleanroom"), Path::new("/tmp/c"), "run-1-2", 103);
            assert_eq!(got, Path::new("/run/user/1000/cleanroom/run-1-2.sock"));
        }

        #[test]
        fn hash_a_socket_name_that_would_not_fit_in_a_long_directory() {
            // macOS: $TMPDIR is /var/folders/<2>/<30>/T/, and sun_path holds 104 bytes.
            let tmpdir = Path::new("/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/cleanroom-501");
            let session = "nextest-0a1b2c3d1111222233334444-and-some-more";
            let got = fit_socket_path(tmpdir, Path::new("/tmp/cleanroom-501"), session, 103);
            assert!(got.starts_with(tmpdir), "{got:?}");
            assert!(got.as_os_str().len() <= 103, "{got:?}");
            assert_eq!(got, fit_socket_path(tmpdir, Path::new("/tmp/cleanroom-501"), session, 103), "stable");
            assert_ne!(got, fit_socket_path(tmpdir, Path::new("/tmp/cleanroom-501"), "other", 10), "per session");
        }

        #[test]
        fn fall_back_to_tmp_when_even_a_hash_does_not_fit() {
            let deep = PathBuf::from(format!("/{}", "d".repeat(100)));
            let got = fit_socket_path(&deep, Path::new("/tmp/cleanroom-501"), "s", 103);
            assert!(got.starts_with("/tmp/cleanroom-501"), "{got:?}");
            assert!(got.as_os_str().len() <= 103);
        }

        #[test]
        fn bind_a_socket_at_the_longest_path_the_system_takes() {
            // The limit is the system's, not a guess: a path of exactly
            // MAX_SOCKET_PATH bytes binds, one byte more does not.
            let dir = scratch("sun");
            std::fs::create_dir(&dir).unwrap();
            let base = dir.join("s").as_os_str().len();
            let name = "x".repeat(crate::util::os::MAX_SOCKET_PATH - base);
            let longest = dir.join(format!("s{name}"));
            assert_eq!(longest.as_os_str().len(), crate::util::os::MAX_SOCKET_PATH);
            std::os::unix::net::UnixListener::bind(&longest).unwrap();
            assert!(std::os::unix::net::UnixListener::bind(dir.join(format!("s{name}y"))).is_err());
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn hash_names_shortly_and_stably() {
            assert_eq!(short_hash("a"), short_hash("a"));
            assert_ne!(short_hash("a"), short_hash("b"));
            assert_eq!(short_hash("a").len(), 8);
        }
    }
}
