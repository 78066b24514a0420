//! What Docker saw: the harness counts from Docker's own records (its event
//! log and its container list), never from the code under test.

use std::process::Command;
use std::time::{Duration, Instant};

fn lines(args: &[&str]) -> Vec<String> {
    match Command::new("docker").args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Ok(out) => {
            eprintln!("cleanroom-bench: docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
            Vec::new()
        }
        Err(e) => {
            eprintln!("cleanroom-bench: running docker: {e}");
            Vec::new()
        }
    }
}

/// A live watch of Docker's `create` events for containers carrying one
/// label. Docker keeps only its last thousand or so events, so a busy cell is
/// counted while it runs, not read back afterwards.
pub struct Creations {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Creations {
    /// Starts watching for containers created with `label` (`key=value`).
    pub fn watch(label: &str, out: std::path::PathBuf) -> Creations {
        let file = std::fs::File::create(&out).expect("events file");
        let child = Command::new("docker")
            .args(["events", "--filter", "type=container", "--filter", "event=create", "--filter"])
            .arg(format!("label={label}"))
            .args(["--format", "{{.Actor.ID}}"])
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker events runs");
        // The stream is live once the engine answered; a marker would be
        // exact, a moment is enough for a run that takes seconds to start.
        std::thread::sleep(Duration::from_millis(300));
        Creations { child, out }
    }

    /// Stops watching (after a moment for the last events to arrive) and
    /// returns the ids of the containers created.
    pub fn finish(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut ids: Vec<String> = std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Ids of the containers (running or not) carrying `label`.
pub fn containers(label: &str) -> Vec<String> {
    lines(&["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")])
}

/// Waits up to `max` for the containers carrying `label` to be gone (the
/// reaper removes cleanroom's shortly after the runner exits), and returns
/// those still there.
pub fn settle(label: &str, max: Duration) -> Vec<String> {
    let deadline = Instant::now() + max;
    loop {
        let left = containers(label);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes the given containers and their anonymous volumes.
pub fn remove(ids: &[String]) {
    for chunk in ids.chunks(50) {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(chunk.iter().map(String::as_str));
        let _ = Command::new("docker").args(&args).output();
    }
}

/// Removes the network cleanroom's reused services share once none of them
/// is left (what cleanroom's keeper does when it removes the last one; the
/// harness removes its reused services itself).
pub fn remove_idle_reuse_networks() {
    let ask = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let owner: Vec<String> =
        cleanroom_runtime::admin::owner_labels().into_iter().map(|(k, v)| format!("label={k}={v}")).collect();
    let mut busy = vec!["ps".to_string(), "-aq".into(), "--filter".into(), "label=cleanroom.reuse=true".into()];
    for label in &owner {
        busy.extend(["--filter".to_string(), label.clone()]);
    }
    if !ask(&busy.iter().map(String::as_str).collect::<Vec<_>>()).trim().is_empty() {
        return;
    }
    // Only this user's, from this machine and runtime directory: another
    // user's or another run's reused services are not the harness's to touch.
    let mut args: Vec<String> = ["network", "ls", "-q", "--filter", "label=cleanroom.reuse=true"]
        .into_iter()
        .chain(["--filter", "label=cleanroom.managed=true"])
        .map(String::from)
        .collect();
    for (key, value) in cleanroom_runtime::admin::owner_labels() {
        args.extend(["--filter".to_string(), format!("label={key}={value}")]);
    }
    for id in ask(&args.iter().map(String::as_str).collect::<Vec<_>>()).split_whitespace() {
        let _ = Command::new("docker").args(["network", "rm", id]).output();
    }
}
