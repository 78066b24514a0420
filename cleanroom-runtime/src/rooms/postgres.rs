//! Postgres rooms: schema setup (migrations, init SQL) runs once into a
//! template database; each test gets a clone of it (`CREATE DATABASE …
//! TEMPLATE`), taken from a pool that is refilled in the background (and,
//! under nextest, from the run-wide pool of [`super::run_pool`]). After a test
//! passes its database is dropped off the critical path; after it fails it is
//! kept and the failure output says how to connect to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};

use super::migrations::{self, Migration};
use super::schema::{Demand, Schema};
use super::{room_name, run_pool, Room, RoomName};
use crate::catalog::TestDesc;
use crate::config::Keep;
use crate::error::Error;
use crate::service::handle::Container;
use crate::service::running::RunningService;
use crate::util::hash::{fnv1a, FNV_OFFSET};

/// How many ready databases the Postgres pool keeps ahead of demand:
/// `run.pool` (0 turns the pool off).
pub(crate) fn pool_size() -> Result<usize, Error> {
    crate::config::current().map(|c| c.pool)
}

/// The schema setup of a template: its migrations and init file, in order,
/// the history table of their tool, and a hash of all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateSource {
    /// The history table's DDL, created before the first migration.
    pub(crate) history: Option<&'static str>,
    pub(crate) scripts: Vec<Migration>,
    pub(crate) hash: u64,
}

impl TemplateSource {
    /// The server's empty template: no schema.
    pub(crate) fn empty() -> TemplateSource {
        TemplateSource { history: None, scripts: Vec::new(), hash: FNV_OFFSET }
    }

    /// The source for `schema`: none means the server's empty template.
    /// Read once per process: the run's start reads each schema its tests
    /// ask for, and every room after takes that reading (the same scripts,
    /// not a second reading that a file changed since could make another
    /// template). A schema that cannot be read is read again by each asker,
    /// whose error names it.
    pub(crate) fn for_schema(schema: Option<&Schema>) -> Result<TemplateSource, Error> {
        static READ: Mutex<Vec<(Schema, TemplateSource)>> = Mutex::new(Vec::new());
        let Some(schema) = schema else { return Ok(TemplateSource::empty()) };
        let read = || READ.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, source)) = read().iter().find(|(s, _)| s.same_as(schema)) {
            return Ok(source.clone());
        }
        let source = TemplateSource::read(schema)?;
        let mut read = read();
        match read.iter().find(|(s, _)| s.same_as(schema)) {
            Some((_, first)) => Ok(first.clone()),
            None => {
                read.push((schema.clone(), source.clone()));
                Ok(source)
            }
        }
    }

    /// Reads the migrations directory, as its tool lays it out, and the init
    /// file. Errors name who asked, the path and what to do.
    pub(crate) fn read(schema: &Schema) -> Result<TemplateSource, Error> {
        let mut scripts = Vec::new();
        let mut history = None;
        let mut hash = FNV_OFFSET;
        if let Some(dir) = &schema.migrations {
            let (tool, migrations) = migrations::read(dir, schema.tool).map_err(|reason| Error::Configuration {
                key: format!("postgres migrations of {}", schema.by),
                reason: format!("{reason}; {}: fix the path, or create the directory", schema.relative_to),
            })?;
            history = migrations::history_table(tool);
            // The tool and how cleanroom writes its history: a template
            // that the volume cache kept from a cleanroom that wrote another
            // history is not this one.
            hash = fnv1a(tool.name().as_bytes(), hash);
            hash = fnv1a(&[0, migrations::HISTORY_FORMAT], hash);
            hash = fnv1a(&[0], hash);
            scripts = migrations;
        }
        if let Some(file) = &schema.init {
            let sql = std::fs::read_to_string(file).map_err(|e| Error::Configuration {
                key: format!("postgres init of {}", schema.by),
                reason: format!("cannot read {}: {e}; {}: fix the path", file.display(), schema.relative_to),
            })?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            scripts.push(Migration::plain(file.clone(), name, sql));
        }
        for script in &scripts {
            hash = fnv1a(script.key.as_bytes(), hash);
            hash = fnv1a(&[0], hash);
            hash = fnv1a(script.sql.as_bytes(), hash);
            hash = fnv1a(&[0], hash);
        }
        Ok(TemplateSource { history, scripts, hash })
    }

    /// The template database's name: the contents decide it, so changed
    /// files make a new template.
    pub(crate) fn database_name(&self) -> String {
        format!("cleanroom_tpl_{:016x}", self.hash)
    }
}

/// What the selected tests of this process need of Postgres, worked out
/// once from libtest's arguments, before any server starts: the templates,
/// each with how many tests clone it, and the tests whose schema cannot be
/// had (a path from `cleanroom.toml` that does not exist, two different
/// demands), each with the message it fails with.
#[derive(Debug, Default)]
pub(crate) struct RunStart {
    pub(crate) templates: Vec<(TemplateSource, usize)>,
    /// `(test, message)`, in registration order.
    pub(crate) refused: Vec<(String, String)>,
}

