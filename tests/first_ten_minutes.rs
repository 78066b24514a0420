//! A new user's first ten minutes, tried the way they would: a fresh crate
//! outside this workspace with exactly the dev-dependencies the README lists,
//! the README's migration and its first example pasted as a test, run with
//! `cargo test` against the real Docker engine.
//!
//! Nothing is published yet, so `[patch.crates-io]` points the README's
//! `cleanroom-test = "0.1"` (and the crates it depends on) at this checkout;
//! every other line of the manifest is the README's. The workspace's
//! `Cargo.lock` is copied in, so that the crate resolves to the versions this
//! workspace already fetched and builds offline (what the workspace never
//! fetched is fetched once), into this workspace's target directory, reusing
//! what is built there.

use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_tests::{assert_nothing_left, fresh_session};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The target directory this test binary was built in: `<target>/debug/deps/<bin>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.ancestors().nth(3).expect("the binary is in <target>/<profile>/deps").to_path_buf()
}

/// The fenced blocks of `text` whose info string is `lang`, in order.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    let fence = format!("```{lang}\n");
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("every fenced block of the README is closed");
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// What the README tells a new user to write.
struct Readme {
    /// The first ```rust block.
    example: String,
    /// The ```toml block that starts with `[dev-dependencies]`.
    dependencies: String,
    /// ```sql blocks whose first line is `-- <path>`: (path, contents).
    files: Vec<(String, String)>,
}

fn readme() -> Readme {
    let text = std::fs::read_to_string(workspace().join("README.md")).expect("README.md is readable");
    let example = blocks(&text, "rust").first().expect("the README shows an example").to_string();
    let dependencies = blocks(&text, "toml")
        .into_iter()
        .find(|block| block.starts_with("[dev-dependencies]"))
        .expect("the README lists the dev-dependencies in a ```toml block starting with [dev-dependencies]")
        .to_string();
    let files = blocks(&text, "sql")
        .into_iter()
        .filter_map(|block| {
            let (first, _) = block.split_once('\n')?;
            Some((first.strip_prefix("-- ")?.trim().to_string(), block.to_string()))
        })
        .collect();
    Readme { example, dependencies, files }
}

/// A crate in a fresh temporary directory, outside the workspace, made from
/// the README alone (and the patch to this checkout).
fn new_users_crate(readme: &Readme) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cleanroom-first-ten-minutes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    let root = workspace();
    let patch = |name: &str, dir: &str| format!("{name} = {{ path = {:?} }}\n", root.join(dir).display().to_string());
    let manifest = format!(
        "[package]\nname = \"first-ten-minutes\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         {}\n\
         [patch.crates-io]\n{}{}{}\n\
         [workspace]\n",
        readme.dependencies,
        patch("cleanroom-test", "cleanroom"),
        patch("cleanroom-test-macros", "cleanroom-macros"),
        patch("cleanroom-test-runtime", "cleanroom-runtime"),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    std::fs::write(dir.join("tests/signup.rs"), &readme.example).unwrap();
    for (path, contents) in &readme.files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    dir
}

/// `cargo <args>` in `dir`, as a new user runs it: none of the variables
/// this test's own runner set, a session of its own.
fn cargo(dir: &Path, args: &[&str], session: &str) -> std::process::Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(dir).env("CARGO_TARGET_DIR", target_dir()).env("CLEANROOM_SESSION", session);
    for (key, _) in std::env::vars() {
        let runners = key.starts_with("NEXTEST") || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_CRATE");
        if runners || ["CARGO_MANIFEST_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&key.as_str()) {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("cargo runs")
}

#[test]
fn the_readmes_first_example_passes_in_a_fresh_crate_with_exactly_the_listed_dependencies() {
    let readme = readme();
    assert!(
        readme.example.contains("#[cleanroom::test"),
        "the README's first ```rust block is its first example:\n{}",
        readme.example
    );
    assert!(
        readme.files.iter().any(|(path, _)| path.starts_with("migrations/")),
        "the example's migrations = \"migrations\" needs the README to show the migration"
    );
    let dir = new_users_crate(&readme);
    let session = fresh_session("first-ten-minutes");
    let test = ["test", "--offline", "--test", "signup"];
    let mut out = cargo(&dir, &test, &session);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("offline mode") {
        // A dependency the README lists with features this workspace does not
        // use (redis's defaults) is not in the local registry cache yet: fetch
        // it once, as a new user's first build would; the next run is offline.
        let fetch = cargo(&dir, &["fetch"], &session);
        assert!(fetch.status.success(), "cargo fetch failed: {}", String::from_utf8_lossy(&fetch.stderr));
        out = cargo(&dir, &test, &session);
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the README's example failed in {} with the README's dependencies:\n{text}",
        dir.display()
    );
    assert!(text.contains("test result: ok. 1 passed"), "{text}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child tests of the tests below: run only as a child process, with a
/// session of their own.
mod child {
    /// An image that is nowhere: with `CLEANROOM_PULL=never` it fails at once.
    #[cleanroom::service]
    pub fn nowhere() -> cleanroom::GenericContainer {
        cleanroom::GenericContainer::new("cleanroom-offline/nowhere:0")
    }

    /// The line of the attribute of `needs_a_service_that_never_starts`.
    pub const ATTRIBUTE_LINE: u32 = line!() + 1;
    #[cleanroom::test(nowhere)]
    #[ignore = "child test: run by the tests of this file"]
    fn needs_a_service_that_never_starts(nowhere: cleanroom::Container) {
        let _ = nowhere;
    }

    #[cleanroom::test(nowhere)]
    #[ignore = "child test: run by the tests of this file"]
    async fn needs_it_too(nowhere: cleanroom::Container) {
        let _ = nowhere;
    }
}

#[test]
fn a_service_that_never_starts_fails_the_test_at_the_users_test_and_the_summary_says_no_test_started() {
    let session = fresh_session("never-starts");
    let run = cleanroom_tests::run_child(
        &session,
        &["--ignored", "child::", "--test-threads", "1"],
        &[("CLEANROOM_PULL", "never"), ("CLEANROOM_REPORT", "quiet")],
    );
    let text = run.text();
    assert!(text.contains("0 passed; 2 failed"), "{text}");
    // The panic is reported where the user wrote the test, not in a file of
    // cleanroom's: the location libtest prints is the test's attribute.
    let at = format!("first_ten_minutes.rs:{}:", child::ATTRIBUTE_LINE);
    let panicked: Vec<&str> = text.lines().filter(|l| l.contains("panicked at")).collect();
    assert_eq!(panicked.len(), 2, "{text}");
    assert!(
        panicked.iter().any(|l| l.contains(&at)),
        "a failure of cleanroom's points at the test ({at}): {panicked:?}"
    );
    assert!(panicked.iter().all(|l| l.contains("first_ten_minutes.rs:")), "{panicked:?}");
    assert!(text.contains("cleanroom-offline/nowhere:0"), "the message names the image: {text}");
    // The summary gives no all-clear for a run in which no test started.
    let summary = text.lines().find(|l| l.starts_with("cleanroom: 2 tests")).unwrap_or_else(|| panic!("{text}"));
    assert!(summary.contains("all 2 tests failed to start"), "{summary}");
    assert!(!summary.contains("no alerts"), "{summary}");
    assert_nothing_left(&session);
}
