//! Disk limits, read back from `docker inspect` and measured: a write
//! throttle makes a direct write take at least what the rate implies; a size
//! cap on a tmpfs data directory is watched (a write near it raises an
//! alert, with what the tmpfs holds against the cap) and makes a larger
//! write fail. This engine
//! stores containers with fuse-overlayfs, whose writes come from its own
//! process, and keeps data directories in tmpfs, so the throttle is proven
//! on a volume, with direct I/O (docs/monitoring.md says where it applies).

use std::time::{Duration, Instant};

use cleanroom::{Container, GenericContainer};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

/// Writes to its volume at 1 MiB/s at most; its tmpfs holds 1 MiB (the cap
/// comes before the tmpfs it applies to), read every second.
#[cleanroom::service]
fn throttled() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sleep", "600"])
        .with_volume("cleanroom-tests-disk-limits", "/data")
        .with_disk_write_limit(1 << 20)
        .with_disk_write_iops(10_000)
        .with_disk_size(1 << 20)
        .with_tmpfs("/scratch", "")
        .with_health_interval(Duration::from_secs(1))
}

/// Reads its volume at 1 MiB/s and 20 operations per second at most, and
/// writes at 20 operations per second.
#[cleanroom::service]
fn read_throttled() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sleep", "600"])
        .with_volume("cleanroom-tests-disk-reads", "/data")
        .with_disk_read_limit(1 << 20)
        .with_disk_read_iops(20)
        .with_disk_write_iops(20)
}

/// How long `cmd` takes in the container (it must succeed).
async fn timed(container: &Container, cmd: &[&str]) -> Duration {
    let started = Instant::now();
    let out = container.exec(cmd.iter().copied()).await.unwrap();
    assert_eq!(out.exit_code, 0, "{cmd:?}: {}", out.stderr);
    started.elapsed()
}

