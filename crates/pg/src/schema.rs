//! The PostgreSQL schema: one `tidelog` schema shared by every store, every row keyed by the
//! store's id. Created on first connection (under an advisory lock, so that many shippers
//! starting at once do not race). Version 2 (the one fold rule, issue 21) only adds: a version 1
//! schema is upgraded in place under the same lock ([`UPGRADE_1_2`]); anything else would be a
//! new schema filled by `tidelog sync` (the data is derived from the journals).

use postgres::Client;

use crate::error::{Ctx, PgError};

/// The schema version this code writes and reads (`tidelog.meta`, key `schema_version`).
pub const PG_SCHEMA_VERSION: i64 = 2;

/// Advisory lock key of schema creation (`"tidelog"` as ASCII).
const SCHEMA_LOCK: i64 = 0x006c_6f67_626f_6f6b;

/// Long free text (`content`, `api_content`, `reasoning`, `tool_calls`, `extra`) is kept as
/// `bytea`, the exact UTF-8 bytes: PostgreSQL `text` cannot hold NUL, which multimodal content
/// starts with. `body` is the text search sees (NUL replaced by U+FFFD), with a GIN trigram index.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tidelog.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS tidelog.applied (
    store text NOT NULL,
    lane text NOT NULL,
    lsn bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, lane)
);
CREATE TABLE IF NOT EXISTS tidelog.messages (
    store text NOT NULL,
    rid bigint NOT NULL,
    id text NOT NULL,
    session_id text NOT NULL,
    role text NOT NULL,
    content bytea,
    tool_call_id text,
    tool_name text,
    tool_calls bytea,
    reasoning bytea,
    "timestamp" double precision,
    token_count bigint,
    finish_reason text,
    source text,
    extra bytea,
    platform_message_id text,
    api_content bytea,
    active boolean NOT NULL DEFAULT true,
    compacted boolean NOT NULL DEFAULT false,
    lane text NOT NULL,
    lsn bigint NOT NULL,
    body text,
    PRIMARY KEY (store, id),
    UNIQUE (store, rid)
);
CREATE INDEX IF NOT EXISTS messages_session ON tidelog.messages (store, session_id, rid);
CREATE INDEX IF NOT EXISTS messages_timestamp ON tidelog.messages ("timestamp");
CREATE INDEX IF NOT EXISTS messages_body_trgm ON tidelog.messages USING gin (body gin_trgm_ops);
CREATE INDEX IF NOT EXISTS messages_tool_trgm ON tidelog.messages USING gin (tool_name gin_trgm_ops);
CREATE TABLE IF NOT EXISTS tidelog.sessions (
    store text NOT NULL,
    id text NOT NULL,
    source text,
    model text,
    title text,
    user_id text,
    chat_id text,
    parent_session_id text,
    started_at double precision,
    ended_at double precision,
    end_reason text,
    extra text,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens bigint NOT NULL DEFAULT 0,
    api_call_count bigint NOT NULL DEFAULT 0,
    estimated_cost_usd double precision NOT NULL DEFAULT 0,
    actual_cost_usd double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (store, id)
);
CREATE TABLE IF NOT EXISTS tidelog.session_ops (
    store text NOT NULL,
    session_id text NOT NULL,
    op bigint NOT NULL,
    mode smallint NOT NULL,
    active_only boolean NOT NULL,
    kept bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (store, session_id, op)
);
CREATE TABLE IF NOT EXISTS tidelog.session_entries (
    store text NOT NULL,
    session_id text NOT NULL,
    op bigint NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (store, session_id, op)
);
CREATE TABLE IF NOT EXISTS tidelog.deleted_sessions (
    store text NOT NULL,
    id text NOT NULL,
    op bigint NOT NULL,
    PRIMARY KEY (store, id)
);
CREATE TABLE IF NOT EXISTS tidelog.user_meta (
    store text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (store, key)
);
"#;

/// Version 1 -> 2: what a rewrite kept (`Rewrite::kept`) and the positioned session writes the
/// session fold is made from (as the SQLite index's `rewrite_kept` and `session_entries`). A
/// version 1 row stands for everything written before: the shipper seeds `session_entries` with
/// one snapshot patch and one counter delta per session under the lowest keys ([`seed`]).
const UPGRADE_1_2: &str = "
ALTER TABLE tidelog.session_ops ADD COLUMN IF NOT EXISTS kept bigint[] NOT NULL DEFAULT '{}';
CREATE TABLE IF NOT EXISTS tidelog.session_entries (
    store text NOT NULL,
    session_id text NOT NULL,
    op bigint NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (store, session_id, op)
);
";

