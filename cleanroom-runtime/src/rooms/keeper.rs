//! The keeper of a run's Postgres pools, in the run's reaper.
//!
//! Under nextest every test is a process of its own, and each used to log
//! in to Postgres a second time besides its test's own connection: to clone
//! the database the next process takes from the run's pool
//! ([`super::run_pool`]), and to drop what ended processes left. The
//! reaper lives for the whole run: a process that takes a database tells
//! it (`pool <json>` on the connection it holds to the reaper anyway), and
//! the reaper, on two connections per server for the whole run, tops the
//! pool up on one and drops what was left to drop on the other, each on a
//! thread of its own (and the Redis pools on a third). The process then
//! needs no connection of its own for the pool, and nothing of its is on
//! its way when it exits.
//!
//! A reaper that does not keep pools (another version of cleanroom) leaves
//! no mark in the run's directory (`pool-keeper`), and its processes do the
//! work themselves as before.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Mutex, OnceLock};

use super::postgres::{clone_statement, drop_statement, still_made, takes_strategy, Login};
use super::{redis_pool, room_name, run_pool};

/// What a process tells the keeper: where the server's pool is, the
/// template it took from, and how to reach the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Poke {
    pub(crate) pool: PathBuf,
    pub(crate) template: String,
    pub(crate) login: Login,
}

/// What a process tells the keeper of a Redis server the run owns: where
/// the run's pool of its databases is ([`redis_pool`]), how to reach the
/// server, and whose name the keeper leases them in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RedisPoke {
    pub(crate) redis_pool: PathBuf,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) password: Option<String>,
    /// The lease holder: the run's, so that a replacement keeper (the
    /// reaper was killed) renews what the last one leased.
    pub(crate) holder: String,
    /// The server outlives the run (a reused one): the keeper gives its
    /// leases back at the run's end ([`finish`]) rather than leave them to
    /// expire. Absent in a line of an earlier version: a server the run owns.
    #[serde(default)]
    pub(crate) outlives_run: bool,
}

/// A `pool` line: the shapes differ, so a keeper of an earlier version
/// (Postgres only) ignores a Redis line it cannot read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Work {
    Postgres(Poke),
    Redis(RedisPoke),
}

/// What a keeper's thread is given: a process's line, or the reaper's word
/// that the run is over (which no process can send: it is not a line).
enum Job<W> {
    Work(W),
    Finish(SyncSender<()>),
}

/// The keepers' threads: one tops the Postgres pools up, one drops what
/// ended processes left, one tends the Redis pools. None holds up another:
/// on a busy server a clone takes about 17 ms and a drop about 10 ms (the
/// benchmark's machine, 160 processes two at a time), and one thread doing
/// all in turn fell behind two test processes at a time, whose tests then
/// cloned their own databases (20-50 ms) and leased their own Redis
/// databases (1-2 ms).
struct Keepers {
    clones: Sender<Job<Poke>>,
    drops: Sender<Job<Poke>>,
    redis: Sender<Job<RedisPoke>>,
}

static KEEPERS: OnceLock<Mutex<Keepers>> = OnceLock::new();

/// Takes a process's `pool` line (in the reaper): the keepers' threads do
/// the work, each in order, coalescing what arrives meanwhile.
pub(crate) fn poke(what: &str) {
    let Ok(work) = serde_json::from_str::<Work>(what) else { return };
    let keepers = KEEPERS.get_or_init(|| {
        let (clones, clone_jobs) = std::sync::mpsc::channel();
        let (drops, drop_jobs) = std::sync::mpsc::channel();
        let (redis, redis_jobs) = std::sync::mpsc::channel();
        let spawn = |name: &str, keep: Box<dyn FnOnce() + Send>| {
            let _ = std::thread::Builder::new().name(name.into()).spawn(keep);
        };
        spawn("cleanroom-keeper", Box::new(move || keep_postgres(clone_jobs, Role::Clones)));
        spawn("cleanroom-keeper-drops", Box::new(move || keep_postgres(drop_jobs, Role::Drops)));
        spawn("cleanroom-keeper-redis", Box::new(move || keep_redis(redis_jobs)));
        Mutex::new(Keepers { clones, drops, redis })
    });
    let keepers = keepers.lock().unwrap_or_else(|e| e.into_inner());
    match work {
        Work::Postgres(poke) => {
            let _ = keepers.clones.send(Job::Work(poke.clone()));
            let _ = keepers.drops.send(Job::Work(poke));
        }
        Work::Redis(poke) => {
            let _ = keepers.redis.send(Job::Work(poke));
        }
    }
}

