//! A process's report on its way into its run's document, when the run has
//! a reaper.
//!
//! Merging into the document costs in proportion to the document (read it,
//! merge, write it back, under a lock), and under `cargo nextest run` every
//! test is a process of its own: the 160th process of a run paid for the
//! 159 before it, twice with `CLEANROOM_REPORT_JSON`. So a process that has
//! a reaper writes its report as a part of its own instead, in constant
//! time (`<runtime dir>/reports/<session>.parts/<pid>-<start>.json`, with
//! the `run.report_json` it was configured with), and tells the reaper. The
//! reaper folds the parts into the document(s) once no process it serves
//! is still to report; the process whose report makes that so waits for
//! the fold, so when the run's last process has exited its document is
//! whole. A part is removed only after every document it belongs in has
//! been written: a reaper killed while folding leaves parts that its
//! replacement, or `cargo cleanroom report`, folds (a process folded twice
//! is merged once).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{merge_many_into_file, reports_dir, Report};

/// One process's report and the other document it also goes into.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Part {
    /// `run.report_json` of the process that wrote it.
    pub(crate) report_json: Option<PathBuf>,
    pub(crate) report: Report,
}

/// Where the parts of `session` wait to be folded.
pub(crate) fn parts_dir(session: &str) -> PathBuf {
    parts_dir_in(&reports_dir(), session)
}

fn parts_dir_in(reports: &Path, session: &str) -> PathBuf {
    reports.join(format!("{session}.parts"))
}

/// Writes `part` for `session`: to a temporary file, renamed into place,
/// so that a fold never reads half a part.
pub(crate) fn write_part(session: &str, part: &Part) -> std::io::Result<()> {
    write_part_in(&reports_dir(), session, part)
}

pub(crate) fn write_part_in(reports: &Path, session: &str, part: &Part) -> std::io::Result<()> {
    let dir = parts_dir_in(reports, session);
    std::fs::create_dir_all(&dir)?;
    let process = part.report.processes.first();
    let name =
        format!("{}-{}.json", process.map_or(std::process::id(), |p| p.pid), process.map_or(0, |p| p.started_at_ms));
    let tmp = dir.join(format!(".{name}.tmp"));
    let json = serde_json::to_vec(part).map_err(std::io::Error::other)?;
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&json))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The parts of `session` waiting in its directory, oldest first, with
/// their files. A part that cannot be read (another version's) is skipped
/// and left where it is.
fn waiting(reports: &Path, session: &str) -> Vec<(PathBuf, Part)> {
    let Ok(entries) = std::fs::read_dir(parts_dir_in(reports, session)) else { return Vec::new() };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found
        .into_iter()
        .filter_map(|(_, path)| {
            let part = serde_json::from_slice::<Part>(&std::fs::read(&path).ok()?).ok()?;
            Some((path, part))
        })
        .collect()
}

/// Folds every part of `session` into the run's document in the runtime
/// directory and into each `run.report_json` the parts name, then removes
/// the parts. Returns what could not be written, as `(path, error)`; the
/// parts then stay, for a later fold.
pub(crate) fn fold(session: &str) -> Vec<(PathBuf, std::io::Error)> {
    let folded = fold_in(&reports_dir(), session);
    super::remove_old_reports();
    folded
}

pub(crate) fn fold_in(reports: &Path, session: &str) -> Vec<(PathBuf, std::io::Error)> {
    let parts = waiting(reports, session);
    if parts.is_empty() {
        return Vec::new();
    }
    let mut targets: Vec<PathBuf> = vec![reports.join(format!("{session}.json"))];
    for (_, part) in &parts {
        if let Some(path) = &part.report_json {
            if !targets.contains(path) {
                targets.push(path.clone());
            }
        }
    }
    let mut failed = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let reports: Vec<&Report> = parts
            .iter()
            .filter(|(_, part)| i == 0 || part.report_json.as_deref() == Some(target.as_path()))
            .map(|(_, part)| &part.report)
            .collect();
        if let Err(e) = merge_many_into_file(target, &reports) {
            failed.push((target.clone(), e));
        }
    }
    if failed.is_empty() {
        for (path, _) in &parts {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_dir(parts_dir_in(reports, session));
    }
    failed
}

/// Folds the parts of every run that left some (`cargo cleanroom report`
/// reads the documents after this).
pub(crate) fn fold_all() {
    let Ok(entries) = std::fs::read_dir(reports_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(session) = name.strip_suffix(".parts") {
            if crate::run::session::valid(session) {
                let _ = fold(session);
            }
        }
    }
}
