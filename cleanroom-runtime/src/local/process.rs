//! The local engine's processes: started detached (a process group of
//! their own, so that a Ctrl-C of the test run or the exit of the test
//! process that started them does not end them: the run's reaper does), as an
//! unprivileged user when cleanroom runs as root, and stopped only after
//! checking that the pid is still the one started (its start time, and on
//! Linux its working directory or command line inside the server's
//! directory).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A server the local engine started, as recorded for the run's other
/// processes, its reaper and the next run's sweep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Server {
    pub(crate) pid: u32,
    /// [`crate::util::os::process_start`] of `pid`: a later process with the
    /// same pid is not this server.
    pub(crate) start: u64,
    /// The server's own directory: its data, log and socket; removed with it.
    pub(crate) dir: PathBuf,
    /// What the server was started as (`postgres`, `redis-server`, a
    /// local command's program).
    pub(crate) program: String,
    /// The signal that stops it cleanly: `QUIT` for Postgres (an immediate
    /// shutdown that still releases its shared memory), else `TERM`.
    pub(crate) stop_signal: String,
    /// Container port → the port it listens on.
    pub(crate) ports: std::collections::BTreeMap<u16, u16>,
    /// The definition's variables as the server was made with them (its
    /// password): the values attaching processes use.
    pub(crate) env: std::collections::BTreeMap<String, String>,
    /// The test process that started it, when it is that process's alone
    /// (no reaper): it is over when that process is.
    pub(crate) owner: Option<String>,
    /// Whether it passed its checks; a record that is not is a start that
    /// was cut short.
    pub(crate) ready: bool,
}

impl Server {
    /// The server's log: its stdout and stderr.
    pub(crate) fn log(&self) -> PathBuf {
        log_path(&self.dir)
    }

    /// Whether the recorded process is still the one started.
    pub(crate) fn is_running(&self) -> bool {
        crate::util::os::process_start(self.pid) == Some(self.start) && belongs(self.pid, &self.dir)
    }
}

/// Where the log of the server in `dir` is.
pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join("log")
}

/// A free port on loopback, as the system hands one out; the caller starts
/// its server on it at once (and again on another if it was taken meanwhile).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The uid and gid a server runs as: `None` (this process's) unless this
/// process is root, which Postgres refuses: then the `postgres` user if the
/// machine has one, else `nobody`, as the official image runs it.
pub(crate) fn unprivileged_user() -> Option<(u32, u32)> {
    if crate::util::os::uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    user_in(&passwd, "postgres").or_else(|| user_in(&passwd, "nobody")).or(Some((65534, 65534)))
}

/// The uid and gid of `name` in an `/etc/passwd` text.
fn user_in(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

/// Starts `program` detached, in `cwd`, its output appended to `log`.
pub(crate) fn spawn(
    program: &Path,
    args: &[String],
    cwd: &Path,
    log: &Path,
    env: &std::collections::BTreeMap<String, String>,
    user: Option<(u32, u32)>,
) -> std::io::Result<Child> {
    #[cfg(windows)]
    {
        let _ = (program, args, cwd, log, env, user);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the local engine (CLEANROOM_ENGINE=local) runs its servers on Linux and macOS only; on Windows use \
             Docker or Podman, or run the tests in WSL 2",
        ))
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // This user's alone: the server writes through the descriptor,
        // whatever user it runs as, and the directory above is readable by all.
        let out = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        if let Some((uid, gid)) = user {
            // std drops the supplementary groups too when root changes uid.
            cmd.uid(uid).gid(gid);
        }
        cmd.spawn()
    }
}

/// Runs `program` to its end (`initdb`), its output appended to `log`;
/// `Err` with the log's last lines when it fails.
pub(crate) fn run(
    program: &Path,
    args: &[String],
    cwd: &Path,
    log: &Path,
    user: Option<(u32, u32)>,
) -> Result<(), String> {
    let mut child = spawn(program, args, cwd, log, &Default::default(), user)
        .map_err(|e| format!("could not run {}: {e}", program.display()))?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} {} failed ({status}):\n{}", program.display(), args.join(" "), tail(log, 20)))
    }
}

