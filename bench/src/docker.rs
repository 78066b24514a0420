//! What Docker saw: the harness counts from Docker's own records (its event
//! log and its container list), never from the code under test.

use std::process::Command;
use std::time::{Duration, Instant};

/// Seconds since the epoch, as Docker's `--since`/`--until` take them.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn lines(args: &[&str]) -> Vec<String> {
    match Command::new("docker").args(args).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
        }
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

/// Ids of the containers carrying `label` (`key=value`) that Docker created
/// between `since` and `until`.
pub fn created(label: &str, since: f64, until: f64) -> Vec<String> {
    let (since, until) = (format!("{since:.3}"), format!("{until:.3}"));
    let label = format!("label={label}");
    let mut ids = lines(&[
        "events", "--since", &since, "--until", &until, "--filter", "type=container", "--filter", "event=create", "--filter",
        &label, "--format", "{{.Actor.ID}}",
    ]);
    ids.sort();
    ids.dedup();
    ids
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
