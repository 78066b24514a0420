//! The end of a run in this process: teardown at exit or on a signal. With
//! a reaper this process only returns what it holds; without one it removes
//! what it made.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::registry::{Registry, Slot};
use crate::docker::{Docker, MANAGED_LABEL, PROCESS_LABEL, SESSION_LABEL};
use crate::lifecycle::State;

/// How long teardown may take before cleanroom gives up and lets the process end.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Registry {
    pub(super) async fn remove_labelled(&self, docker: &Docker, labels: &[(&str, &str)]) {
        if let Ok(ids) = docker.containers_labelled(labels).await {
            futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
        }
    }

    /// Stops and removes everything this process started. Safe to call more
    /// than once; only the first call does the work.
    pub(crate) async fn teardown(&self) {
        crate::util::flags::begin_shutdown();
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let slots: Vec<Arc<Slot>> = self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        if slots.is_empty() {
            return;
        }
        if self.reaper.get() == Some(&true) {
            // The reaper removes the run's containers once its last process is
            // gone; this process only returns what it holds on the servers
            // (and may never have talked to the engine: it attached from the
            // creator's record).
            crate::rooms::release_pooled().await;
            return;
        }
        let serving: Vec<Arc<crate::service::running::RunningService>> =
            slots.iter().filter_map(|s| s.serving.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        super::existing::remove_own(&serving).await;
        // Without a reaper the local servers this process started are its own
        // (stopping one waits for it: off the runtime's threads).
        let _ = tokio::task::spawn_blocking(super::local::stop_own).await;
        let Some(Ok(docker)) = self.docker.get().cloned() else { return };
        let Ok(session) = self.session() else { return };
        // Containers being created now are labelled, so wait for their ids to
        // exist before asking Docker by label.
        let wait_start = Instant::now();
        while self.creating.load(Ordering::SeqCst) > 0 && wait_start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for slot in &slots {
            let _ = slot.transition(State::Stopping);
        }
        let mut ids: Vec<String> =
            slots.iter().filter_map(|s| s.container_id.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        // Only this process's: other processes of a run without a reaper have
        // containers of their own, labelled with their own process.
        // With the owner labels too: a pid and start time are unique on one
        // machine only, and an engine may be shared by several.
        let process = super::start::process_label();
        let owner = crate::docker::owner_labels();
        let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, session), (PROCESS_LABEL, process.as_str())];
        labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
        if let Ok(more) = docker.containers_labelled(&labels).await {
            for id in more {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let results = futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
        for (id, result) in ids.iter().zip(results) {
            if let Err(e) = result {
                crate::util::say!(
                    "cleanroom: could not remove container {id}: {e}; remove it with `docker rm -f {id}`"
                );
            }
        }
        // Without a reaper the volumes this process created are its own too
        // (a volume another process still uses refuses to go: left to that
        // process's teardown, or `cargo cleanroom prune`).
        let volumes: Vec<String> = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|e| e.into_inner()));
        for volume in volumes {
            if let Err(e) = docker.remove_volume(&volume).await {
                crate::util::say!(
                    "cleanroom: could not remove volume {volume}: {e}; remove it with `docker volume rm {volume}`"
                );
            }
        }
        // Without a reaper the network is this process's own.
        if let Some(network) = self.network.lock().await.take() {
            if let Err(e) = docker.remove_network(&network).await {
                crate::util::say!(
                    "cleanroom: could not remove network {network}: {e}; remove it with `docker network rm {network}`"
                );
            }
        }
        for slot in &slots {
            let _ = slot.transition(State::Stopped);
        }
        if let Ok(config) = crate::config::current() {
            crate::cache::evict_at_run_end(&docker, &config.caches).await;
        }
    }

    /// At exit, reads the counters of each service this process read
    /// before (the one that made it, or one that lived long enough for its
    /// monitor), so the report's throughput covers the whole process; a
    /// process that never read them (a short nextest process) asks nothing.
    pub(crate) fn read_performance_at_exit(&'static self) {
        let serving: Vec<Arc<crate::service::running::RunningService>> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|slot| slot.serving.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .filter(|s| crate::metrics::service(&s.name, |m| m.performance.first.is_some()))
            .collect();
        if serving.is_empty() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        crate::util::background::runtime().spawn(async move {
            futures_util::future::join_all(serving.iter().map(|s| crate::health::perf::read_into_metrics(s))).await;
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(crate::health::perf::READ_TIMEOUT + Duration::from_millis(500));
    }

    /// [`Registry::teardown`] from outside the runtime (the exit hook).
    pub(crate) fn shutdown_blocking(&'static self) {
        if self.torn_down.load(Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        crate::util::background::runtime().spawn(async move {
            self.teardown().await;
            let _ = tx.send(());
        });
        if rx.recv_timeout(TEARDOWN_TIMEOUT).is_err() {
            crate::util::say!(
                "cleanroom: teardown did not finish within {TEARDOWN_TIMEOUT:?}; list what is left with `docker ps -a --filter label={SESSION_LABEL}={}`",
                self.session().unwrap_or("?")
            );
        }
    }

    /// On SIGINT or SIGTERM: remove everything, then exit as the signal would have.
    pub(super) fn install_signal_handlers(&'static self) {
        if self.signals_installed.swap(true, Ordering::SeqCst) {
            return;
        }
        #[cfg(unix)]
        crate::util::background::runtime().spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            // With a reaper, exiting is enough: it notices and cleans up.
            if self.reaper.get() != Some(&true) {
                self.teardown().await;
            }
            self.torn_down.store(true, Ordering::SeqCst);
            std::process::exit(code);
        });
    }
}
