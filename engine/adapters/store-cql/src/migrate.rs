//! Schema migrations: the `.cql` files of `schema-cql/`, applied in order, once.
//!
//! `keyspace.cql` (the keyspace and the `schema_migrations` table) runs first, every time: each
//! of its statements is idempotent. Then, under a lock (an LWT row with a TTL, so two
//! migrators never issue DDL at once and a dead one frees it), every migration not recorded in
//! `schema_migrations` runs statement by statement and is recorded with its checksum. Every
//! statement is `IF NOT EXISTS`, so a migration cut short by a crash simply runs again.

use std::time::Duration;

use parla_config::StoreSettings;
use scylla::{client::session::Session, errors::ExecutionError};
use sha2::{Digest, Sha256};

use super::{Cas, build_session};
use parla_domain::store::{StoreError, StoreResult};

/// Runs first, every time: the keyspace and the migrations table.
const BOOTSTRAP: &str = include_str!("../../../../schema-cql/keyspace.cql");

/// The migrations, in the order they apply. A version, once released, never changes: a new
/// schema change is a new file.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../../../schema-cql/0001_init.cql")),
    ("0002_user_data", include_str!("../../../../schema-cql/0002_user_data.cql")),
    ("0003_analytics", include_str!("../../../../schema-cql/0003_analytics.cql")),
    ("0004_attention", include_str!("../../../../schema-cql/0004_attention.cql")),
    ("0005_auth_hardening", include_str!("../../../../schema-cql/0005_auth_hardening.cql")),
    ("0006_billing", include_str!("../../../../schema-cql/0006_billing.cql")),
    ("0007_marketplace", include_str!("../../../../schema-cql/0007_marketplace.cql")),
    ("0008_subjects", include_str!("../../../../schema-cql/0008_subjects.cql")),
    ("0009_audit", include_str!("../../../../schema-cql/0009_audit.cql")),
    ("0010_meta", include_str!("../../../../schema-cql/0010_meta.cql")),
];

/// The row of `schema_migrations` that is the migration lock.
const LOCK: &str = "~lock";
/// How long a lock outlives a migrator that died holding it.
const LOCK_TTL_SECS: i32 = 300;
/// How long `migrate` waits for another migrator's lock.
const LOCK_WAIT: Duration = Duration::from_secs(330);
/// DDL can take far longer than a data request (every node must agree on the new schema).
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a migration needs besides DDL: rows that existing data must gain.
///
/// - `0004_attention`: every stored conversation that waits for an agent or is held by one gets
///   its row in `conversations_attention` (the inbox and the dispatcher read only the index).
async fn data_step(session: &Session, keyspace: &str, version: &str) -> StoreResult<()> {
    use futures_util::TryStreamExt;
    if version != "0004_attention" {
        return Ok(());
    }
    let scan = format!("SELECT tenant_id, conversation_id, handling FROM {keyspace}.conversations");
    let insert = format!(
        "INSERT INTO {keyspace}.conversations_attention (tenant_id, conversation_id) VALUES (?, ?)"
    );
    let pager =
        session.query_iter(scan, ()).await.map_err(|e| backend("scanning conversations", e))?;
    let mut rows = pager
        .rows_stream::<(String, String, Option<String>)>()
        .map_err(|e| backend("scanning conversations", e))?;
    let mut indexed = 0usize;
    while let Some((tenant, conversation, handling)) =
        rows.try_next().await.map_err(|e| backend("scanning conversations", e))?
    {
        let Some(handling) = handling else { continue };
        let handling: parla_domain::model::Handling =
            serde_json::from_str(&handling).map_err(|e| backend("a conversation's handling", e))?;
        if handling.needs_agent() {
            session
                .query_unpaged(insert.as_str(), (&tenant, &conversation))
                .await
                .map_err(|e| backend("indexing a conversation that needs an agent", e))?;
            indexed += 1;
        }
    }
    tracing::info!(keyspace, indexed, "indexed the conversations that need an agent");
    Ok(())
}

fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cql migrate: {what}: {e}"))
}

/// Creates the keyspace if missing and applies the pending migrations in order; returns the
/// versions applied (empty when the schema is current). Safe to run again, and concurrently.
pub async fn migrate(settings: &StoreSettings) -> StoreResult<Vec<String>> {
    let keyspace = checked_keyspace(&settings.cql_keyspace)?;
    let replication = checked_replication(&settings.cql_replication)?;
    let session = build_session(settings, None, DDL_TIMEOUT).await?;
    for statement in split_statements(BOOTSTRAP) {
        ddl(&session, &substitute(&statement, keyspace, replication)).await?;
    }
    let owner = uuid::Uuid::new_v4().to_string();
    lock(&session, keyspace, &owner).await?;
    let result = apply_pending(&session, keyspace, replication).await;
    let unlock = format!("DELETE FROM {keyspace}.schema_migrations WHERE version = ? IF owner = ?");
    if let Err(e) = session.query_unpaged(unlock, (LOCK, &owner)).await {
        // The TTL frees it anyway.
        tracing::warn!(error = %e, "cql migrate: could not release the migration lock");
    }
    result
}

