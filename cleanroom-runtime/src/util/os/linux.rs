//! Linux: `/proc` for start times, `SO_PEERCRED` for peers.

use std::os::unix::net::UnixStream;

pub(super) use super::{
    unix_host_name as host_name, unix_parent_pid as parent_pid, unix_process_exists as process_exists, unix_uid as uid,
};

pub(super) const SUN_PATH_LEN: usize = 108;

/// Field 22 of `/proc/<pid>/stat` (clock ticks since boot); `None` for a
/// zombie (state `Z`) or a process that is gone.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat_field(&stat, 3)? == "Z" {
        return None;
    }
    stat_field(&stat, 22)?.parse().ok()
}

/// This boot and this pid namespace: `<boot_id>/<namespace inode>`.
pub(super) fn pid_space() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let namespace = namespace.to_string_lossy();
    let inode = namespace.strip_prefix("pid:[")?.strip_suffix(']')?;
    Some(format!("{}/{inode}", boot.trim()))
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line; the
/// command name (field 2) may contain spaces and parentheses.
pub(super) fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after = &stat[stat.rfind(')')? + 1..];
    if n < 3 {
        return None;
    }
    after.split_whitespace().nth(n - 3)
}

/// The 64-hex-digit id in `/proc/self/mountinfo`'s `…/containers/<id>/hostname`
/// mounted at `/etc/hostname`.
pub(super) fn own_container_id() -> Option<String> {
    container_id_in_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// Only the mount *at* `/etc/hostname` is this process's own: on a machine
/// that shares the engine's mount namespace, the engine's archive API
/// (heartbeats, `docker cp`) briefly mounts other containers' files, their
/// `hostname` among them, under its storage directory, and a process there
/// saw them as its own (it then took the bridge's gateway for its host).
pub(super) fn container_id_in_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let source = fields.nth(3)?;
        (fields.next()? == "/etc/hostname").then_some(())?;
        let id = source.strip_suffix("/hostname")?.rsplit('/').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

pub(super) fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(stream)?.uid.as_raw())
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn read_proc_stat_fields_past_odd_command_names() {
            let stat = "123 (a) b (c)) S 77 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
            assert_eq!(stat_field(stat, 3), Some("S"));
            assert_eq!(stat_field(stat, 4), Some("77"));
            assert_eq!(stat_field(stat, 22), Some("98765"));
            assert_eq!(stat_field(stat, 2), None);
        }

        #[test]
        fn find_this_containers_id_where_its_hostname_file_comes_from() {
            let id = "860ea263c98b665c1233eb02fde741cb461e01ad485ab6dec4e38b3708b86a1d";
            let mountinfo = format!(
                "92 1 0:50 / / rw - overlay overlay rw\n\
                 109 92 254:0 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
                 110 92 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
            );
            assert_eq!(container_id_in_mountinfo(&mountinfo).as_deref(), Some(id));
            assert_eq!(container_id_in_mountinfo("92 1 0:50 / / rw - overlay overlay rw\n"), None);
            // Another container's file, which the engine's archive API
            // mounted on the host for a moment: not this process's.
            let passing = format!(
                "70 45 254:0 /var/lib/docker/containers/{id}/hostname \
                 /var/lib/docker/fuse-overlayfs/2a6a/merged/etc/hostname rw,relatime - ext4 /dev/vda rw\n"
            );
            assert_eq!(container_id_in_mountinfo(&passing), None);
        }
    }
}
