//! What happened during the run, for the end-of-run report and benchmarks.
//!
//! Each test process appends at exit a JSON document with what its tests
//! waited for to `<runtime dir>/reports/<session>.jsonl` (the newest
//! [`KEPT_REPORTS`] runs are kept there; `cleanroom report` prints the newest),
//! and to `run.report_json` (`CLEANROOM_REPORT_JSON=path`) if that is set:
//!
//! ```json
//! {"schema": 1, "pid": 1234, "session": "…",
//!  "tests": [{"name": "db::inserts", "started_micros": 5210, "acquire": [{"service": "postgres", "micros": 412, "room_micros": 380}]}]}
//! ```
//!
//! `micros` is the time from the test asking for the service's handle to
//! having it: waiting for the service to be Ready and making the test's room.
//! `room_micros` is the room alone (a clone from the pool, a Redis lease).
//! `started_micros` is when the test's services were Ready and it began to
//! resolve its parameters, counted from the start of the process: for the
//! first test, cleanroom's share of the time to the first test. With several processes, each appends its
//! document as one line (JSON Lines).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::driver::{Acquisition, TestDesc};

type Record = (String, Vec<Acquisition>, Option<std::time::Duration>);

static TESTS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

pub(crate) fn record_test(desc: &TestDesc, acquisitions: Vec<Acquisition>, started: Option<std::time::Duration>) {
    TESTS.lock().unwrap_or_else(|e| e.into_inner()).push((desc.test_name(), acquisitions, started));
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The process's document, as one line of JSON.
pub(crate) fn to_json(session: &str) -> String {
    let tests = TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let tests: Vec<String> = tests
        .iter()
        .map(|(name, acq, started)| {
            let acq: Vec<String> = acq
                .iter()
                .map(|a| {
                    format!(
                        "{{\"service\":{},\"micros\":{},\"room_micros\":{}}}",
                        json_string(a.service),
                        a.elapsed.as_micros(),
                        a.room.as_micros()
                    )
                })
                .collect();
            let started = started.map_or("null".to_string(), |d| d.as_micros().to_string());
            format!(
                "{{\"name\":{},\"started_micros\":{started},\"acquire\":[{}]}}",
                json_string(name),
                acq.join(",")
            )
        })
        .collect();
    format!(
        "{{\"schema\":1,\"pid\":{},\"session\":{},\"tests\":[{}]}}",
        std::process::id(),
        json_string(session),
        tests.join(",")
    )
}

/// Where the report of `session` is kept: `<runtime dir>/reports/<session>.jsonl`.
/// `cleanroom report` prints the newest file there.
pub(crate) fn session_report_path(session: &str) -> PathBuf {
    reports_dir().join(format!("{session}.jsonl"))
}

pub(crate) fn reports_dir() -> PathBuf {
    crate::reaper::runtime_dir().join("reports")
}

/// How many runs' reports are kept in the runtime directory.
const KEPT_REPORTS: usize = 20;

/// Appends the process's document to its session's report in the runtime
/// directory, and to `run.report_json` (`CLEANROOM_REPORT_JSON`) if set.
pub(crate) fn write_at_exit(session: &str) {
    if TESTS.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    let line = to_json(session);
    let append = |path: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
    };
    if crate::reaper::create_runtime_dir().is_ok() && std::fs::create_dir_all(reports_dir()).is_ok() {
        let _ = append(&session_report_path(session));
        remove_old_reports();
    }
    if let Ok(Some(path)) = crate::config::current().map(|c| c.report_json.as_ref()) {
        if let Err(e) = append(path) {
            eprintln!("cleanroom: could not write the report to {} (run.report_json / CLEANROOM_REPORT_JSON): {e}", path.display());
        }
    }
}

/// The reports in the runtime directory, newest first.
pub(crate) fn reports() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(reports_dir()) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    files.into_iter().map(|(_, p)| p).collect()
}

fn remove_old_reports() {
    for old in reports().into_iter().skip(KEPT_REPORTS) {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_json_strings() {
        assert_eq!(super::json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