impl RunStart {
    /// This process's, from its command line: computed by the first to ask
    /// (process start, or a test), the same for all. What cannot work is
    /// said then, once, before any test fails with it.
    pub(crate) fn get() -> &'static RunStart {
        static RUN_START: OnceLock<RunStart> = OnceLock::new();
        RUN_START.get_or_init(|| {
            let run_start = RunStart::of(crate::selection::selected_tests());
            // Said on the process's stderr, past libtest's capture: a test
            // thread may ask first, before cleanroom's start thread does.
            for refusal in run_start.report() {
                crate::util::say!("{refusal}");
            }
            run_start
        })
    }

    fn of(selected: &[&'static TestDesc]) -> RunStart {
        let mut out = RunStart::default();
        for test in selected {
            if !test.services().iter().any(|s| s.name == "postgres") {
                continue;
            }
            let source = super::demand(test, "postgres").and_then(|demand| match demand {
                Demand::Shared => Ok(None),
                Demand::Room(schema) => TemplateSource::for_schema(schema.as_ref()).map(Some),
            });
            match source {
                Ok(Some(source)) => match out.templates.iter_mut().find(|(s, _)| s.hash == source.hash) {
                    Some((_, count)) => *count += 1,
                    None => out.templates.push((source, 1)),
                },
                Ok(None) => {}
                Err(e) => out.refused.push((test.test_name(), e.to_string())),
            }
        }
        out
    }

    /// Why `test` cannot have its Postgres room, if it cannot.
    pub(crate) fn refusal(&self, test: &str) -> Option<&str> {
        self.refused.iter().find(|(t, _)| t == test).map(|(_, message)| message.as_str())
    }

    /// The refusals as the run's start reports them: each message once,
    /// with the tests it fails.
    fn report(&self) -> Vec<String> {
        let mut messages: Vec<(&str, Vec<&str>)> = Vec::new();
        for (test, message) in &self.refused {
            match messages.iter_mut().find(|(m, _)| m == message) {
                Some((_, tests)) => tests.push(test),
                None => messages.push((message, vec![test])),
            }
        }
        messages
            .into_iter()
            .map(|(message, tests)| {
                format!(
                    "cleanroom: {message}\n  found at the run's start: {} fail with it, and no server starts for them: {}",
                    if tests.len() == 1 { "this test" } else { "these tests" },
                    tests.join(", ")
                )
            })
            .collect()
    }
}

/// How cleanroom logs in to a server as its superuser: a process's own
/// connections, and the run's keeper's (the process hands it over).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Login {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) database: String,
}

impl Login {
    pub(super) fn config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.database)
            .application_name(application_name);
        config
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The clone strategy, measured faster for this workload: on the tmpfs data
/// directory FILE_COPY took 16 ms a clone against WAL_LOG's 31 ms
/// (docs/isolation.md has the numbers).
const CLONE_STRATEGY: &str = "FILE_COPY";

/// Postgres rooms of one running server.
/// A template built once per server, shared by the tests that wait for it.
type TemplateCell = Arc<OnceCell<Result<Arc<Template>, Error>>>;

pub(crate) struct PgRooms {
    service: Arc<RunningService>,
    templates: Mutex<HashMap<u64, TemplateCell>>,
    /// Databases cloned for tests that did not take them yet, per template.
    pool_target: usize,
    /// Whether `CREATE DATABASE … STRATEGY` is understood (Postgres 15+).
    strategy: OnceCell<bool>,
    /// Connections kept open to the main database: logging in costs a
    /// password exchange (slow in debug builds), and a room must not.
    /// [`CLONES`] makes databases, [`ADMIN`] builds templates and drops.
    conns: [tokio::sync::Mutex<Option<tokio_postgres::Client>>; 2],
    /// Clones being made for the run's pool right now.
    run_pool_making: AtomicUsize,
    /// Drops of databases that passed tests of other processes left
    /// ([`run_pool::retire`]) under way right now.
    retired_dropping: AtomicUsize,
    /// The server's directory of the run's pool ([`run_pool::server_dir`]).
    pool_dir: std::path::PathBuf,
    /// Databases whose drop this process has on its way: its passed
    /// tests', and those it took from the run's ([`run_pool::take_retired`]).
    dropping: Mutex<Vec<String>>,
    /// Databases the server may hold, or may yet make, though nobody else
    /// knows of them: those whose `CREATE DATABASE` this process sent and
    /// whose answer has not come (or whose comment failed after it was
    /// made), and those it took from the run's as perhaps still in the
    /// making ([`run_pool::Retired::unfinished`]) and has not dropped.
    cloning: Mutex<Vec<String>>,
}

const CLONES: usize = 0;
const ADMIN: usize = 1;

pub(crate) struct Template {
    name: String,
    ready: Mutex<VecDeque<String>>,
    /// How many tests of this process will ask for a clone (`usize::MAX`:
    /// not known), so that the pool does not clone for tests that will not come.
    expected: AtomicUsize,
    /// Clones handed out so far.
    leased: AtomicUsize,
    /// Clones being made right now.
    making: AtomicUsize,
    /// Tests waiting for a clone.
    waiting: AtomicUsize,
    available: Notify,
}

impl std::fmt::Debug for PgRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRooms").field("service", &self.service.name).finish()
    }
}

static PG_ROOMS: Mutex<Vec<&'static PgRooms>> = Mutex::new(Vec::new());

/// The rooms of this Postgres server (one per container, for the life of
/// the process: its background tasks refer to it).
pub(crate) fn pg_rooms(service: &Arc<RunningService>) -> Result<&'static PgRooms, Error> {
    let mut all = PG_ROOMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = all.iter().find(|r| r.service.id == service.id) {
        return Ok(r);
    }
    let rooms: &'static PgRooms = Box::leak(Box::new(PgRooms {
        service: service.clone(),
        templates: Mutex::new(HashMap::new()),
        pool_target: pool_size()?,
        strategy: OnceCell::new(),
        conns: [tokio::sync::Mutex::new(None), tokio::sync::Mutex::new(None)],
        run_pool_making: AtomicUsize::new(0),
        retired_dropping: AtomicUsize::new(0),
        dropping: Mutex::new(Vec::new()),
        cloning: Mutex::new(Vec::new()),
        pool_dir: run_pool::server_dir(&service.id, service.existing.as_ref().map(|e| e.claim.session.as_str())),
    }));
    all.push(rooms);
    Ok(rooms)
}

impl PgRooms {
    fn error(&self, what: &str, reason: impl std::fmt::Display) -> Error {
        Error::Operation { service: self.service.name.clone(), operation: what.to_string(), reason: reason.to_string() }
    }

