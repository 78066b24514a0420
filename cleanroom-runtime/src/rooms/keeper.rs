//! The keeper of a run's Postgres pools, in the run's reaper.
//!
//! Under nextest every test is a process of its own, and each used to log
//! in to Postgres a second time besides its test's own connection: to clone
//! the database the next process takes from the run's pool
//! ([`super::run_pool`]), and to drop what ended processes left. The
//! reaper lives for the whole run: a process that takes a database tells
//! it (`pool <json>` on the connection it holds to the reaper anyway), and
//! the reaper, on one connection per server for the whole run, tops the
//! pool up and drops what was left to drop. The process then needs no
//! connection of its own for the pool, and nothing of its is on its way
//! when it exits.
//!
//! A reaper that does not keep pools (another version of cleanroom) leaves
//! no mark in the run's directory (`pool-keeper`), and its processes do the
//! work themselves as before.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use super::postgres::{clone_statement, drop_statement, still_made, takes_strategy, Login};
use super::{room_name, run_pool};

/// What a process tells the keeper: where the server's pool is, the
/// template it took from, and how to reach the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Poke {
    pub(crate) pool: PathBuf,
    pub(crate) template: String,
    pub(crate) login: Login,
}

static KEEPER: OnceLock<Mutex<Sender<Poke>>> = OnceLock::new();

/// Takes a process's `pool` line (in the reaper): the keeper's thread does
/// the work, in order, coalescing what arrives meanwhile.
pub(crate) fn poke(what: &str) {
    let Ok(poke) = serde_json::from_str::<Poke>(what) else { return };
    let sender = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new().name("cleanroom-keeper".into()).spawn(move || keep(rx));
        Mutex::new(tx)
    });
    let _ = sender.lock().unwrap_or_else(|e| e.into_inner()).send(poke);
}

/// One server's pool, as the keeper knows it.
struct Server {
    poke: Poke,
    templates: BTreeSet<String>,
    client: Option<tokio_postgres::Client>,
    strategy: Option<bool>,
}

fn keep(rx: Receiver<Poke>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let mut servers: HashMap<PathBuf, Server> = HashMap::new();
    while let Ok(first) = rx.recv() {
        for poke in std::iter::once(first).chain(rx.try_iter()) {
            let server = servers.entry(poke.pool.clone()).or_insert_with(|| Server {
                poke: poke.clone(),
                templates: BTreeSet::new(),
                client: None,
                strategy: None,
            });
            server.templates.insert(poke.template.clone());
            server.poke = poke;
        }
        for server in servers.values_mut() {
            runtime.block_on(server.tend());
        }
    }
}

impl Server {
    async fn connect(&mut self) -> Option<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut config = self.poke.login.config("cleanroom");
            config.connect_timeout(std::time::Duration::from_secs(10));
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(connection);
            self.client = Some(client);
        }
        self.client.as_ref()
    }

    /// Tops each template's pool up to its target (what the next tests
    /// take), then drops what ended processes left to drop.
    async fn tend(&mut self) {
        let pool = self.poke.pool.clone();
        let templates: Vec<String> = self.templates.iter().cloned().collect();
        let known = self.strategy;
        let Some(client) = self.connect().await else { return };
        let strategy = match known {
            Some(strategy) => strategy,
            None => takes_strategy(client).await,
        };
        for template in &templates {
            // Bounded: processes that take meanwhile poke again.
            for _ in 0..run_pool::TARGET {
                if run_pool::len(&pool, template) >= run_pool::TARGET {
                    break;
                }
                let name = room_name();
                if client.batch_execute(&clone_statement(&name, template, strategy)).await.is_err() {
                    break;
                }
                if run_pool::offer(&pool, template, &name).is_err() {
                    let _ = client.batch_execute(&drop_statement(&name)).await;
                }
            }
        }
        // Each stays on the list until it is dropped: a keeper killed
        // meanwhile loses none (its replacement, or the run's end, has it).
        let retired = run_pool::retired(&pool);
        if !retired.is_empty() {
            let making = still_made(client, &retired).await;
            for r in retired.iter().filter(|r| !making.contains(&r.name)) {
                if client.batch_execute(&drop_statement(&r.name)).await.is_ok() {
                    run_pool::forget_retired(&pool, &r.name);
                }
            }
        }
        self.strategy = Some(strategy);
    }
}
