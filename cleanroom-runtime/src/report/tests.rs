//! The merge rules and the summary's text, on reports made by hand.

use super::*;
use crate::metrics::{Alert, Phases, Resources};

fn alert(at_ms: u128, kind: &str, message: &str) -> Alert {
    Alert { at_ms, kind: kind.into(), message: message.into() }
}

fn postgres(created_here: bool) -> ServiceMetrics {
    ServiceMetrics {
        name: "postgres".into(),
        image: "cleanroom-offline/postgres:15".into(),
        containers: vec!["c1".into()],
        starts: vec![Phases {
            pull_ms: Some(1.0),
            create_ms: Some(120.0),
            start_ms: Some(4.0),
            health_ms: Some(1700.0),
            cache_ms: None,
            created_here,
        }],
        time_to_ready_ms: Some(if created_here { 1840.0 } else { 12.0 }),
        health: Health::Healthy,
        resources: Resources {
            samples: 2,
            cpu_peak_percent: 80.0,
            cpu_mean_percent: 40.0,
            memory_peak_bytes: 50 << 20,
            memory_mean_bytes: 40 << 20,
            memory_limit_bytes: 1 << 30,
            network_rx_bytes: 1000,
            network_tx_bytes: 2000,
            block_read_bytes: 0,
            block_write_bytes: 4096,
            ..Default::default()
        },
        uptime_ms: 1000.0,
        ..Default::default()
    }
}

fn test(name: &str, pid: u32, micros: &[u64]) -> Test {
    let acquire =
        micros.iter().map(|m| Acquire { service: "postgres".into(), micros: *m, room_micros: m / 10 }).collect();
    Test { name: name.into(), pid, started_micros: Some(5000), acquire }
}

fn caches(hits: u64, misses: u64) -> BTreeMap<String, CacheCounter> {
    BTreeMap::from([("postgres-template".to_string(), CacheCounter { hits, misses })])
}

/// A process that created postgres and ran two tests, at 10 s after the epoch.
fn creator() -> Report {
    Report::of_process(
        "s",
        (100, 9_000, 10_000),
        vec![test("a::one", 100, &[2_000]), test("a::two", 100, &[400])],
        vec![postgres(true)],
        caches(1, 1),
    )
}

/// A process that attached to it and ran one test, ending at 12 s.
fn attacher() -> Report {
    let mut pg = postgres(false);
    pg.containers.push("c2".into());
    pg.restarts = 1;
    pg.health_check_failures = 2;
    pg.alerts = vec![alert(10_500, "died", "exited with 137"), alert(11_000, "restarted", "replaced after it died")];
    pg.resources = Resources {
        samples: 6,
        cpu_peak_percent: 20.0,
        cpu_mean_percent: 8.0,
        memory_peak_bytes: 70 << 20,
        memory_mean_bytes: 60 << 20,
        memory_limit_bytes: 1 << 30,
        network_rx_bytes: 500,
        network_tx_bytes: 9000,
        block_read_bytes: 10,
        block_write_bytes: 100,
        ..Default::default()
    };
    pg.uptime_ms = 1500.0;
    Report::of_process("s", (200, 10_200, 12_000), vec![test("b::three", 200, &[300])], vec![pg], caches(3, 0))
}

fn merged() -> Report {
    let mut run = creator();
    run.merge(attacher());
    run
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cleanroom-report-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.json")
}

mod should {
    use super::*;

    #[test]
    fn append_tests_and_list_processes_when_merging() {
        let run = merged();
        let tests: Vec<(&str, u32)> = run.tests.iter().map(|t| (t.name.as_str(), t.pid)).collect();
        assert_eq!(tests, [("a::one", 100), ("a::two", 100), ("b::three", 200)]);
        let processes: Vec<(u32, &[String], &[String])> =
            run.processes.iter().map(|p| (p.pid, p.created.as_slice(), p.attached.as_slice())).collect();
        assert_eq!(
            processes,
            [(100, &["postgres".to_string()][..], &[][..]), (200, &[][..], &["postgres".to_string()][..])]
        );
    }