    /// A new connection to `database` as the superuser.
    async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, Error> {
        let application_name = match self.claim() {
            // The run's end waits for what its connections still run.
            Some(claim) => crate::external::postgres::application_name(claim),
            None => "cleanroom".to_string(),
        };
        let config = self.login(database)?.config(&application_name);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| self.error("connect", e))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// How to log in to `database` on the server as its superuser.
    fn login(&self, database: &str) -> Result<Login, Error> {
        let s = &self.service;
        Ok(Login {
            host: s.host().to_string(),
            port: *s.ports.get(&5432).ok_or_else(|| self.error("connect", "port 5432 is not published"))?,
            user: s.env("POSTGRES_USER").unwrap_or("postgres").to_string(),
            password: s.env("POSTGRES_PASSWORD").unwrap_or("").to_string(),
            database: database.to_string(),
        })
    }

    /// One of the kept connections, (re)connected if needed; held until the
    /// guard is dropped.
    async fn kept(&self, which: usize) -> Result<tokio::sync::MappedMutexGuard<'_, tokio_postgres::Client>, Error> {
        let mut guard = self.conns[which].lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.connect(self.main_database()).await?);
        }
        Ok(tokio::sync::MutexGuard::map(guard, |c| c.as_mut().expect("connected above")))
    }

    /// The claim of this run on an existing server: what marks each
    /// database made there (`None` on a server cleanroom runs itself, which
    /// goes with everything on it).
    fn claim(&self) -> Option<&crate::external::Claim> {
        self.service.existing.as_ref().map(|e| &e.claim)
    }

    /// Marks `name` as this run's on an existing server.
    async fn mark(&self, admin: &tokio_postgres::Client, name: &str) -> Result<(), Error> {
        match self.claim() {
            Some(claim) => {
                crate::external::postgres::mark(admin, name, claim).await.map_err(|e| self.error("mark database", e))
            }
            None => Ok(()),
        }
    }

    /// The template's name on this server: by its contents, and on an
    /// existing server by the run too (each run drops its own at its end,
    /// so two runs must not share one).
    fn template_name(&self, source: &TemplateSource) -> String {
        match self.claim() {
            Some(claim) => format!("{}_{}", source.database_name(), crate::external::postgres::run_tag(claim)),
            None => source.database_name(),
        }
    }

    /// How long the server stays after the run when it is one that
    /// `CLEANROOM_REUSE` keeps (the TTL); `None` when it goes with the run.
    fn kept_for(&self) -> Option<Duration> {
        let engine = self.service.engine.kind();
        let config = crate::config::current().ok()?;
        let reused =
            engine == crate::engine::EngineKind::Docker && config.reuse && crate::util::flags::shares_services();
        reused.then_some(config.reuse_ttl)
    }

    pub(crate) fn main_database(&self) -> &str {
        self.service.env("POSTGRES_DB").or(self.service.env("POSTGRES_USER")).unwrap_or("postgres")
    }

    /// The template for `source`, built once per server: the first process
    /// to ask builds it under an advisory lock, the others find it.
    async fn template(&'static self, source: &TemplateSource) -> Result<Arc<Template>, Error> {
        let cell = self.templates.lock().unwrap_or_else(|e| e.into_inner()).entry(source.hash).or_default().clone();
        let built_here = std::sync::atomic::AtomicBool::new(false);
        let template = cell
            .get_or_init(|| async {
                let (name, built) = self.build_template(source).await?;
                built_here.store(built, Ordering::SeqCst);
                Ok(Arc::new(Template {
                    name,
                    ready: Mutex::new(VecDeque::new()),
                    expected: AtomicUsize::new(usize::MAX),
                    leased: AtomicUsize::new(0),
                    making: AtomicUsize::new(0),
                    waiting: AtomicUsize::new(0),
                    available: Notify::new(),
                }))
            })
            .await
            .clone();
        if built_here.load(Ordering::SeqCst) {
            crate::metrics::cache_miss("postgres_template");
        } else {
            crate::metrics::cache_hit("postgres_template");
        }
        template
    }

    /// The template's name, and whether this call ran the migrations (not:
    /// another process of the run, or the run whose cluster the volume cache
    /// holds, had made it already).
    async fn build_template(&self, source: &TemplateSource) -> Result<(String, bool), Error> {
        let name = self.template_name(source);
        // Another process of the run built or found it: a template stays for
        // the server's life, so no login to look it up.
        let shared = self.run_owns_pool();
        if shared && run_pool::template_seen(&self.pool_dir, &name) {
            return Ok((name, false));
        }
        let admin = self.kept(ADMIN).await?;
        let lock = source.hash as i64;
        admin.execute("SELECT pg_advisory_lock($1)", &[&lock]).await.map_err(|e| self.error("template lock", e))?;
        let result = async {
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .map_err(|e| self.error("template lookup", e))?
                .is_some();
            if exists {
                return Ok(false);
            }
            if let Some(failure) = self.failed_before(&admin, &name).await? {
                return Err(failure);
            }
            // Built under a temporary name and renamed, so that a build that
            // dies half-way never looks like a finished template.
            let building = format!("{name}_build");
            admin.batch_execute(&drop_statement(&building)).await.map_err(|e| self.error("template cleanup", e))?;
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&building)))
                .await
                .map_err(|e| self.error("template create", e))?;
            self.mark(&admin, &building).await?;
            if let Err(failure) = self.migrate(&building, source).await {
                if matches!(failure, Error::Configuration { .. }) {
                    self.record_failure(&admin, &name, &failure).await;
                }
                return Err(failure);
            }
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} WITH IS_TEMPLATE true",
                    quote_ident(&building),
                    quote_ident(&name),
                    quote_ident(&name)
                ))
                .await
                .map_err(|e| self.error("template rename", e))?;
            // The next cold start finds the migrations applied. Under the
            // lock, before any test is cloned from the new template.
            if !source.scripts.is_empty() {
                crate::cache::refill(&self.service).await;
            }
            Ok(true)
        }
        .await;
        let _ = admin.execute("SELECT pg_advisory_unlock($1)", &[&lock]).await;
        if shared && result.is_ok() {
            run_pool::template_known(&self.pool_dir, &name);
        }
        result.map(|built| (name, built))
    }

    /// Runs the history table's DDL and the migrations into `database`.
    /// A migration's failure names the file, the line and the server's words.
    async fn migrate(&self, database: &str, source: &TemplateSource) -> Result<(), Error> {
        let db = self.connect(database).await?;
        if let Some(ddl) = source.history {
            db.batch_execute(ddl).await.map_err(|e| self.error("migration history table", e))?;
        }
        for script in &source.scripts {
            let Err(e) = script.apply(&db).await else { continue };
            let Some(db_error) = e.as_db_error() else {
                return Err(self.error(&format!("migration {}", script.file.display()), e));
            };
            // An error of running (a duplicate key, a failing CHECK, one in
            // a function's body) has no position in the file: find the
            // statement by running them one by one.
            let line = match db_error.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(_)) => None,
                _ => migrations::failing_line(&db, &script.sql, db_error).await,
            };
            return Err(Error::Configuration {
                key: format!("postgres migration {}", script.file.display()),
                reason: format!("{}; fix the SQL", migration_failure(db_error, &script.sql, line)),
            });
        }
        Ok(())
    }

    /// The failure another process of this run met building the template
    /// `name` on this server: every test that needs it fails at once with
    /// it, instead of each building it again. A mark left by another
    /// container (a cluster the volume cache restored) is dropped.
    async fn failed_before(&self, admin: &tokio_postgres::Client, name: &str) -> Result<Option<Error>, Error> {
        let mark = format!("{name}_failed");
        let row = admin
            .query_opt("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", &[&mark])
            .await
            .map_err(|e| self.error("template lookup", e))?;
        let Some(row) = row else { return Ok(None) };
        let comment: String = row.get::<_, Option<String>>(0).unwrap_or_default();
        let mut parts = comment.splitn(3, '\n');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(container), Some(key), Some(reason)) if container == self.service.id => {
                let reason = format!(
                    "{reason} (another process of this run met this building the template; every test that \
                     needs it fails with it)"
                );
                Ok(Some(Error::Configuration { key: key.to_string(), reason }))
            }
            _ => {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&mark))).await;
                Ok(None)
            }
        }
    }

    /// Marks the template `name` as failed on this server, with `failure`.
    async fn record_failure(&self, admin: &tokio_postgres::Client, name: &str, failure: &Error) {
        let Error::Configuration { key, reason } = failure else { return };
        // On an existing server every database cleanroom makes carries its
        // mark as its comment: each process meets the failure itself.
        if self.claim().is_some() {
            return;
        }
        let mark = quote_ident(&format!("{name}_failed"));
        let comment = format!("{}\n{key}\n{reason}", self.service.id).replace('\'', "''");
        // One statement each: CREATE DATABASE refuses a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {mark}"),
            format!("CREATE DATABASE {mark}"),
            format!("COMMENT ON DATABASE {mark} IS '{comment}'"),
        ] {
            if admin.batch_execute(&sql).await.is_err() {
                return;
            }
        }
    }

    /// Clones `template`, and puts the clone where it goes with `place`
    /// (this process's pool, the run's), which runs unless the process's
    /// exit has meanwhile handed the clone to the run as still in the
    /// making ([`release_pooled`]): a clone is in one place only, or a
    /// process could drop a database another's test has.
    async fn clone_database<T>(
        &self,
        admin: &tokio_postgres::Client,
        template: &str,
        place: impl FnOnce(&str) -> T,
    ) -> Result<(String, T), Error> {
        let strategy = *self.strategy.get_or_init(|| takes_strategy(admin)).await;
        // On an existing server the name carries the run's tag: a clone
        // whose comment never got written is still known as the run's.
        let name = match self.claim() {
            Some(claim) => {
                let tag = crate::external::postgres::run_tag(claim);
                format!("cleanroom_{tag}{}", room_name().trim_start_matches("cleanroom_t"))
            }
            None => room_name(),
        };
        let sql = clone_statement(&name, template, strategy);
        self.cloning.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        if let Err(e) = admin.batch_execute(&sql).await {
            // Refused by the server: it made nothing. A lost connection
            // leaves it unknown, and the name stays for the exit to hand on.
            if e.as_db_error().is_some() {
                self.cloning.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| *n != name);
            }
            return Err(self.error("create database", e));
        }
        self.mark(admin, &name).await?;
        // Placed under the lock the exit takes the list with.
        let mut cloning = self.cloning.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = cloning.iter().position(|n| *n == name) else {
            return Err(self.error("create database", "the process is ending: the clone went to the run"));
        };
        cloning.remove(at);
        let placed = place(&name);
        Ok((name, placed))
    }

    /// Keeps the pool of `template` filled, one clone at a time.
    fn refill(&'static self, template: Arc<Template>) {
        // The process is ending: no clone it would leave half-made.
        if crate::util::flags::shutting_down() {
            return;
        }
        let ahead = match template.expected.load(Ordering::SeqCst) {
            usize::MAX => self.pool_target,
            expected => self.pool_target.min(expected.saturating_sub(template.leased.load(Ordering::SeqCst))),
        };
        let want = ahead.max(template.waiting.load(Ordering::SeqCst));
        let have =
            template.ready.lock().unwrap_or_else(|e| e.into_inner()).len() + template.making.load(Ordering::SeqCst);
        if have >= want || template.making.load(Ordering::SeqCst) >= 2 {
            return;
        }
        template.making.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let made = async {
                let admin = self.kept(CLONES).await?;
                self.clone_database(&admin, &template.name, |name| {
                    template.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(name.to_string())
                })
                .await
            }
            .await;
            template.making.fetch_sub(1, Ordering::SeqCst);
            match made {
                Ok(_) => {
                    template.available.notify_one();
                    self.refill(template);
                }
                Err(e) if !crate::util::flags::shutting_down() => eprintln!("cleanroom: {e}"),
                Err(_) => {}
            }
        });
    }

    /// A database cloned ahead from the template of `source`, taken on the
    /// calling thread when the template is built and the pool has one.
    /// `ahead`: a try ahead of the test (`harness::ahead`), which tries
    /// again itself if this finds nothing: then it neither counts a miss of
    /// the run's pool nor asks for more.
    pub(crate) fn take_ready(&'static self, source: &TemplateSource, ahead: bool) -> Option<String> {
        let own = self.take_own(source);
        let from_run_pool = own.is_none() && self.shares_pool();
        let name = match own {
            Some(name) => Some(name),
            None if from_run_pool => run_pool::take(&self.pool_dir, &source.database_name()),
            None => None,
        };
        if from_run_pool {
            if name.is_some() {
                crate::metrics::cache_hit("postgres_run_pool");
            } else if !ahead {
                crate::metrics::cache_miss("postgres_run_pool");
            }
        }
        if name.is_none() && ahead {
            return None;
        }
        // The run's reaper keeps the run's pool: it tops it up and drops
        // what was left to drop, with no login of this process's. Told in
        // the background, off the test's way (the first test's body begins
        // before: `util::background::defer_build`); a keeper that cannot be
        // told leaves it to this process, as without one.
        let kept = self.keeper();
        if kept {
            let source = source.clone();
            crate::util::background::spawn_background(async move {
                if !self.poke_keeper(&source.database_name()) {
                    self.drop_retired();
                    self.top_up(source);
                }
            });
        } else {
            // Whichever pool serves the test, what ended processes left to
            // drop goes now: a process served by its own pool would
            // otherwise leave it to the next, and the last to the run's end.
            self.drop_retired();
            if from_run_pool {
                self.top_up(source.clone());
            }
        }
        name
    }

    /// Drops, in the background, the databases that passed tests of
    /// processes that ended before their drop was sent left for this one
    /// ([`run_pool::retire`]), on the connection that clones: a nextest
    /// process does it while its test runs, and waits for it at exit as it
    /// waits for its clone. What it took joins this process's own drops
    /// until each is done, so that a drop it could not finish (the wait at
    /// exit ran out, the login failed) is handed on again at exit, not
    /// lost. On an existing server the run's end drops them.
    fn drop_retired(&'static self) {
        if !self.run_owns_pool() {
            return;
        }
        self.retired_dropping.fetch_add(1, Ordering::SeqCst);
        crate::util::background::spawn_background(async move {
            let retired = run_pool::take_retired(&self.pool_dir);
            // Until each is done, this process's exit hands it on again as
            // it came: a dropped database, or one perhaps still in the making.
            let list = |r: &run_pool::Retired| if r.unfinished { &self.cloning } else { &self.dropping };
            for r in &retired {
                list(r).lock().unwrap_or_else(|e| e.into_inner()).push(r.name.clone());
            }
            if !retired.is_empty() {
                if let Ok(clones) = self.kept(CLONES).await {
                    let making = still_made(&clones, &retired).await;
                    for r in &retired {
                        let done = if making.contains(&r.name) {
                            // A drop now would find nothing: hand it on.
                            run_pool::retire_unfinished(&self.pool_dir, &r.name).is_ok()
                        } else {
                            self.count_and_drop(&clones, &r.name).await.is_ok()
                        };
                        if done {
                            list(r).lock().unwrap_or_else(|e| e.into_inner()).retain(|d| *d != r.name);
                        }
                    }
                }
            }
            self.retired_dropping.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Whether this process reads the server's counters for the report's
    /// throughput (the process that made the server, or one that lived long
    /// enough for its monitor): it drops its tests' databases itself, and
    /// adds what they counted to its readings.
    fn counts_throughput(&self) -> bool {
        crate::metrics::service(&self.service.name, |m| m.performance.first.is_some())
    }

    /// Whether this process hands the run's pool to its reaper, which keeps
    /// it ([`super::keeper`]): on a server the run owns, when the reaper
    /// says it does.
    fn keeper(&self) -> bool {
        self.run_owns_pool() && crate::util::flags::has_pool_keeper()
    }

    /// Asks the keeper to top the run's pool of `template` up and drop what
    /// was left to drop; `false` when it could not be told.
    fn poke_keeper(&self, template: &str) -> bool {
        let Ok(login) = self.login(self.main_database()) else { return false };
        let poke = super::keeper::Poke { pool: self.pool_dir.clone(), template: template.to_string(), login };
        serde_json::to_string(&poke).is_ok_and(|line| crate::util::flags::tell_pool_keeper(&line))
    }

    /// Whether this server's clones are shared with other processes.
    fn shares_pool(&self) -> bool {
        crate::util::flags::shares_services()
    }

    /// Whether the server is shared and the run's own (not an existing
    /// server, where each process drops what it made and the run's end the
    /// rest): its processes leave drops to each other and know its templates.
    fn run_owns_pool(&self) -> bool {
        self.shares_pool() && self.claim().is_none()
    }

    /// On a server the run shares, hands `names` to the run's pool to be
    /// dropped by the next process that clones (or the run's end), and
    /// returns `None`; elsewhere returns them, for this process to drop.
    fn leave_to_the_run(&self, names: Vec<String>) -> Option<Vec<String>> {
        if !self.run_owns_pool() {
            return Some(names);
        }
        for name in names {
            let _ = run_pool::retire(&self.pool_dir, &name);
        }
        None
    }

    /// Clones one database for the run's pool in the background, unless it
    /// is full or a clone for it is on its way.
    fn top_up(&'static self, source: TemplateSource) {
        if !self.shares_pool() || self.pool_target == 0 {
            return;
        }
        if run_pool::len(&self.pool_dir, &source.database_name()) + self.run_pool_making.load(Ordering::SeqCst)
            >= run_pool::TARGET
        {
            return;
        }
        if self.run_pool_making.fetch_add(1, Ordering::SeqCst) > 0 {
            self.run_pool_making.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        crate::util::background::spawn_background(async move {
            let made = async {
                let template = self.template(&source).await?;
                let admin = self.kept(CLONES).await?;
                let offer = |name: &str| run_pool::offer(&self.pool_dir, &template.name, name).is_ok();
                let (name, offered) = self.clone_database(&admin, &template.name, offer).await?;
                Ok::<_, Error>((template.name.clone(), name, offered))
            }
            .await;
            if let Ok((template, name, offered)) = made {
                if !offered {
                    let _ = self.drop_database(&name).await;
                }
                // Processes topping up at the same moment can overshoot the
                // target by one each: give back what is over.
                while run_pool::len(&self.pool_dir, &template) > run_pool::TARGET {
                    match run_pool::take(&self.pool_dir, &template) {
                        Some(extra) => {
                            let _ = self.drop_database(&extra).await;
                        }
                        None => break,
                    }
                }
            }
            self.run_pool_making.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// A database from this process's own pool.
    fn take_own(&'static self, source: &TemplateSource) -> Option<String> {
        let cell = self.templates.lock().unwrap_or_else(|e| e.into_inner()).get(&source.hash).cloned()?;
        let template = cell.get()?.as_ref().ok()?.clone();
        let name = template.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front()?;
        crate::metrics::cache_hit("postgres_pool");
        template.leased.fetch_add(1, Ordering::SeqCst);
        crate::util::background::spawn_background(async move { self.refill(template) });
        Some(name)
    }

    /// A fresh database cloned from the template of `source`.
    pub(crate) async fn lease(&'static self, source: TemplateSource) -> Result<String, Error> {
        let template = self.template(&source).await?;
        if self.pool_target == 0 {
            let admin = self.kept(CLONES).await?;
            return self.clone_database(&admin, &template.name, |_| ()).await.map(|(name, ())| name);
        }
        template.waiting.fetch_add(1, Ordering::SeqCst);
        let mut waited = false;
        let name = loop {
            let notified = template.available.notified();
            if let Some(name) = template.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                if waited {
                    crate::metrics::cache_miss("postgres_pool");
                } else {
                    crate::metrics::cache_hit("postgres_pool");
                }
                break name;
            }
            waited = true;
            self.refill(template.clone());
            // A notification can be missed only if a clone finished between
            // the check and here; the timeout looks again.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        };
        template.waiting.fetch_sub(1, Ordering::SeqCst);
        template.leased.fetch_add(1, Ordering::SeqCst);
        self.refill(template);
        // The run's pool was empty: the next process should not wait too.
        if !(self.keeper() && self.poke_keeper(&source.database_name())) {
            self.top_up(source);
        }
        Ok(name)
    }

    /// Builds the template of `source` and starts filling its pool, ahead of
    /// the tests that will ask for it.
    pub(crate) async fn warm(&'static self, source: TemplateSource, expected: usize) {
        // Log the clone connection in while the template is looked up:
        // each login is a password exchange.
        let (template, _) = tokio::join!(self.template(&source), async {
            // (With a keeper the process may never clone: it logs in when it does.)
            if self.pool_target > 0 && !self.keeper() {
                let _ = self.kept(CLONES).await;
            }
        });
        if let Ok(template) = template {
            template.expected.store(expected, Ordering::SeqCst);
            // What the run's pool holds serves this process's tests
            // first; cloning for them too would only compete with them.
            let run_pool_has = self.shares_pool() && run_pool::len(&self.pool_dir, &template.name) >= expected;
            if self.pool_target > 0 && !run_pool_has {
                self.refill(template);
            }
        }
    }

    /// Drops a test's database: on a server the run shares, on the
    /// connection that clones (under nextest a process runs one test, and a
    /// second login for its drop would cost more than the wait behind a
    /// clone); elsewhere on the one that builds templates and drops, so that
    /// drops do not queue behind the clones ahead of a long process's tests.
    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), Error> {
        let which = if self.run_owns_pool() { CLONES } else { ADMIN };
        let client = self.kept(which).await?;
        self.count_and_drop(&client, name).await
    }

    /// Drops database `name` over `client`. Its row leaves pg_stat_database
    /// with it: what it counted goes to the report's throughput first.
    async fn count_and_drop(&self, client: &tokio_postgres::Client, name: &str) -> Result<(), Error> {
        let counted = format!("{} WHERE datname = $1", crate::health::perf::COUNTERS_SQL);
        if let Ok(row) = client.query_one(&counted, &[&name]).await {
            let (operations, rows): (i64, i64) = (row.get(0), row.get(1));
            let service = &self.service.name;
            crate::metrics::service(service, |m| m.performance.retire(operations as u64, rows as u64));
        }
        client.batch_execute(&drop_statement(name)).await.map_err(|e| self.error("drop database", e))
    }
}

/// Hands the databases this process cloned ahead of demand and never
/// handed out to the run's pool, up to its target, and drops the rest: the
/// server outlives the process (other processes of the run still use it).
/// Clones for the run's pool still on their way are waited for, briefly.
pub(super) async fn release_pooled() {
    let all: Vec<&'static PgRooms> = PG_ROOMS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for rooms in all {
        let deadline = std::time::Instant::now() + RUN_POOL_WAIT;
        let busy = || rooms.run_pool_making.load(Ordering::SeqCst) + rooms.retired_dropping.load(Ordering::SeqCst);
        while busy() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The drops of this process's passed tests still on their way are
        // left for the next process that clones (or the run's end) on a
        // server the run shares; elsewhere they go on as they are.
        let dropping: Vec<String> = std::mem::take(&mut *rooms.dropping.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = rooms.leave_to_the_run(dropping);
        let templates: Vec<Arc<Template>> = {
            let cells: Vec<_> = rooms.templates.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
            cells.iter().filter_map(|c| c.get().and_then(|t| t.as_ref().ok().cloned())).collect()
        };
        // A clone still on its way when the process ends would be made
        // after it, and nobody would know of it: on an existing server the
        // run's cleanup would not see it; on a server the run shares it
        // would sit there until the run's end. Wait for it, so that it goes
        // to the run's pool or is dropped with the rest.
        let making = || templates.iter().map(|t| t.making.load(Ordering::SeqCst)).sum::<usize>();
        let deadline = match (rooms.claim().is_some(), rooms.shares_pool()) {
            (true, _) => Some(std::time::Instant::now() + EXISTING_CLONE_WAIT),
            (false, true) => Some(deadline),
            (false, false) => None,
        };
        if let Some(deadline) = deadline {
            while making() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // A clone whose answer did not come in time: the server may make
        // it after this process is gone. On a server the run shares, the
        // next process drops it once it is made; on an existing server its
        // name carries the run's tag, and the run's end drops it.
        if rooms.run_owns_pool() {
            for name in std::mem::take(&mut *rooms.cloning.lock().unwrap_or_else(|e| e.into_inner())) {
                let _ = run_pool::retire_unfinished(&rooms.pool_dir, &name);
            }
        }
        let mut unused = Vec::new();
        for template in templates {
            for name in template.ready.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect::<Vec<_>>() {
                let offered = rooms.shares_pool()
                    && run_pool::len(&rooms.pool_dir, &template.name) < run_pool::TARGET
                    && run_pool::offer(&rooms.pool_dir, &template.name, &name).is_ok();
                if !offered {
                    unused.push(name);
                }
            }
        }
        if unused.is_empty() {
            continue;
        }
        // On a server the run shares, the next process that clones drops
        // them: no login at this process's exit.
        let Some(unused) = rooms.leave_to_the_run(unused) else { continue };
        if let Ok(admin) = rooms.kept(ADMIN).await {
            for name in unused {
                let _ = admin.batch_execute(&drop_statement(&name)).await;
            }
        }
    }
}

/// Which of the `unfinished` retired databases a session of the server is
/// still creating (a process ended while its `CREATE DATABASE` ran; the
/// server finishes it). All of them when the server cannot say.
pub(super) async fn still_made(client: &tokio_postgres::Client, retired: &[run_pool::Retired]) -> Vec<String> {
    let unfinished: Vec<&str> = retired.iter().filter(|r| r.unfinished).map(|r| r.name.as_str()).collect();
    if unfinished.is_empty() {
        return Vec::new();
    }
    let sql = "SELECT query FROM pg_stat_activity \
               WHERE state <> 'idle' AND pid <> pg_backend_pid() AND query ILIKE 'CREATE DATABASE%'";
    match client.query(sql, &[]).await {
        Ok(rows) => {
            let running: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            unfinished
                .into_iter()
                .filter(|name| running.iter().any(|q| q.contains(&quote_ident(name))))
                .map(str::to_string)
                .collect()
        }
        Err(_) => unfinished.into_iter().map(str::to_string).collect(),
    }
}

/// The statement that clones `template` as `name`; `strategy`: the server
/// takes `STRATEGY` (Postgres 15 on).
pub(super) fn clone_statement(name: &str, template: &str, strategy: bool) -> String {
    if strategy {
        format!("CREATE DATABASE {} TEMPLATE {} STRATEGY {CLONE_STRATEGY}", quote_ident(name), quote_ident(template))
    } else {
        format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(name), quote_ident(template))
    }
}

/// Whether the server behind `client` takes `STRATEGY` in `CREATE DATABASE`.
pub(super) async fn takes_strategy(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map(|r| r.get::<_, i32>(0) >= 150000)
        .unwrap_or(false)
}

/// The statement that drops database `name`, ending its sessions.
pub(super) fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
}

/// How long a process at exit waits for a clone on its way on an existing
/// server (on a busy server a clone takes seconds).
const EXISTING_CLONE_WAIT: Duration = Duration::from_secs(10);

/// How long a process at exit waits for a clone it is making for the run's
/// pool (on a busy server a clone takes seconds; the next process would
/// have to make it again).
const RUN_POOL_WAIT: Duration = Duration::from_secs(10);

/// What the server said about a failed migration: its message, where in the
/// file (line and column, from the statement's position; else the line of
/// the statement that failed, `statement_line`), its detail, hint and
/// context. Not "db error".
fn migration_failure(db: &tokio_postgres::error::DbError, sql: &str, statement_line: Option<usize>) -> String {
    let mut out = format!("it failed: {}: {}", db.severity(), db.message());
    if let Some(tokio_postgres::error::ErrorPosition::Original(position)) = db.position() {
        let (line, column) = line_and_column(sql, *position as usize);
        out.push_str(&format!(" (line {line}, column {column})"));
    } else if let Some(line) = statement_line {
        out.push_str(&format!(" (in the statement on line {line})"));
    }
    if let Some(detail) = db.detail() {
        out.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("; hint: {hint}"));
    }
    if let Some(context) = db.where_() {
        out.push_str(&format!("; where: {}", context.replace('\n', " / ")));
    }
    out
}

/// The 1-based line and column of the `position`th character (1-based, as
/// Postgres counts) of `sql`.
fn line_and_column(sql: &str, position: usize) -> (usize, usize) {
    let before: String = sql.chars().take(position.saturating_sub(1)).collect();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A test's database, cloned from its template.
struct PgRoom {
    rooms: &'static PgRooms,
    database: String,
    /// With the password masked: no message prints it.
    url: String,
    container: String,
    /// The template it was cloned from.
    template: String,
}

/// A database for one test: one cloned ahead if there is one (no hop to
/// cleanroom's runtime), else cloned now.
pub(super) fn open(container: &Container, schema: Option<&Schema>) -> Result<Box<dyn Room>, Error> {
    let rooms = pg_rooms(&container.inner)?;
    let source = TemplateSource::for_schema(schema)?;
    let template = source.database_name();
    let database = match rooms.take_ready(&source, false) {
        Some(database) => database,
        None => crate::util::background::block_on_runtime(rooms.lease(source))?,
    };
    Ok(room(rooms, container, database, template))
}

/// A database cloned ahead, if one is at hand now: no wait for a clone, a
/// login or cleanroom's runtime (`None` then, and [`open`] does the rest).
pub(super) fn open_at_hand(container: &Container, schema: Option<&Schema>) -> Option<Box<dyn Room>> {
    let rooms = pg_rooms(&container.inner).ok()?;
    let source = TemplateSource::for_schema(schema).ok()?;
    let database = rooms.take_ready(&source, true)?;
    Some(room(rooms, container, database, source.database_name()))
}

fn room(rooms: &'static PgRooms, container: &Container, database: String, template: String) -> Box<dyn Room> {
    let url = crate::service::handle::Postgres::new(container.clone(), Some(database.clone())).masked_url();
    Box::new(PgRoom { rooms, database, url, container: container.id().to_string(), template })
}

impl Room for PgRoom {
    fn name(&self) -> RoomName {
        RoomName::Database(self.database.clone())
    }

    /// Back to the run's pool, untouched (nobody logged in to it): the next
    /// process takes it, and nothing is dropped or cloned for it.
    fn unused(self: Box<Self>, test: &str) {
        if self.rooms.shares_pool() && run_pool::offer(&self.rooms.pool_dir, &self.template, &self.database).is_ok() {
            return;
        }
        self.end(test, false, Keep::Never);
    }

    fn end(self: Box<Self>, test: &str, failed: bool, keep: Keep) {
        let PgRoom { rooms, database, url, container, template } = *self;
        if keep.keeps(failed) && rooms.claim().is_some() {
            eprintln!(
                "cleanroom: test `{test}` {}; its database {database} on the existing server lives until the run \
                 ends: psql '{url}' (the password is the one in its URL); to open it after the run, rerun this \
                 test alone:\n{}",
                if failed { "failed" } else { "ended" },
                super::rerun_commands(test),
            );
        } else if let Some(ttl) = keep.keeps(failed).then(|| rooms.kept_for()).flatten() {
            let short = &container[..container.len().min(12)];
            eprintln!(
                "cleanroom: test `{test}` {}; its database {database} stays after the run, on the server \
                 CLEANROOM_REUSE keeps until no run has used it for {} s (or `cargo cleanroom prune --reused`): \
                 psql '{url}' (the password: `docker exec {short} sh -c 'echo \"$POSTGRES_PASSWORD\"'`)",
                if failed { "failed" } else { "ended" },
                ttl.as_secs(),
            );
        } else if keep.keeps(failed) {
            let short = &container[..container.len().min(12)];
            eprintln!(
                "cleanroom: test `{test}` {}; its database {database} lives until the run ends, when its server is \
                 removed: psql '{url}' (the password: `docker exec {short} sh -c 'echo \"$POSTGRES_PASSWORD\"'`); to open \
                 it after the run, rerun this test alone with the server kept:\n{}",
                if failed { "failed" } else { "ended" },
                super::rerun_commands(test),
            );
        } else if rooms.keeper()
            && !rooms.counts_throughput()
            && run_pool::retire(&rooms.pool_dir, &database).is_ok()
            && rooms.poke_keeper(&template)
        {
            // The keeper drops it: no login of this process's for it. (A
            // process that reads the server's counters drops its own, and
            // counts what they did first.)
        } else {
            rooms.dropping.lock().unwrap_or_else(|e| e.into_inner()).push(database.clone());
            crate::util::background::spawn_background(async move {
                if rooms.drop_database(&database).await.is_ok() {
                    rooms.dropping.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| *d != database);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::TemplateSource;
        use crate::catalog::MigrationTool;
        use crate::rooms::migrations::tests::Dir;
        use crate::rooms::schema::Schema;

        #[test]
        fn place_a_position_on_its_line_and_column() {
            use super::super::line_and_column;
            let sql = "CREATE TABLE a (id int);\nCREATE TABEL b ();\n";
            assert_eq!(line_and_column(sql, 1), (1, 1));
            assert_eq!(line_and_column(sql, 26), (2, 1));
            assert_eq!(line_and_column(sql, 33), (2, 8), "the T of TABEL");
        }

        fn schema(migrations: &std::path::Path, tool: Option<MigrationTool>) -> Schema {
            Schema {
                migrations: Some(migrations.to_path_buf()),
                init: None,
                tool,
                by: "the attribute of `t`".into(),
                relative_to: "relative paths start from the crate's directory".into(),
            }
        }

        #[test]
        fn name_templates_by_their_contents_and_tool() {
            let dir = Dir::new(&[
                ("002_b.sql", "CREATE TABLE b ();"),
                ("001_a.sql", "CREATE TABLE a ();"),
                ("notes.txt", "x"),
            ]);
            let first = TemplateSource::read(&schema(dir.path(), None)).unwrap();
            let order: Vec<&str> = first.scripts.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(order, ["001_a.sql", "002_b.sql"]);
            assert_eq!(first, TemplateSource::read(&schema(dir.path(), None)).unwrap(), "reading twice gives the same");
            let as_sqlx = TemplateSource::read(&schema(dir.path(), Some(MigrationTool::Sqlx))).unwrap();
            assert_ne!(first.database_name(), as_sqlx.database_name(), "another tool writes another history");
            assert!(as_sqlx.history.is_some_and(|h| h.contains("_sqlx_migrations")));
            std::fs::write(dir.path().join("002_b.sql"), "CREATE TABLE b (id int);").unwrap();
            let changed = TemplateSource::read(&schema(dir.path(), None)).unwrap();
            assert_ne!(first.database_name(), changed.database_name());
        }

        #[test]
        fn name_who_asked_and_the_path_of_missing_migrations() {
            let err = TemplateSource::read(&schema(std::path::Path::new("/nonexistent/nope"), None)).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("the attribute of `t`") && err.contains("/nonexistent/nope"), "{err}");
        }
    }
}
