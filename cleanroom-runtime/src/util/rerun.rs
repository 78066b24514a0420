//! The commands that run one test of this test binary again, alone, with its
//! services kept after the run (`CLEANROOM_REUSE=1`): what a failing test's
//! kept-room message prints, so that the room can be opened after the run.

/// Where this process came from, as far as the rerun commands need it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Origin {
    /// The package (`CARGO_PKG_NAME`, set by cargo and nextest).
    package: Option<String>,
    /// The test target's crate name: the binary's file name without its hash.
    binary: Option<String>,
    /// nextest's id of the binary (`NEXTEST_BINARY_ID`), when nextest runs it.
    nextest_binary_id: Option<String>,
}

impl Origin {
    fn of_this_process() -> Origin {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
            .map(|stem| without_hash(&stem).to_string());
        Origin {
            package: std::env::var("CARGO_PKG_NAME").ok().filter(|p| !p.is_empty()),
            binary,
            nextest_binary_id: std::env::var("NEXTEST_BINARY_ID").ok().filter(|id| !id.is_empty()),
        }
    }

    /// The integration test target this binary is, if it is one. A binary
    /// named after its package is its library's unit tests (or a test target
    /// of the same name): then no target is named, which runs every target's
    /// tests of that name, one test.
    fn test_target(&self) -> Option<&str> {
        if let Some(id) = &self.nextest_binary_id {
            return id.split_once("::").map(|(_, target)| target).filter(|t| !t.contains('/'));
        }
        let binary = self.binary.as_deref()?;
        let lib = self.package.as_deref().map(|p| p.replace('-', "_"));
        (lib.as_deref() != Some(binary)).then_some(binary)
    }

    /// `CLEANROOM_REUSE=1 cargo test -p <package> --test <target> -- <test> --exact`,
    /// with `--include-ignored` for an `#[ignore]`d test (else it would not run).
    fn cargo_test(&self, test: &str, ignored: bool) -> String {
        let mut command = "CLEANROOM_REUSE=1 cargo test".to_string();
        if let Some(package) = &self.package {
            command.push_str(&format!(" -p {package}"));
        }
        if let Some(target) = self.test_target() {
            command.push_str(&format!(" --test {target}"));
        }
        let include = if ignored { " --include-ignored" } else { "" };
        format!("{command} -- {test} --exact{include}")
    }

    /// `CLEANROOM_REUSE=1 cargo nextest run -p <package> -E 'test(=<test>)'`,
    /// narrowed to this binary when its id is known, with `--run-ignored all`
    /// for an `#[ignore]`d test.
    fn nextest(&self, test: &str, ignored: bool) -> String {
        let binary_id = match (&self.nextest_binary_id, &self.package, self.test_target()) {
            (Some(id), _, _) => Some(id.clone()),
            (None, Some(package), Some(target)) => Some(format!("{package}::{target}")),
            (None, Some(package), None) => Some(package.clone()),
            (None, None, _) => None,
        };
        let mut command = "CLEANROOM_REUSE=1 cargo nextest run".to_string();
        if let Some(package) = &self.package {
            command.push_str(&format!(" -p {package}"));
        }
        if ignored {
            command.push_str(" --run-ignored all");
        }
        match binary_id {
            Some(id) => format!("{command} -E 'binary_id({id}) & test(={test})'"),
            None => format!("{command} -E 'test(={test})'"),
        }
    }
}

/// `name-0123456789abcdef` → `name`: cargo's file name of a test binary.
fn without_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => stem,
    }
}

/// The two commands, under `cargo test` and under nextest, that rerun `test`
/// (libtest's name for it; `ignored`: it is `#[ignore]`d) of this binary
/// alone with its services kept, one per line, indented for a message.
pub(crate) fn commands(test: &str, ignored: bool) -> String {
    let origin = Origin::of_this_process();
    format!("  {}\n  {}", origin.cargo_test(test, ignored), origin.nextest(test, ignored))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn origin(package: &str, binary: &str, nextest: Option<&str>) -> Origin {
            Origin {
                package: Some(package.into()),
                binary: Some(binary.into()),
                nextest_binary_id: nextest.map(str::to_string),
            }
        }

        #[test]
        fn name_the_test_target_and_the_exact_test_under_cargo_test() {
            let o = origin("app", "signup", None);
            assert_eq!(
                o.cargo_test("db::signs_up", false),
                "CLEANROOM_REUSE=1 cargo test -p app --test signup -- db::signs_up --exact"
            );
            assert_eq!(
                o.nextest("db::signs_up", false),
                "CLEANROOM_REUSE=1 cargo nextest run -p app -E 'binary_id(app::signup) & test(=db::signs_up)'"
            );
        }

        #[test]
        fn take_nextests_own_binary_id_when_nextest_runs_the_test() {
            let o = origin("my-app", "signup", Some("my-app::signup"));
            assert_eq!(o.cargo_test("t", false), "CLEANROOM_REUSE=1 cargo test -p my-app --test signup -- t --exact");
            assert_eq!(
                o.nextest("t", false),
                "CLEANROOM_REUSE=1 cargo nextest run -p my-app -E 'binary_id(my-app::signup) & test(=t)'"
            );
        }

        #[test]
        fn name_no_target_for_a_librarys_unit_tests() {
            let o = origin("my-app", "my_app", None);
            assert_eq!(o.cargo_test("t", false), "CLEANROOM_REUSE=1 cargo test -p my-app -- t --exact");
            assert_eq!(
                o.nextest("t", false),
                "CLEANROOM_REUSE=1 cargo nextest run -p my-app -E 'binary_id(my-app) & test(=t)'"
            );
            let lib = origin("my-app", "my_app", Some("my-app"));
            assert_eq!(lib.cargo_test("t", false), "CLEANROOM_REUSE=1 cargo test -p my-app -- t --exact");
        }

        #[test]
        fn run_an_ignored_test_under_either_runner() {
            let o = origin("app", "signup", None);
            assert_eq!(
                o.cargo_test("slow", true),
                "CLEANROOM_REUSE=1 cargo test -p app --test signup -- slow --exact --include-ignored"
            );
            assert_eq!(
                o.nextest("slow", true),
                "CLEANROOM_REUSE=1 cargo nextest run -p app --run-ignored all -E 'binary_id(app::signup) & test(=slow)'"
            );
        }

        #[test]
        fn strip_cargos_hash_from_the_binarys_file_name() {
            assert_eq!(without_hash("first_ten_minutes-0123456789abcdef"), "first_ten_minutes");
            assert_eq!(without_hash("no-hash-here"), "no-hash-here");
            assert_eq!(without_hash("plain"), "plain");
        }

        #[test]
        fn still_give_a_command_without_cargos_variables() {
            let o = Origin { package: None, binary: None, nextest_binary_id: None };
            assert_eq!(o.cargo_test("t", false), "CLEANROOM_REUSE=1 cargo test -- t --exact");
            assert_eq!(o.nextest("t", false), "CLEANROOM_REUSE=1 cargo nextest run -E 'test(=t)'");
        }
    }
}