    #[test]
    fn keep_one_entry_per_service_with_the_containers_of_both_when_merging() {
        let run = merged();
        assert_eq!(run.services.len(), 1);
        assert_eq!(run.services[0].metrics.containers, ["c1", "c2"]);
        assert_eq!(run.services[0].metrics.starts.len(), 2);
    }

    #[test]
    fn sum_restarts_and_health_check_failures_when_merging() {
        let mut run = merged();
        let mut third = attacher();
        third.processes[0].pid = 300;
        third.services[0].metrics.alerts.clear();
        run.merge(third);
        let pg = &run.services[0].metrics;
        assert_eq!((pg.restarts, pg.health_check_failures), (2, 4));
    }

    #[test]
    fn union_alerts_in_time_order_without_duplicates_when_merging() {
        let mut run = merged();
        let mut third = attacher();
        third.processes[0].pid = 300;
        third.services[0].metrics.alerts.push(alert(11_000, "restarted", "a different message"));
        run.merge(third);
        let alerts: Vec<(u128, &str, &str)> =
            run.services[0].metrics.alerts.iter().map(|a| (a.at_ms, a.kind.as_str(), a.message.as_str())).collect();
        assert_eq!(
            alerts,
            [
                (10_500, "died", "exited with 137"),
                (11_000, "restarted", "replaced after it died"),
                (11_000, "restarted", "a different message")
            ]
        );
    }

    #[test]
    fn take_peaks_and_totals_as_maxima_and_weigh_means_by_samples_when_merging() {
        let r = &merged().services[0].metrics.resources;
        assert_eq!(r.samples, 8);
        assert_eq!(r.cpu_peak_percent, 80.0);
        assert_eq!(r.memory_peak_bytes, 70 << 20);
        // (2 × 40 + 6 × 8) / 8 and (2 × 40 MiB + 6 × 60 MiB) / 8.
        assert_eq!(r.cpu_mean_percent, 16.0);
        assert_eq!(r.memory_mean_bytes, 55 << 20);
        assert_eq!(
            (r.network_rx_bytes, r.network_tx_bytes, r.block_read_bytes, r.block_write_bytes),
            (1000, 9000, 10, 4096)
        );
    }

    #[test]
    fn keep_the_creating_process_time_to_ready_whichever_comes_first_when_merging() {
        assert_eq!(merged().services[0].metrics.time_to_ready_ms, Some(1840.0));
        let mut run = attacher();
        run.merge(creator());
        assert_eq!(run.services[0].metrics.time_to_ready_ms, Some(1840.0));
        assert_eq!(run.services[0].created_by_pid, Some(100));
    }

    #[test]
    fn count_uptime_once_where_processes_overlap_when_merging() {
        // Ready 9.0–10.0 s in the creator, 10.5–12.0 s in the attacher.
        let s = &merged().services[0];
        assert_eq!(s.ready_spans_ms, [[9_000, 10_000], [10_500, 12_000]]);
        assert_eq!(s.metrics.uptime_ms, 2500.0);
        let mut overlapping = attacher();
        overlapping.processes[0].pid = 300;
        overlapping.services[0].ready_spans_ms = vec![[9_500, 11_000]];
        let mut run = merged();
        run.merge(overlapping);
        assert_eq!(run.services[0].ready_spans_ms, [[9_000, 12_000]]);
        assert_eq!(run.services[0].metrics.uptime_ms, 3000.0);
    }

    #[test]
    fn sum_cache_counters_and_recompute_the_overhead_when_merging() {
        let run = merged();
        assert_eq!(run.caches["postgres-template"], CacheCounter { hits: 4, misses: 1 });
        // Per test 2.0, 0.4 and 0.3 ms.
        assert_eq!(run.overhead, Overhead { tests: 3, p50_ms: Some(0.4), p95_ms: Some(2.0), max_ms: Some(2.0) });
    }

