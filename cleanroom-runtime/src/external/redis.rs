//! The logical databases cleanroom may use on a Redis server, and how it
//! finds again what it left there.
//!
//! Rooms are the databases of a [`DatabaseRange`] but its last, which holds
//! the leases (`cleanroom:lease:<db>`, valued by their holder). On an
//! existing server the range is the one the user allows
//! (`CLEANROOM_REDIS_DATABASES=8-15`) and a lease's holder starts with its
//! run's [`Claim`]: cleanroom flushes only databases of that range, and only
//! when no live run holds them.

use super::resp::{self, Resp};
use super::{Claim, ServerUrl};

/// Logical databases `first..=last`: rooms in `first..last`, leases in `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DatabaseRange {
    pub(crate) first: u32,
    pub(crate) last: u32,
}

impl DatabaseRange {
    /// The range of a server cleanroom runs itself (it has
    /// `databases` of them): database 0 is left to
    /// `shared` tests.
    pub(crate) const fn own(databases: u32) -> DatabaseRange {
        DatabaseRange { first: 1, last: databases - 1 }
    }

    /// `8-15`: at least two databases (one room, one for the leases).
    pub(crate) fn parse(text: &str) -> Result<DatabaseRange, String> {
        let bad = || format!("`{text}` is not a range of logical databases; expected `first-last`, e.g. `8-15`");
        let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        if last <= first {
            return Err(format!(
                "`{text}` holds fewer than two databases; cleanroom needs one for its leases and at least one room, e.g. `8-15`"
            ));
        }
        Ok(DatabaseRange { first, last })
    }

    /// Where the leases live.
    pub(crate) fn leases(self) -> u32 {
        self.last
    }

    /// The databases handed out as rooms.
    pub(crate) fn rooms(self) -> std::ops::Range<u32> {
        self.first..self.last
    }

    /// How the range is written in the configuration.
    pub(crate) fn encode(self) -> String {
        format!("{}-{}", self.first, self.last)
    }
}

/// A lease's holder: the claim of its run (on an existing server), then the
/// process and room that hold it.
pub(crate) fn holder(claim: Option<&Claim>, room: &str) -> String {
    match claim {
        Some(claim) => format!("{} room={}:{room}", claim.encode(), std::process::id()),
        None => format!("{}:{room}", std::process::id()),
    }
}

/// `ARGV`: database, holder (empty: none), the leases' database. Frees and
/// flushes the database if its lease is that holder's (or, with no holder,
/// if it has no lease at all); 1 if that removed anything (a lease or keys).
const FREE_IF_HELD_BY: &str = "redis.call('SELECT', tonumber(ARGV[3])) \
    local held = redis.call('GET', 'cleanroom:lease:' .. ARGV[1]) \
    if ARGV[2] == '' then if held then redis.call('SELECT', 0) return 0 end \
    elseif held ~= ARGV[2] then redis.call('SELECT', 0) return 0 end \
    redis.call('DEL', 'cleanroom:lease:' .. ARGV[1]) \
    redis.call('SELECT', tonumber(ARGV[1])) local keys = redis.call('DBSIZE') redis.call('FLUSHDB') \
    redis.call('SELECT', 0) if held or keys > 0 then return 1 end return 0";

/// A connection to the server of `url`.
pub(crate) async fn connect(url: &ServerUrl) -> Result<tokio::net::TcpStream, String> {
    let connecting = resp::connect(&url.host, url.port, url.user.as_deref(), url.password.as_deref());
    tokio::time::timeout(std::time::Duration::from_secs(5), connecting)
        .await
        .map_err(|_| format!("{} did not answer within 5 s", url.masked()))?
        .map_err(|e| format!("cannot connect to {}: {e}", url.masked()))
}

