//! What the operating system answers differently: the user's id, whether a
//! process runs and when it started, who is at the other end of a Unix
//! socket, and how long a socket's path may be. Everything above this module
//! is shared; each answer has a Linux and a macOS implementation
//! (docs/environments.md says what was verified where).
//!
//! Windows is not supported yet: the reaper serves its run over a Unix socket
//! and trusts its clients by their uid, and Windows has neither in the form
//! used here (a loopback TCP listener with a token would be the way). Rather
//! than a runtime that compiles and then judges every live run dead, the
//! crate refuses to build there.

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!(
    "cleanroom supports Linux and macOS only: on other systems it cannot tell whether a process still runs, \
     and its reaper serves over a Unix socket checked by the peer's uid (Windows: run the tests in WSL 2 or \
     a Linux container; see docs/environments.md)"
);

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;

use std::os::unix::net::UnixStream;

/// This user's id.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The id of this process's parent.
pub(crate) fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| rustix::process::Pid::as_raw(Some(p)) as u32)
}

/// Whether a process of this pid exists, as `kill(pid, 0)` tells: one of
/// another user's exists too (the signal is refused, not undeliverable).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return false };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// When the process `pid` started, in a unit of the system's own that only
/// compares with other values of this function on this machine (clock ticks
/// since boot on Linux, microseconds since the epoch on macOS); `None` when
/// it does not run or has exited and waits to be collected (a zombie).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    if !process_exists(pid) {
        return None;
    }
    imp::process_start(pid)
}

/// The uid of the process at the other end of a Unix socket
/// (`SO_PEERCRED` on Linux, `getpeereid` on macOS).
pub(crate) fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    imp::peer_uid(stream)
}

/// The longest path, in bytes, a Unix socket can be bound at: `sun_path`
/// holds 108 bytes on Linux and 104 on macOS, with the terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = imp::SUN_PATH_LEN - 1;

/// Whether this process runs in a container (`/.dockerenv`, Podman's
/// `/run/.containerenv`).
pub(crate) fn in_container() -> bool {
    std::path::Path::new("/.dockerenv").exists() || std::path::Path::new("/run/.containerenv").exists()
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

/// A name for this machine from the system itself when no machine id file
/// says it: the host name.
pub(crate) fn host_name() -> Option<String> {
    let uts = rustix::system::uname();
    let name = uts.nodename().to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

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