/// Seeds the session fold of a version 1 schema: every session row as a snapshot patch under
/// `i64::MIN` and its counters under `i64::MIN + 1` (below every position and legacy key).
fn seed(tx: &mut postgres::Transaction<'_>, target: &str) -> Result<(), PgError> {
    let rows = tx
        .query(
            "SELECT store, id, source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, \
             end_reason, extra, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
             reasoning_tokens, api_call_count, estimated_cost_usd, actual_cost_usd FROM tidelog.sessions",
            &[],
        )
        .ctx(target, "read sessions to seed their fold")?;
    for r in rows {
        let store: String = r.get(0);
        let id: String = r.get(1);
        let patch = tidelog::SessionPatch {
            id: id.clone(),
            source: r.get(2),
            model: r.get(3),
            title: r.get(4),
            user_id: r.get(5),
            chat_id: r.get(6),
            parent_session_id: r.get(7),
            started_at: r.get(8),
            ended_at: r.get(9),
            end_reason: r.get(10),
            extra: r.get(11),
            ..tidelog::SessionPatch::default()
        };
        let counters = tidelog::CounterDelta {
            session_id: id.clone(),
            input_tokens: r.get(12),
            output_tokens: r.get(13),
            cache_read_tokens: r.get(14),
            cache_write_tokens: r.get(15),
            reasoning_tokens: r.get(16),
            api_call_count: r.get(17),
            estimated_cost_usd: r.get(18),
            actual_cost_usd: r.get(19),
            op: None,
        };
        for (key, e) in [(i64::MIN, tidelog::Entry::Session(patch)), (i64::MIN + 1, tidelog::Entry::Counters(counters))]
        {
            tx.execute(
                "INSERT INTO tidelog.session_entries (store, session_id, op, entry) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&store, &id, &key, &tidelog::encode_entry(&e)],
            )
            .ctx(target, "seed the session fold")?;
        }
    }
    Ok(())
}

/// Creates the schema if missing and checks its version.
pub(crate) fn ensure(client: &mut Client, target: &str) -> Result<(), PgError> {
    // Fast path: already there.
    let found: Option<String> = client
        .query_opt("SELECT value FROM tidelog.meta WHERE key = 'schema_version'", &[])
        .ok()
        .flatten()
        .map(|r| r.get(0));
    let version = match found {
        Some(v) => v,
        None => {
            let mut tx = client.transaction().ctx(target, "begin the schema transaction")?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).ctx(target, "lock the schema")?;
            tx.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE SCHEMA IF NOT EXISTS tidelog;")
                .ctx(target, "create the pg_trgm extension and the tidelog schema")?;
            tx.batch_execute(SCHEMA).ctx(target, "create the tidelog tables")?;
            tx.execute(
                "INSERT INTO tidelog.meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO NOTHING",
                &[&PG_SCHEMA_VERSION.to_string()],
            )
            .ctx(target, "record the schema version")?;
            let v: String = tx
                .query_one("SELECT value FROM tidelog.meta WHERE key = 'schema_version'", &[])
                .ctx(target, "read the schema version")?
                .get(0);
            tx.commit().ctx(target, "commit the schema")?;
            tracing::info!(target = %target, "PostgreSQL schema ready");
            v
        }
    };
    let mut found = version.parse::<i64>().unwrap_or(i64::MAX);
    if found == 1 {
        let mut tx = client.transaction().ctx(target, "begin the schema upgrade")?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).ctx(target, "lock the schema")?;
        let now: String = tx
            .query_one("SELECT value FROM tidelog.meta WHERE key = 'schema_version'", &[])
            .ctx(target, "read the schema version")?
            .get(0);
        if now == "1" {
            tx.batch_execute(UPGRADE_1_2).ctx(target, "upgrade the tidelog tables to version 2")?;
            seed(&mut tx, target)?;
            tx.execute("UPDATE tidelog.meta SET value = '2' WHERE key = 'schema_version'", &[])
                .ctx(target, "record the schema version")?;
            tracing::info!(target = %target, "PostgreSQL schema upgraded from version 1 to 2");
        }
        tx.commit().ctx(target, "commit the schema upgrade")?;
        found = 2;
    }
    if found > PG_SCHEMA_VERSION {
        return Err(PgError::NewerSchema { target: target.to_string(), found, known: PG_SCHEMA_VERSION });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SCHEMA;

    /// The columns of one `CREATE TABLE tidelog.<table>` of [`SCHEMA`].
    fn columns(table: &str) -> Vec<String> {
        let start = SCHEMA.find(&format!("CREATE TABLE IF NOT EXISTS tidelog.{table} (")).unwrap_or_default();
        let body = &SCHEMA[start..];
        let body = &body[..body.find(");").unwrap_or(body.len())];
        body.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|c| c.trim_matches('"').to_string())
            .collect()
    }

    /// The PostgreSQL columns cover every field of the model's one list (`record!` in
    /// crates/store/src/model.rs): a field added there and not here fails.
    #[test]
    fn columns_cover_every_field_of_the_model() {
        let messages = columns("messages");
        for (name, _) in tidelog::record_fields("Message") {
            let col = if *name == "num" { "rid" } else { name };
            assert!(messages.iter().any(|c| c == col), "tidelog.messages has no column for {name}");
        }
        let sessions = columns("sessions");
        for (name, _) in tidelog::record_fields("SessionPatch") {
            if matches!(*name, "reopen" | "clear_title" | "fill_only" | "op") {
                continue; // how a patch applies and where it sorts, not a stored value
            }
            assert!(sessions.iter().any(|c| c == name), "tidelog.sessions has no column for {name}");
        }
        for (name, _) in tidelog::record_fields("CounterDelta") {
            if matches!(*name, "session_id" | "op") {
                continue;
            }
            assert!(sessions.iter().any(|c| c == name), "tidelog.sessions has no column for counter {name}");
        }
        assert!(!tidelog::record_fields("Message").is_empty());
    }
}