/// Whether the server has every database of `range`; the error says how
/// many it has and what to set.
pub(crate) async fn check_range(url: &ServerUrl, range: DatabaseRange) -> Result<(), String> {
    let mut stream = connect(url).await?;
    match resp::call(&mut stream, &["SELECT", &range.last.to_string()]).await {
        Ok(Resp::Simple(_)) => Ok(()),
        Ok(Resp::Error(e)) => Err(format!(
            "{} has no logical database {} ({e}); set CLEANROOM_REDIS_DATABASES to a range it has \
             (a default Redis has 16: 0-15)",
            url.masked(),
            range.last
        )),
        Ok(other) => Err(format!("SELECT on {}: unexpected reply {other:?}", url.masked())),
        Err(e) => Err(format!("SELECT on {}: {e}", url.masked())),
    }
}

/// The holder of each room's lease (`None`: free), on a connection that
/// has the leases' database selected.
pub(crate) async fn holders(
    url: &ServerUrl,
    range: DatabaseRange,
) -> Result<(tokio::net::TcpStream, Vec<Option<String>>), String> {
    let mut stream = connect(url).await?;
    let failed = |e: String| format!("{}: {e}", url.masked());
    let select =
        resp::call(&mut stream, &["SELECT", &range.leases().to_string()]).await.map_err(|e| failed(e.to_string()))?;
    if let Resp::Error(e) = select {
        return Err(failed(e));
    }
    let keys: Vec<String> = range.rooms().map(|db| format!("cleanroom:lease:{db}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    match resp::call(&mut stream, &mget).await.map_err(|e| failed(e.to_string()))? {
        Resp::Array(items) => Ok((stream, items.iter().map(Resp::text).collect())),
        other => Err(failed(format!("unexpected reply {other:?}"))),
    }
}

/// Frees and flushes the rooms of `range` whose lease's claim `doomed` says
/// are to go, and with `free_too` the rooms nobody leases (what a run
/// killed after its lease expired left); returns the databases that held
/// a lease or keys.
pub(crate) async fn remove_claimed(
    url: &ServerUrl,
    range: DatabaseRange,
    free_too: bool,
    doomed: impl Fn(&Claim) -> bool,
) -> Result<Vec<u32>, String> {
    let (mut stream, holders) = holders(url, range).await?;
    let failed = |e: String| format!("{}: {e}", url.masked());
    let leases = range.leases().to_string();
    let mut flushed = Vec::new();
    for (db, holder) in range.rooms().zip(holders) {
        let which = match holder {
            Some(h) if Claim::decode(&h).is_some_and(|c| doomed(&c)) => h,
            Some(_) => continue,
            None if free_too => String::new(),
            None => continue,
        };
        let args = ["EVAL", FREE_IF_HELD_BY, "0", &db.to_string(), &which, &leases];
        match resp::call(&mut stream, &args).await.map_err(|e| failed(e.to_string()))? {
            Resp::Integer(1) => flushed.push(db),
            Resp::Error(e) => return Err(failed(e)),
            _ => {}
        }
    }
    Ok(flushed)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{holder, DatabaseRange};
        use crate::external::Claim;

        #[test]
        fn read_a_range_and_keep_its_last_database_for_leases() {
            let range = DatabaseRange::parse("8-15").unwrap();
            assert_eq!((range.rooms(), range.leases()), (8..15, 15));
            assert_eq!(range.encode(), "8-15");
            assert_eq!(DatabaseRange::own(64).rooms(), 1..63, "database 0 stays for shared tests");
            assert!(DatabaseRange::parse("8").unwrap_err().contains("e.g. `8-15`"));
            assert!(DatabaseRange::parse("3-3").unwrap_err().contains("fewer than two"));
            assert!(DatabaseRange::parse("a-b").is_err());
        }

        #[test]
        fn name_the_run_in_a_lease_on_an_existing_server() {
            let claim = Claim { session: "s".into(), owner: "o".into(), process: None };
            let held = holder(Some(&claim), "cleanroom_t_1");
            assert_eq!(Claim::decode(&held), Some(claim));
            assert!(held.ends_with(":cleanroom_t_1"), "{held}");
            assert_eq!(Claim::decode(&holder(None, "cleanroom_t_1")), None);
        }
    }
}