/// The last `lines` lines of `log`.
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether process `pid` works in `dir` or names it on its command line: a
/// server of the local engine does one or the other (Postgres and Redis run
/// in their data directory). Only Linux can tell; elsewhere the start time
/// checked by the caller has to do.
pub(crate) fn belongs(pid: u32, dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        if cwd.is_some_and(|cwd| cwd.starts_with(dir)) {
            return true;
        }
        // Whole path components only: `/x/run-1` is not inside `/x/run-10`.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            arg.split(['=', ' ']).any(|word| Path::new(word).starts_with(dir))
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pid, dir);
        true
    }
}

/// Every process that works in `dir` or names it (Linux; elsewhere none are
/// found this way and only recorded servers are stopped).
pub(crate) fn processes_in(dir: &Path) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&pid| pid != std::process::id() && belongs(pid, dir))
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Vec::new()
    }
}

/// Sends the signal `name` (`TERM`, `QUIT`, `KILL`) to `pid`, or to its
/// process group. Windows has no signals, and the local engine starts no
/// server there ([`spawn`]).
fn send(pid: u32, name: &str, group: bool) {
    #[cfg(unix)]
    {
        use rustix::process::{kill_process, kill_process_group, Pid, Signal};
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return };
        let signal = match name {
            "QUIT" => Signal::QUIT,
            "KILL" => Signal::KILL,
            _ => Signal::TERM,
        };
        let _ = if group { kill_process_group(pid, signal) } else { kill_process(pid, signal) };
    }
    #[cfg(windows)]
    let _ = (pid, name, group);
}

/// Kills the server's whole process group at once, if it is still the one
/// started.
pub(crate) fn kill(server: &Server) {
    if server.is_running() {
        send(server.pid, "KILL", true);
    }
}

/// Stops the server (its stop signal, then after `grace` its process group
/// is killed), kills whatever else still works in its directory, and
/// removes the directory. A pid that is no longer the server's is never
/// signalled.
pub(crate) fn stop(server: &Server, grace: Duration) {
    if server.is_running() {
        send(server.pid, &server.stop_signal, false);
        let deadline = Instant::now() + grace;
        while server.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(server);
    }
    remove_dir(&server.dir);
}

/// Kills every process still in `dir` (a server whose record was lost, its
/// children), then removes `dir`.
pub(crate) fn remove_dir(dir: &Path) {
    for _ in 0..50 {
        let left = processes_in(dir);
        if left.is_empty() {
            break;
        }
        for pid in left {
            send(pid, "KILL", false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn find_a_user_in_the_password_file() {
            let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
            assert_eq!(user_in(passwd, "postgres"), Some((101, 104)));
            assert_eq!(user_in(passwd, "nobody"), None);
        }

        #[test]
        fn stop_a_detached_process_and_remove_its_directory_but_never_a_stranger() {
            let dir = std::env::temp_dir().join(format!("cleanroom-local-proc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = spawn(
                Path::new("/bin/sh"),
                &["-c".into(), "sleep 30".into()],
                &dir,
                &log_path(&dir),
                &Default::default(),
                None,
            )
            .unwrap();
            let pid = child.id();
            let start = crate::util::os::process_start(pid).unwrap();
            let server = Server {
                pid,
                start,
                dir: dir.clone(),
                program: "sh".into(),
                stop_signal: "TERM".into(),
                ports: Default::default(),
                env: Default::default(),
                owner: None,
                ready: true,
            };
            assert!(server.is_running());
            let stranger = Server { start: start + 1, ..server.clone() };
            assert!(!stranger.is_running(), "another start time: not the process started");
            #[cfg(target_os = "linux")]
            assert!(!Server { dir: std::env::temp_dir().join("elsewhere"), ..server.clone() }.is_running());
            let mut child = child;
            std::thread::spawn(move || child.wait());
            stop(&server, Duration::from_secs(2));
            assert!(!server.is_running());
            assert!(!dir.exists());
        }
    }
}
