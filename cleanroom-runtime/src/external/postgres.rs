//! What cleanroom makes on an existing Postgres server, and how it finds it
//! again: every database it creates there (templates, test databases, a
//! failed template's mark) has a name starting `cleanroom_` and a comment
//! `cleanroom.managed <claim>`; nothing without both is ever dropped.

use std::time::Duration;

use super::{Claim, ServerUrl};

/// How a database cleanroom made is marked: the start of its comment.
pub(crate) const MARK: &str = "cleanroom.managed";
/// The prefix of every database name cleanroom makes.
pub(crate) const NAME_PREFIX: &str = "cleanroom_";

/// How long connecting to an existing server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times the removal of a run's databases looks for stragglers,
/// and how long it waits between looks.
const STRAGGLER_PASSES: usize = 3;
const STRAGGLER_WAIT: Duration = Duration::from_millis(500);

/// The comment that marks a database as made by `claim`'s run.
pub(crate) fn comment(claim: &Claim) -> String {
    format!("{MARK} {}", claim.encode())
}

/// The claim a database's comment holds, if it is cleanroom's mark.
pub(crate) fn claim_of(name: &str, comment: &str) -> Option<Claim> {
    if !name.starts_with(NAME_PREFIX) {
        return None;
    }
    Claim::decode(comment.strip_prefix(MARK)?.strip_prefix(' ')?)
}

/// The tag of `claim`'s run in the names of the databases it makes: a
/// database whose comment never got written (the process was killed
/// between its `CREATE DATABASE` and its `COMMENT`) is still known by it.
pub(crate) fn run_tag(claim: &Claim) -> String {
    let hash = crate::util::paths::short_hash(&format!("{}/{}", claim.session, claim.owner));
    hash[..hash.len().min(8)].to_string()
}

/// The name of `claim`'s run's heartbeat database on an existing server:
/// an empty database whose comment holds the run's claim and its last beat
/// (`… beat=<seconds>`, on the server's clock). It carries the run's tag, so
/// the run's end removes it with the rest.
pub(crate) fn heartbeat_name(claim: &Claim) -> String {
    format!("{NAME_PREFIX}{}_run", run_tag(claim))
}

/// The beat a heartbeat database's comment holds: seconds since the epoch,
/// on the server's clock.
pub(crate) fn beat_of(comment: &str) -> Option<i64> {
    comment.split_whitespace().find_map(|part| part.strip_prefix("beat=")?.parse().ok())
}

/// The `run.remote_idle_ttl` (seconds) the run beats by, from its heartbeat
/// database's comment; 0 when it does not say.
pub(crate) fn ttl_of(comment: &str) -> u64 {
    comment.split_whitespace().find_map(|part| part.strip_prefix("ttl=")?.parse().ok()).unwrap_or(0)
}

/// The server's clock: seconds since the epoch.
pub(crate) async fn server_now(client: &tokio_postgres::Client) -> Result<i64, String> {
    client
        .query_one("SELECT floor(extract(epoch FROM now()))::bigint", &[])
        .await
        .map(|row| row.get::<_, i64>(0))
        .map_err(|e| format!("cannot read the server's clock: {e}"))
}

/// Writes `claim`'s run's heartbeat on the server: makes its heartbeat
/// database if it is missing, and sets its comment to the claim and the
/// server's `now()`, computed by the server (no clock of this machine
/// enters it), and the `ttl` the run beats by (a judge with a shorter one
/// waits that long).
pub(crate) async fn beat(client: &tokio_postgres::Client, claim: &Claim, ttl: Duration) -> Result<(), String> {
    let name = heartbeat_name(claim);
    let ident = quote_ident(&name);
    // Every process of the run makes sure it exists; those that race make it
    // at once, and all but one are told it exists (as `duplicate_database`,
    // or as a unique violation in the catalog when they were simultaneous).
    // `template1` in use by another's copy is a moment's wait.
    let mut tries = 0;
    while let Err(e) = client.batch_execute(&format!("CREATE DATABASE {ident}")).await {
        use tokio_postgres::error::SqlState;
        let code = e.code();
        if code == Some(&SqlState::DUPLICATE_DATABASE) || code == Some(&SqlState::UNIQUE_VIOLATION) {
            break;
        }
        tries += 1;
        if code == Some(&SqlState::OBJECT_IN_USE) && tries < 50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        let said = e.as_db_error().map_or(e.to_string(), |d| d.message().to_string());
        return Err(format!("cannot create the run's heartbeat database {name}: {said}"));
    }
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let sql = format!(
        "DO $cleanroom$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {}, {} || floor(extract(epoch FROM now()))::bigint); END $cleanroom$",
        literal(&name),
        literal(&format!("{} ttl={} beat=", comment(claim), ttl.as_secs())),
    );
    client.batch_execute(&sql).await.map_err(|e| format!("cannot write the run's heartbeat on {name}: {e}"))
}

