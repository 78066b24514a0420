//! Where the local engine finds its programs: the directory
//! `CLEANROOM_POSTGRES_BIN` names, else `PATH`, else the places the usual
//! packages put them (Debian's `/usr/lib/postgresql/<major>/bin`,
//! Homebrew's prefix and its versioned `postgresql@<major>` kegs).

use std::path::{Path, PathBuf};

/// Homebrew's prefixes: Apple silicon, Intel, Linux.
const HOMEBREW_PREFIXES: &[&str] = &["/opt/homebrew", "/usr/local", "/home/linuxbrew/.linuxbrew"];
/// Where Debian and Ubuntu install each major version of Postgres.
const DEBIAN_POSTGRES: &str = "/usr/lib/postgresql";

/// The directories searched after `PATH`, best first: Homebrew's prefix (and
/// `$HOMEBREW_PREFIX`), its `postgresql@<major>` kegs, and Debian's
/// versioned directories, newest major first.
pub(crate) fn package_dirs() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = std::env::var_os("HOMEBREW_PREFIX").map(PathBuf::from).into_iter().collect();
    prefixes.extend(HOMEBREW_PREFIXES.iter().map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = prefixes.iter().map(|p| p.join("bin")).collect();
    for prefix in &prefixes {
        dirs.extend(versioned(&prefix.join("opt"), "postgresql@").into_iter().map(|d| d.join("bin")));
    }
    dirs.extend(versioned(Path::new(DEBIAN_POSTGRES), "").into_iter().map(|d| d.join("bin")));
    dirs
}

/// The entries of `parent` named `<prefix><major>`, newest major first.
fn versioned(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let major = name.strip_prefix(prefix)?.parse::<u32>().ok()?;
            Some((major, e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The directories of `PATH`.
pub(crate) fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default()
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|m| m.is_file() && crate::util::os::mode_and_owner(&m).is_none_or(|(mode, _)| mode & 0o111 != 0))
}

/// The first of `dirs` that holds every one of `programs`, so that programs
/// that work together (`initdb` and `postgres`) come from one installation.
pub(crate) fn dir_with(programs: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find(|d| programs.iter().all(|p| executable(&d.join(p)))).cloned()
}

/// The directory holding `initdb` and `postgres`: `configured`
/// (`CLEANROOM_POSTGRES_BIN`) if given, which must hold them; else the first
/// of `PATH` and the package directories that does.
pub(crate) fn postgres_dir(configured: Option<&Path>, search: &[PathBuf]) -> Result<PathBuf, String> {
    const PROGRAMS: &[&str] = &["initdb", "postgres"];
    if let Some(dir) = configured {
        return dir_with(PROGRAMS, &[dir.to_path_buf()]).ok_or_else(|| {
            format!("CLEANROOM_POSTGRES_BIN is {} but it holds no executable initdb and postgres", dir.display())
        });
    }
    dir_with(PROGRAMS, search).ok_or_else(|| {
        "no initdb and postgres found on PATH, in /usr/lib/postgresql/<major>/bin or Homebrew's prefix; install \
         Postgres (`apt-get install postgresql`, `brew install postgresql@16`) or set CLEANROOM_POSTGRES_BIN to the \
         directory that holds them"
            .to_string()
    })
}

/// `redis-server`, from `PATH` or Homebrew's prefix.
pub(crate) fn redis_server(search: &[PathBuf]) -> Result<PathBuf, String> {
    dir_with(&["redis-server"], search).map(|d| d.join("redis-server")).ok_or_else(|| {
        "no redis-server found on PATH or in Homebrew's prefix; install Redis (`apt-get install redis-server`, \
         `brew install redis`)"
            .to_string()
    })
}

/// Where a program of a local command is looked for: as given when it has a
/// `/`, else on `PATH`.
pub(crate) fn program(name: &str, search: &[PathBuf]) -> Result<PathBuf, String> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    dir_with(&[name], search).map(|d| d.join(name)).ok_or_else(|| format!("{name} is not on PATH"))
}

/// `PATH` first, then the package directories.
pub(crate) fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = path_dirs();
    dirs.extend(package_dirs());
    dirs
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use std::os::unix::fs::PermissionsExt;

        fn scratch(tag: &str) -> PathBuf {
            let dir = std::env::temp_dir().join(format!("cleanroom-bins-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }

        fn program_in(dir: &Path, name: &str, mode: u32) {
            std::fs::create_dir_all(dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }

        #[test]
        fn take_initdb_and_postgres_from_one_directory() {
            let root = scratch("one");
            let (only_postgres, both) = (root.join("a"), root.join("b"));
            program_in(&only_postgres, "postgres", 0o755);
            program_in(&both, "postgres", 0o755);
            program_in(&both, "initdb", 0o755);
            assert_eq!(postgres_dir(None, &[only_postgres.clone(), both.clone()]).unwrap(), both);
            let _ = std::fs::remove_dir_all(root);
        }

        #[test]
        fn skip_files_that_are_not_executable() {
            let root = scratch("exec");
            program_in(&root, "postgres", 0o644);
            program_in(&root, "initdb", 0o755);
            assert!(postgres_dir(None, std::slice::from_ref(&root)).is_err());
            let _ = std::fs::remove_dir_all(root);
        }

        #[test]
        fn hold_to_the_configured_directory_and_say_so_when_it_lacks_them() {
            let root = scratch("conf");
            let elsewhere = root.join("elsewhere");
            program_in(&elsewhere, "postgres", 0o755);
            program_in(&elsewhere, "initdb", 0o755);
            let configured = root.join("empty");
            std::fs::create_dir_all(&configured).unwrap();
            let err = postgres_dir(Some(&configured), &[elsewhere]).unwrap_err();
            assert!(err.contains("CLEANROOM_POSTGRES_BIN") && err.contains("empty"), "{err}");
            let _ = std::fs::remove_dir_all(root);
        }

        #[test]
        fn name_the_fixes_when_nothing_is_found() {
            let err = postgres_dir(None, &[]).unwrap_err();
            assert!(err.contains("CLEANROOM_POSTGRES_BIN") && err.contains("brew install"), "{err}");
            assert!(redis_server(&[]).unwrap_err().contains("brew install redis"));
        }

        #[test]
        fn list_versioned_directories_newest_first() {
            let root = scratch("versions");
            for major in ["9", "15", "16", "x"] {
                std::fs::create_dir_all(root.join(format!("postgresql@{major}"))).unwrap();
            }
            let found = versioned(&root, "postgresql@");
            let names: Vec<String> =
                found.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            assert_eq!(names, ["postgresql@16", "postgresql@15", "postgresql@9"]);
            let _ = std::fs::remove_dir_all(root);
        }

        #[test]
        fn find_a_command_on_the_search_path_or_as_given() {
            let root = scratch("prog");
            program_in(&root, "my-server", 0o755);
            assert_eq!(program("my-server", std::slice::from_ref(&root)).unwrap(), root.join("my-server"));
            assert_eq!(program("/opt/x/y", &[]).unwrap(), PathBuf::from("/opt/x/y"));
            assert!(program("nowhere-to-be-found", &[]).is_err());
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
