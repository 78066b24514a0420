//! macOS: `proc_pidinfo` for start times, `getpeereid` for peers. Not
//! compiled on the machine this was written on (no macOS standard library
//! there): the calls are kept this small so that a reader can check them
//! against `<libproc.h>` and `<unistd.h>` (docs/environments.md).
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

pub(super) use super::{
    unix_host_name as host_name, unix_parent_pid as parent_pid, unix_process_exists as process_exists, unix_uid as uid,
};

pub(super) const SUN_PATH_LEN: usize = 104;

/// `pbi_start_tvsec` and `pbi_start_tvusec` of `PROC_PIDTBSDINFO`, as
/// microseconds since the epoch; `None` for a zombie or a process that is gone.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let pid = libc::c_int::try_from(pid).ok()?;
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a `proc_bsdinfo` of `size` bytes, which is what
    // `PROC_PIDTBSDINFO` fills; the call writes nothing past it.
    let written = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size) };
    if written != size {
        return None;
    }
    // SAFETY: fully written, as checked above (and zeroed before).
    let info = unsafe { info.assume_init() };
    if info.pbi_status == libc::SZOMB {
        return None;
    }
    Some(info.pbi_start_tvsec.saturating_mul(1_000_000).saturating_add(info.pbi_start_tvusec))
}

/// A macOS process is never in a (Linux) container.
pub(super) fn own_container_id() -> Option<String> {
    None
}

pub(super) fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (0, 0);
    // SAFETY: a valid socket descriptor and two out-parameters of the types
    // `getpeereid` takes.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc == 0 {
        Ok(uid)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Not told: pids are never compared across processes that may not share
/// them.
pub(super) fn pid_space() -> Option<String> {
    None
}
