//! Medians, ranges and percentiles, and what cleanroom's own report says.

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

/// The nearest-rank percentile `p` (0–100) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// The smallest and largest of `values`.
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let min = v.iter().copied().reduce(f64::min)?;
    let max = v.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// From cleanroom's report (`CLEANROOM_REPORT_JSON`: one document per run,
/// schema 2; older runs wrote one document per process, one per line): the
/// per-test fixture overhead p50 and p95 (the time each test waited for its
/// services and rooms, summed over its services) in milliseconds, and the
/// median over processes of the time from process start to the body of its
/// first test (the test's services Ready and its rooms made).
pub fn from_report(text: &str) -> (Option<(f64, f64)>, Option<f64>) {
    let mut overheads = Vec::new();
    // Per process: when its first test started, and when that test's body
    // began (its rooms made too).
    let mut firsts: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
    let docs = documents(text);
    for (n, doc) in docs.iter().enumerate() {
        let Some(tests) = doc["tests"].as_array() else { continue };
        for test in tests {
            let acquired: Vec<f64> =
                test["acquire"].as_array().into_iter().flatten().filter_map(|a| a["micros"].as_f64()).collect();
            if !acquired.is_empty() {
                overheads.push(acquired.iter().fold(0.0, |sum, m| sum + m) / 1000.0);
            }
            // Schema 2 names each test's process; schema 1 had a document
            // per process.
            let pid = test["pid"].as_i64().or_else(|| doc["pid"].as_i64()).unwrap_or(-(n as i64));
            if let Some(start) = test["started_micros"].as_f64() {
                let waited: f64 = acquired.iter().sum();
                let first = firsts.entry(pid).or_insert((f64::MAX, 0.0));
                if start < first.0 {
                    *first = (start, (start + waited) / 1000.0);
                }
            }
        }
    }
    let overhead = percentile(&overheads, 50.0).zip(percentile(&overheads, 95.0));
    (overhead, median(&firsts.into_values().map(|(_, body)| body).collect::<Vec<_>>()))
}

/// The documents of cleanroom's report file: one (schema 2), or one per
/// line (older runs).
fn documents(text: &str) -> Vec<serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(doc) => vec![doc],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    }
}

/// From cleanroom's report: where its test processes got to before their
/// first test (each process's `marks`) and when that test's body began (its
/// start plus the rooms it waited for, `first test body`), each the median
/// over processes in milliseconds from process start, in the order reached.
pub fn marks_from_report(text: &str) -> Vec<(String, f64)> {
    let mut by_label: Vec<(String, Vec<f64>)> = Vec::new();
    let mut add = |label: &str, ms: f64| match by_label.iter_mut().find(|(l, _)| l == label) {
        Some((_, values)) => values.push(ms),
        None => by_label.push((label.to_string(), vec![ms])),
    };
    for doc in documents(text) {
        for process in doc["processes"].as_array().into_iter().flatten() {
            for mark in process["marks"].as_array().into_iter().flatten() {
                if let (Some(at), Some(micros)) = (mark["at"].as_str(), mark["micros"].as_f64()) {
                    add(at, micros / 1000.0);
                }
            }
        }
        let mut first: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
        for test in doc["tests"].as_array().into_iter().flatten() {
            let (Some(pid), Some(start)) = (test["pid"].as_i64(), test["started_micros"].as_f64()) else { continue };
            let waited: f64 =
                test["acquire"].as_array().into_iter().flatten().filter_map(|a| a["micros"].as_f64()).sum();
            let entry = first.entry(pid).or_insert((f64::MAX, 0.0));
            if start < entry.0 {
                *entry = (start, start + waited);
            }
        }
        for (_, body) in first.into_values() {
            add("first test body", body / 1000.0);
        }
    }
    let mut out: Vec<(String, f64)> =
        by_label.into_iter().filter_map(|(label, values)| Some((label, median(&values)?))).collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn take_the_median_of_each_mark_over_processes_and_when_the_first_body_began() {
            let report = r#"{"schema":2,"processes":[
                {"pid":1,"marks":[{"at":"init thread","micros":100},{"at":"reaper attached","micros":900}]},
                {"pid":2,"marks":[{"at":"init thread","micros":300},{"at":"reaper attached","micros":1100}]}],
              "tests":[{"pid":1,"started_micros":2000,"acquire":[{"micros":500},{"micros":500}]},
                       {"pid":1,"started_micros":9000,"acquire":[]},
                       {"pid":2,"started_micros":4000,"acquire":[{"micros":0}]}]}"#;
            let marks = marks_from_report(report);
            assert_eq!(
                marks,
                [
                    ("init thread".to_string(), 0.2),
                    ("reaper attached".to_string(), 1.0),
                    ("first test body".to_string(), 3.5)
                ]
            );
            assert!(marks_from_report("not json").is_empty());
        }

        #[test]
        fn compute_medians_ranges_and_percentiles() {
            assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
            assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
            assert_eq!(median(&[]), None);
            assert_eq!(range(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
            let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
            assert_eq!(percentile(&hundred, 50.0), Some(50.0));
            assert_eq!(percentile(&hundred, 95.0), Some(95.0));
            assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        }

        #[test]
        fn read_overhead_and_first_test_from_cleanroom_reports() {
            let report = concat!(
                r#"{"schema":1,"pid":1,"session":"s","tests":["#,
                r#"{"name":"a","started_micros":40000,"acquire":[{"service":"postgres","micros":1000,"room_micros":900},"#,
                r#"{"service":"redis","micros":500,"room_micros":100}]},"#,
                r#"{"name":"b","started_micros":42000,"acquire":[{"service":"postgres","micros":3000,"room_micros":10}]}]}"#,
                "\n",
                r#"{"schema":1,"pid":2,"session":"s","tests":[{"name":"c","started_micros":20000,"acquire":"#,
                r#"[{"service":"redis","micros":2000,"room_micros":10}]}]}"#,
                "\n"
            );
            let (overhead, first) = from_report(report);
            // Per test: 1.5, 3.0, 2.0 ms.
            assert_eq!(overhead, Some((2.0, 3.0)));
            // First tests' bodies at 40 + 1.5 and 20 + 2 ms: the median of
            // the two processes.
            assert_eq!(first, Some(31.75));
            assert_eq!(from_report("not json\n"), (None, None));
        }

        #[test]
        fn read_the_merged_report_of_a_run() {
            let report = r#"{"schema":2,"session":"s","processes":[{"pid":1},{"pid":2}],"tests":[
            {"name":"a","pid":1,"started_micros":40000,"acquire":[{"service":"postgres","micros":1000,"room_micros":900}]},
            {"name":"b","pid":1,"started_micros":42000,"acquire":[{"service":"postgres","micros":3000,"room_micros":10}]},
            {"name":"c","pid":2,"started_micros":20000,"acquire":[{"service":"redis","micros":2000,"room_micros":10}]}]}"#;
            let (overhead, first) = from_report(report);
            assert_eq!(overhead, Some((2.0, 3.0)));
            // 40 + 1 and 20 + 2 ms.
            assert_eq!(first, Some(31.5));
        }
    }
}
