//! The run's network and volumes: made by whichever process of the run
//! needs them first, labelled as the run's, gone with the run.

use std::collections::BTreeMap;

use super::registry::Registry;
use crate::docker::{owner_key, owner_labels, Docker, MANAGED_LABEL, PROCESS_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::error::Error;
use crate::service::definition::GenericContainer;

impl Registry {
    /// The run's network, made by whichever process of the run needs it
    /// first (a process without a reaper has one of its own).
    pub(super) async fn run_network(
        &self,
        docker: &Docker,
        owner_session: &str,
        reuse: bool,
        shared: bool,
    ) -> Result<String, String> {
        let mut held = self.network.lock().await;
        if let Some(name) = held.as_ref() {
            return Ok(name.clone());
        }
        let name = run_network_name(owner_session, &owner_key(), shared, std::process::id());
        let labels = run_labels(owner_session, reuse, shared);
        // One process of the run creates it, the others wait for it: not
        // every engine refuses a second network of the same name.
        // Whatever the outcome, each process then makes sure of the network
        // itself: a failure is not handed on, and a reused network outlives
        // the marks' run.
        // The marks of this run, not of the network's owner: a reused
        // network's owner (`reuse-<uid>`) has a directory no run's end
        // removes, so its mark of an earlier run's creation would tell
        // this run's processes that the network was made, and each would
        // make one (two of one name, which every later inspect refuses as
        // ambiguous).
        let marks = crate::run::marks::RunMarks::of(self.session().unwrap_or(owner_session));
        let key = format!("network {name}");
        let mine = match shared.then(|| marks.claim(&key).ok()).flatten() {
            Some(crate::run::marks::Turn::Theirs) => marks.outcome(&key).await.is_none(),
            Some(crate::run::marks::Turn::Mine) => true,
            None => false,
        };
        let created = docker.ensure_network(&name, &labels).await;
        if mine {
            marks.finish(&key, &created.as_ref().map(|_| ()));
        }
        let created = created?;
        if reuse {
            crate::cache::records::used("network", &name, created);
        }
        if created {
            crate::metrics::cache_miss("network");
        } else {
            crate::metrics::cache_hit("network");
        }
        *held = Some(name.clone());
        Ok(name)
    }

    /// Connects a container this process created to the run's network, with
    /// its service name as the alias the other services reach it by. Once
    /// more with the network made again if it went away meanwhile (the
    /// keeper of reused services removes theirs when the last one goes).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn join_run_network(
        &self,
        docker: &Docker,
        id: &str,
        service: &str,
        image: &str,
        owner_session: &str,
        reuse: bool,
        shared: bool,
    ) -> Result<(), Error> {
        let mut reason = String::new();
        for _ in 0..2 {
            match self.run_network(docker, owner_session, reuse, shared).await {
                Ok(network) => match docker.connect_network(&network, id, service).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        reason = format!("could not connect it to the run's network {network}: {e}");
                        *self.network.lock().await = None;
                    }
                },
                Err(e) => reason = format!("could not create the run's network: {e}"),
            }
        }
        Err(Error::Start { service: service.to_string(), image: image.to_string(), reason })
    }

    /// Creates the named volumes of `def` that do not exist yet, labelled
    /// as the run's so that the run's end removes them; existing volumes are
    /// used as they are and left alone.
    pub(super) async fn ensure_volumes(
        &self,
        docker: &Docker,
        service: &str,
        def: &GenericContainer,
        owner_session: &str,
        reuse: bool,
        shared: bool,
    ) -> Result<(), Error> {
        let labels = run_labels(owner_session, reuse, shared);
        for mount in def.mounts.iter().filter(|m| m.kind == crate::service::definition::MountKind::Volume) {
            match docker.ensure_volume(&mount.source, &labels).await {
                Ok(true) => self.volumes.lock().unwrap_or_else(|e| e.into_inner()).push(mount.source.clone()),
                Ok(false) => {}
                Err(reason) => {
                    return Err(Error::Creation {
                        service: service.to_string(),
                        image: def.image.clone(),
                        reason: format!("could not create the volume {} for {}: {reason}", mount.source, mount.target),
                        transient: reason.is_transient(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The labels of what a run (or the reused services) owns besides its
/// containers: networks and volumes.
pub(super) fn run_labels(owner_session: &str, reuse: bool, shared: bool) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (SESSION_LABEL.to_string(), owner_session.to_string()),
    ]);
    labels.extend(owner_labels().map(|(k, v)| (k.to_string(), v)));
    if reuse {
        labels.insert(REUSE_LABEL.to_string(), "true".to_string());
    }
    if !shared {
        labels.insert(PROCESS_LABEL.to_string(), super::start::process_label());
    }
    labels
}

/// The name of the run's network: one for the processes of a run that share
/// it (with its owner's key: another owner's run of the same session id has
/// its own), else one per process.
fn run_network_name(owner_session: &str, owner: &str, shared: bool, pid: u32) -> String {
    if shared {
        format!("cleanroom-{owner_session}-{owner}")
    } else {
        format!("cleanroom-{owner_session}-{owner}-p{pid}")
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::run_network_name;

        #[test]
        fn give_the_processes_of_a_run_one_network_and_a_process_without_reaper_its_own() {
            let name = |session, owner, shared, pid| run_network_name(session, owner, shared, pid);
            assert_eq!(name("nextest-1", "o1", true, 10), name("nextest-1", "o1", true, 11));
            assert_eq!(name("nextest-1", "o1", true, 10), "cleanroom-nextest-1-o1");
            assert_ne!(name("nextest-1", "o1", false, 10), name("nextest-1", "o1", false, 11));
            assert_ne!(name("nextest-1", "o1", true, 10), name("nextest-2", "o1", true, 10));
            assert_ne!(name("ci", "o1", true, 10), name("ci", "o2", true, 10), "another owner's run of the same id");
        }
    }
}
