//! Postgres rooms: schema setup (migrations, init SQL) runs once into a
//! template database; each test gets a clone of it (`CREATE DATABASE …
//! TEMPLATE`), taken from a pool that is refilled in the background (and,
//! under nextest, from the run-wide pool of [`super::run_pool`]). After a test
//! passes its database is dropped off the critical path; after it fails it is
//! kept and the failure output says how to connect to it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};

use super::{room_name, run_pool, Room, RoomName};
use crate::catalog::RoomOptions;
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

/// The schema setup of a template: its SQL, in order, and a hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateSource {
    pub(crate) scripts: Vec<(PathBuf, String)>,
    pub(crate) hash: u64,
}

impl TemplateSource {
    /// The source for `options`: none means the server's empty template.
    pub(crate) fn for_options(options: Option<&RoomOptions>) -> Result<TemplateSource, Error> {
        match options {
            Some(o) => TemplateSource::read(o),
            None => Ok(TemplateSource { scripts: Vec::new(), hash: FNV_OFFSET }),
        }
    }

    /// Reads the migrations directory (`.sql` files in name order) and the
    /// init file. Errors name the path and what to do.
    pub(crate) fn read(options: &RoomOptions) -> Result<TemplateSource, Error> {
        let base = Path::new(options.base_dir);
        let mut scripts = Vec::new();
        if let Some(dir) = options.migrations {
            let path = base.join(dir);
            let entries = std::fs::read_dir(&path).map_err(|e| Error::Configuration {
                key: format!("postgres(migrations = {dir:?})"),
                reason: format!(
                    "cannot read the directory {}: {e}; the path is relative to the crate's Cargo.toml",
                    path.display()
                ),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
                .collect();
            files.sort();
            for file in files {
                let sql = read_sql(&file, &format!("postgres(migrations = {dir:?})"))?;
                scripts.push((file, sql));
            }
        }
        if let Some(init) = options.init {
            let file = base.join(init);
            let sql = read_sql(&file, &format!("postgres(init = {init:?})"))?;
            scripts.push((file, sql));
        }
        let mut hash = FNV_OFFSET;
        for (file, sql) in &scripts {
            hash = fnv1a(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default(), hash);
            hash = fnv1a(&[0], hash);
            hash = fnv1a(sql.as_bytes(), hash);
            hash = fnv1a(&[0], hash);
        }
        Ok(TemplateSource { scripts, hash })
    }

    /// The template database's name: the contents decide it, so changed
    /// files make a new template.
    pub(crate) fn database_name(&self) -> String {
        format!("cleanroom_tpl_{:016x}", self.hash)
    }
}

fn read_sql(file: &Path, key: &str) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|e| Error::Configuration {
        key: key.to_string(),
        reason: format!("cannot read {}: {e}; the path is relative to the crate's Cargo.toml", file.display()),
    })
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
        let s = &self.service;
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(*s.ports.get(&5432).ok_or_else(|| self.error("connect", "port 5432 is not published"))?)
            .user(s.env("POSTGRES_USER").unwrap_or("postgres"))
            .password(s.env("POSTGRES_PASSWORD").unwrap_or(""))
            .dbname(database)
            .application_name("cleanroom");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| self.error("connect", e))?;
        tokio::spawn(connection);
        Ok(client)
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
        let name = source.database_name();
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
            // Built under a temporary name and renamed, so that a build that
            // dies half-way never looks like a finished template.
            let building = format!("{name}_build");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&building)))
                .await
                .map_err(|e| self.error("template cleanup", e))?;
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&building)))
                .await
                .map_err(|e| self.error("template create", e))?;
            {
                let db = self.connect(&building).await?;
                for (file, sql) in &source.scripts {
                    db.batch_execute(sql).await.map_err(|e| Error::Configuration {
                        key: format!("postgres migration {}", file.display()),
                        reason: format!("{}; fix the SQL", migration_failure(&e, sql)),
                    })?;
                }
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
        result.map(|built| (name, built))
    }

    async fn clone_database(&self, admin: &tokio_postgres::Client, template: &str) -> Result<String, Error> {
        let strategy = *self
            .strategy
            .get_or_init(|| async {
                admin
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .map(|r| r.get::<_, i32>(0) >= 150000)
                    .unwrap_or(false)
            })
            .await;
        let name = room_name();
        let sql = if strategy {
            format!(
                "CREATE DATABASE {} TEMPLATE {} STRATEGY {CLONE_STRATEGY}",
                quote_ident(&name),
                quote_ident(template)
            )
        } else {
            format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&name), quote_ident(template))
        };
        admin.batch_execute(&sql).await.map_err(|e| self.error("create database", e))?;
        Ok(name)
    }

    /// Keeps the pool of `template` filled, one clone at a time.
    fn refill(&'static self, template: Arc<Template>) {
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
                self.clone_database(&admin, &template.name).await
            }
            .await;
            template.making.fetch_sub(1, Ordering::SeqCst);
            match made {
                Ok(name) => {
                    template.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(name);
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
    pub(crate) fn take_ready(&'static self, source: &TemplateSource) -> Option<String> {
        let own = self.take_own(source);
        if own.is_some() || !self.shares_pool() {
            return own;
        }
        let name = run_pool::take(&self.service.id, &source.database_name());
        if name.is_some() {
            crate::metrics::cache_hit("postgres_run_pool");
        } else {
            crate::metrics::cache_miss("postgres_run_pool");
        }
        self.top_up(source.clone());
        name
    }

    /// Whether this server's clones are shared with other processes.
    fn shares_pool(&self) -> bool {
        crate::util::flags::shares_services()
    }

    /// Clones one database for the run's pool in the background, unless it
    /// is full or a clone for it is on its way.
    fn top_up(&'static self, source: TemplateSource) {
        if !self.shares_pool() || self.pool_target == 0 {
            return;
        }
        if run_pool::len(&self.service.id, &source.database_name()) + self.run_pool_making.load(Ordering::SeqCst)
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
                self.clone_database(&admin, &template.name).await.map(|name| (template.name.clone(), name))
            }
            .await;
            if let Ok((template, name)) = made {
                if run_pool::offer(&self.service.id, &template, &name).is_err() {
                    let _ = self.drop_database(&name).await;
                }
                // Processes topping up at the same moment can overshoot the
                // target by one each: give back what is over.
                while run_pool::len(&self.service.id, &template) > run_pool::TARGET {
                    match run_pool::take(&self.service.id, &template) {
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

    /// A fresh database cloned from the template of `options`.
    pub(crate) async fn lease(&'static self, options: Option<&RoomOptions>) -> Result<String, Error> {
        let source = match options {
            Some(o) => TemplateSource::read(o)?,
            None => TemplateSource { scripts: Vec::new(), hash: FNV_OFFSET },
        };
        let template = self.template(&source).await?;
        if self.pool_target == 0 {
            let admin = self.kept(CLONES).await?;
            return self.clone_database(&admin, &template.name).await;
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
        self.top_up(source);
        Ok(name)
    }

    /// Builds the template of `options` and starts filling its pool, ahead of
    /// the tests that will ask for it.
    pub(crate) async fn warm(&'static self, options: Option<&RoomOptions>, expected: usize) {
        let source = match options {
            Some(o) => TemplateSource::read(o),
            None => Ok(TemplateSource { scripts: Vec::new(), hash: FNV_OFFSET }),
        };
        if let Ok(source) = source {
            // Log the clone connection in while the template is looked up:
            // each login is a password exchange.
            let (template, _) = tokio::join!(self.template(&source), async {
                if self.pool_target > 0 {
                    let _ = self.kept(CLONES).await;
                }
            });
            if let Ok(template) = template {
                template.expected.store(expected, Ordering::SeqCst);
                // What the run's pool holds serves this process's tests
                // first; cloning for them too would only compete with them.
                let run_pool_has = self.shares_pool() && run_pool::len(&self.service.id, &template.name) >= expected;
                if self.pool_target > 0 && !run_pool_has {
                    self.refill(template);
                }
            }
        }
    }

    /// Drops a test's database.
    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), Error> {
        let admin = self.kept(ADMIN).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
            .await
            .map_err(|e| self.error("drop database", e))
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
        while rooms.run_pool_making.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let templates: Vec<Arc<Template>> = {
            let cells: Vec<_> = rooms.templates.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
            cells.iter().filter_map(|c| c.get().and_then(|t| t.as_ref().ok().cloned())).collect()
        };
        let mut unused = Vec::new();
        for template in templates {
            for name in template.ready.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect::<Vec<_>>() {
                let offered = rooms.shares_pool()
                    && run_pool::len(&rooms.service.id, &template.name) < run_pool::TARGET
                    && run_pool::offer(&rooms.service.id, &template.name, &name).is_ok();
                if !offered {
                    unused.push(name);
                }
            }
        }
        if unused.is_empty() {
            continue;
        }
        if let Ok(admin) = rooms.kept(ADMIN).await {
            for name in unused {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name))).await;
            }
        }
    }
}

/// How long a process at exit waits for a clone it is making for the run's pool.
const RUN_POOL_WAIT: Duration = Duration::from_secs(2);

/// What the server said about a failed migration: its message, where in the
/// file (line and column, from the statement's position), its detail and
/// hint. Not "db error".
fn migration_failure(e: &tokio_postgres::Error, sql: &str) -> String {
    let Some(db) = e.as_db_error() else { return format!("it failed: {e}") };
    let mut out = format!("it failed: {}: {}", db.severity(), db.message());
    if let Some(tokio_postgres::error::ErrorPosition::Original(position)) = db.position() {
        let (line, column) = line_and_column(sql, *position as usize);
        out.push_str(&format!(" (line {line}, column {column})"));
    }
    if let Some(detail) = db.detail() {
        out.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("; hint: {hint}"));
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
}

/// A database for one test: one cloned ahead if there is one (no hop to
/// cleanroom's runtime), else cloned now.
pub(super) fn open(container: &Container, options: Option<&'static RoomOptions>) -> Result<Box<dyn Room>, Error> {
    let rooms = pg_rooms(&container.inner)?;
    let source = TemplateSource::for_options(options)?;
    let database = match rooms.take_ready(&source) {
        Some(database) => database,
        None => crate::util::background::block_on_runtime(rooms.lease(options))?,
    };
    let url = crate::service::handle::Postgres::new(container.clone(), Some(database.clone())).masked_url();
    Ok(Box::new(PgRoom { rooms, database, url, container: container.id().to_string() }))
}

impl Room for PgRoom {
    fn name(&self) -> RoomName {
        RoomName::Database(self.database.clone())
    }

    fn end(self: Box<Self>, test: &str, failed: bool, keep: Keep) {
        let PgRoom { rooms, database, url, container } = *self;
        if keep.keeps(failed) {
            let short = &container[..container.len().min(12)];
            eprintln!(
                "cleanroom: test `{test}` {}; its database {database} is kept until the run ends: psql '{url}' \
                 (the password: `docker exec {short} printenv POSTGRES_PASSWORD`); to open it after the run, \
                 rerun the test with the server kept: CLEANROOM_REUSE=1 cargo test {test}",
                if failed { "failed" } else { "ended" },
            );
        } else {
            crate::util::background::spawn_background(async move {
                let _ = rooms.drop_database(&database).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::TemplateSource;
        use crate::catalog::RoomOptions;

        #[test]
        fn place_a_position_on_its_line_and_column() {
            use super::super::line_and_column;
            let sql = "CREATE TABLE a (id int);\nCREATE TABEL b ();\n";
            assert_eq!(line_and_column(sql, 1), (1, 1));
            assert_eq!(line_and_column(sql, 26), (2, 1));
            assert_eq!(line_and_column(sql, 33), (2, 8), "the T of TABEL");
        }

        #[test]
        fn name_templates_by_their_contents() {
            let dir = std::env::temp_dir().join(format!("cleanroom-tpl-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("m")).unwrap();
            std::fs::write(dir.join("m/002_b.sql"), "CREATE TABLE b ();").unwrap();
            std::fs::write(dir.join("m/001_a.sql"), "CREATE TABLE a ();").unwrap();
            std::fs::write(dir.join("m/notes.txt"), "not sql").unwrap();
            let base: &'static str = Box::leak(dir.to_string_lossy().into_owned().into_boxed_str());
            let options =
                RoomOptions { service: "postgres", shared: false, migrations: Some("m"), init: None, base_dir: base };
            let first = TemplateSource::read(&options).unwrap();
            let order: Vec<_> =
                first.scripts.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            assert_eq!(order, ["001_a.sql", "002_b.sql"]);
            assert_eq!(first, TemplateSource::read(&options).unwrap(), "reading twice gives the same template");
            std::fs::write(dir.join("m/002_b.sql"), "CREATE TABLE b (id int);").unwrap();
            let changed = TemplateSource::read(&options).unwrap();
            assert_ne!(first.database_name(), changed.database_name());
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn name_the_path_of_missing_migrations() {
            let options = RoomOptions {
                service: "postgres",
                shared: false,
                migrations: Some("nope"),
                init: None,
                base_dir: "/nonexistent",
            };
            let err = TemplateSource::read(&options).unwrap_err().to_string();
            assert!(err.contains("postgres(migrations = \"nope\")") && err.contains("/nonexistent/nope"), "{err}");
        }
    }
}
