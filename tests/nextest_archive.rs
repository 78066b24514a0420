//! Sharded across machines with nextest: `cargo nextest archive` here, the
//! archive extracted elsewhere and run as two partitions at once with
//! `--workspace-remap`. Each partition is a run of its own (its own
//! session, Postgres and reaper), finds migrations and `cleanroom.toml`
//! under the remapped workspace, passes, and leaves nothing behind.
//!
//! Opt-in (it builds an archive and runs two nested nextest runs), and only
//! under nextest (`cargo test` holds the build directory's lock that the
//! archive needs):
//!
//! ```sh
//! TEST_NEXTEST_ARCHIVE=1 cargo nextest run -p cleanroom-tests --test nextest_archive
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cleanroom_tests::{assert_nothing_left, session_containers};

const OPT_IN: &str = "TEST_NEXTEST_ARCHIVE";

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn nextest(workspace: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("nextest").current_dir(workspace).env_remove("CLEANROOM_SESSION").env_remove("CLEANROOM_CONFIG");
    cmd
}

#[test]
fn two_partitions_of_an_archive_run_at_once_each_with_its_own_services_from_the_remapped_workspace() {
    if std::env::var_os(OPT_IN).is_none() {
        eprintln!(
            "SKIPPED (opt-in): set {OPT_IN}=1 and run under nextest: \
             {OPT_IN}=1 cargo nextest run -p cleanroom-tests --test nextest_archive"
        );
        return;
    }
    assert!(
        std::env::var_os("NEXTEST").is_some(),
        "run this test under cargo nextest: cargo test holds the build directory's lock that the archive needs"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let work = std::env::temp_dir().join(format!("cleanroom-nextest-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let archive = work.join("archive.tar.zst");
    let status = nextest(&source)
        .args(["archive", "-p", "cleanroom-tests", "--test", "remapped", "--archive-file"])
        .arg(&archive)
        .status()
        .unwrap();
    assert!(status.success(), "cargo nextest archive failed");

    // The remapped workspace: only what the tests read, and different from
    // the build machine's copy, so that reading the compile-time path fails.
    let remapped = work.join("workspace");
    for manifest in ["Cargo.toml", "tests/Cargo.toml"] {
        write(remapped.join(manifest), &std::fs::read_to_string(source.join(manifest)).unwrap());
    }
    write(
        remapped.join("tests/fixtures/remapped/001_remapped.sql"),
        "CREATE TABLE found_in_the_remapped_workspace (id int);",
    );
    write(remapped.join("tests/cleanroom.toml"), "[services.postgres]\nmigrations = \"declared\"\n");
    write(
        remapped.join("tests/declared/001_declared.sql"),
        "CREATE TABLE declared_in_the_remapped_cleanroom_toml (id int);",
    );

    let partitions: Vec<_> = (1..=2)
        .map(|k| {
            std::fs::create_dir_all(work.join(format!("extracted-{k}"))).unwrap();
            nextest(&work)
                .args(["run", "--archive-file"])
                .arg(&archive)
                .arg("--workspace-remap")
                .arg(&remapped)
                .arg("--extract-to")
                .arg(work.join(format!("extracted-{k}")))
                .args(["--partition", &format!("count:{k}/2"), "--run-ignored", "only", "--no-capture"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sessions = Vec::new();
    for (k, child) in partitions.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "partition {}/2 failed:\n{text}", k + 1);
        let mine: Vec<String> =
            text.lines().filter_map(|l| l.split_once("REMAPPED_SESSION=").map(|(_, s)| s.trim().to_string())).collect();
        assert_eq!(mine.len(), 1, "partition {}/2 runs one test:\n{text}", k + 1);
        sessions.extend(mine);
    }
    assert_ne!(sessions[0], sessions[1], "each partition is a run of its own");
    for session in &sessions {
        assert_nothing_left(session);
        assert!(session_containers(session).is_empty());
    }
    let _ = std::fs::remove_dir_all(&work);
}