/// The heartbeats on the server: each run's claim, its last beat and the
/// TTL it beats by ([`ttl_of`]).
pub(crate) async fn heartbeats(client: &tokio_postgres::Client) -> Result<Vec<(Claim, i64, u64)>, String> {
    let rows = client
        .query(
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database \
             WHERE starts_with(datname, $1) AND right(datname, 4) = '_run'",
            &[&NAME_PREFIX],
        )
        .await
        .map_err(|e| format!("cannot list the runs' heartbeats: {e}"))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let (name, comment): (String, String) = (row.get(0), row.get(1));
            let claim = claim_of(&name, &comment)?;
            // Only the run's own heartbeat database counts: a name that is
            // not its claim's is somebody's database, not a beat.
            (heartbeat_name(&claim) == name).then_some(())?;
            Some((claim, beat_of(&comment)?, ttl_of(&comment)))
        })
        .collect())
}

/// The application name of a run's connections to an existing server, by
/// which its end finds statements still running for a process that is gone.
pub(crate) fn application_name(claim: &Claim) -> String {
    format!("cleanroom {}", run_tag(claim))
}

/// Waits (up to 10 s) until no connection of the run tagged `tag` runs
/// anything: a `CREATE DATABASE` a process sent just before it ended
/// finishes on the server after the process is gone.
pub(crate) async fn wait_quiet(client: &tokio_postgres::Client, tag: &str) {
    let name = format!("cleanroom {tag}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let busy = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'",
                &[&name],
            )
            .await
            .map(|row| row.get::<_, i64>(0) > 0)
            .unwrap_or(false);
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `name` is one the run tagged `tag` makes: a test's database
/// (`cleanroom_<tag>_…`) or a template (`cleanroom_tpl_<hash>_<tag>`, and
/// `…_build` while it is built).
pub(crate) fn tagged(name: &str, tag: &str) -> bool {
    name.starts_with(&format!("{NAME_PREFIX}{tag}_"))
        || (name.starts_with("cleanroom_tpl_")
            && (name.ends_with(&format!("_{tag}")) || name.ends_with(&format!("_{tag}_build"))))
}

/// The user a URL connects as: its own, else `postgres`.
pub(crate) fn user(url: &ServerUrl) -> &str {
    url.user.as_deref().unwrap_or("postgres")
}

/// The database a URL connects to: its own, else `postgres`.
pub(crate) fn database(url: &ServerUrl) -> &str {
    url.database.as_deref().unwrap_or("postgres")
}

/// A connection to the server's own database, as the URL's user.
pub(crate) async fn connect(url: &ServerUrl) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&url.host)
        .port(url.port)
        .user(user(url))
        .dbname(database(url))
        .application_name("cleanroom")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(password) = &url.password {
        config.password(password);
    }
    let connecting = config.connect(tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("{} did not answer within {CONNECT_TIMEOUT:?}", url.masked()))?
        .map_err(|e| format!("cannot connect to {}: {e}", url.masked()))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether the URL's user may do what rooms need: create databases. The
/// error names the grant.
pub(crate) async fn check_privileges(client: &tokio_postgres::Client, url: &ServerUrl) -> Result<(), String> {
    let row = client
        .query_one("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .map_err(|e| format!("cannot read the privileges of `{}` on {}: {e}", user(url), url.masked()))?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    Err(format!(
        "the role `{user}` on {} may not create databases, which cleanroom needs for each test's own database; \
         grant it as a superuser: ALTER ROLE \"{user}\" CREATEDB;",
        url.masked(),
        user = user(url),
    ))
}

/// Marks `name` as made by `claim`'s run.
pub(crate) async fn mark(
    client: &tokio_postgres::Client,
    name: &str,
    claim: &Claim,
) -> Result<(), tokio_postgres::Error> {
    let comment = comment(claim).replace('\'', "''");
    client.batch_execute(&format!("COMMENT ON DATABASE {} IS '{comment}'", quote_ident(name))).await
}

/// Every database with cleanroom's prefix, with its claim if it has one.
pub(crate) async fn named(client: &tokio_postgres::Client) -> Result<Vec<(String, Option<Claim>)>, String> {
    let rows = client
        .query(
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database \
             WHERE starts_with(datname, $1)",
            &[&NAME_PREFIX],
        )
        .await
        .map_err(|e| format!("cannot list databases: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let (name, comment): (String, String) = (row.get(0), row.get(1));
            let claim = claim_of(&name, &comment);
            (name, claim)
        })
        .collect())
}

