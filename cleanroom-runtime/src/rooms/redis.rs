//! Redis rooms: each test leases a logical database, arbitrated by the
//! server itself (`SET NX` in one script, so leases are unique across
//! processes), flushed before it is handed out.
//!
//! The leases live in the last logical database, which is never handed out
//! as a room, and not in database 0, which `shared` tests use: a test's
//! `FLUSHDB` cannot erase them (`FLUSHALL` can, and is out of bounds in a
//! shared test). A lease names its holder, is renewed while its test runs,
//! and is released only by its holder.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{room_name, Room, RoomName};
use crate::builtin::REDIS_DATABASES;
use crate::config::Keep;
use crate::error::Error;
use crate::service::handle::Container;
use crate::service::running::RunningService;

/// The database that holds the leases: the last one, never a room.
const LEASES_DB: u32 = REDIS_DATABASES - 1;

/// `ARGV`: holder, the leases' database, TTL. Takes the first free database
/// of 1 … leases' database − 1, flushes it, returns it (0: none free).
const LEASE_SCRIPT: &str = "local leases = tonumber(ARGV[2]) \
    for i = 1, leases - 1 do \
      redis.call('SELECT', leases) \
      if redis.call('SET', 'cleanroom:lease:' .. i, ARGV[1], 'NX', 'PX', ARGV[3]) then \
        redis.call('SELECT', i) redis.call('FLUSHDB') redis.call('SELECT', 0) return i end end \
    redis.call('SELECT', 0) return 0";
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
/// A lease outlives a test process that died without releasing it by at
/// most this; a live holder renews it every third of it.
const LEASE_TTL_MS: u64 = 10 * 60 * 1000;

/// Redis rooms of one running server: a connection for leases, and a few
/// databases leased ahead of the tests that will ask for them.
pub(crate) struct RedisRooms {
    service: Arc<RunningService>,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
    ready: Mutex<VecDeque<u32>>,
    /// Tests of this process that will ask (`usize::MAX`: not known).
    expected: AtomicUsize,
    handed_out: AtomicUsize,
    leasing: AtomicUsize,
    /// The leases this process holds: database → holder token.
    held: Mutex<std::collections::HashMap<u32, String>>,
    renewing: std::sync::atomic::AtomicBool,
}

/// How many Redis databases a process leases ahead of demand, at most.
const REDIS_AHEAD: usize = 4;

static REDIS_ROOMS: Mutex<Vec<Arc<RedisRooms>>> = Mutex::new(Vec::new());

pub(crate) fn redis_rooms(service: &Arc<RunningService>) -> Arc<RedisRooms> {
    let mut all = REDIS_ROOMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = all.iter().find(|r| r.service.id == service.id) {
        return r.clone();
    }
    let rooms = Arc::new(RedisRooms {
        service: service.clone(),
        conn: tokio::sync::Mutex::new(None),
        ready: Mutex::new(VecDeque::new()),
        expected: AtomicUsize::new(0),
        handed_out: AtomicUsize::new(0),
        leasing: AtomicUsize::new(0),
        held: Mutex::new(std::collections::HashMap::new()),
        renewing: std::sync::atomic::AtomicBool::new(false),
    });
    all.push(rooms.clone());
    rooms
}

impl RedisRooms {
    fn error(&self, what: &str, reason: impl std::fmt::Display) -> Error {
        Error::Operation { service: self.service.name.clone(), operation: what.to_string(), reason: reason.to_string() }
    }

    /// Sends one command and reads its reply, on the shared connection.
    async fn command(&self, args: &[&str]) -> Result<Resp, Error> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let port =
                *self.service.ports.get(&6379).ok_or_else(|| self.error("connect", "port 6379 is not published"))?;
            let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| self.error("connect", e))?;
            stream.set_nodelay(true).map_err(|e| self.error("connect", e))?;
            *guard = Some(stream);
        }
        let stream = guard.as_mut().expect("connected above");
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let reply = async {
            stream.write_all(&out).await?;
            read_resp(stream).await
        }
        .await;
        match reply {
            Ok(Resp::Error(e)) => Err(self.error(args[0], e)),
            Ok(r) => Ok(r),
            Err(e) => {
                *guard = None;
                Err(self.error(args[0], e))
            }
        }
    }

    /// A clean logical database for one test: one leased ahead if there is
    /// one, else leased now.
    pub(crate) async fn take(self: Arc<Self>) -> Result<u32, Error> {
        self.handed_out.fetch_add(1, Ordering::SeqCst);
        let ahead = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let db = match ahead {
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

    /// Leases databases ahead for the `expected` tests of this process.
    pub(crate) fn warm(self: Arc<Self>, expected: usize) {
        self.expected.store(expected, Ordering::SeqCst);
        self.refill();
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
            self.leasing.fetch_sub(1, Ordering::SeqCst);
            if let Ok(db) = leased {
                self.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(db);
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
        let holder = format!("{}:{}", std::process::id(), room_name());
        let leases = LEASES_DB.to_string();
        let ttl = LEASE_TTL_MS.to_string();
        let started = Instant::now();
        loop {
            match self.command(&["EVAL", LEASE_SCRIPT, "0", &holder, &leases, &ttl]).await? {
                Resp::Integer(n) if n > 0 => {
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
        let args = ["EVAL", RELEASE_SCRIPT, "0", &db.to_string(), &holder, &LEASES_DB.to_string()];
        self.command(&args).await.map(|_| ())
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
                tokio::time::sleep(Duration::from_millis(LEASE_TTL_MS / 3)).await;
                let held: Vec<(u32, String)> =
                    rooms.held.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(d, h)| (*d, h.clone())).collect();
                for (db, holder) in held {
                    let args = [
                        "EVAL",
                        RENEW_SCRIPT,
                        "0",
                        &db.to_string(),
                        &holder,
                        &LEASES_DB.to_string(),
                        &LEASE_TTL_MS.to_string(),
                    ];
                    let _ = rooms.command(&args).await;
                }
            }
        });
    }
}

/// A Redis reply, as far as cleanroom reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

async fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b);
    }
}

fn read_resp(
    stream: &mut TcpStream,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Resp>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
        if line.is_empty() {
            return Err(bad());
        }
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Integer(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    stream.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Resp::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_resp(stream).await?);
                }
                Resp::Array(items)
            }
            _ => return Err(bad()),
        })
    })
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
}

/// A logical database for one test: one leased ahead if there is one, else
/// leased now.
pub(super) fn open(container: &Container) -> Result<Box<dyn Room>, Error> {
    let rooms = redis_rooms(&container.inner);
    let db = match rooms.take_ready() {
        Some(db) => db,
        None => crate::util::background::block_on_runtime(rooms.clone().take())?,
    };
    Ok(Box::new(RedisRoom { rooms, db }))
}

impl Room for RedisRoom {
    fn name(&self) -> RoomName {
        RoomName::Index(self.db)
    }

    /// A logical database is flushed and freed whatever the outcome: there
    /// are only so many.
    fn end(self: Box<Self>, _test: &str, _failed: bool, _keep: Keep) {
        let RedisRoom { rooms, db } = *self;
        crate::util::background::spawn_background(async move {
            let _ = rooms.release(db).await;
        });
    }
}