async fn apply_pending(
    session: &Session,
    keyspace: &str,
    replication: &str,
) -> StoreResult<Vec<String>> {
    let select = format!("SELECT version, checksum FROM {keyspace}.schema_migrations");
    let rows = session
        .query_unpaged(select, ())
        .await
        .map_err(|e| backend("reading schema_migrations", e))?
        .into_rows_result()
        .map_err(|e| backend("reading schema_migrations", e))?;
    let mut recorded = std::collections::HashMap::new();
    for row in
        rows.rows::<(String, Option<String>)>().map_err(|e| backend("schema_migrations", e))?
    {
        let (version, checksum) = row.map_err(|e| backend("schema_migrations", e))?;
        recorded.insert(version, checksum.unwrap_or_default());
    }
    let mut applied = Vec::new();
    for (version, text) in MIGRATIONS {
        let checksum = hex(&Sha256::digest(text.as_bytes()));
        if let Some(known) = recorded.get(*version) {
            if *known != checksum {
                return Err(StoreError::Backend(format!(
                    "cql migrate: migration {version} was changed after it was applied \
                     (checksum {known} recorded, {checksum} shipped); add a new migration instead"
                )));
            }
            continue;
        }
        for statement in split_statements(text) {
            ddl(session, &substitute(&statement, keyspace, replication)).await?;
        }
        // Recorded only once its data step is done too: a migrator that dies in it runs both
        // again (the steps are idempotent).
        data_step(session, keyspace, version).await?;
        let record = format!(
            "INSERT INTO {keyspace}.schema_migrations (version, checksum, applied_at) \
             VALUES (?, ?, ?)"
        );
        session
            .query_unpaged(record, (*version, &checksum, parla_domain::model::now_ms()))
            .await
            .map_err(|e| backend("recording a migration", e))?;
        tracing::info!(version, keyspace, "cql migration applied");
        applied.push((*version).to_owned());
    }
    Ok(applied)
}

/// Takes the migration lock, waiting for another migrator to finish.
async fn lock(session: &Session, keyspace: &str, owner: &str) -> StoreResult<()> {
    let insert = format!(
        "INSERT INTO {keyspace}.schema_migrations (version, owner, applied_at) VALUES (?, ?, ?) \
         IF NOT EXISTS USING TTL {LOCK_TTL_SECS}"
    );
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let result = session
            .query_unpaged(insert.as_str(), (LOCK, owner, parla_domain::model::now_ms()))
            .await
            .map_err(|e| backend("taking the migration lock", e))?;
        if Cas::from_result("migration lock", result)?.applied {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Backend(format!(
                "cql migrate: another migration of keyspace {keyspace} holds the lock"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs one DDL statement. The driver waits for schema agreement after it; if that wait fails
/// the statement itself was applied, so agreement is awaited again rather than the statement
/// failing. A statement that fails otherwise (a timeout: applied or not) is retried, which
/// `IF NOT EXISTS` makes safe.
async fn ddl(session: &Session, statement: &str) -> StoreResult<()> {
    let add = alter_add(statement);
    let statement = add.as_ref().map_or(statement, |add| add.plain.as_str());
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Checked before every attempt: one that timed out may have added the column.
        if let Some(add) = &add
            && column_exists(session, add).await?
        {
            return Ok(());
        }
        match session.query_unpaged(statement, ()).await {
            Ok(_) => return Ok(()),
            Err(ExecutionError::SchemaAgreementError(_) | ExecutionError::MetadataError(_)) => {
                return await_agreement(session).await;
            }
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "cql migrate: DDL failed, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(backend(&format!("running `{}`", first_line(statement)), e)),
        }
    }
}

async fn await_agreement(session: &Session) -> StoreResult<()> {
    let mut last = None;
    for _ in 0..5 {
        match session.await_schema_agreement().await {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "cql migrate: waiting for schema agreement");
                last = Some(e);
            }
        }
    }
    match last {
        Some(e) => Err(backend("the nodes do not agree on the schema", e)),
        None => Ok(()),
    }
}

/// An `ALTER TABLE ks.table ADD IF NOT EXISTS column type` statement, taken apart.
#[derive(Debug, PartialEq)]
struct AlterAdd {
    keyspace: String,
    table: String,
    column: String,
    /// The same statement without `IF NOT EXISTS`, which every CQL server accepts.
    plain: String,
}

/// Recognises an `ALTER TABLE ... ADD IF NOT EXISTS ...` (Cassandra 4.1+ syntax only).
fn alter_add(statement: &str) -> Option<AlterAdd> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper = |i: usize| words.get(i).map(|w| w.to_ascii_uppercase());
    let shape = [(0, "ALTER"), (1, "TABLE"), (3, "ADD"), (4, "IF"), (5, "NOT"), (6, "EXISTS")];
    if !shape.iter().all(|(i, w)| upper(*i).as_deref() == Some(*w)) {
        return None;
    }
    let (keyspace, table) = words.get(2)?.split_once('.')?;
    let column = words.get(7)?;
    let rest = words.get(8..)?.join(" ");
    Some(AlterAdd {
        keyspace: keyspace.to_owned(),
        table: table.to_owned(),
        column: (*column).to_owned(),
        plain: format!("ALTER TABLE {keyspace}.{table} ADD {column} {rest}"),
    })
}

