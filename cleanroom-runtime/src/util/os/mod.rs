//! What the operating system answers differently: the user's id, whether a
//! process runs and when it started, how a run's processes reach its reaper
//! ([`socket`]), and how long a socket's path may be. Everything above this
//! module is shared; each answer has a Linux, a macOS and a Windows
//! implementation (docs/environments.md says what was verified where).

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!(
    "cleanroom supports Linux, macOS and Windows: on other systems it cannot tell whether a process still runs \
     (see docs/environments.md)"
);

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub(crate) mod socket;
mod tcp_socket;

/// This user's id (on Windows, a number made from the user's domain and
/// name, which no other account shares).
pub(crate) fn uid() -> u32 {
    imp::uid()
}

/// The id of this process's parent.
pub(crate) fn parent_pid() -> Option<u32> {
    imp::parent_pid()
}

/// Whether a process of this pid exists: `kill(pid, 0)` on Unix, where one
/// of another user's exists too (the signal is refused, not
/// undeliverable); on Windows, a process that can be opened and has not
/// exited.
pub(crate) fn process_exists(pid: u32) -> bool {
    imp::process_exists(pid)
}

#[cfg(unix)]
pub(super) fn unix_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(unix)]
pub(super) fn unix_parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| rustix::process::Pid::as_raw(Some(p)) as u32)
}

#[cfg(unix)]
pub(super) fn unix_process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return false };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// When the process `pid` started, in a unit of the system's own that only
/// compares with other values of this function on this machine (clock ticks
/// since boot on Linux, microseconds since the epoch on macOS, 100 ns since
/// 1601 on Windows); `None` when it does not run or has exited and waits to
/// be collected (a zombie).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    if !process_exists(pid) {
        return None;
    }
    imp::process_start(pid)
}

/// Which processes this process's pids and start times can be compared
/// with: those that print the same. On Linux the boot and the pid
/// namespace (processes in two containers, or on two machines, that share
/// an engine and a runtime path do not); `None` elsewhere, and then no
/// process is judged by a pid another process wrote where both can read it.
pub(crate) fn pid_space() -> Option<&'static str> {
    static SPACE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SPACE.get_or_init(imp::pid_space).as_deref()
}

/// A process identity that survives pid reuse: its pid and its start time
/// (in the system's own unit, see [`process_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

impl ProcessId {
    /// `pid` as it is now, if it runs.
    pub(crate) fn of(pid: u32) -> Option<ProcessId> {
        Some(ProcessId { pid, start: process_start(pid)? })
    }

    /// This process, asked of the system once: it labels what a reaperless
    /// process creates and registers the process with its run's reaper.
    pub(crate) fn current() -> Option<ProcessId> {
        static CURRENT: std::sync::OnceLock<Option<ProcessId>> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| Self::of(std::process::id()))
    }

    /// The parent of this process.
    pub(crate) fn parent() -> Option<ProcessId> {
        Self::of(parent_pid()?)
    }

    /// Whether this very process (not another that got its pid) still runs.
    pub(crate) fn is_alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }

    /// `pid:start`: as passed to the reaper, in labels and in the marks
    /// and pools of the run's directory.
    pub(crate) fn encode(&self) -> String {
        format!("{}:{}", self.pid, self.start)
    }

    /// [`ProcessId::encode`]'s text back; `None` if it is not that.
    pub(crate) fn decode(s: &str) -> Option<ProcessId> {
        let (pid, start) = s.split_once(':')?;
        Some(ProcessId { pid: pid.parse().ok()?, start: start.parse().ok()? })
    }
}

/// The uid of the process at the other end of a Unix socket
/// (`SO_PEERCRED` on Linux, `getpeereid` on macOS).
#[cfg(unix)]
pub(crate) fn peer_uid(stream: &std::os::unix::net::UnixStream) -> std::io::Result<u32> {
    imp::peer_uid(stream)
}

/// The longest path, in bytes, a Unix socket can be bound at: `sun_path`
/// holds 108 bytes on Linux and 104 on macOS, with the terminating NUL. On
/// Windows the "socket" is a file naming a loopback port ([`socket`]): the
/// file system's limit.
pub(crate) const MAX_SOCKET_PATH: usize = imp::SUN_PATH_LEN - 1;

/// Whether this process runs in a (Linux) container (`/.dockerenv`,
/// Podman's `/run/.containerenv`).
pub(crate) fn in_container() -> bool {
    cfg!(unix) && (std::path::Path::new("/.dockerenv").exists() || std::path::Path::new("/run/.containerenv").exists())
}

