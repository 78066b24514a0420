//! Where a migration's statements start, and which one failed when the
//! server's error gives no position (a duplicate key, a failing CHECK, a
//! column that already exists: errors of running, not of parsing).
//!
//! The file is split the way Postgres's own scanner delimits statements:
//! semicolons outside `'…'` and `E'…'` strings, `"…"` identifiers,
//! `$tag$…$tag$` bodies and `--` or (nested) `/* */` comments. SQL-standard
//! `BEGIN ATOMIC … END` bodies are not followed; a split that cuts one fails
//! the check in [`failing_line`] and no line is named rather than a wrong one.

/// The statements of `sql`: the byte offset of each one's first token, and
/// its text up to (not including) its semicolon. Comments and blank space
/// between statements belong to none.
pub(crate) fn split(sql: &str) -> Vec<(usize, &str)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let skip_to = match b {
            b'-' if next == Some(b'-') => Some(sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1)),
            b'/' if next == Some(b'*') => Some(block_comment_end(bytes, i)),
            _ => None,
        };
        if let Some(end) = skip_to {
            i = end;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b';' {
            if let Some(s) = start.take() {
                out.push((s, &sql[s..i]));
            }
            i += 1;
            continue;
        }
        let begins = *start.get_or_insert(i);
        i = match b {
            b'\'' => {
                let escapes = i > begins && matches!(bytes[i - 1], b'e' | b'E') && !is_word(bytes, i - 1);
                quoted_end(bytes, i, b'\'', escapes)
            }
            b'"' => quoted_end(bytes, i, b'"', false),
            b'$' if i == 0 || !is_ident(bytes[i - 1]) => dollar_end(sql, i).unwrap_or(i + 1),
            _ => i + 1,
        };
    }
    if let Some(s) = start {
        let text = sql[s..].trim_end();
        if !text.is_empty() {
            out.push((s, text));
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Whether the byte at `at` continues a word (so `name'…'` is not `E'…'`).
fn is_word(bytes: &[u8], at: usize) -> bool {
    at > 0 && is_ident(bytes[at - 1])
}

/// Past the `*/` closing the comment opened at `open` (comments nest).
fn block_comment_end(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past the quote closing the one at `open`: a doubled quote is one
/// character; with `escapes` a backslash escapes the next byte.
fn quoted_end(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past the `$tag$` closing a dollar-quoted body opened at `open`; `None`
/// when no `$tag$` opens there (a `$1` parameter, a lone `$`).
fn dollar_end(sql: &str, open: usize) -> Option<usize> {
    let rest = &sql[open + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let valid =
        tag.bytes().enumerate().all(|(n, b)| if n == 0 { is_ident(b) && !b.is_ascii_digit() } else { is_ident(b) });
    if !valid {
        return None;
    }
    let delimiter = &sql[open..open + tag_len + 2];
    let body = open + delimiter.len();
    Some(sql[body..].find(delimiter).map_or(sql.len(), |n| body + n + delimiter.len()))
}

/// The 1-based line of byte `offset` in `sql`.
pub(crate) fn line_of(sql: &str, offset: usize) -> usize {
    sql[..offset].matches('\n').count() + 1
}

/// Whether a statement controls the transaction (`BEGIN`, `COMMIT`, …):
/// not replayed, so that the replay stays inside its own transaction.
fn controls_transaction(statement: &str) -> bool {
    let first = statement.split(|c: char| c.is_whitespace() || c == ';').next().unwrap_or("");
    ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"]
        .iter()
        .any(|word| first.eq_ignore_ascii_case(word))
}

/// The line of the statement of `sql` that failed with `failed` when the
/// whole file ran. The file had no effect (one transaction, or one
/// multi-statement query, which Postgres runs as one), so its statements
/// are run again one by one, in a transaction that is rolled back, on the
/// template being built (dropped before it is built again): the first to
/// fail with the same error is the one. `None` when none does.
pub(crate) async fn failing_line(
    db: &tokio_postgres::Client,
    sql: &str,
    failed: &tokio_postgres::error::DbError,
) -> Option<usize> {
    let statements = split(sql);
    if let [(offset, _)] = statements.as_slice() {
        return Some(line_of(sql, *offset));
    }
    db.batch_execute("BEGIN").await.ok()?;
    let mut found = None;
    for (offset, statement) in statements {
        if controls_transaction(statement) {
            continue;
        }
        if let Err(e) = db.batch_execute(statement).await {
            let same = e
                .as_db_error()
                .is_some_and(|again| again.code() == failed.code() && again.message() == failed.message());
            found = same.then(|| line_of(sql, offset));
            break;
        }
    }
    let _ = db.batch_execute("ROLLBACK").await;
    found
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{line_of, split};

        fn lines(sql: &str) -> Vec<usize> {
            split(sql).iter().map(|(offset, _)| line_of(sql, *offset)).collect()
        }

        #[test]
        fn start_each_statement_at_its_first_token_past_comments() {
            let sql =
                "-- no-transaction\nCREATE TABLE a (id int);\n\n/* two;\n lines */ INSERT INTO a\n  VALUES (1);\n";
            let found = split(sql);
            assert_eq!(
                found.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
                ["CREATE TABLE a (id int)", "INSERT INTO a\n  VALUES (1)"]
            );
            assert_eq!(lines(sql), [2, 5]);
        }

        #[test]
        fn keep_semicolons_inside_strings_identifiers_and_dollar_bodies() {
            let sql = "INSERT INTO t VALUES ('a;b', 'it''s;', E'\\';');\n\
                       CREATE TABLE \"odd;name\" (v int);\n\
                       CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n\
                       DO $$ BEGIN PERFORM 1; END $$;\n\
                       SELECT $1;\n\
                       SELECT 1 /* nested /* ; */ still; */ ; SELECT 2";
            assert_eq!(lines(sql), [1, 2, 3, 4, 5, 6, 6]);
            assert_eq!(split(sql)[3].1, "DO $$ BEGIN PERFORM 1; END $$");
        }

        #[test]
        fn not_take_a_word_ending_in_e_for_an_escape_string() {
            let sql = "SELECT name'\\'; SELECT 2";
            assert_eq!(split(sql).len(), 2, "a plain string: the backslash escapes nothing");
        }

        #[test]
        fn keep_the_last_statement_without_a_semicolon_and_ignore_trailing_comments() {
            assert_eq!(lines("SELECT 1;\n-- the end\n"), [1]);
            assert_eq!(lines("SELECT 1;\nSELECT 2\n"), [1, 2]);
        }
    }
}