async fn column_exists(session: &Session, add: &AlterAdd) -> StoreResult<bool> {
    let query = "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? \
                 AND table_name = ? AND column_name = ?";
    let result = session
        .query_unpaged(query, (&add.keyspace, &add.table, &add.column))
        .await
        .map_err(|e| backend("reading system_schema.columns", e))?;
    let rows = result.into_rows_result().map_err(|e| backend("system_schema.columns", e))?;
    Ok(rows.rows_num() > 0)
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement).trim()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A keyspace name is spliced into statements, so it must be a plain identifier.
pub(super) fn checked_keyspace(keyspace: &str) -> StoreResult<&str> {
    let mut chars = keyspace.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && keyspace.len() <= 48;
    if plain {
        Ok(keyspace)
    } else {
        Err(StoreError::Backend(format!(
            "cql: store.cql_keyspace {keyspace:?} must be a letter then up to 47 letters, digits \
             or underscores"
        )))
    }
}

/// The replication is a CQL map literal from the settings; refuse anything that could end the
/// statement it is spliced into.
fn checked_replication(replication: &str) -> StoreResult<&str> {
    let r = replication.trim();
    if r.starts_with('{') && r.ends_with('}') && !r.contains(';') {
        Ok(r)
    } else {
        Err(StoreError::Backend(format!(
            "cql: store.cql_replication {replication:?} must be a CQL map literal such as \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )))
    }
}

fn substitute(statement: &str, keyspace: &str, replication: &str) -> String {
    statement.replace("${keyspace}", keyspace).replace("${replication}", replication)
}

/// Splits a `.cql` file into statements at `;`, dropping `--` and `//` line comments and
/// `/* */` block comments; quoted strings and identifiers are kept whole.
pub(super) fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                // A doubled quote inside a string is an escaped quote: the loop sees it as
                // closing then reopening, which keeps the text intact.
                for d in chars.by_ref() {
                    current.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for d in chars.by_ref() {
                    if previous == '*' && d == '/' {
                        break;
                    }
                    previous = d;
                }
                current.push(' ');
            }
            ';' => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            c => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    statements
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for d in chars.by_ref() {
        if d == '\n' {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_comments_and_strings() {
        let text = "-- a comment; not a statement\nCREATE KEYSPACE IF NOT EXISTS ${keyspace}\n\
                    WITH replication = ${replication};\n/* block; comment */ CREATE TABLE t \
                    (a text PRIMARY KEY) // trailing; comment\n;\nINSERT INTO t (a) VALUES \
                    ('x;''y');";
        let statements = split_statements(text);
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE"));
        assert_eq!(statements[1], "CREATE TABLE t (a text PRIMARY KEY)");
        assert_eq!(statements[2], "INSERT INTO t (a) VALUES ('x;''y')");
        let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
        assert_eq!(
            substitute(&statements[0], "ks", replication),
            format!("CREATE KEYSPACE IF NOT EXISTS ks\nWITH replication = {replication}")
        );
    }

    #[test]
    fn every_shipped_statement_is_idempotent_and_keyspace_qualified() {
        for (version, text) in MIGRATIONS.iter().chain([&("bootstrap", BOOTSTRAP)]) {
            for statement in split_statements(text) {
                assert!(statement.contains("IF NOT EXISTS"), "{version}: {statement}");
                assert!(statement.contains("${keyspace}"), "{version}: {statement}");
            }
        }
    }

    #[test]
    fn an_added_column_is_checked_before_the_plain_add_runs() {
        let add =
            alter_add("ALTER TABLE ks.conversations ADD IF NOT EXISTS user_data map<text, text>")
                .expect("an ALTER ADD");
        assert_eq!((add.keyspace.as_str(), add.table.as_str()), ("ks", "conversations"));
        assert_eq!(add.column, "user_data");
        assert_eq!(add.plain, "ALTER TABLE ks.conversations ADD user_data map<text, text>");
        assert_eq!(alter_add("CREATE TABLE IF NOT EXISTS ks.t (a text PRIMARY KEY)"), None);
        assert_eq!(alter_add("ALTER TABLE ks.t ADD c text"), None);
    }

    #[test]
    fn settings_spliced_into_cql_are_checked() {
        assert!(checked_keyspace("parla_test_1").is_ok());
        assert!(checked_keyspace("1parla").is_err());
        assert!(checked_keyspace("parla; DROP KEYSPACE x").is_err());
        assert!(checked_keyspace("").is_err());
        assert!(
            checked_replication("{'class': 'SimpleStrategy', 'replication_factor': 1}").is_ok()
        );
        assert!(checked_replication("{'class': 'X'}; DROP KEYSPACE parla").is_err());
    }
}