#[cleanroom::test(read_throttled)]
async fn read_and_operation_throttles_hold_direct_io_to_their_rates(read_throttled: Container) {
    let c = &read_throttled;
    assert!(inspect(c, "{{json .HostConfig.BlkioDeviceReadBps}}").contains("\"Rate\":1048576"));
    assert!(inspect(c, "{{json .HostConfig.BlkioDeviceReadIOps}}").contains("\"Rate\":20"));
    assert!(inspect(c, "{{json .HostConfig.BlkioDeviceWriteIOps}}").contains("\"Rate\":20"));
    // 200 direct 4 KiB writes at 20 operations per second: held at the
    // limit for 10 s, long enough for the monitor to see it over 2.5 s of
    // samples even when its first samples come late (a busy machine).
    let took = timed(c, &["dd", "if=/dev/zero", "of=/data/small", "bs=4k", "count=200", "oflag=direct"]).await;
    assert!(took >= Duration::from_millis(9000), "200 writes at 20/s: {took:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerted = || {
        cleanroom::metrics_of("read_throttled").is_some_and(|m| {
            m.alerts
                .iter()
                .any(|a| a.kind == "disk" && a.message.contains("writes at") && a.message.contains("operations/s"))
        })
    };
    while !alerted() {
        assert!(Instant::now() < deadline, "no IOPS alert: {:#?}", cleanroom::metrics_of("read_throttled"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ops = cleanroom::metrics_of("read_throttled").unwrap().resources;
    assert!(ops.block_write_ops >= 60, "counted (the last stats sample may lag the end of the writes): {ops:?}");
    assert_eq!(ops.disk_write_iops_limit, Some(20), "the limit it ran under, for the report");
    // The alert took samples at 80 % of the limit or more: the peak beside it.
    assert!(ops.disk_write_iops_peak >= 16, "the peak rate, to read against the limit: {ops:?}");
    // 60 direct 4 KiB reads at 20 operations per second.
    let took = timed(c, &["dd", "if=/data/small", "of=/dev/null", "bs=4k", "count=60", "iflag=direct"]).await;
    assert!(took >= Duration::from_millis(2000), "60 reads at 20/s: {took:?}");
    // 2 MiB read back in 2 operations at 1 MiB/s (written through the
    // page cache: writes in bulk are not throttled here).
    timed(c, &["sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=2 && sync"]).await;
    let took = timed(c, &["dd", "if=/data/big", "of=/dev/null", "bs=1M", "count=2", "iflag=direct"]).await;
    assert!(took >= Duration::from_millis(1500), "2 MiB at 1 MiB/s: {took:?}");
}

fn inspect(container: &Container, format: &str) -> String {
    cleanroom_tests::docker(&["inspect", "--format", format, container.id()]).trim().to_string()
}

#[cleanroom::test(throttled)]
async fn a_write_throttle_holds_a_direct_write_to_its_rate(throttled: Container) {
    let bps = inspect(&throttled, "{{json .HostConfig.BlkioDeviceWriteBps}}");
    assert!(bps.contains("\"Path\":\"/dev/") && bps.contains("\"Rate\":1048576"), "{bps}");
    let iops = inspect(&throttled, "{{json .HostConfig.BlkioDeviceWriteIOps}}");
    assert!(iops.contains("\"Rate\":10000"), "{iops}");
    let started = Instant::now();
    let out = throttled.exec(["dd", "if=/dev/zero", "of=/data/f", "bs=64k", "count=32", "oflag=direct"]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert!(took >= Duration::from_millis(1500), "2 MiB at 1 MiB/s: {took:?}");
}

#[cleanroom::test(throttled)]
async fn a_size_cap_on_a_tmpfs_data_directory_fails_a_larger_write(throttled: Container) {
    let tmpfs = inspect(&throttled, "{{json .HostConfig.Tmpfs}}");
    assert!(tmpfs.contains("size=1048576"), "the cap reaches a tmpfs added after it: {tmpfs}");
    // 960 KiB: over 90 % of the cap (the memory fraction, by default), so
    // the monitor's `df` on its health tick raises a `disk_size` alert.
    let near = throttled.exec(["dd", "if=/dev/zero", "of=/scratch/near", "bs=64k", "count=15"]).await.unwrap();
    assert_eq!(near.exit_code, 0, "960 KiB fits: {}", near.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = || {
        cleanroom::metrics_of("throttled")
            .and_then(|m| m.alerts.into_iter().find(|a| a.kind == "disk_size" && a.message.contains("/scratch")))
    };
    let alert = loop {
        if let Some(alert) = alert() {
            break alert;
        }
        assert!(Instant::now() < deadline, "no size cap alert: {:#?}", cleanroom::metrics_of("throttled"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(alert.message.contains("of its size cap of 1024 KiB"), "{}", alert.message);
    let r = cleanroom::metrics_of("throttled").unwrap().resources;
    assert_eq!(r.disk_size_limit_bytes, Some(1 << 20), "the cap, for the report: {r:?}");
    assert!(r.disk_size_peak_bytes >= 900 << 10 && r.disk_size_peak_bytes <= 1 << 20, "what it held: {r:?}");
    assert!(r.disk_size_samples >= 1, "{r:?}");

    let full = throttled.exec(["dd", "if=/dev/zero", "of=/scratch/big", "bs=64k", "count=32"]).await.unwrap();
    assert_ne!(full.exit_code, 0, "2 MiB does not fit in 1 MiB");
    assert!(full.stderr.contains("No space left"), "{}", full.stderr);
    let emptied = throttled.exec(["rm", "-f", "/scratch/near", "/scratch/big"]).await.unwrap();
    assert_eq!(emptied.exit_code, 0, "{}", emptied.stderr);
}

/// Writing at the throttle for seconds is a limit reached: the monitor
/// alerts (the service's limit action, `alert` by default). 10 MiB at
/// 1 MiB/s: long enough for 2.5 s of samples over the limit even when the
/// first samples come late.
#[cleanroom::test(throttled)]
async fn writing_at_the_throttle_raises_a_disk_alert(throttled: Container) {
    let out =
        throttled.exec(["dd", "if=/dev/zero", "of=/data/long", "bs=64k", "count=160", "oflag=direct"]).await.unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerted = || {
        cleanroom::metrics_of("throttled").is_some_and(|m| {
            m.alerts.iter().any(|a| a.kind == "disk" && a.message.contains("writes at") && a.message.contains("limit"))
        })
    };
    while !alerted() {
        assert!(Instant::now() < deadline, "no disk alert: {:#?}", cleanroom::metrics_of("throttled"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = cleanroom::metrics_of("throttled").unwrap().resources;
    assert_eq!(r.disk_write_bps_limit, Some(1 << 20), "{r:?}");
    assert!(r.disk_write_bps_peak >= 800 << 10, "the peak rate beside the limit, for the report: {r:?}");
}
