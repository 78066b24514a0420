//! Which tests will this process run? Reads libtest's command line the way
//! libtest does, so that only the services of selected tests are started.

use crate::catalog::{registered_tests, TestDesc};

/// Which ignored tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// Only tests without `#[ignore]` (the default).
    Skip,
    /// Only `#[ignore]` tests (`--ignored`).
    Only,
    /// All tests (`--include-ignored`).
    Include,
}

/// libtest's test selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    ignored: Ignored,
}

/// What the command line asks this process to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run the selected tests.
    Run(Selection),
    /// List tests, run benchmarks, print help: no test runs.
    NoTests,
    /// A command line cleanroom does not understand: start nothing ahead,
    /// let each test start what it needs.
    Unknown,
}

/// Options that take a value, as `--opt value` or `--opt=value`.
const WITH_VALUE: &[&str] =
    &["--color", "--format", "--logfile", "--skip", "--test-threads", "--shuffle-seed", "-Z", "--report-time-format"];
/// Flags that do not change which tests run.
const HARMLESS_FLAGS: &[&str] = &[
    "--nocapture",
    "--no-capture",
    "--show-output",
    "--quiet",
    "-q",
    "--report-time",
    "--ensure-time",
    "--shuffle",
    "--force-run-in-process",
    "--exclude-should-panic",
    "--test",
];

impl Mode {
    /// This process's, from libtest's command line, parsed once for the
    /// start thread and the tests alike.
    pub(crate) fn current() -> &'static Mode {
        static CURRENT: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| Mode::parse(&std::env::args().skip(1).collect::<Vec<_>>()))
    }

    pub(crate) fn parse(args: &[String]) -> Mode {
        let mut sel = Selection { filters: Vec::new(), skips: Vec::new(), exact: false, ignored: Ignored::Skip };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            if WITH_VALUE.contains(&flag) {
                let value = match inline {
                    Some(v) => v,
                    None => match it.next() {
                        Some(v) => v.clone(),
                        None => return Mode::Unknown,
                    },
                };
                if flag == "--skip" {
                    sel.skips.push(value);
                }
                continue;
            }
            match flag {
                "--list" | "--bench" | "--help" | "-h" => return Mode::NoTests,
                "--exact" => sel.exact = true,
                "--ignored" => sel.ignored = Ignored::Only,
                "--include-ignored" => sel.ignored = Ignored::Include,
                f if HARMLESS_FLAGS.contains(&f) => {}
                f if f.starts_with('-') => return Mode::Unknown,
                _ => sel.filters.push(arg.clone()),
            }
        }
        Mode::Run(sel)
    }
}

/// The registered tests this process's command line selects (none when it
/// runs no test, or is not understood), worked out once for the start thread
/// and the tests alike.
pub(crate) fn selected_tests() -> &'static [&'static TestDesc] {
    static SELECTED: std::sync::OnceLock<Vec<&'static TestDesc>> = std::sync::OnceLock::new();
    SELECTED.get_or_init(|| match Mode::current() {
        Mode::Run(selection) => registered_tests().filter(|t| selection.selects_test(t)).collect(),
        Mode::NoTests | Mode::Unknown => Vec::new(),
    })
}

impl Selection {
    /// Whether libtest runs `test` under this selection. Under `--exact`
    /// (nextest's way: one name) no name is made for the comparison.
    pub(crate) fn selects_test(&self, test: &TestDesc) -> bool {
        let by_ignore = match self.ignored {
            Ignored::Skip => !test.ignored,
            Ignored::Only => test.ignored,
            Ignored::Include => true,
        };
        if !by_ignore {
            return false;
        }
        if self.exact {
            return (self.filters.is_empty() || self.filters.iter().any(|f| test.is_named(f)))
                && !self.skips.iter().any(|s| test.is_named(s));
        }
        self.selects(&test.test_name(), test.ignored)
    }

