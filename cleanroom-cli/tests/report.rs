//! `cleanroom report` and `--report` as a user runs them: the built binary,
//! a runtime directory of the test's own with a report written as a run
//! writes it (the example of docs/report.md, schema 3).

use std::path::PathBuf;
use std::process::{Command, Output};

fn cargo_cleanroom(runtime: &PathBuf, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-cleanroom"));
    cmd.arg("cleanroom").args(args).env("XDG_RUNTIME_DIR", runtime).env_remove("CLEANROOM_REPORT");
    let Output { status, stdout, stderr } = cmd.output().expect("the binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn runtime_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!("t-cli-report-{tag}-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(dir.join("cleanroom/reports")).unwrap();
    dir
}

/// The example document of docs/report.md, as one line, as a run writes it.
fn example() -> String {
    let page = include_str!("../../docs/report.md");
    let (_, rest) = page.split_once("<!-- example:start -->\n```json\n").unwrap();
    let value: serde_json::Value = serde_json::from_str(rest.split_once("```").unwrap().0).unwrap();
    format!("{value}\n")
}

#[test]
fn report_prints_the_run_summary_and_every_test_and_json_prints_the_document() {
    let runtime = runtime_dir("v2");
    let doc = example();
    std::fs::write(runtime.join("cleanroom/reports/run-48211-1795693683.json"), &doc).unwrap();
    let (code, out, err) = cargo_cleanroom(&runtime, &["report"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("# ") && lines[0].ends_with("run-48211-1795693683.json"), "{out}");
    assert_eq!(
        lines[1],
        "session run-48211-1795693683: 3 tests in 2 processes; overhead per test p50 157 ms, p95 203 ms; no alerts"
    );
    assert!(
        lines[2].starts_with("  postgres  cleanroom-offline/postgres:15  Ready in 8.20 s (started by pid 12650)"),
        "{out}"
    );
    assert!(
        out.contains("\n  redis     cleanroom-offline/redis:7      Ready in 1.43 s (started by pid 12650)"),
        "{out}"
    );
    assert!(
        out.contains(
            "\n  caches: container 2 hits / 2 misses (50%), image 2 hits / 0 misses (100%), service 10 hits / 4 misses (71%)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "\n  cache layers: container 0 held (lru), image 0 held (ttl), network 0 held (lfu), volume 1 held, 242.0 MiB (lru)\n"
        ),
        "{out}"
    );
    let row: Vec<&str> = lines.iter().find(|l| l.starts_with("child::third")).expect(&out).split_whitespace().collect();
    assert_eq!(row, ["child::third", "postgres", "47.3", "47.3"]);
    assert_eq!(cargo_cleanroom(&runtime, &["report", "--json"]).1, doc);
    std::fs::remove_dir_all(runtime).unwrap();
}

#[test]
fn report_refuses_a_file_that_is_no_report() {
    let runtime = runtime_dir("garbage");
    std::fs::write(runtime.join("cleanroom/reports/s.json"), "{not json\n").unwrap();
    let (code, _, err) = cargo_cleanroom(&runtime, &["report"]);
    assert_eq!(code, 5);
    assert!(err.contains("s.json is not a cleanroom report"), "{err}");
    std::fs::remove_dir_all(runtime).unwrap();
}

#[test]
fn the_report_flag_sets_the_mode_and_rejects_unknown_ones() {
    let runtime = runtime_dir("flag");
    let (code, out, err) = cargo_cleanroom(&runtime, &["config", "--report", "full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("run.report = \"full\"  (command line: --report)"), "{out}");
    let (code, _, err) = cargo_cleanroom(&runtime, &["config", "--report", "loud"]);
    assert_eq!(code, 3);
    assert!(err.contains("--report: \"loud\" is not a report mode; expected one of: quiet, full, off"), "{err}");
    std::fs::remove_dir_all(runtime).unwrap();
}