/// The id of the container this process runs in, as its engine knows it:
/// the container directory its `/etc/hostname` is mounted from, else the
/// host name (a container's is its short id unless `--hostname` set another).
pub(crate) fn own_container_id() -> Option<String> {
    if !in_container() {
        return None;
    }
    imp::own_container_id().or_else(host_name)
}

/// A name for the container this process runs in that all its processes
/// share and no other container's do, cheap to read (every test process of a
/// run reads it, where the id costs a read of `/proc/self/mountinfo`): its
/// mount namespace on Linux, else its id. `None` outside a container.
pub(crate) fn own_container_key() -> Option<String> {
    if !in_container() {
        return None;
    }
    #[cfg(target_os = "linux")]
    if let Ok(link) = std::fs::read_link("/proc/self/ns/mnt") {
        // `mnt:[4026532240]`
        let link = link.to_string_lossy();
        let inode = link.trim_start_matches("mnt:[").trim_end_matches(']');
        if !inode.is_empty() && inode.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!("mnt-{inode}"));
        }
    }
    own_container_id()
}

/// A name for this machine from the system itself when no machine id file
/// says it: the host name.
pub(crate) fn host_name() -> Option<String> {
    let name = imp::host_name()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(unix)]
pub(super) fn unix_host_name() -> Option<String> {
    Some(rustix::system::uname().nodename().to_string_lossy().into_owned())
}

/// Makes directory `dir` with the Unix permission bits `mode` (on Windows
/// it takes its parent's access rules: a user's profile directories are
/// that user's).
pub(crate) fn create_dir_with_mode(dir: &std::path::Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), mode).create(dir);
    #[cfg(windows)]
    {
        let _ = mode;
        std::fs::DirBuilder::new().create(dir)
    }
}

/// Sets the Unix permission bits of `path` (nothing on Windows).
pub(crate) fn set_mode(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(windows)]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// The Unix permission bits and owner's uid of `meta`; `None` on Windows,
/// which has neither (access there is by the directory's rules).
pub(crate) fn mode_and_owner(meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    #[cfg(unix)]
    return Some((std::os::unix::fs::MetadataExt::mode(meta), std::os::unix::fs::MetadataExt::uid(meta)));
    #[cfg(windows)]
    {
        let _ = meta;
        None
    }
}

/// `options` creating a file with the Unix permission bits `mode` (on
/// Windows, with its directory's access rules).
pub(crate) fn open_with_mode(options: &mut std::fs::OpenOptions, mode: u32) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    return std::os::unix::fs::OpenOptionsExt::mode(options, mode);
    #[cfg(windows)]
    {
        let _ = mode;
        options
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn know_that_this_process_is_alive() {
            let me = ProcessId::of(std::process::id()).unwrap();
            assert!(me.is_alive());
            assert!(!ProcessId { start: me.start + 1, ..me }.is_alive(), "a reused pid is another process");
            assert_eq!(ProcessId::decode(&me.encode()), Some(me));
        }
        #[cfg(unix)]
        use std::os::unix::net::UnixStream;

        #[test]
        fn see_this_process_and_its_parent_run() {
            let me = std::process::id();
            assert!(process_exists(me));
            assert!(process_start(me).is_some());
            let parent = parent_pid().expect("a test process has a parent");
            assert!(process_exists(parent));
            assert!(process_start(parent).unwrap() <= process_start(me).unwrap(), "a parent starts first");
        }

        #[test]
        fn see_a_collected_child_gone() {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            assert!(!process_exists(pid), "a collected child is gone");
            assert_eq!(process_start(pid), None);
        }

        #[test]
        fn take_an_exited_child_not_yet_collected_for_dead() {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            // `true` exits at once; until `wait` it is a zombie, which
            // `kill(pid, 0)` still finds: the start time must not.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while process_start(pid).is_some() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(process_exists(pid), "not collected yet");
            assert_eq!(process_start(pid), None, "a zombie does not run");
            child.wait().unwrap();
        }

        #[test]
        fn see_a_process_of_another_user_exist() {
            // pid 1 is root's; for a user other than root the signal is
            // refused, which still means it exists.
            assert!(process_exists(1));
        }

        #[cfg(unix)]
        #[test]
        fn know_who_is_at_the_other_end_of_a_socket() {
            let (a, _b) = UnixStream::pair().unwrap();
            assert_eq!(peer_uid(&a).unwrap(), uid());
        }

        #[test]
        fn name_this_machine() {
            assert!(host_name().is_some_and(|n| !n.is_empty()));
        }
    }
}
