//! Data-subject requests, as part of [`Engine`]: find every conversation of one person in a
//! workspace, export all of it, erase all of it.
//!
//! A person is found by what the conversations hold of them (`parla_domain::subjects`): an
//! email address or a name given in a form, a phone number (an SMS or WhatsApp contact, a
//! form field), or a conversation's own id (what a widget visitor can quote). Erasure deletes
//! each conversation through its actor — its single writer, which tells the sockets still
//! connected — with everything the store keeps of it (messages, user data, notes, idempotency
//! keys, the channel contact's mapping and cursor, push devices, the subject keys), drops the
//! knowledge base's cached vectors of their questions, then has the store reclaim the freed
//! space so the words are not left in its files. Counters stay: they hold no personal data.

use std::collections::BTreeMap;

use parla_domain::model::{Conversation, ConversationId, Message, Note, Sender, TenantId};
use serde::Serialize;

use crate::EngineError;
use crate::engine::{Deletion, Engine};

/// At most this many conversations per request (a query that broad is not one person).
pub const MAX_CONVERSATIONS: usize = 5_000;

/// One conversation of the person, as found.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectConversation {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// What found it: `email`, `phone`, `name` or `conversation`.
    pub matched: Vec<String>,
    /// Messages stored.
    pub messages: u64,
}

/// Everything kept of one conversation of the person.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationExport {
    pub conversation: Conversation,
    pub matched: Vec<String>,
    /// What its forms collected.
    pub user_data: BTreeMap<String, String>,
    /// The channel connection and contact (phone number, WhatsApp id) it came through.
    pub contact: Option<(String, String)>,
    /// Devices registered for its notifications.
    pub push_devices: Vec<String>,
    /// Agents' notes about it.
    pub notes: Vec<Note>,
    /// Every message, in order, with its delivery record.
    pub messages: Vec<Message>,
}

/// What an erasure did (no content: who and what, for the record).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Conversations deleted.
    #[schema(value_type = Vec<String>)]
    pub conversations: Vec<ConversationId>,
    /// Messages they held.
    pub messages: u64,
    /// Conversations that could not be deleted now (retry the request).
    #[schema(value_type = Vec<String>)]
    pub failed: Vec<ConversationId>,
}

impl Engine {
    /// Every message of a conversation, in order, read a page at a time.
    async fn transcript(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> Result<Vec<Message>, EngineError> {
        let mut messages: Vec<Message> = Vec::new();
        loop {
            let after = messages.last().map_or(0, |m| m.seq);
            let page = self.store().messages_after(tenant, id, after, 500).await?;
            if page.is_empty() {
                return Ok(messages);
            }
            messages.extend(page);
        }
    }

    /// The conversations of the person `query` names in `tenant` (an email, a phone number, a
    /// name, or a conversation id), oldest first.
    pub async fn find_subject(
        &self,
        tenant: &TenantId,
        query: &str,
    ) -> Result<Vec<SubjectConversation>, EngineError> {
        let store = self.store();
        let mut found: BTreeMap<ConversationId, Vec<String>> = BTreeMap::new();
        for key in parla_domain::subjects::query_keys(query) {
            let kind = key.split(':').next().unwrap_or_default().to_owned();
            for id in store.subject_conversations(tenant, &key).await? {
                let matched = found.entry(id).or_default();
                if !matched.contains(&kind) {
                    matched.push(kind.clone());
                }
            }
        }
        let id = query.trim();
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let id = ConversationId::from(id);
            if store.get_conversation(tenant, &id).await?.is_some() {
                found.entry(id).or_default().push("conversation".into());
            }
        }
        let mut out = Vec::new();
        for (id, matched) in found.into_iter().take(MAX_CONVERSATIONS) {
            // An index row whose conversation is gone (a deletion cut short) finds nothing.
            if let Some(conversation) = store.get_conversation(tenant, &id).await? {
                let messages = store.last_seq(tenant, &id).await?;
                out.push(SubjectConversation { conversation, matched, messages });
            }
        }
        Ok(out)
    }

    /// Everything kept of the person `query` names: each conversation whole.
    pub async fn export_subject(
        &self,
        tenant: &TenantId,
        query: &str,
    ) -> Result<Vec<ConversationExport>, EngineError> {
        let store = self.store();
        let mut out = Vec::new();
        for found in self.find_subject(tenant, query).await? {
            let id = &found.conversation.id;
            let messages = self.transcript(tenant, id).await?;
            out.push(ConversationExport {
                user_data: store.user_data(tenant, id).await?.unwrap_or_default(),
                contact: store.conversation_contact(tenant, id).await?,
                push_devices: store.push_tokens(tenant, id).await?,
                notes: store.list_notes(tenant, id).await?,
                messages,
                matched: found.matched,
                conversation: found.conversation,
            });
        }
        Ok(out)
    }

    /// Erases the person `query` names: every conversation found, through its actor, then the
    /// store's freed space. Waits at most `wait` per conversation.
    pub async fn erase_subject(
        &self,
        tenant: &TenantId,
        query: &str,
        wait: std::time::Duration,
    ) -> Result<Erasure, EngineError> {
        let mut erasure = Erasure::default();
        let mut questions = Vec::new();
        for found in self.find_subject(tenant, query).await? {
            let key = found.conversation.key();
            // Their questions, to drop from the knowledge base's cache.
            let transcript = self.transcript(tenant, &key.conversation_id).await?;
            questions.extend(
                transcript.into_iter().filter(|m| m.sender == Sender::User).map(|m| m.text),
            );
            match self.delete_conversation(&key, wait).await? {
                Deletion::Deleted => {
                    erasure.messages += found.messages;
                    erasure.conversations.push(key.conversation_id);
                }
                Deletion::Refused(why) => {
                    tracing::warn!(%why, "a conversation refused erasure");
                    erasure.failed.push(key.conversation_id);
                }
                Deletion::TimedOut => erasure.failed.push(key.conversation_id),
            }
        }
        self.knowledge().forget_questions(&questions);
        if !erasure.conversations.is_empty() {
            self.store().reclaim_deleted().await?;
        }
        Ok(erasure)
    }
}
