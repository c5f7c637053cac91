//! Conversations for server-side integrations: list a bot's conversations, read one with its
//! messages paged by `seq`, open one, and post a message into it through the same conversation
//! actor as the widget (so a visitor's widget sees it live, and the bot answers).
//!
//! Opening, posting as the visitor and deleting are an integration's or an admin's
//! (`conversations:write`: an API key holding it, or an admin or owner): an agent takes part
//! in conversations as `human` only, through `handover`. Opening and deleting a preview (the
//! tenant's own test chat, [`Channel::Preview`]) is for whoever may edit bots (`bots:write`).

use std::time::Duration;

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::{
    Deletion, OpenRequest,
    input::VisitorInput,
    model::{BotId, Channel, ConversationId, ConversationKey},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::{
    AdminState,
    error::ApiError,
    routes::Caller,
    views::{ConversationDetail, ConversationPage, ConversationView, ErrorBody, Opened, Posted},
};

/// How long `POST …/messages` waits for the actor to store the message.
const STORE_WAIT: Duration = Duration::from_secs(10);

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

/// A requested page size (`limit`): `default` when absent, else 1 to `max`.
fn page_size(limit: Option<u32>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit.map(|l| l as usize) {
        None => Ok(default),
        Some(l) if (1..=max).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::invalid("limit", format!("must be 1 to {max}"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page.
    before: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Only conversations from this channel.
    #[param(inline)]
    channel: Option<Channel>,
    /// Only conversations in this status (e.g. ESCALATED: waiting for an agent).
    #[param(inline)]
    status: Option<parla_engine::model::ConversationStatus>,
    /// Only conversations started at or after this time (Unix milliseconds).
    started_after: Option<i64>,
    /// Only conversations started before this time (Unix milliseconds).
    started_before: Option<i64>,
}

/// Store pages a filtered listing reads at most per request; past that the page is answered
/// short, with a cursor to go on from.
const MAX_SCAN_PAGES: usize = 20;

/// `GET /api/bots/{id}/conversations`: newest first, cursor-paged, optionally filtered. A
/// filtered page may hold fewer than `limit` conversations: go on while `next_cursor` is set.
#[utoipa::path(get, path = "/api/bots/{id}/conversations", tag = "conversations", operation_id = "list_conversations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ListQuery),
    responses((status = 200, description = "One page, newest first", body = ConversationPage)))]
pub async fn list(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let bot = BotId(path.into_inner());
    state.store.get_bot(&caller.tenant, &bot).await?.ok_or_else(|| not_found("bot"))?;
    let limit = page_size(query.limit, 50, 200)?;
    let wanted = |c: &parla_engine::model::Conversation| {
        query.channel.is_none_or(|ch| c.source == ch)
            && query.status.is_none_or(|s| c.handling.status == s)
            && query.started_after.is_none_or(|t| c.started_at >= t)
            && query.started_before.is_none_or(|t| c.started_at < t)
    };
    let mut cursor = query.before.clone().map(ConversationId);
    let mut data = Vec::new();
    let mut more = false;
    'scan: for _ in 0..MAX_SCAN_PAGES {
        let page =
            state.store.list_conversations(&caller.tenant, &bot, cursor.as_ref(), limit).await?;
        more = page.len() == limit;
        for c in &page {
            cursor = Some(c.id.clone());
            if query.started_after.is_some_and(|t| c.started_at < t) {
                // Newest first: everything after this started earlier still.
                more = false;
                break 'scan;
            }
            if wanted(c) {
                data.push(ConversationView::from(c));
                if data.len() == limit {
                    more = true;
                    break 'scan;
                }
            }
        }
        if !more {
            break;
        }
    }
    let next_cursor = more.then(|| cursor.map(|c| c.0)).flatten();
    Ok(HttpResponse::Ok().json(ConversationPage { data, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages with a greater `seq` (default 0: from the first).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    after_seq: Option<u64>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

async fn own_conversation(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> Result<parla_engine::model::Conversation, ApiError> {
    state
        .store
        .get_conversation(&caller.tenant, &ConversationId(id.to_owned()))
        .await?
        .ok_or_else(|| not_found("conversation"))
}

/// `GET /api/conversations/{id}`: the conversation and its messages after `after_seq`.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", operation_id = "get_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id"), MessagesQuery),
    responses((status = 200, description = "The conversation and a page of its messages", body = ConversationDetail)))]
pub async fn get(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let conversation = own_conversation(&state, &caller, &path).await?;
    let limit = page_size(query.limit, 100, 500)?;
    // The documented range: seqs are int64 on the wire (and in the CQL store).
    let after_seq = query.after_seq.unwrap_or(0);
    if i64::try_from(after_seq).is_err() {
        return Err(ApiError::invalid("after_seq", "must be at most 9223372036854775807"));
    }
    let messages =
        state.store.messages_after(&caller.tenant, &conversation.id, after_seq, limit).await?;
    let next_after_seq =
        (messages.len() == limit).then(|| messages.last().map(|m| m.seq)).flatten();
    // Deleted since it was read: it has no data any more.
    let user_data =
        state.store.user_data(&caller.tenant, &conversation.id).await?.unwrap_or_default();
    Ok(HttpResponse::Ok().json(ConversationDetail {
        conversation: ConversationView::from(&conversation),
        user_data,
        messages,
        next_after_seq,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    bot_id: String,
    /// A preview: the tenant's own test chat with the bot (the console's "Try it"). Needs
    /// `bots:write` instead of `conversations:write`; opened whatever the bot's status, and a
    /// widget resumes it with the returned token from any origin. It counts in no analytics,
    /// never reaches the agents' inbox and is never escalated.
    #[serde(default)]
    preview: bool,
}

/// `POST /api/conversations`: opens a conversation with one of the tenant's active bots (or,
/// as a preview, with any of its bots). Returns the resume token a widget needs to join it.
#[utoipa::path(post, path = "/api/conversations", tag = "conversations", operation_id = "open_conversation",
    security(("bearer" = [])),
    request_body = OpenBody,
    responses((status = 201, description = "Opened; the bot's welcome follows", body = Opened),
              (status = 403, description = "The caller lacks `conversations:write` (`bots:write` for a preview)", body = ErrorBody),
              (status = 404, description = "No such bot in the caller's tenant", body = ErrorBody),
              (status = 409, description = "`bot_unavailable`: the bot is not ACTIVE (never for a preview)", body = ErrorBody),
              (status = 503, description = "`tenant_at_capacity`, `conversation_busy`, `shutting_down` or `not_stored`: retry", body = ErrorBody)))]
pub async fn open(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<OpenBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    caller.require(if body.preview { "bots:write" } else { "conversations:write" })?;
    let bot = BotId(body.bot_id);
    state.store.get_bot(&caller.tenant, &bot).await?.ok_or_else(|| not_found("bot"))?;
    let (source, user_agent) = if body.preview {
        (Channel::Preview, "console-preview")
    } else {
        (Channel::Api, "admin-api")
    };
    let request = OpenRequest {
        bot_id: bot,
        resume: None,
        user_agent: Some(user_agent.into()),
        source,
        origin: None,
    };
    let opened = state.engine.open(request).await.map_err(ApiError::from)?;
    // An integration asked for it: stored now, with the bot's greeting.
    if let Some(pending) = &opened.pending {
        state.engine.materialize(pending).await.map_err(ApiError::from)?;
    }
    Ok(HttpResponse::Created().json(Opened {
        conversation_id: opened.key.conversation_id,
        resume_token: opened.resume_token,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// The idempotency key: a retry with the same key is stored once.
    #[schema(min_length = 1, max_length = 128)]
    client_msg_id: String,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    text: String,
}

/// `POST /api/conversations/{id}/messages`: a visitor message sent by an integration, through
/// the conversation's actor. Answers once it is stored (201), or with the stored original for
/// a repeated `client_msg_id` (200).
#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "conversations", operation_id = "post_message",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = PostBody,
    responses((status = 201, description = "Stored; the bot's reply follows on the conversation", body = Posted),
              (status = 200, description = "This `client_msg_id` was already stored: the original", body = Posted),
              (status = 422, description = "`validation_failed`: `client_msg_id` or `text` out of shape (`details.field` says which)", body = ErrorBody),
              (status = 503, description = "`tenant_at_capacity`, `conversation_busy`, `shutting_down` or `not_stored`: retry", body = ErrorBody),
              (status = 504, description = "`timeout`: not confirmed in time; retry with the same `client_msg_id`", body = ErrorBody)))]
pub async fn post_message(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<PostBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:write")?;
    let body = body.into_inner();
    let conversation = own_conversation(&state, &caller, &path).await?;
    let key =
        ConversationKey { tenant_id: caller.tenant.clone(), conversation_id: conversation.id };
    let input = VisitorInput::text(body.client_msg_id, body.text);
    let (message, duplicate) = state.engine.post_visitor_message(key, input, STORE_WAIT).await?;
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok(HttpResponse::build(status).json(Posted { message, duplicate }))
}

/// `DELETE /api/conversations/{id}`: the conversation and all its messages, deleted by its
/// own actor (so nothing is appended behind the deletion). Connected widgets are told. A
/// preview may also be deleted with `bots:write` (whoever may open one may restart it).
#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations", operation_id = "delete_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 204, description = "Deleted with its messages; connected widgets are told"),
              (status = 403, description = "The caller lacks `conversations:write` (or `bots:write`, for a preview)", body = ErrorBody),
              (status = 503, description = "`tenant_at_capacity`, `conversation_busy`, `shutting_down` or `not_stored`: retry", body = ErrorBody),
              (status = 504, description = "`timeout`: not confirmed in time; retry", body = ErrorBody)))]
pub async fn delete(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Without `conversations:write`, `bots:write` deletes previews only.
    let previews_only = match caller.require("conversations:write") {
        Ok(()) => false,
        Err(e) => {
            caller.require("bots:write").map_err(|_| e)?;
            true
        }
    };
    let conversation = own_conversation(&state, &caller, &path).await?;
    if previews_only && conversation.source != Channel::Preview {
        caller.require("conversations:write")?;
    }
    let key =
        ConversationKey { tenant_id: caller.tenant.clone(), conversation_id: conversation.id };
    match state.engine.delete_conversation(&key, STORE_WAIT).await {
        Ok(Deletion::Deleted) => Ok(HttpResponse::NoContent().finish()),
        Ok(Deletion::Refused(why)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_deleted", why))
        }
        Ok(Deletion::TimedOut) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the deletion was not confirmed in time; retry",
        )),
        Err(e) => Err(e.into()),
    }
}
