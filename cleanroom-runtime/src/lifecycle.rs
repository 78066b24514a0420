//! The lifecycle of a service as a state machine: only the moves the diagram
//! allows are accepted, and every move is recorded with its time.

use std::time::{Instant, SystemTime};

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Known and defined, no container yet.
    Created,
    /// The container is being created, started and checked.
    Starting,
    /// Every health check passed.
    Ready,
    /// Handed to at least one test.
    Running,
    /// Being stopped and removed.
    Stopping,
    /// Gone.
    Stopped,
    /// Could not start, or died.
    Failed,
    /// Being replaced after a failure.
    Restarting,
}

impl State {
    /// Whether the state machine allows `self -> to`.
    pub fn can_move_to(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Created, Starting)
                | (Created, Stopped)
                | (Starting, Ready)
                | (Starting, Failed)
                | (Starting, Stopping)
                | (Ready, Running)
                | (Ready, Stopping)
                | (Ready, Failed)
                | (Running, Stopping)
                | (Running, Failed)
                | (Running, Restarting)
                | (Failed, Restarting)
                | (Failed, Stopping)
                | (Restarting, Starting)
                | (Restarting, Failed)
                | (Stopping, Stopped)
        )
    }
}

/// One recorded move.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Wall-clock time of the move.
    pub at: SystemTime,
    /// Monotonic time of the move, for durations.
    pub instant: Instant,
}

/// A service's state and its history.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    service: String,
    state: State,
    created: Instant,
    history: Vec<Transition>,
}

impl Lifecycle {
    /// A new service, in [`State::Created`].
    pub fn new(service: impl Into<String>) -> Self {
        Lifecycle { service: service.into(), state: State::Created, created: Instant::now(), history: Vec::new() }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Every move so far, oldest first.
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// When the service entered `state` last, as time since it was created.
    pub fn time_to(&self, state: State) -> Option<std::time::Duration> {
        self.history.iter().rev().find(|t| t.to == state).map(|t| t.instant - self.created)
    }

    /// Moves to `to`, or refuses with [`IllegalTransition`] (which becomes
    /// [`Error::IllegalTransition`](crate::Error::IllegalTransition) with `?`).
    pub fn transition(&mut self, to: State) -> Result<(), IllegalTransition> {
        if !self.state.can_move_to(to) {
            return Err(IllegalTransition { service: self.service.clone(), from: self.state, to });
        }
        self.history.push(Transition { from: self.state, to, at: SystemTime::now(), instant: Instant::now() });
        self.state = to;
        Ok(())
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The service.
    pub service: String,
    /// The state it is in.
    pub from: State,
    /// The state it was asked to move to.
    pub to: State,
}

impl std::fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: illegal lifecycle transition {:?} -> {:?}", self.service, self.from, self.to)
    }
}

impl std::error::Error for IllegalTransition {}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    mod should {
        use super::*;

        #[test]
        fn follow_the_happy_path_and_record_it() {
            let mut l = Lifecycle::new("postgres");
            for to in [Starting, Ready, Running, Stopping, Stopped] {
                l.transition(to).unwrap();
            }
            assert_eq!(l.state(), Stopped);
            let moves: Vec<_> = l.history().iter().map(|t| (t.from, t.to)).collect();
            assert_eq!(
                moves,
                [(Created, Starting), (Starting, Ready), (Ready, Running), (Running, Stopping), (Stopping, Stopped)]
            );
            assert!(l.time_to(Ready).unwrap() <= l.time_to(Stopped).unwrap());
        }

        #[test]
        fn refuse_illegal_moves_and_stay_put() {
            let mut l = Lifecycle::new("redis");
            let err = l.transition(Running).unwrap_err();
            assert!(matches!(err, IllegalTransition { from: Created, to: Running, .. }));
            assert_eq!(err.to_string(), "redis: illegal lifecycle transition Created -> Running");
            assert_eq!(l.state(), Created);
            assert!(l.history().is_empty());
            l.transition(Starting).unwrap();
            assert!(l.transition(Stopped).is_err(), "Starting must stop through Stopping");
        }

        #[test]
        fn recover_through_restarting() {
            let mut l = Lifecycle::new("web");
            for to in [Starting, Ready, Running, Failed, Restarting, Starting, Ready] {
                l.transition(to).unwrap();
            }
            assert_eq!(l.state(), Ready);
        }

        #[test]
        fn treat_stopped_as_final() {
            for to in [Created, Starting, Ready, Running, Stopping, Stopped, Failed, Restarting] {
                assert!(!Stopped.can_move_to(to));
            }
        }
    }
}