/// The run is over (in the reaper, once no process it serves is left):
/// the keeper gives back the Redis leases it holds on servers that outlive
/// the run, flushing each database, and this returns once it has, and once
/// the Postgres keepers have ended the rounds they were in (or after
/// [`FINISH_WAIT`]). A keeper that was never poked holds nothing.
pub(crate) fn finish() {
    let Some(keepers) = KEEPERS.get() else { return };
    let (done, finished) = std::sync::mpsc::sync_channel(3);
    let sent = {
        let keepers = keepers.lock().unwrap_or_else(|e| e.into_inner());
        [
            keepers.clones.send(Job::Finish(done.clone())).is_ok(),
            keepers.drops.send(Job::Finish(done.clone())).is_ok(),
            keepers.redis.send(Job::Finish(done)).is_ok(),
        ]
    };
    let deadline = std::time::Instant::now() + FINISH_WAIT;
    for _ in sent.into_iter().filter(|sent| *sent) {
        if finished.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_err() {
            return;
        }
    }
}

/// The longest the run's end waits for the keeper to give its leases back:
/// a server that does not answer keeps them until they expire.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a keeper waits to log in to a server.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a Postgres keeper's thread does for each server it is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Tops each template's pool up to its target.
    Clones,
    /// Drops what ended processes left to drop.
    Drops,
}

/// One server's pool, as a Postgres keeper knows it.
struct Server {
    poke: Poke,
    templates: BTreeSet<String>,
    client: Option<tokio_postgres::Client>,
    strategy: Option<bool>,
}

fn keep_postgres(rx: Receiver<Job<Poke>>, role: Role) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let mut servers: HashMap<PathBuf, Server> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let (mut poked, mut finished) = (false, Vec::new());
        for job in std::iter::once(first).chain(rx.try_iter()) {
            match job {
                Job::Finish(done) => finished.push(done),
                Job::Work(poke) => {
                    poked = true;
                    let server = servers.entry(poke.pool.clone()).or_insert_with(|| Server {
                        poke: poke.clone(),
                        templates: BTreeSet::new(),
                        client: None,
                        strategy: None,
                    });
                    server.templates.insert(poke.template.clone());
                    server.poke = poke;
                }
            }
        }
        // A server that does not answer is forgotten (its container was
        // replaced, or the run is ending) until a process tells of it again.
        if poked {
            servers.retain(|_, server| runtime.block_on(server.tend(role)));
        }
        for done in finished {
            let _ = done.send(());
        }
    }
}