    #[test]
    fn show_disk_operations_and_peak_rates_against_the_limits_they_ran_under() {
        let mut report = creator();
        let r = &mut report.services[0].metrics.resources;
        (r.block_read_ops, r.block_write_ops) = (3, 96);
        (r.disk_write_bps_limit, r.disk_read_iops_limit) = (Some(1 << 20), Some(20));
        r.add_disk_rates([0.0, 1_000_000.0, 19.0, 50.0]);
        let lines = report.summary(ReportMode::Full, Scope::Process);
        assert!(
            lines[2].contains(
                "disk 0 B read / 4.0 KiB written in 3 / 96 operations (peak write 976.6 KiB/s of limit 1.0 MiB/s, \
                 read 19 operations/s of limit 20 operations/s, write 50 operations/s)"
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn show_the_fullest_tmpfs_against_its_size_cap() {
        let mut report = creator();
        let r = &mut report.services[0].metrics.resources;
        r.disk_size_limit_bytes = Some(1 << 20);
        let lines = report.summary(ReportMode::Full, Scope::Process);
        assert!(lines[2].contains("tmpfs size cap 1.0 MiB (not sampled)"), "{lines:#?}");
        report.services[0].metrics.resources.add_disk_size_sample(960 << 10);
        let lines = report.summary(ReportMode::Full, Scope::Process);
        assert!(lines[2].contains("tmpfs peak 960.0 KiB of its size cap 1.0 MiB"), "{lines:#?}");
    }

    #[test]
    fn show_the_network_conditions_beside_the_proxied_bytes() {
        let mut report = creator();
        let p = &mut report.services[0].metrics.performance;
        (p.proxied_sent_bytes, p.proxied_received_bytes) = (2048, 1 << 20);
        p.network_conditions = Some(crate::metrics::NetworkLimits {
            latency_ms: 50.0,
            jitter_ms: 10.0,
            upload_bytes_per_sec: None,
            download_bytes_per_sec: Some(1 << 20),
            reset_rate: 0.25,
        });
        let lines = report.summary(ReportMode::Full, Scope::Process);
        assert!(
            lines[2].contains(
                "through tests' network proxies 2.0 KiB sent / 1.0 MiB received (latency 50.0 ms ± 10.0 ms, \
                 upload unlimited, download 1.0 MiB/s, 25% of connections reset)"
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn take_the_highest_rates_and_tmpfs_use_and_keep_the_conditions_when_merging() {
        let mut run = creator();
        let r = &mut run.services[0].metrics.resources;
        r.add_disk_rates([10.0, 500.0, 1.0, 5.0]);
        (r.disk_size_limit_bytes, r.disk_size_peak_bytes, r.disk_size_samples) = (Some(1 << 20), 100, 1);
        let mut later = attacher();
        let s = &mut later.services[0].metrics;
        s.resources.add_disk_rates([20.0, 400.0, 2.0, 4.0]);
        (s.resources.disk_size_peak_bytes, s.resources.disk_size_samples) = (900, 2);
        s.performance.network_conditions =
            Some(crate::metrics::NetworkLimits { latency_ms: 5.0, ..Default::default() });
        run.merge(later);
        let m = &run.services[0].metrics;
        let r = &m.resources;
        assert_eq!(
            (r.disk_read_bps_peak, r.disk_write_bps_peak, r.disk_read_iops_peak, r.disk_write_iops_peak),
            (20, 500, 2, 5)
        );
        assert_eq!((r.disk_size_limit_bytes, r.disk_size_peak_bytes, r.disk_size_samples), (Some(1 << 20), 900, 3));
        assert_eq!(m.performance.network_conditions.as_ref().map(|c| c.latency_ms), Some(5.0));
    }

    #[test]
    fn keep_the_later_readings_of_the_cache_layers_when_merging() {
        let layer = |entries| CacheLayer { eviction: "lru".into(), entries, bytes: 0 };
        let mut run = creator();
        run.cache_layers = BTreeMap::from([("volume".to_string(), layer(1)), ("image".to_string(), layer(2))]);
        let mut later = attacher();
        later.cache_layers = BTreeMap::from([("volume".to_string(), layer(3))]);
        run.merge(later);
        assert_eq!(run.cache_layers["volume"], layer(3), "the later reading");
        assert_eq!(run.cache_layers["image"], layer(2), "a layer the later process did not read stays");
    }

    #[test]
    fn change_nothing_when_merging_a_process_twice() {
        let mut run = merged();
        run.merge(attacher());
        assert_eq!(run, merged());
    }

    #[test]
    fn replace_a_document_of_another_session_or_schema_or_none_at_all_when_merging() {
        let mine = attacher();
        let other_session = Report { session: "other".into(), ..creator() };
        assert_eq!(mine.merged_into(&serde_json::to_string(&other_session).unwrap()), mine);
        let old_schema = Report { schema: 1, ..creator() };
        assert_eq!(mine.merged_into(&serde_json::to_string(&old_schema).unwrap()), mine);
        assert_eq!(mine.merged_into(""), mine);
        assert_eq!(mine.merged_into("{not json"), mine);
        assert_eq!(mine.merged_into(&serde_json::to_string(&creator()).unwrap()).processes.len(), 2);
    }

    #[test]
    fn round_trip_a_merged_report_through_json() {
        let run = merged();
        let text = serde_json::to_string(&run).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), run);
        // Flat, stable names: a service's metrics are fields of the service.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["services"][0]["name"], "postgres");
        assert_eq!(value["services"][0]["resources"]["memory_peak_bytes"], 70u64 << 20);
        assert_eq!(value["schema"], SCHEMA);
    }

    #[test]
    fn hold_every_process_in_the_file_when_many_write_at_once() {
        let path = temp("concurrent");
        let _ = std::fs::remove_file(&path);
        let writers: Vec<_> = (1..=8u32)
            .map(|pid| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let report = Report::of_process(
                        "s",
                        (pid, 1, 2),
                        vec![test(&format!("t{pid}"), pid, &[pid as u64])],
                        vec![postgres(pid == 1)],
                        caches(1, 0),
                    );
                    merge_into_file(&path, &report).unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let run = Report::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut pids: Vec<u32> = run.processes.iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, (1..=8).collect::<Vec<_>>());
        assert_eq!(run.tests.len(), 8);
        assert_eq!(run.services.len(), 1);
        assert_eq!(run.caches["postgres-template"].hits, 8);
        let leftovers: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("run.json")], "no temporary file is left");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn replace_the_file_at_the_first_process_of_another_session() {
        let path = temp("replace");
        std::fs::write(&path, serde_json::to_string(&Report { session: "earlier".into(), ..creator() }).unwrap())
            .unwrap();
        merge_into_file(&path, &attacher()).unwrap();
        let run = Report::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((run.session.as_str(), run.processes.len()), ("s", 1));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn read_a_file_in_schema_1_as_well() {
        let text = r#"{"schema":1,"pid":1,"session":"s","tests":[{"name":"db::inserts","started_micros":5,"acquire":[{"service":"postgres","micros":412000,"room_micros":3800}]}]}
{"schema":1,"pid":2,"session":"s","tests":[{"name":"db::reads","started_micros":7,"acquire":[]}]}
"#;
        let run = Report::parse(text).unwrap();
        assert_eq!(run.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            run.tests.iter().map(|t| (t.name.as_str(), t.pid)).collect::<Vec<_>>(),
            [("db::inserts", 1), ("db::reads", 2)]
        );
        assert_eq!(run.services.len(), 1);
        assert!(Report::parse("not json").is_none());
    }

    #[test]
    fn summarise_in_one_line_in_quiet_mode_when_all_went_well() {
        assert_eq!(
            creator().summary(ReportMode::Quiet, Scope::Process),
            ["2 tests; postgres Ready in 1.84 s; overhead per test p50 400 µs, p95 2.0 ms; no alerts"]
        );
    }

    #[test]
    fn not_give_the_all_clear_when_every_test_failed_to_start() {
        let never = |name: &str| Test { name: name.into(), pid: 100, started_micros: None, acquire: Vec::new() };
        let failed =
            Report::of_process("s", (100, 9_000, 10_000), vec![never("a::one"), never("a::two")], vec![], caches(0, 1));
        let summary = failed.summary(ReportMode::Quiet, Scope::Process);
        assert_eq!(
            summary,
            ["2 tests; all 2 tests failed to start: a service it needs never became Ready (its error is in the test's output)"]
        );
        // One test alone is worth the line too, and half of them are counted.
        let one = Report::of_process("s", (100, 9_000, 10_000), vec![never("a::one")], vec![], caches(0, 1));
        assert_eq!(
            one.summary(ReportMode::Quiet, Scope::Process),
            ["1 test; the test failed to start: a service it needs never became Ready (its error is in the test's output)"]
        );
        let half = Report::of_process(
            "s",
            (100, 9_000, 10_000),
            vec![never("a::one"), test("a::two", 100, &[400])],
            vec![postgres(true)],
            caches(0, 1),
        );
        let headline = &half.summary(ReportMode::Quiet, Scope::Process)[0];
        assert!(headline.contains("; 1 of 2 tests failed to start: "), "{headline}");
        assert!(!headline.contains("no alerts"), "{headline}");
    }

    #[test]
    fn summarise_nothing_in_quiet_mode_for_a_process_that_attached_and_ran_one_test() {
        let mut fine = attacher();
        let pg = &mut fine.services[0].metrics;
        (pg.restarts, pg.health_check_failures) = (0, 0);
        pg.alerts.clear();
        assert_eq!(fine.summary(ReportMode::Quiet, Scope::Process), Vec::<String>::new());
        // With two tests it says what they cost.
        fine.tests.push(test("b::four", 200, &[500]));
        fine.overhead = fine.compute_overhead();
        assert_eq!(
            fine.summary(ReportMode::Quiet, Scope::Process),
            ["2 tests; postgres attached in 12.0 ms; overhead per test p50 300 µs, p95 500 µs; no alerts"]
        );
    }

    #[test]
    fn summarise_a_troubled_service_in_full_even_in_quiet_mode() {
        assert_eq!(
            attacher().summary(ReportMode::Quiet, Scope::Process),
            [
                "1 test; postgres attached in 12.0 ms; overhead per test p50 300 µs, p95 300 µs; trouble with postgres",
                "  postgres  cleanroom-offline/postgres:15  Ready in 12.0 ms (attached)  peak memory 70.0 MiB  restarts 1",
                "    ! 00:00:10 died: exited with 137",
                "    ! 00:00:11 restarted: replaced after it died",
            ]
        );
    }

    #[test]
    fn summarise_health_failures_without_alerts() {
        let mut report = creator();
        report.services[0].metrics.health_check_failures = 3;
        let lines = report.summary(ReportMode::Quiet, Scope::Process);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[2], "    ! 3 health checks failed; last seen healthy");
    }

    #[test]
    fn summarise_every_service_phases_resources_and_caches_in_full_mode() {
        let mut report = creator();
        report.cache_layers = BTreeMap::from([
            ("image".to_string(), CacheLayer { eviction: "ttl".into(), entries: 1, bytes: 3 << 20 }),
            ("network".to_string(), CacheLayer { eviction: "lfu".into(), entries: 0, bytes: 0 }),
        ]);
        assert_eq!(
            report.summary(ReportMode::Full, Scope::Process),
            [
                "2 tests; overhead per test p50 400 µs, p95 2.0 ms; no alerts",
                "  postgres  cleanroom-offline/postgres:15  Ready in 1.84 s (started here)  peak memory 50.0 MiB  restarts 0",
                "    phases pull 1.0 ms, create 120 ms, start 4.0 ms, health 1.70 s; 0 health checks failed; cpu peak 80% mean 40%; \
                 memory mean 40.0 MiB; net 1000 B in / 2.0 KiB out; disk 0 B read / 4.0 KiB written; up 1.00 s",
                "  caches: postgres-template 1 hit / 1 miss (50%)",
                "  cache layers: image 1 held, 3.0 MiB (ttl), network 0 held (lfu)",
            ]
        );
    }

    #[test]
    fn summarise_durations_and_sizes_to_be_read_at_a_glance() {
        let d: Vec<String> = [0.0412, 3.84, 412.0, 1840.0, 119_999.0, 3_600_000.0].map(duration).into();
        assert_eq!(d, ["41 µs", "3.8 ms", "412 ms", "1.84 s", "2 min 00 s", "60 min 00 s"]);
        let b: Vec<String> = [0, 1023, 1024, 50 << 20, 3 << 30].map(bytes).into();
        assert_eq!(b, ["0 B", "1023 B", "1.0 KiB", "50.0 MiB", "3.0 GiB"]);
        assert_eq!(clock(86_400_000 + 3_723_000), "01:02:03");
    }

    #[test]
    fn summarise_nothing_when_off() {
        assert!(attacher().summary(ReportMode::Off, Scope::Process).is_empty());
    }

    #[test]
    fn summarise_the_whole_run_for_cleanroom_report() {
        let mut run = creator();
        run.merge(attacher());
        let text = render(&serde_json::to_string(&run).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "session s: 3 tests in 2 processes; overhead per test p50 400 µs, p95 2.0 ms; trouble with postgres"
        );
        assert!(
            lines[1].starts_with("  postgres  cleanroom-offline/postgres:15  Ready in 1.84 s (started by pid 100)"),
            "{text}"
        );
        assert!(lines[1].ends_with("restarts 1"), "{text}");
        let row: Vec<&str> = lines.iter().find(|l| l.starts_with("a::one")).unwrap().split_whitespace().collect();
        assert_eq!(row, ["a::one", "postgres", "2.0", "0.2"]);
    }

    #[test]
    fn write_reports_as_the_example_in_the_docs_shows() {
        let page = include_str!("../../../docs/report.md");
        let (_, rest) = page.split_once("<!-- example:start -->\n```json\n").expect("docs/report.md has the example");
        let (example, _) = rest.split_once("```").unwrap();
        let value: serde_json::Value = serde_json::from_str(example).expect("the example is JSON");
        let report: Report = serde_json::from_value(value.clone()).expect("the example reads as a report");
        assert_eq!(report.schema, SCHEMA);
        assert_eq!(serde_json::to_value(&report).unwrap(), value, "field for field, as the code writes it");
    }

    #[test]
    fn fold_every_part_into_the_runs_document_and_its_report_json_then_remove_the_parts() {
        let reports = temp("fold").parent().unwrap().to_path_buf();
        let json = reports.join("elsewhere.json");
        let part = |report: Report| parts::Part { report_json: Some(json.clone()), report };
        parts::write_part_in(&reports, "s", &part(creator())).unwrap();
        parts::write_part_in(&reports, "s", &part(attacher())).unwrap();
        assert!(parts::fold_in(&reports, "s").is_empty());
        for path in [reports.join("s.json"), json.clone()] {
            let run = Report::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(run, merged(), "{} holds both processes, merged as one by one", path.display());
        }
        assert!(!reports.join("s.parts").exists(), "the parts are gone once folded");
        std::fs::remove_dir_all(&reports).unwrap();
    }

    #[test]
    fn keep_the_parts_until_every_document_they_belong_in_is_written() {
        let reports = temp("unwritable").parent().unwrap().to_path_buf();
        let nowhere = reports.join("missing-dir").join("r.json");
        let part = parts::Part { report_json: Some(nowhere.clone()), report: creator() };
        parts::write_part_in(&reports, "s", &part).unwrap();
        let failed = parts::fold_in(&reports, "s");
        assert_eq!(failed.iter().map(|(p, _)| p).collect::<Vec<_>>(), [&nowhere]);
        assert_eq!(std::fs::read_dir(reports.join("s.parts")).unwrap().count(), 1, "the part waits for a later fold");
        // A later fold (the directory is there now) merges the part into the
        // run's document again: the process is in it once.
        std::fs::create_dir_all(nowhere.parent().unwrap()).unwrap();
        assert!(parts::fold_in(&reports, "s").is_empty());
        let run = Report::parse(&std::fs::read_to_string(reports.join("s.json")).unwrap()).unwrap();
        assert_eq!(run, creator());
        assert!(nowhere.exists() && !reports.join("s.parts").exists());
        std::fs::remove_dir_all(&reports).unwrap();
    }

    #[test]
    fn fold_parts_into_a_document_other_processes_merged_into_themselves() {
        let reports = temp("mixed").parent().unwrap().to_path_buf();
        merge_into_file(&reports.join("s.json"), &creator()).unwrap();
        parts::write_part_in(&reports, "s", &parts::Part { report_json: None, report: attacher() }).unwrap();
        assert!(parts::fold_in(&reports, "s").is_empty());
        let run = Report::parse(&std::fs::read_to_string(reports.join("s.json")).unwrap()).unwrap();
        assert_eq!(run, merged());
        std::fs::remove_dir_all(&reports).unwrap();
    }
}