    /// Whether libtest runs the test `name` (ignored or not) under this selection.
    pub(crate) fn selects(&self, name: &str, ignored: bool) -> bool {
        let matches = |pattern: &String| if self.exact { name == pattern } else { name.contains(pattern.as_str()) };
        let by_ignore = match self.ignored {
            Ignored::Skip => !ignored,
            Ignored::Only => ignored,
            Ignored::Include => true,
        };
        by_ignore && (self.filters.is_empty() || self.filters.iter().any(matches)) && !self.skips.iter().any(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Mode {
        Mode::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn sel(args: &[&str]) -> Selection {
        match parse(args) {
            Mode::Run(s) => s,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    mod should {
        use super::*;

        #[test]
        fn select_everything_not_ignored_without_arguments() {
            let s = sel(&[]);
            assert!(s.selects("db::a", false));
            assert!(!s.selects("db::slow", true));
        }

        #[test]
        fn match_filters_as_substrings() {
            let s = sel(&["users", "orders::"]);
            assert!(s.selects("db::users::insert", false));
            assert!(s.selects("orders::list", false));
            assert!(!s.selects("db::items", false));
        }

        #[test]
        fn match_exactly_with_exact() {
            let s = sel(&["--exact", "db::users"]);
            assert!(s.selects("db::users", false));
            assert!(!s.selects("db::users::insert", false));
        }

        #[test]
        fn skip_in_both_forms() {
            let s = sel(&["--skip", "slow", "--skip=flaky"]);
            assert!(!s.selects("a::slow_one", false));
            assert!(!s.selects("flaky_thing", false));
            assert!(s.selects("fast", false));
        }

        #[test]
        fn honour_ignored_and_include_ignored() {
            let only = sel(&["--ignored"]);
            assert!(only.selects("slow", true));
            assert!(!only.selects("fast", false));
            let all = sel(&["--include-ignored"]);
            assert!(all.selects("slow", true) && all.selects("fast", false));
        }

        #[test]
        fn skip_values_of_options_that_take_one() {
            let s = sel(&["--test-threads", "2", "--format=terse", "--color", "never", "-q", "--nocapture", "x"]);
            assert!(s.selects("x", false));
            assert!(!s.selects("2", false), "the thread count is not a filter");
            assert!(!s.selects("never", false));
        }

        #[test]
        fn run_nothing_when_listing() {
            assert_eq!(parse(&["--list", "--format", "terse"]), Mode::NoTests);
            assert_eq!(parse(&["--list", "--ignored"]), Mode::NoTests);
            assert_eq!(parse(&["--bench"]), Mode::NoTests);
        }

        #[test]
        fn give_up_on_unknown_flags() {
            assert_eq!(parse(&["--frobnicate"]), Mode::Unknown);
            assert_eq!(parse(&["--skip"]), Mode::Unknown);
        }

        #[test]
        fn select_a_test_as_its_name_would_without_making_the_name() {
            use crate::catalog::{Flavor, TestDesc};
            let test = |module_path, name, ignored| TestDesc {
                module_path,
                name,
                ignored,
                flavor: Flavor::Sync,
                needs: &[],
                rooms: &[],
            };
            let tests = [
                test("krate::db::users", "insert", false),
                test("krate::db::users", "insert_many", false),
                test("krate::db", "users", false),
                test("krate", "insert", false),
                test("krate::db::users", "slow", true),
                test("krate::dbx::users", "insert", false),
            ];
            let lines: [&[&str]; 8] = [
                &["--exact", "db::users::insert"],
                &["--exact", "insert"],
                &["--exact", "db::users::slow", "--ignored"],
                &["--exact", "db::users::insert", "--skip", "db::users::insert"],
                &["--exact", "--skip", "insert"],
                &["users"],
                &["users::insert", "--include-ignored"],
                &[],
            ];
            for args in lines {
                let s = sel(args);
                for t in &tests {
                    assert_eq!(s.selects_test(t), s.selects(&t.test_name(), t.ignored), "{args:?} {}", t.test_name());
                }
            }
            assert!(tests[0].is_named("db::users::insert"));
            assert!(!tests[0].is_named("db::users::insertx") && !tests[0].is_named("db::usersinsert"));
            assert!(!tests[0].is_named("db::users:insert") && !tests[0].is_named("users::insert"));
            assert!(tests[3].is_named("insert") && !tests[3].is_named("::insert"));
        }

        #[test]
        fn parse_what_nextest_passes_to_run_one_test() {
            let s = sel(&["--exact", "db::users::insert", "--nocapture"]);
            assert!(s.selects("db::users::insert", false));
            assert!(!s.selects("db::users::insert_many", false));
        }
    }
}
