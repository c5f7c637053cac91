//! Every CQL statement the store runs, prepared once at connect.
//!
//! Prepared statements are parsed once by the cluster and carry their partition key's
//! position, which the driver's default (token-aware) load balancing uses to send each
//! request straight to a replica of its partition. Table names are unqualified: the session
//! is bound to the configured keyspace.

use scylla::{client::session::Session, statement::prepared::PreparedStatement};

use super::analytics;
use parla_domain::store::{StoreError, StoreResult};

/// A prepared statement with the name errors report it by.
#[derive(Debug)]
pub(super) struct Stmt {
    pub name: &'static str,
    pub ps: PreparedStatement,
}

macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident = $cql:expr;)*) => {
        /// The prepared statements, one field per statement.
        #[derive(Debug)]
        pub(super) struct Statements {
            $($(#[$doc])* pub $name: Stmt,)*
        }

        impl Statements {
            pub async fn prepare(session: &Session) -> StoreResult<Self> {
                Ok(Self { $($name: prepare(session, stringify!($name), $cql).await?,)* })
            }
        }
    };
}

async fn prepare(session: &Session, name: &'static str, cql: &str) -> StoreResult<Stmt> {
    let ps = session
        .prepare(cql)
        .await
        .map_err(|e| StoreError::Backend(format!("cql: cannot prepare {name}: {e}")))?;
    Ok(Stmt { name, ps })
}

statements! {
    put_tenant = "INSERT INTO tenants (tenant_id, data) VALUES (?, ?)";
    get_tenant = "SELECT data FROM tenants WHERE tenant_id = ?";
    scan_tenants = "SELECT tenant_id FROM tenants";
    scan_tenant_rows = "SELECT tenant_id, data FROM tenants";
    reseal_tenant = "UPDATE tenants SET data = ? WHERE tenant_id = ? IF data = ?";
    scan_account_rows = "SELECT tenant_id, account_id, data FROM accounts";
    reseal_account = "UPDATE accounts SET data = ? WHERE tenant_id = ? AND account_id = ? \
        IF data = ?";
    scan_intent_rows = "SELECT tenant_id, bot_id, data FROM intents";
    reseal_intents = "UPDATE intents SET data = ? WHERE tenant_id = ? AND bot_id = ? IF data = ?";
    scan_channel_rows = "SELECT channel_id, data FROM channels";
    reseal_channel = "UPDATE channels SET data = ? WHERE channel_id = ? IF data = ?";
    get_meta = "SELECT value FROM meta WHERE name = ?";
    put_meta = "INSERT INTO meta (name, value) VALUES (?, ?)";

    claim_bot_id = "INSERT INTO bot_ids (bot_id, tenant_id) VALUES (?, ?) IF NOT EXISTS";
    get_bot_owner = "SELECT tenant_id FROM bot_ids WHERE bot_id = ?";
    release_bot_id = "DELETE FROM bot_ids WHERE bot_id = ? IF tenant_id = ?";
    put_bot = "INSERT INTO bots (tenant_id, bot_id, data) VALUES (?, ?, ?)";
    get_bot = "SELECT data FROM bots WHERE tenant_id = ? AND bot_id = ?";
    list_bots = "SELECT data FROM bots WHERE tenant_id = ?";
    delete_bot = "DELETE FROM bots WHERE tenant_id = ? AND bot_id = ?";

    put_intents = "INSERT INTO intents (tenant_id, bot_id, data) VALUES (?, ?, ?)";
    get_intents = "SELECT data FROM intents WHERE tenant_id = ? AND bot_id = ?";
    delete_intents = "DELETE FROM intents WHERE tenant_id = ? AND bot_id = ?";

    create_conversation = "INSERT INTO conversations (tenant_id, conversation_id, bot_id, data, \
        handling, sentiment_sum, sentiment_count, sentiment_seq, stats, analytics_seq) \
        VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0) IF NOT EXISTS";
    get_conversation = "SELECT bot_id, data, handling, sentiment_sum, sentiment_count, \
        sentiment_seq, stats, analytics_seq FROM conversations WHERE tenant_id = ? \
        AND conversation_id = ?";
    /// The handling with the analytics stats it moves, compared as read; `bot_id` (never null,
    /// never changed) fails the condition on a deleted conversation, which is not brought back.
    set_handling = "UPDATE conversations SET handling = ?, stats = ? WHERE tenant_id = ? \
        AND conversation_id = ? IF bot_id = ? AND stats = ?";
    merge_user_data = "UPDATE conversations SET user_data = user_data + ? WHERE tenant_id = ? \
        AND conversation_id = ? IF EXISTS";
    get_user_data = "SELECT data, user_data FROM conversations WHERE tenant_id = ? \
        AND conversation_id = ?";
    /// An append's counting step: its sentiment and the claim of its analytics, in one LWT.
    count_append = "UPDATE conversations SET sentiment_sum = ?, sentiment_count = ?, \
        sentiment_seq = ?, stats = ?, analytics_seq = ? WHERE tenant_id = ? \
        AND conversation_id = ? IF sentiment_seq = ? AND analytics_seq = ? AND stats = ?";
    delete_conversation = "DELETE FROM conversations WHERE tenant_id = ? AND conversation_id = ? \
        IF EXISTS";
    index_conversation_by_bot = "INSERT INTO conversations_by_bot (tenant_id, bot_id, \
        conversation_id) VALUES (?, ?, ?)";
    unindex_conversation_by_bot = "DELETE FROM conversations_by_bot WHERE tenant_id = ? \
        AND bot_id = ? AND conversation_id = ?";
    list_conversations_by_bot = "SELECT conversation_id FROM conversations_by_bot \
        WHERE tenant_id = ? AND bot_id = ? LIMIT ?";
    list_conversations_by_bot_before = "SELECT conversation_id FROM conversations_by_bot \
        WHERE tenant_id = ? AND bot_id = ? AND conversation_id < ? LIMIT ?";
    index_conversation_by_tenant = "INSERT INTO conversations_by_tenant (tenant_id, \
        conversation_id) VALUES (?, ?)";
    unindex_conversation_by_tenant = "DELETE FROM conversations_by_tenant WHERE tenant_id = ? \
        AND conversation_id = ?";
    list_conversations_by_tenant = "SELECT conversation_id FROM conversations_by_tenant \
        WHERE tenant_id = ? LIMIT ?";
    list_conversations_by_tenant_before = "SELECT conversation_id FROM conversations_by_tenant \
        WHERE tenant_id = ? AND conversation_id < ? LIMIT ?";

    insert_message = "INSERT INTO messages (tenant_id, conversation_id, bucket, seq, data, \
        delivery) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    get_message = "SELECT data, delivery FROM messages WHERE tenant_id = ? \
        AND conversation_id = ? AND bucket = ? AND seq = ?";
    messages_from = "SELECT seq, data, delivery FROM messages WHERE tenant_id = ? \
        AND conversation_id = ? AND bucket = ? AND seq >= ? LIMIT ?";
    top_seq = "SELECT seq FROM messages WHERE tenant_id = ? AND conversation_id = ? \
        AND bucket = ? ORDER BY seq DESC LIMIT 1";
    delete_bucket = "DELETE FROM messages WHERE tenant_id = ? AND conversation_id = ? \
        AND bucket = ?";
    set_delivery = "UPDATE messages SET delivery = ? WHERE tenant_id = ? \
        AND conversation_id = ? AND bucket = ? AND seq = ? IF delivery = ?";

    get_client_id = "SELECT seq FROM client_msg_ids WHERE tenant_id = ? \
        AND conversation_id = ? AND client_msg_id = ?";
    put_client_id = "INSERT INTO client_msg_ids (tenant_id, conversation_id, client_msg_id, \
        seq) VALUES (?, ?, ?, ?)";
    delete_client_id = "DELETE FROM client_msg_ids WHERE tenant_id = ? \
        AND conversation_id = ? AND client_msg_id = ?";

    put_note = "INSERT INTO notes (tenant_id, conversation_id, note_id, data) \
        VALUES (?, ?, ?, ?)";
    list_notes = "SELECT data FROM notes WHERE tenant_id = ? AND conversation_id = ?";
    delete_notes = "DELETE FROM notes WHERE tenant_id = ? AND conversation_id = ?";

    put_push_token = "INSERT INTO push_tokens (tenant_id, conversation_id, device, added_at) \
        VALUES (?, ?, ?, ?)";
    delete_push_token = "DELETE FROM push_tokens WHERE tenant_id = ? AND conversation_id = ? \
        AND device = ?";
    list_push_tokens = "SELECT device, added_at FROM push_tokens WHERE tenant_id = ? \
        AND conversation_id = ?";
    delete_push_tokens = "DELETE FROM push_tokens WHERE tenant_id = ? AND conversation_id = ?";

    set_channel_cursor = "INSERT INTO channel_cursors (tenant_id, conversation_id, seq) \
        VALUES (?, ?, ?)";
    get_channel_cursor = "SELECT seq FROM channel_cursors WHERE tenant_id = ? \
        AND conversation_id = ?";
    delete_channel_cursor = "DELETE FROM channel_cursors WHERE tenant_id = ? \
        AND conversation_id = ?";

    append_audit = "INSERT INTO audit_log (tenant_id, id, data) VALUES (?, ?, ?) IF NOT EXISTS";
    list_audit = "SELECT data FROM audit_log WHERE tenant_id = ? LIMIT ?";
    list_audit_before = "SELECT data FROM audit_log WHERE tenant_id = ? AND id < ? LIMIT ?";

    index_subject = "INSERT INTO subjects (tenant_id, subject, conversation_id) VALUES (?, ?, ?)";
    index_subject_key = "INSERT INTO subject_keys (tenant_id, conversation_id, subject) \
        VALUES (?, ?, ?)";
    subject_conversations = "SELECT conversation_id FROM subjects WHERE tenant_id = ? \
        AND subject = ?";
    subject_keys_of = "SELECT subject FROM subject_keys WHERE tenant_id = ? \
        AND conversation_id = ?";
    unindex_subject = "DELETE FROM subjects WHERE tenant_id = ? AND subject = ? \
        AND conversation_id = ?";
    delete_subject_keys = "DELETE FROM subject_keys WHERE tenant_id = ? AND conversation_id = ?";

    claim_email = "INSERT INTO account_emails (email, tenant_id, account_id, claimed_at) \
        VALUES (?, ?, ?, ?) IF NOT EXISTS";
    take_over_email = "UPDATE account_emails SET tenant_id = ?, account_id = ?, claimed_at = ? \
        WHERE email = ? IF tenant_id = ? AND account_id = ?";
    get_email = "SELECT tenant_id, account_id FROM account_emails WHERE email = ?";
    release_email = "DELETE FROM account_emails WHERE email = ? IF tenant_id = ? \
        AND account_id = ?";
    /// Account rows are written only by LWTs (migration 0005): created once, then changed
    /// and deleted compare-and-set on `version`.
    put_account = "INSERT INTO accounts (tenant_id, account_id, data, version) \
        VALUES (?, ?, ?, 0) IF NOT EXISTS";
    get_account = "SELECT data FROM accounts WHERE tenant_id = ? AND account_id = ?";
    list_accounts = "SELECT data, version, roles_version FROM accounts WHERE tenant_id = ?";
    delete_account = "DELETE FROM accounts WHERE tenant_id = ? AND account_id = ? \
        IF version = ?";

    insert_refresh = "INSERT INTO refresh_tokens (digest, data, used) VALUES (?, ?, ?) \
        IF NOT EXISTS";
    replace_refresh = "UPDATE refresh_tokens SET data = ?, used = ? WHERE digest = ? IF EXISTS";
    get_refresh = "SELECT data, used FROM refresh_tokens WHERE digest = ?";
    use_refresh = "UPDATE refresh_tokens SET used = true WHERE digest = ? IF used = false";
    delete_refresh = "DELETE FROM refresh_tokens WHERE digest = ? IF EXISTS";
    put_refresh_family = "INSERT INTO refresh_families (family, digest) VALUES (?, ?)";
    list_refresh_family = "SELECT digest FROM refresh_families WHERE family = ?";
    delete_refresh_family = "DELETE FROM refresh_families WHERE family = ?";
    put_refresh_by_account = "INSERT INTO refresh_by_account (tenant_id, account_id, digest) \
        VALUES (?, ?, ?)";
    list_refresh_by_account = "SELECT digest FROM refresh_by_account WHERE tenant_id = ? \
        AND account_id = ?";
    delete_refresh_by_account = "DELETE FROM refresh_by_account WHERE tenant_id = ? \
        AND account_id = ? AND digest = ?";

    insert_one_time = "INSERT INTO one_time_tokens (digest, data) VALUES (?, ?) IF NOT EXISTS";
    replace_one_time = "UPDATE one_time_tokens SET data = ? WHERE digest = ? IF EXISTS";
    get_one_time = "SELECT data FROM one_time_tokens WHERE digest = ?";
    take_one_time = "DELETE FROM one_time_tokens WHERE digest = ? IF EXISTS";

    /// `revoked` and `last_used_at` are also columns of their own (migration 0005), changed
    /// one at a time so a last-use write never undoes a revocation.
    put_api_key = "INSERT INTO api_keys (tenant_id, key_id, data, revoked, last_used_at) \
        VALUES (?, ?, ?, ?, ?)";
    get_api_key = "SELECT data, revoked, last_used_at FROM api_keys WHERE tenant_id = ? \
        AND key_id = ?";
    list_api_keys = "SELECT data, revoked, last_used_at FROM api_keys WHERE tenant_id = ?";
    put_api_key_digest = "INSERT INTO api_key_digests (digest, tenant_id, key_id) \
        VALUES (?, ?, ?)";
    get_api_key_digest = "SELECT tenant_id, key_id FROM api_key_digests WHERE digest = ?";

    add_token_usage = "UPDATE token_usage SET tokens = tokens + ? WHERE tenant_id = ? \
        AND month = ?";
    get_token_usage = "SELECT tokens FROM token_usage WHERE tenant_id = ? AND month = ?";

    put_document = "INSERT INTO documents (tenant_id, document_id, bot_id, data) \
        VALUES (?, ?, ?, ?)";
    get_document = "SELECT data FROM documents WHERE tenant_id = ? AND document_id = ?";
    delete_document = "DELETE FROM documents WHERE tenant_id = ? AND document_id = ?";
    index_document = "INSERT INTO documents_by_bot (tenant_id, bot_id, document_id) \
        VALUES (?, ?, ?)";
    unindex_document = "DELETE FROM documents_by_bot WHERE tenant_id = ? AND bot_id = ? \
        AND document_id = ?";
    list_documents_by_bot = "SELECT document_id FROM documents_by_bot WHERE tenant_id = ? \
        AND bot_id = ?";
    put_content_part = "INSERT INTO document_content (tenant_id, document_id, part, bytes) \
        VALUES (?, ?, ?, ?)";
    trim_content = "DELETE FROM document_content WHERE tenant_id = ? AND document_id = ? \
        AND part >= ?";
    get_content = "SELECT bytes FROM document_content WHERE tenant_id = ? AND document_id = ?";
    delete_content = "DELETE FROM document_content WHERE tenant_id = ? AND document_id = ?";
    put_chunk = "INSERT INTO chunks (tenant_id, document_id, position, data) VALUES (?, ?, ?, ?)";
    trim_chunks = "DELETE FROM chunks WHERE tenant_id = ? AND document_id = ? AND position >= ?";
    list_chunks = "SELECT data FROM chunks WHERE tenant_id = ? AND document_id = ?";
    delete_chunks = "DELETE FROM chunks WHERE tenant_id = ? AND document_id = ?";
    index_attention = "INSERT INTO conversations_attention (tenant_id, conversation_id) \
                       VALUES (?, ?)";
    unindex_attention = "DELETE FROM conversations_attention WHERE tenant_id = ? \
                         AND conversation_id = ?";
    list_attention = "SELECT conversation_id FROM conversations_attention WHERE tenant_id = ? \
                      LIMIT ?";
    list_attention_after = "SELECT conversation_id FROM conversations_attention \
                            WHERE tenant_id = ? AND conversation_id > ? LIMIT ?";
    put_bot_tombstone = "INSERT INTO bot_tombstones (tenant_id, bot_id) VALUES (?, ?)";
    clear_bot_tombstone = "DELETE FROM bot_tombstones WHERE tenant_id = ? AND bot_id = ?";
    scan_bot_tombstones = "SELECT tenant_id, bot_id FROM bot_tombstones";
    queue_document = "INSERT INTO document_queue (tenant_id, document_id) VALUES (?, ?)";
    dequeue_document = "DELETE FROM document_queue WHERE tenant_id = ? AND document_id = ?";
    scan_document_queue = "SELECT tenant_id, document_id FROM document_queue";

    put_canned = "INSERT INTO canned_responses (tenant_id, canned_id, data) VALUES (?, ?, ?)";
    get_canned = "SELECT canned_id FROM canned_responses WHERE tenant_id = ? AND canned_id = ?";
    list_canned = "SELECT data FROM canned_responses WHERE tenant_id = ?";
    delete_canned = "DELETE FROM canned_responses WHERE tenant_id = ? AND canned_id = ?";

    put_channel = "INSERT INTO channels (channel_id, tenant_id, bot_id, data) VALUES (?, ?, ?, ?)";
    get_channel = "SELECT data FROM channels WHERE channel_id = ?";
    delete_channel = "DELETE FROM channels WHERE channel_id = ?";
    scan_channels = "SELECT data FROM channels";
    index_channel = "INSERT INTO channels_by_bot (tenant_id, bot_id, channel_id) VALUES (?, ?, ?)";
    unindex_channel = "DELETE FROM channels_by_bot WHERE tenant_id = ? AND bot_id = ? \
        AND channel_id = ?";
    list_channels_by_bot = "SELECT channel_id FROM channels_by_bot WHERE tenant_id = ? \
        AND bot_id = ?";

    claim_contact = "INSERT INTO channel_contacts (connection_id, contact, tenant_id, \
        conversation_id, data) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    get_contact = "SELECT tenant_id, conversation_id, data FROM channel_contacts \
        WHERE connection_id = ? AND contact = ?";
    release_contact = "DELETE FROM channel_contacts WHERE connection_id = ? AND contact = ? \
        IF conversation_id = ?";
    put_channel_conversation = "INSERT INTO channel_conversations (tenant_id, conversation_id, \
        connection_id, contact) VALUES (?, ?, ?, ?)";
    get_channel_conversation = "SELECT connection_id, contact FROM channel_conversations \
        WHERE tenant_id = ? AND conversation_id = ?";
    list_channel_conversations = "SELECT conversation_id FROM channel_conversations \
        WHERE tenant_id = ?";
    delete_channel_conversation = "DELETE FROM channel_conversations WHERE tenant_id = ? \
        AND conversation_id = ?";

    put_opt_out = "INSERT INTO channel_opt_outs (connection_id, contact) VALUES (?, ?)";
    delete_opt_out = "DELETE FROM channel_opt_outs WHERE connection_id = ? AND contact = ?";
    get_opt_out = "SELECT contact FROM channel_opt_outs WHERE connection_id = ? AND contact = ?";

    put_provider_id = "INSERT INTO provider_message_ids (connection_id, provider_id, tenant_id, \
        conversation_id, seq) VALUES (?, ?, ?, ?, ?)";
    get_provider_id = "SELECT tenant_id, conversation_id, seq FROM provider_message_ids \
        WHERE connection_id = ? AND provider_id = ?";

    /// Counter adds: never retried after a timeout (not idempotent; see `cql::analytics`).
    add_counters = &analytics::add_counters_cql();
    read_counters = &analytics::read_counters_cql();
    add_intent = "UPDATE analytics_intents SET hits = hits + ?, \
        confidence_micros = confidence_micros + ? WHERE tenant_id = ? AND day = ? AND hour = ? \
        AND bot_id = ? AND intent = ?";
    read_intents = "SELECT hour, bot_id, intent, hits, confidence_micros FROM analytics_intents \
        WHERE tenant_id = ? AND day = ? AND hour >= ? AND hour < ?";
    index_unmatched = "INSERT INTO analytics_unmatched (tenant_id, day, created_at, \
        conversation_id, seq, bot_id, message_id) VALUES (?, ?, ?, ?, ?, ?, ?)";
    forget_unmatched_day = "DELETE FROM analytics_unmatched WHERE tenant_id = ? AND day = ?";
    forget_unmatched_before = "DELETE FROM analytics_unmatched WHERE tenant_id = ? AND day = ? \
        AND created_at < ?";
    read_unmatched = "SELECT created_at, conversation_id, seq, bot_id, message_id \
        FROM analytics_unmatched WHERE tenant_id = ? AND day = ? AND created_at >= ? \
        AND created_at < ?";

    // ---- accounts (versions, the roles version), API key fields, invitations: 0005 ----
    get_account_row = "SELECT data, version FROM accounts WHERE tenant_id = ? \
        AND account_id = ?";
    update_account = "UPDATE accounts SET data = ?, version = ? WHERE tenant_id = ? \
        AND account_id = ? IF version = ?";
    /// With an owner's demotion or removal, in one conditional batch: every such change of a
    /// tenant moves this static column, so they serialise and each counts the owners left.
    bump_roles = "UPDATE accounts SET roles_version = ? WHERE tenant_id = ? \
        IF roles_version = ?";
    revoke_api_key = "UPDATE api_keys SET revoked = true WHERE tenant_id = ? AND key_id = ?";
    /// Written at the use's own time as its timestamp, so the latest use wins.
    touch_api_key = "UPDATE api_keys USING TIMESTAMP ? SET last_used_at = ? \
        WHERE tenant_id = ? AND key_id = ?";
    put_invitation = "INSERT INTO invitations (tenant_id, invitation_id, data) \
        VALUES (?, ?, ?) USING TTL ?";
    get_invitation = "SELECT data FROM invitations WHERE tenant_id = ? AND invitation_id = ?";
    list_invitations = "SELECT data FROM invitations WHERE tenant_id = ?";
    delete_invitation = "DELETE FROM invitations WHERE tenant_id = ? AND invitation_id = ?";
    claim_invitation_digest = "INSERT INTO invitation_digests (digest, tenant_id, \
        invitation_id) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?";
    get_invitation_digest = "SELECT tenant_id, invitation_id FROM invitation_digests \
        WHERE digest = ?";
    take_invitation_digest = "DELETE FROM invitation_digests WHERE digest = ? IF EXISTS";

    // ---- billing: 0006 ----
    get_usage = "SELECT count FROM usage WHERE tenant_id = ? AND month = ? AND meter = ?";
    insert_usage = "INSERT INTO usage (tenant_id, month, meter, count) VALUES (?, ?, ?, ?) \
        IF NOT EXISTS";
    update_usage = "UPDATE usage SET count = ? WHERE tenant_id = ? AND month = ? AND meter = ? \
        IF count = ?";
    list_usage = "SELECT meter, count FROM usage WHERE tenant_id = ? AND month = ?";
    claim_customer = "INSERT INTO billing_customers (tenant_id, customer) VALUES (?, ?) \
        IF NOT EXISTS";
    get_customer = "SELECT customer FROM billing_customers WHERE tenant_id = ?";
    get_subscription_row = "SELECT tenant_id, event_created, data FROM subscriptions \
        WHERE subscription_id = ?";
    insert_subscription = "INSERT INTO subscriptions (subscription_id, tenant_id, \
        event_created, data) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    update_subscription = "UPDATE subscriptions SET event_created = ?, data = ? \
        WHERE subscription_id = ? IF event_created = ?";
    index_subscription = "INSERT INTO subscriptions_by_tenant (tenant_id, subscription_id) \
        VALUES (?, ?)";
    list_subscription_ids = "SELECT subscription_id FROM subscriptions_by_tenant \
        WHERE tenant_id = ?";
    claim_event = "INSERT INTO billing_events (event_id, received_at, data, processed) \
        VALUES (?, ?, ?, false) IF NOT EXISTS";
    get_event = "SELECT received_at FROM billing_events WHERE event_id = ?";
    event_processed = "UPDATE billing_events SET processed = true WHERE event_id = ?";
    queue_event = "INSERT INTO billing_events_pending (bucket, received_at, event_id, data) \
        VALUES (0, ?, ?, ?)";
    pending_events = "SELECT data FROM billing_events_pending WHERE bucket = 0 LIMIT ?";
    dequeue_event = "DELETE FROM billing_events_pending WHERE bucket = 0 AND received_at = ? \
        AND event_id = ?";

    // ---- the marketplace: 0007 ----
    put_listing = "INSERT INTO listings (bot_id, tenant_id, data) VALUES (?, ?, ?)";
    get_listing = "SELECT data FROM listings WHERE bot_id = ?";
    scan_listings = "SELECT data FROM listings";
    delete_listing = "DELETE FROM listings WHERE bot_id = ? IF tenant_id = ?";
    put_connect_account = "INSERT INTO connect_accounts (tenant_id, data) VALUES (?, ?)";
    get_connect_account = "SELECT data FROM connect_accounts WHERE tenant_id = ?";
    scan_subscriptions = "SELECT data FROM subscriptions";
}
