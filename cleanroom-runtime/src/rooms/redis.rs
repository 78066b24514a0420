//! Redis rooms: each test leases a logical database, arbitrated by the
//! server itself (`SET NX` in one script, so leases are unique across
//! processes), flushed before it is handed out.
//!
//! The leases live in the last logical database, which is never handed out
//! as a room, and not in database 0, which `shared` tests use: a test's
//! `FLUSHDB` cannot erase them (`FLUSHALL` can, and is out of bounds in a
//! shared test). A lease names its holder, is renewed while its test runs,
//! and is released only by its holder. On an existing server the rooms and
//! the leases' database are the range the user allows
//! (`CLEANROOM_REDIS_DATABASES`), and a lease names its run too
//! ([`crate::external::redis`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{room_name, Room, RoomName};
use crate::builtin::REDIS_DATABASES;
use crate::config::Keep;
use crate::error::Error;
use crate::external::redis::DatabaseRange;
use crate::external::resp::{self, Resp};
use crate::service::handle::Container;
use crate::service::running::RunningService;

/// The databases of a server cleanroom runs itself.
const OWN_DATABASES: DatabaseRange = DatabaseRange::own(REDIS_DATABASES);

/// `ARGV`: holder, the leases' database, TTL, the first room. Takes the
/// first free database of the first room … leases' database − 1, flushes
/// it, returns it (-1: none free).
const LEASE_SCRIPT: &str = "local leases = tonumber(ARGV[2]) \
    for i = tonumber(ARGV[4]), leases - 1 do \
      redis.call('SELECT', leases) \
      if redis.call('SET', 'cleanroom:lease:' .. i, ARGV[1], 'NX', 'PX', ARGV[3]) then \
        redis.call('SELECT', i) redis.call('FLUSHDB') redis.call('SELECT', 0) return i end end \
    redis.call('SELECT', 0) return -1";
/// `ARGV`: database, holder, the leases' database. Flushes and frees the
/// database if the lease is still this holder's (1), else leaves it (0).
const RELEASE_SCRIPT: &str = "redis.call('SELECT', tonumber(ARGV[3])) \
    if redis.call('GET', 'cleanroom:lease:' .. ARGV[1]) ~= ARGV[2] then redis.call('SELECT', 0) return 0 end \
    redis.call('DEL', 'cleanroom:lease:' .. ARGV[1]) \
    redis.call('SELECT', tonumber(ARGV[1])) redis.call('FLUSHDB') redis.call('SELECT', 0) return 1";
/// `ARGV`: database, holder, the leases' database, TTL. Extends the lease if
/// it is still this holder's.
const RENEW_SCRIPT: &str = "redis.call('SELECT', tonumber(ARGV[3])) \
    local held = redis.call('GET', 'cleanroom:lease:' .. ARGV[1]) == ARGV[2] \
    if held then redis.call('PEXPIRE', 'cleanroom:lease:' .. ARGV[1], ARGV[4]) end \
    redis.call('SELECT', 0) if held then return 1 end return 0";
/// `ARGV`: database, holder, the leases' database. Flushes the database if
/// its lease is this holder's (1), keeping the lease; else leaves it (0).
const FLUSH_HELD_SCRIPT: &str = "redis.call('SELECT', tonumber(ARGV[3])) \
    if redis.call('GET', 'cleanroom:lease:' .. ARGV[1]) ~= ARGV[2] then redis.call('SELECT', 0) return 0 end \
    redis.call('SELECT', tonumber(ARGV[1])) redis.call('FLUSHDB') redis.call('SELECT', 0) return 1";
/// A lease outlives a test process that died without releasing it by at
/// most this (`run.redis_lease_ttl`); a live holder renews it every third
/// of it.
pub(super) fn lease_ttl() -> Duration {
    crate::config::current().map_or(crate::config::DEFAULT_REDIS_LEASE_TTL, |c| c.redis_lease_ttl)
}