fn keep_redis(rx: Receiver<Job<RedisPoke>>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let mut redis: HashMap<PathBuf, RedisServer> = HashMap::new();
    loop {
        // Woken by a process, or, while it holds leases, in time to renew
        // them.
        let first = match rx.recv_timeout(renew_every()) {
            Ok(work) => Some(work),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Renewed when due, tended when told; not when only told the run
        // is over (what it holds goes back below).
        let (mut tend, mut finished) = (first.is_none(), Vec::new());
        for job in first.into_iter().chain(rx.try_iter()) {
            match job {
                Job::Finish(done) => finished.push(done),
                Job::Work(poke) => {
                    tend = true;
                    let server = redis.entry(poke.redis_pool.clone()).or_insert_with(|| RedisServer {
                        poke: poke.clone(),
                        conn: None,
                        renewed: std::time::Instant::now(),
                        failed: false,
                    });
                    server.poke = poke;
                }
            }
        }
        // A server that does not answer is forgotten until a process tells
        // of it again.
        if tend {
            redis.retain(|_, server| runtime.block_on(server.tend()));
        }
        if !finished.is_empty() {
            for server in redis.values_mut().filter(|s| s.poke.outlives_run) {
                runtime.block_on(server.give_back());
            }
            redis.retain(|_, server| !server.poke.outlives_run);
            for done in finished {
                let _ = done.send(());
            }
        }
    }
}

/// How often the keeper renews its Redis leases: well within their TTL.
fn renew_every() -> std::time::Duration {
    super::redis::lease_ttl() / 3
}

/// One Redis server's pool, as the keeper knows it.
struct RedisServer {
    poke: RedisPoke,
    conn: Option<tokio::net::TcpStream>,
    renewed: std::time::Instant,
    /// A call of this round found the server not answering.
    failed: bool,
}

impl RedisServer {
    async fn call(&mut self, args: &[String]) -> Option<crate::external::resp::Resp> {
        use crate::external::resp;
        if self.conn.is_none() {
            let connecting = resp::connect(&self.poke.host, self.poke.port, None, self.poke.password.as_deref());
            match tokio::time::timeout(std::time::Duration::from_secs(5), connecting).await {
                Ok(Ok(stream)) => self.conn = Some(stream),
                _ => {
                    self.failed = true;
                    return None;
                }
            }
        }
        let reply = resp::call(self.conn.as_mut()?, args).await;
        if reply.is_err() {
            self.conn = None;
            self.failed = true;
        }
        reply.ok()
    }

    /// Flushes what came back (and what dead processes held) and makes it
    /// ready again, leases more up to the target, and renews the leases
    /// when they are due; `false` when the server did not answer.
    async fn tend(&mut self) -> bool {
        use super::redis::{flush_script_args, lease_script_args, renew_script_args};
        use crate::external::resp::Resp;
        self.failed = false;
        let pool = self.poke.redis_pool.clone();
        for item in redis_pool::to_flush(&pool, redis_pool::alive) {
            let db = item.db.to_string();
            match self.call(&flush_script_args(&db, &self.poke.holder)).await {
                Some(Resp::Integer(1)) => {
                    let _ = redis_pool::flushed(&pool, &item);
                }
                // No longer the run's (it cannot have expired while the
                // keeper renews, but say it did): let it go.
                Some(Resp::Integer(_)) => {
                    let _ = std::fs::remove_file(&item.file);
                }
                // An error reply: asked again at the next poke.
                Some(_) => break,
                None => return false,
            }
        }
        // Bounded: processes that take meanwhile poke again.
        for _ in 0..redis_pool::TARGET {
            if redis_pool::ready_len(&pool) >= redis_pool::TARGET {
                break;
            }
            match self.call(&lease_script_args(&self.poke.holder)).await {
                Some(Resp::Integer(n)) if n >= 0 => {
                    if redis_pool::offer(&pool, n as u32).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if self.renewed.elapsed() >= renew_every() {
            for db in redis_pool::held(&pool) {
                let db = db.to_string();
                let _ = self.call(&renew_script_args(&db, &self.poke.holder)).await;
            }
            self.renewed = std::time::Instant::now();
        }
        !self.failed
    }

    /// Gives back every database the run's pool of this server lists,
    /// flushed (at the run's end, for a server that outlives it): taken,
    /// returned or ready, no process of the run is left to use it. The
    /// pool's directory goes with the run's.
    async fn give_back(&mut self) {
        let pool = self.poke.redis_pool.clone();
        for db in redis_pool::held(&pool) {
            if self.call(&super::redis::release_script_args(&db.to_string(), &self.poke.holder)).await.is_none() {
                return;
            }
        }
    }
}

impl Server {
    async fn connect(&mut self) -> Option<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut config = self.poke.login.config("cleanroom");
            config.connect_timeout(CONNECT_WAIT);
            // The whole login, not only the socket's connect (all that
            // `connect_timeout` bounds): a server that takes the connection
            // and never answers is given up, not waited for.
            let login = tokio::time::timeout(CONNECT_WAIT, config.connect(tokio_postgres::NoTls));
            let (client, connection) = login.await.ok()?.ok()?;
            tokio::spawn(connection);
            self.client = Some(client);
        }
        self.client.as_ref()
    }

    /// Does `role`'s work on the server: tops each template's pool up to
    /// its target (what the next tests take), or drops what ended processes
    /// left to drop. `false` when the server does not answer (its container
    /// was replaced, or the run is ending), and the keeper forgets it until
    /// a process tells of it again.
    async fn tend(&mut self, role: Role) -> bool {
        let pool = self.poke.pool.clone();
        match role {
            Role::Clones => {
                let templates: Vec<String> = self.templates.iter().cloned().collect();
                let known = self.strategy;
                let Some(client) = self.connect().await else { return false };
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
                self.strategy = Some(strategy);
            }
            Role::Drops => {
                // Each stays on the list until it is dropped: a keeper killed
                // meanwhile loses none (its replacement, or the run's end,
                // has it).
                let retired = run_pool::retired(&pool);
                if retired.is_empty() {
                    return true;
                }
                let Some(client) = self.connect().await else { return false };
                drop_retired(client, &pool, &retired).await;
            }
        }
        true
    }
}

/// Drops what ended processes left to drop on `pool`'s server, each once
/// no `CREATE DATABASE` of it is still running.
async fn drop_retired(on: &tokio_postgres::Client, pool: &std::path::Path, retired: &[run_pool::Retired]) {
    let making = still_made(on, retired).await;
    for r in retired.iter().filter(|r| !making.contains(&r.name)) {
        if on.batch_execute(&drop_statement(&r.name)).await.is_ok() {
            run_pool::forget_retired(pool, &r.name);
        }
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use crate::rooms::postgres::Login;

        #[test]
        fn forget_a_postgres_server_that_does_not_answer() {
            // A loopback port nothing listens on any more (or, if another
            // test took it meanwhile, nothing this login gets into).
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let login = Login {
                host: "127.0.0.1".into(),
                port,
                user: "nobody".into(),
                password: "wrong".into(),
                database: "none".into(),
            };
            let pool = std::env::temp_dir().join(format!("cleanroom-keeper-gone-{}", std::process::id()));
            let mut server = Server {
                poke: Poke { pool: pool.clone(), template: "t".into(), login },
                templates: BTreeSet::from(["t".to_string()]),
                client: None,
                strategy: None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            assert!(!runtime.block_on(server.tend(Role::Clones)), "a server that does not answer is given up");
            assert!(!pool.exists(), "and nothing was made for it");
        }

        /// A server that reads RESP commands and answers each with the next
        /// integer (a lease script's reply: the database leased).
        fn fake_redis() -> u16 {
            use std::io::{BufRead, BufReader, Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                let mut next = 0u32;
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        let args: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                        for _ in 0..args {
                            line.clear();
                            reader.read_line(&mut line).unwrap();
                            let len: usize = line.trim().trim_start_matches('$').parse().unwrap();
                            let mut arg = vec![0; len + 2];
                            reader.read_exact(&mut arg).unwrap();
                        }
                        line.clear();
                        next += 1;
                        if out.write_all(format!(":{next}\r\n").as_bytes()).is_err() {
                            break;
                        }
                    }
                }
            });
            port
        }

        #[test]
        fn lease_redis_rooms_while_a_postgres_server_hangs() {
            use std::sync::atomic::{AtomicUsize, Ordering};
            use std::sync::Arc;
            // A Postgres that takes the keeper's connection and never
            // answers it: the keeper's Postgres work waits on it.
            let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let hung_port = hung.local_addr().unwrap().port();
            let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (a, c) = (accepted.clone(), closed.clone());
            std::thread::spawn(move || {
                for stream in hung.incoming().flatten() {
                    a.fetch_add(1, Ordering::SeqCst);
                    let c = c.clone();
                    std::thread::spawn(move || {
                        use std::io::Read;
                        let mut stream = stream;
                        let mut buf = [0; 512];
                        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
                        c.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
            let dir = std::env::temp_dir().join(format!("cleanroom-keeper-hung-{}", std::process::id()));
            let login = Login {
                host: "127.0.0.1".into(),
                port: hung_port,
                user: "u".into(),
                password: "p".into(),
                database: "d".into(),
            };
            let postgres = Work::Postgres(Poke { pool: dir.join("pg"), template: "t".into(), login });
            poke(&serde_json::to_string(&postgres).unwrap());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while accepted.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(accepted.load(Ordering::SeqCst) > 0, "the keeper logs in to the Postgres it was told of");
            let redis_pool = dir.join("redis");
            let redis = Work::Redis(RedisPoke {
                redis_pool: redis_pool.clone(),
                host: "127.0.0.1".into(),
                port: fake_redis(),
                password: None,
                holder: "keeper:test".into(),
                outlives_run: false,
            });
            poke(&serde_json::to_string(&redis).unwrap());
            while redis_pool::ready_len(&redis_pool) < redis_pool::TARGET && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let ready = redis_pool::ready_len(&redis_pool);
            let still_waiting = closed.load(Ordering::SeqCst) == 0;
            let _ = std::fs::remove_dir_all(&dir);
            assert_eq!(ready, redis_pool::TARGET, "the Redis rooms are leased ahead");
            assert!(still_waiting, "while the Postgres keeper still waits for its server");
        }
    }
}