/// Drops the databases cleanroom marked whose claim `doomed` says are to
/// go, and the unmarked ones named with one of `tags` (their run died
/// before it could mark them); returns their names. A template is made an
/// ordinary database first (Postgres refuses to drop a template).
pub(crate) async fn remove_claimed(
    url: &ServerUrl,
    doomed: impl Fn(&Claim) -> bool,
    tags: &[String],
) -> Result<Vec<String>, String> {
    let client = connect(url).await?;
    let mut dropped = Vec::new();
    let mut failed = Vec::new();
    // A statement a gone process sent may still be on its way to the
    // server, or finish after the list is read: look again, briefly, until
    // a look finds nothing more of the run's.
    for pass in 0..STRAGGLER_PASSES {
        if pass > 0 {
            tokio::time::sleep(STRAGGLER_WAIT).await;
        }
        for tag in tags {
            wait_quiet(&client, tag).await;
        }
        let mut found = false;
        for (name, claim) in named(&client).await? {
            let goes = match &claim {
                Some(claim) => doomed(claim),
                None => tags.iter().any(|tag| tagged(&name, tag)),
            };
            if !goes || dropped.contains(&name) {
                continue;
            }
            found = true;
            let ident = quote_ident(&name);
            let _ = client.batch_execute(&format!("ALTER DATABASE {ident} WITH IS_TEMPLATE false")).await;
            match client.batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)")).await {
                Ok(()) => dropped.push(name),
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        if !found || tags.is_empty() {
            break;
        }
    }
    if failed.is_empty() {
        Ok(dropped)
    } else {
        Err(format!("could not drop {} on {}", failed.join("; "), url.masked()))
    }
}

/// An identifier, quoted.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{claim_of, comment};
        use crate::external::Claim;

        #[test]
        fn claim_only_named_and_commented_databases() {
            let claim = Claim { session: "s1".into(), owner: "abc".into(), process: None };
            let text = comment(&claim);
            assert_eq!(text, "cleanroom.managed session=s1 owner=abc");
            assert_eq!(claim_of("cleanroom_t_1_2_3", &text), Some(claim));
            assert_eq!(claim_of("app_db", &text), None, "a name without the prefix is not cleanroom's");
            assert_eq!(claim_of("cleanroom_t_1", "made by hand"), None, "nor is one without the mark");
            assert_eq!(claim_of("cleanroom_t_1", "cleanroom.managedsession=s owner=o"), None);
        }

        #[test]
        fn read_a_runs_beat_and_name_its_heartbeat_database_by_its_tag() {
            use super::super::{beat_of, claim_of, heartbeat_name, run_tag, tagged};
            let claim = Claim { session: "s1".into(), owner: "abc".into(), process: None };
            let text = format!("{} ttl=1800 beat=1700000000", comment(&claim));
            assert_eq!(beat_of(&text), Some(1_700_000_000));
            assert_eq!(super::super::ttl_of(&text), 1800);
            assert_eq!(super::super::ttl_of(&comment(&claim)), 0, "an older run's beat says no TTL");
            assert_eq!(
                claim_of(&heartbeat_name(&claim), &text),
                Some(claim.clone()),
                "the beat does not hide the claim"
            );
            assert_eq!(beat_of(&comment(&claim)), None, "a database without a beat has none");
            assert!(tagged(&heartbeat_name(&claim), &run_tag(&claim)), "the run's end removes it with the rest");
        }

        #[test]
        fn know_a_runs_unmarked_databases_by_its_tag() {
            use super::super::{run_tag, tagged};
            let claim = Claim { session: "s1".into(), owner: "abc".into(), process: None };
            let tag = run_tag(&claim);
            assert_eq!(tag.len(), 8);
            assert_ne!(tag, run_tag(&Claim { session: "s2".into(), ..claim.clone() }));
            assert!(tagged(&format!("cleanroom_{tag}_12_abcdef_0"), &tag));
            assert!(tagged(&format!("cleanroom_tpl_0123456789abcdef_{tag}"), &tag));
            assert!(tagged(&format!("cleanroom_tpl_0123456789abcdef_{tag}_build"), &tag));
            assert!(!tagged("cleanroom_t_12_abcdef_0", &tag), "an untagged name is nobody's");
            assert!(!tagged(&format!("app_{tag}"), &tag));
        }
    }
}