/// [`lease_ttl`] in milliseconds, as the scripts take it.
fn lease_ttl_ms() -> String {
    lease_ttl().as_millis().to_string()
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The keeper's lease of a free database of a server the run owns
/// ([`super::keeper`]), for `holder`: replies with the database, or -1.
pub(super) fn lease_script_args(holder: &str) -> Vec<String> {
    let (leases, first) = (OWN_DATABASES.leases().to_string(), OWN_DATABASES.first.to_string());
    owned(&["EVAL", LEASE_SCRIPT, "0", holder, &leases, &lease_ttl_ms(), &first])
}

/// The keeper's flush of database `db`, which `holder` keeps leased.
pub(super) fn flush_script_args(db: &str, holder: &str) -> Vec<String> {
    owned(&["EVAL", FLUSH_HELD_SCRIPT, "0", db, holder, &OWN_DATABASES.leases().to_string()])
}

/// The keeper's renewal of its lease of database `db` of a server the run
/// owns.
pub(super) fn renew_script_args(db: &str, holder: &str) -> Vec<String> {
    renew_in(OWN_DATABASES, db, holder)
}

/// The keeper's giving back of database `db` (flushed) of a server the
/// run owns or reuses, at the run's end.
pub(super) fn release_script_args(db: &str, holder: &str) -> Vec<String> {
    release_in(OWN_DATABASES, db, holder)
}

/// `holder`'s release of database `db`, flushed, if its lease is still
/// `holder`'s: the keeper's ([`release_script_args`]) and a process's own
/// ([`RedisRooms::release`]).
fn release_in(range: DatabaseRange, db: &str, holder: &str) -> Vec<String> {
    owned(&["EVAL", RELEASE_SCRIPT, "0", db, holder, &range.leases().to_string()])
}

/// `holder`'s renewal of its lease of database `db`, in `range`'s leases:
/// the keeper's ([`renew_script_args`]) and a process's own
/// ([`RedisRooms::renew_while_held`]) are this one command.
fn renew_in(range: DatabaseRange, db: &str, holder: &str) -> Vec<String> {
    owned(&["EVAL", RENEW_SCRIPT, "0", db, holder, &range.leases().to_string(), &lease_ttl_ms()])
}

/// Redis rooms of one running server: a connection for leases, and a few
/// databases leased ahead of the tests that will ask for them.
pub(crate) struct RedisRooms {
    service: Arc<RunningService>,
    /// The databases rooms are taken from, and the leases' database.
    range: DatabaseRange,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
    ready: Mutex<VecDeque<u32>>,
    /// Tests of this process that will ask (`usize::MAX`: not known).
    expected: AtomicUsize,
    handed_out: AtomicUsize,
    leasing: AtomicUsize,
    /// Told when a lease ahead ends (taken or failed).
    leased: tokio::sync::Notify,
    /// The leases this process holds: database → holder token.
    held: Mutex<std::collections::HashMap<u32, String>>,
    renewing: std::sync::atomic::AtomicBool,
    /// The run's pool of this server's databases, when the run's reaper
    /// keeps it ([`super::redis_pool`]): a server the run owns.
    run_pool: Option<std::path::PathBuf>,
}

/// How many Redis databases a process leases ahead of demand, at most.
const REDIS_AHEAD: usize = 4;

static REDIS_ROOMS: Mutex<Vec<Arc<RedisRooms>>> = Mutex::new(Vec::new());

pub(crate) fn redis_rooms(service: &Arc<RunningService>) -> Arc<RedisRooms> {
    let mut all = REDIS_ROOMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = all.iter().find(|r| r.service.id == service.id) {
        return r.clone();
    }
    let range = service.existing.as_ref().and_then(|e| e.databases).unwrap_or(OWN_DATABASES);
    // Not an existing server: its databases are the user's range. A reused
    // one outlives the run: the keeper gives its leases back at the run's
    // end (`keeper::finish`).
    let run_pool = crate::util::flags::redis_keeper()
        .filter(|_| service.existing.is_none())
        .map(|(root, _)| root.join(&service.id));
    let rooms = Arc::new(RedisRooms {
        service: service.clone(),
        range,
        conn: tokio::sync::Mutex::new(None),
        ready: Mutex::new(VecDeque::new()),
        expected: AtomicUsize::new(0),
        handed_out: AtomicUsize::new(0),
        leasing: AtomicUsize::new(0),
        leased: tokio::sync::Notify::new(),
        held: Mutex::new(std::collections::HashMap::new()),
        renewing: std::sync::atomic::AtomicBool::new(false),
        run_pool,
    });
    all.push(rooms.clone());
    rooms
}

impl RedisRooms {
    fn error(&self, what: &str, reason: impl std::fmt::Display) -> Error {
        Error::Operation { service: self.service.name.clone(), operation: what.to_string(), reason: reason.to_string() }
    }

    /// Who cleanroom logs in to the server as: the existing server's URL's
    /// user and password, or the password cleanroom gave its own server.
    fn credentials(&self) -> (Option<&str>, Option<&str>) {
        match self.service.existing.as_ref() {
            Some(e) => (e.url.user.as_deref(), e.url.password.as_deref()),
            None => (None, self.service.env(crate::service::definition::REDIS_PASSWORD_ENV)),
        }
    }

    /// Sends one command and reads its reply, on the shared connection.
    async fn command<A: AsRef<str>>(&self, args: &[A]) -> Result<Resp, Error> {
        let what = args.first().map_or("", |a| a.as_ref());
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let port =
                *self.service.ports.get(&6379).ok_or_else(|| self.error("connect", "port 6379 is not published"))?;
            let (user, password) = self.credentials();
            // The command goes with the login: one round trip less.
            let (stream, reply) = resp::connect_and_call(self.service.host(), port, user, password, args)
                .await
                .map_err(|e| self.error("connect", e))?;
            *guard = Some(stream);
            return match reply {
                Resp::Error(e) => Err(self.error(what, e)),
                r => Ok(r),
            };
        }
        let stream = guard.as_mut().expect("connected above");
        match resp::call(stream, args).await {
            Ok(Resp::Error(e)) => Err(self.error(what, e)),
            Ok(r) => Ok(r),
            Err(e) => {
                *guard = None;
                Err(self.error(what, e))
            }
        }
    }

    /// A clean logical database for one test: one leased ahead if there is
    /// one, else leased now.
    pub(crate) async fn take(self: Arc<Self>) -> Result<u32, Error> {
        self.handed_out.fetch_add(1, Ordering::SeqCst);
        let db = match self.ahead().await {
            Some(db) => {
                crate::metrics::cache_hit("redis_leased_ahead");
                db
            }
            None => {
                crate::metrics::cache_miss("redis_leased_ahead");
                self.lease().await?
            }
        };
        self.clone().refill();
        Ok(db)
    }

    /// A database leased ahead: one that is ready, or the one being leased
    /// right now (a test that asks just after its process started would
    /// otherwise queue a second lease behind it on the one connection);
    /// `None` when none is under way.
    async fn ahead(&self) -> Option<u32> {
        loop {
            let notified = self.leased.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(db) = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                return Some(db);
            }
            if self.leasing.load(Ordering::SeqCst) == 0 {
                return None;
            }
            notified.await;
        }
    }

    /// A database leased ahead, taken on the calling thread without a hop to
    /// cleanroom's runtime (which may be busy cloning Postgres databases).
    pub(crate) fn take_ready(self: &Arc<Self>) -> Option<u32> {
        let db = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front()?;
        crate::metrics::cache_hit("redis_leased_ahead");
        self.handed_out.fetch_add(1, Ordering::SeqCst);
        let rooms = self.clone();
        crate::util::background::spawn_background(async move { rooms.refill() });
        Some(db)
    }

    /// Leases databases ahead for the `expected` tests of this process; a
    /// process of one test (every one under nextest) whose run's keeper has
    /// one ready takes that instead, and only asks the keeper for more.
    pub(crate) fn warm(self: Arc<Self>, expected: usize) {
        self.expected.store(expected, Ordering::SeqCst);
        if let Some(pool) = self.keeper_pool() {
            // The take pokes the keeper for the next; an empty pool (the
            // run's first process) is worth a poke now, to start filling.
            if super::redis_pool::ready_len(pool) > 0 {
                return;
            }
            self.poke_keeper();
        }
        self.refill();
    }

    /// The run's pool, in a process that takes its room from it: one that
    /// expects at most one test with a room here. A process of many tests
    /// leases its own ahead, on its one connection.
    fn keeper_pool(&self) -> Option<&std::path::Path> {
        self.run_pool.as_deref().filter(|_| self.expected.load(Ordering::SeqCst) <= 1)
    }

    /// Asks the run's keeper to flush what came back and lease up to its
    /// target; `false` when it could not be told.
    fn poke_keeper(&self) -> bool {
        let (Some(pool), Some((_, holder))) = (&self.run_pool, crate::util::flags::redis_keeper()) else {
            return false;
        };
        let Some(port) = self.service.ports.get(&6379) else { return false };
        let poke = super::keeper::RedisPoke {
            redis_pool: pool.clone(),
            host: self.service.host().to_string(),
            port: *port,
            // A server cleanroom runs: no user of its own.
            password: self.credentials().1.map(str::to_string),
            holder: holder.clone(),
            outlives_run: crate::config::current().is_ok_and(|c| c.reuse),
        };
        serde_json::to_string(&poke).is_ok_and(|line| crate::util::flags::tell_pool_keeper(&line))
    }

    /// A database of the run's pool, taken as this process (`me`); the
    /// keeper is asked for the next either way.
    /// `ahead` as for `PgRooms::take_ready`: a try that finds none neither
    /// counts a miss nor asks the keeper.
    fn take_from_run_pool(self: &Arc<Self>, ahead: bool) -> Option<(u32, String)> {
        let pool = self.keeper_pool()?;
        let me = super::redis_pool::me()?;
        let taken = super::redis_pool::take(pool, &me);
        if taken.is_none() && ahead {
            return None;
        }
        // Off the test's way (before the first test's body begins, the
        // runtime's queue holds it: `util::background::defer_build`).
        let rooms = self.clone();
        crate::util::background::spawn_background(async move {
            rooms.poke_keeper();
        });
        match taken {
            Some(db) => {
                crate::metrics::cache_hit("redis_run_pool");
                self.handed_out.fetch_add(1, Ordering::SeqCst);
                Some((db, me))
            }
            None => {
                crate::metrics::cache_miss("redis_run_pool");
                None
            }
        }
    }

    fn refill(self: Arc<Self>) {
        let remaining = self.expected.load(Ordering::SeqCst).saturating_sub(self.handed_out.load(Ordering::SeqCst));
        let have = self.ready.lock().unwrap_or_else(|e| e.into_inner()).len() + self.leasing.load(Ordering::SeqCst);
        if have >= remaining.min(REDIS_AHEAD) {
            return;
        }
        self.leasing.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let leased = self.lease().await;
            if let Ok(db) = leased {
                self.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(db);
            }
            self.leasing.fetch_sub(1, Ordering::SeqCst);
            self.leased.notify_waiters();
            if leased.is_ok() {
                self.refill();
            }
        });
    }

    /// Returns the databases leased ahead and never handed out.
    async fn release_ahead(&self) {
        let dbs: Vec<u32> = self.ready.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for db in dbs {
            let _ = self.release(db).await;
        }
    }

    /// Leases a free logical database, flushed; waits while all are leased.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<u32, Error> {
        let claim = self.service.existing.as_ref().map(|e| &e.claim);
        let holder = crate::external::redis::holder(claim, &room_name());
        let leases = self.range.leases().to_string();
        let ttl = lease_ttl_ms();
        let first = self.range.first.to_string();
        let started = Instant::now();
        loop {
            match self.command(&["EVAL", LEASE_SCRIPT, "0", &holder, &leases, &ttl, &first]).await? {
                Resp::Integer(n) if n >= 0 => {
                    let db = n as u32;
                    self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(db, holder);
                    self.renew_while_held();
                    return Ok(db);
                }
                Resp::Integer(_) => {
                    if started.elapsed() > Duration::from_secs(300) {
                        return Err(self.error("lease", "every logical database stayed leased for 5 minutes"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                other => return Err(self.error("lease", format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Flushes and frees a database this process leased; one whose lease is
    /// no longer this process's (it expired and another took it) is left alone.
    pub(crate) async fn release(&self, db: u32) -> Result<(), Error> {
        let Some(holder) = self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&db) else { return Ok(()) };
        self.command(&release_in(self.range, &db.to_string(), &holder)).await.map(|_| ())
    }

    /// Renews this process's leases every third of their TTL for as long as
    /// it holds any: a test may run longer than a lease lasts.
    fn renew_while_held(self: &Arc<Self>) {
        if self.renewing.swap(true, Ordering::SeqCst) {
            return;
        }
        let rooms = self.clone();
        crate::util::background::spawn_background(async move {
            loop {
                tokio::time::sleep(lease_ttl() / 3).await;
                let held: Vec<(u32, String)> =
                    rooms.held.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(d, h)| (*d, h.clone())).collect();
                for (db, holder) in held {
                    let args = renew_in(rooms.range, &db.to_string(), &holder);
                    let _ = rooms.command(&args).await;
                }
            }
        });
    }
}

/// Returns the databases every Redis server's rooms leased ahead and never
/// handed out.
pub(super) async fn release_ahead() {
    let redis: Vec<Arc<RedisRooms>> = REDIS_ROOMS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for rooms in redis {
        rooms.release_ahead().await;
    }
}

/// A test's logical database.
struct RedisRoom {
    rooms: Arc<RedisRooms>,
    db: u32,
    /// Taken from the run's pool, as this (`pid:start`): given back to the
    /// keeper, not released.
    from_run_pool: Option<String>,
}

/// A logical database for one test: one leased ahead if there is one, else
/// one of the run's pool, else leased now.
pub(super) fn open(container: &Container) -> Result<Box<dyn Room>, Error> {
    if let Some(room) = at_hand(container, false) {
        return Ok(room);
    }
    let rooms = redis_rooms(&container.inner);
    let db = crate::util::background::block_on_runtime(rooms.clone().take())?;
    Ok(Box::new(RedisRoom { rooms, db, from_run_pool: None }))
}

/// A logical database leased ahead, by this process or by the run's
/// keeper, if one is at hand now (`None` then, and [`open`] leases one).
pub(super) fn open_at_hand(container: &Container) -> Option<Box<dyn Room>> {
    at_hand(container, true)
}

fn at_hand(container: &Container, ahead: bool) -> Option<Box<dyn Room>> {
    let rooms = redis_rooms(&container.inner);
    if let Some(db) = rooms.take_ready() {
        return Some(Box::new(RedisRoom { rooms, db, from_run_pool: None }));
    }
    let (db, me) = rooms.take_from_run_pool(ahead)?;
    Some(Box::new(RedisRoom { rooms, db, from_run_pool: Some(me) }))
}

impl Room for RedisRoom {
    fn name(&self) -> RoomName {
        RoomName::Index(self.db)
    }

    /// A logical database is flushed and freed whatever the outcome: there
    /// are only so many.
    fn end(self: Box<Self>, _test: &str, _failed: bool, _keep: Keep) {
        let RedisRoom { rooms, db, from_run_pool } = *self;
        if let (Some(me), Some(pool)) = (from_run_pool, &rooms.run_pool) {
            // The keeper flushes it; a process that dies before this line
            // leaves it to the keeper too, once it sees the process gone.
            if super::redis_pool::give_back(pool, &me, db).is_ok() {
                rooms.poke_keeper();
            }
            return;
        }
        crate::util::background::spawn_background(async move {
            let _ = rooms.release(db).await;
        });
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        /// A `redis-server` of the test's own on a free loopback port (the
        /// local engine's binary, which CI installs): the scripts run only
        /// on a real server.
        struct Server {
            child: std::process::Child,
            port: u16,
        }

        impl Server {
            /// A free port can be taken by another test's server before
            /// this one binds it: a server is this test's only once it
            /// answers with its own pid, else another port is tried.
            fn start() -> Server {
                for _ in 0..10 {
                    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                    let mut child = std::process::Command::new("redis-server")
                        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                        .args(["--databases", &REDIS_DATABASES.to_string()])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .expect("redis-server runs (apt-get install redis-server; .ci/run installs it)");
                    if Self::answers_as(port, child.id()) {
                        return Server { child, port };
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
                panic!("no redis-server of this test's own answered on a free port, 10 tries");
            }

            fn answers_as(port: u16, pid: u32) -> bool {
                use std::io::{Read, Write};
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut reply = vec![0u8; 8192];
                        if stream.write_all(&resp::encode(&["INFO", "server"])).is_ok() {
                            let n = stream.read(&mut reply).unwrap_or(0);
                            return String::from_utf8_lossy(&reply[..n]).contains(&format!("process_id:{pid}\r\n"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            }

            async fn connect(&self) -> TcpStream {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match resp::connect("127.0.0.1", self.port, None, None).await {
                        Ok(stream) => return stream,
                        Err(e) if Instant::now() > deadline => panic!("redis-server never answered: {e}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }

        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }

        const LEASES: &str = "15";

        async fn call(c: &mut TcpStream, args: &[&str]) -> Resp {
            resp::call(c, args).await.unwrap()
        }

        /// The lease of database 1, and its time to live in ms, as the
        /// leases' database holds them.
        async fn lease_of_1(c: &mut TcpStream) -> (Resp, Resp) {
            call(c, &["SELECT", LEASES]).await;
            let holder = call(c, &["GET", "cleanroom:lease:1"]).await;
            let ttl = call(c, &["PTTL", "cleanroom:lease:1"]).await;
            call(c, &["SELECT", "0"]).await;
            (holder, ttl)
        }

        fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
        }

        #[test]
        fn renew_a_lease_only_for_its_holder() {
            let server = Server::start();
            block_on(async {
                let mut c = server.connect().await;
                let leased = call(&mut c, &["EVAL", LEASE_SCRIPT, "0", "a", LEASES, "5000", "1"]).await;
                assert_eq!(leased, Resp::Integer(1), "the first room is free");
                let renew = |holder: &'static str| ["EVAL", RENEW_SCRIPT, "0", "1", holder, LEASES, "600000"];
                assert_eq!(call(&mut c, &renew("b")).await, Resp::Integer(0), "b does not hold it");
                let (holder, ttl) = lease_of_1(&mut c).await;
                assert_eq!(holder, Resp::Bulk(Some(b"a".to_vec())));
                assert!(matches!(ttl, Resp::Integer(ms) if ms <= 5000), "b's renewal left the expiry alone: {ttl:?}");
                assert_eq!(call(&mut c, &renew("a")).await, Resp::Integer(1), "a holds it");
                let (_, ttl) = lease_of_1(&mut c).await;
                assert!(matches!(ttl, Resp::Integer(ms) if ms > 5000), "a's renewal extended it: {ttl:?}");
            });
        }

        #[test]
        fn release_a_database_only_for_its_holder() {
            let server = Server::start();
            block_on(async {
                let mut c = server.connect().await;
                let leased = call(&mut c, &["EVAL", LEASE_SCRIPT, "0", "a", LEASES, "600000", "1"]).await;
                assert_eq!(leased, Resp::Integer(1));
                call(&mut c, &["SELECT", "1"]).await;
                call(&mut c, &["SET", "written", "by a's test"]).await;
                call(&mut c, &["SELECT", "0"]).await;
                let release = |holder: &'static str| ["EVAL", RELEASE_SCRIPT, "0", "1", holder, LEASES];

                assert_eq!(call(&mut c, &release("b")).await, Resp::Integer(0), "b does not hold it");
                let (holder, _) = lease_of_1(&mut c).await;
                assert_eq!(holder, Resp::Bulk(Some(b"a".to_vec())), "still a's lease");
                call(&mut c, &["SELECT", "1"]).await;
                assert_eq!(call(&mut c, &["DBSIZE"]).await, Resp::Integer(1), "a's data is untouched");

                assert_eq!(call(&mut c, &release("a")).await, Resp::Integer(1), "a holds it");
                assert_eq!(call(&mut c, &["DBSIZE"]).await, Resp::Integer(0), "flushed");
                let (holder, _) = lease_of_1(&mut c).await;
                assert_eq!(holder, Resp::Bulk(None), "and free");
            });
        }

        #[test]
        fn flush_a_database_for_the_keeper_that_holds_it_and_keep_its_lease() {
            let server = Server::start();
            block_on(async {
                let mut c = server.connect().await;
                let db = match run(&mut c, lease_script_args("keeper:a")).await {
                    Resp::Integer(n) if n >= 1 => n.to_string(),
                    other => panic!("a free room is leased: {other:?}"),
                };
                call(&mut c, &["SELECT", &db]).await;
                call(&mut c, &["SET", "written", "by a test"]).await;
                call(&mut c, &["SELECT", "0"]).await;

                assert_eq!(run(&mut c, flush_script_args(&db, "keeper:b")).await, Resp::Integer(0), "b holds none");
                call(&mut c, &["SELECT", &db]).await;
                assert_eq!(call(&mut c, &["DBSIZE"]).await, Resp::Integer(1), "left as it was");

                assert_eq!(run(&mut c, flush_script_args(&db, "keeper:a")).await, Resp::Integer(1), "a holds it");
                assert_eq!(call(&mut c, &["DBSIZE"]).await, Resp::Integer(0), "flushed");
                call(&mut c, &["SELECT", &OWN_DATABASES.leases().to_string()]).await;
                let holder = call(&mut c, &["GET", &format!("cleanroom:lease:{db}")]).await;
                assert_eq!(holder, Resp::Bulk(Some(b"keeper:a".to_vec())), "still the keeper's, for the next test");
                assert_eq!(run(&mut c, renew_script_args(&db, "keeper:a")).await, Resp::Integer(1));
            });
        }

        async fn run(c: &mut TcpStream, args: Vec<String>) -> Resp {
            resp::call(c, &args).await.unwrap()
        }

        /// Rooms on the test's own server, as a process whose Redis runs
        /// from the local engine would have them.
        fn rooms_on(server: &Server) -> Arc<RedisRooms> {
            let engine = crate::external::ExistingServer { address: "127.0.0.1".into() };
            let service = Arc::new(RunningService {
                name: "redis".into(),
                image: "none".into(),
                id: format!("redis-rooms-test-{}", server.port),
                ports: std::collections::BTreeMap::from([(6379, server.port)]),
                definition: crate::GenericContainer::new("none").with_port(6379),
                engine: Arc::new(engine),
                host: Some("127.0.0.1".into()),
                existing: None,
            });
            redis_rooms(&service)
        }

        #[test]
        fn hand_a_test_the_lease_under_way_instead_of_queueing_a_second() {
            let server = Server::start();
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async {
                let mut c = server.connect().await;
                let rooms = rooms_on(&server);
                // The server holds every command back for a moment: the
                // lease ahead is still under way when the test asks, however
                // fast it would otherwise be.
                call(&mut c, &["CLIENT", "PAUSE", "300", "ALL"]).await;
                // The process's one test, asking as soon as the lease ahead began.
                rooms.clone().warm(1);
                assert_eq!(rooms.leasing.load(Ordering::SeqCst), 1, "a lease ahead is under way");
                let db = rooms.clone().take().await.unwrap();
                assert_eq!(db, 1, "the first room");
                // Whatever else was leased has finished by now.
                let deadline = Instant::now() + Duration::from_secs(5);
                while rooms.leasing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                call(&mut c, &["SELECT", &REDIS_DATABASES.saturating_sub(1).to_string()]).await;
                let leases = call(&mut c, &["KEYS", "cleanroom:lease:*"]).await;
                assert_eq!(
                    leases,
                    Resp::Array(vec![Resp::Bulk(Some(b"cleanroom:lease:1".to_vec()))]),
                    "one lease, the one under way, and no second behind it"
                );
                assert!(rooms.ready.lock().unwrap().is_empty(), "nothing leased ahead: the one test has its room");

                // With nothing under way a take leases itself.
                let db = rooms.clone().take().await.unwrap();
                assert_eq!(db, 2);
            });
        }
    }
}
