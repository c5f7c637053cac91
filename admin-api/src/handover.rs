//! Human agents over REST, for integrations and for the console's first load: the inbox, and
//! claim, release, transfer, reply, notes and resolve on one conversation. Every action runs in
//! the conversation's actor (the same path as the agent socket), so a claim made here races
//! fairly with one made on a socket and the visitor's widget sees the outcome live.
//!
//! A person acts as themselves. An API key acts for a member it names in `agent_id` (role
//! agent or above). Admins and owners may release, transfer and resolve a conversation another
//! agent holds; only its holder replies in it.

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::{
    agents::{AgentAction, AgentCommand, CommandOutcome, InboxEntry},
    engine::INBOX_SCAN,
    model::{AccountId, AgentRef, ConversationId, ConversationKey, Note, Resolution, Role},
    presence::{AgentPresence, PresenceStatus},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AdminState,
    error::ApiError,
    routes::Caller,
    views::{ConversationView, ErrorBody, Posted},
};

/// Who acts for `caller`: the person, or the member an API key names.
async fn acting_agent(
    state: &AdminState,
    caller: &Caller,
    agent_id: Option<String>,
) -> Result<(AgentRef, bool), ApiError> {
    let id = match (&caller.account, caller.scopes.is_some(), agent_id) {
        (Some(me), false, None) => me.clone(),
        (Some(me), false, Some(named)) if named == me.0 => me.clone(),
        (_, false, Some(_)) => {
            return Err(ApiError::invalid("agent_id", "a person acts as themselves"));
        }
        (_, true, Some(named)) => AccountId(named),
        (_, _, None) => {
            return Err(ApiError::invalid(
                "agent_id",
                "an API key must name the member it acts for",
            ));
        }
    };
    let member = member(state, caller, &id, "agent_id").await?;
    Ok((AgentRef { id: member.id, name: member.name }, member.role <= Role::Admin))
}

/// A member of the caller's tenant who may take part in conversations.
async fn member(
    state: &AdminState,
    caller: &Caller,
    id: &AccountId,
    field: &str,
) -> Result<parla_engine::model::Account, ApiError> {
    let account = state
        .store
        .get_account(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::invalid(field, "no such member in this workspace"))?;
    if account.role > Role::Agent {
        return Err(ApiError::invalid(field, "viewers cannot take part in conversations"));
    }
    Ok(account)
}

/// Checks the conversation is the caller's, then runs `action` as the acting agent.
async fn run(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    agent_id: Option<String>,
    action: impl FnOnce(&AgentRef) -> AgentAction,
) -> Result<CommandOutcome, ApiError> {
    caller.require_agent_work()?;
    let id = own(state, caller, id).await?;
    let (agent, privileged) = acting_agent(state, caller, agent_id).await?;
    let action = action(&agent);
    let key = ConversationKey { tenant_id: caller.tenant.clone(), conversation_id: id };
    let command = AgentCommand { agent, privileged, action };
    state.engine.command(key, command).await.map_err(ApiError::from)
}

/// The caller's conversation `id`, or 404.
async fn own(state: &AdminState, caller: &Caller, id: &str) -> Result<ConversationId, ApiError> {
    let id = ConversationId(id.to_owned());
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such conversation");
    state.store.get_conversation(&caller.tenant, &id).await?.ok_or_else(not_found)?;
    Ok(id)
}

/// Answers a handling change with the conversation as it now stands.
async fn conversation(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let id = ConversationId(id.to_owned());
    let c = state.store.get_conversation(&caller.tenant, &id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "the conversation was deleted")
    })?;
    Ok(HttpResponse::Ok().json(ConversationView::from(&c)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// For API keys: the member acting (a person acts as themselves).
    agent_id: Option<String>,
}

/// `POST /api/conversations/{id}/claim`: take it over from the bot. The bot's reply in progress
/// is cancelled and the visitor told (`handoff`). Claiming one you hold is a no-op.
#[utoipa::path(post, path = "/api/conversations/{id}/claim", tag = "agents", operation_id = "claim_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = AgentBody,
    responses((status = 200, description = "Yours now", body = ConversationView),
              (status = 409, description = "`already_claimed`: another agent has it", body = ErrorBody)))]
pub async fn claim(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<AgentBody>,
) -> Result<HttpResponse, ApiError> {
    run(&state, &caller, &path, body.into_inner().agent_id, |_| AgentAction::Claim).await?;
    conversation(&state, &caller, &path).await
}

/// `POST /api/conversations/{id}/release`: hand it back to the bot.
#[utoipa::path(post, path = "/api/conversations/{id}/release", tag = "agents", operation_id = "release_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = AgentBody,
    responses((status = 200, description = "The bot answers again", body = ConversationView),
              (status = 409, description = "`not_assigned`: another agent holds it", body = ErrorBody)))]
pub async fn release(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<AgentBody>,
) -> Result<HttpResponse, ApiError> {
    run(&state, &caller, &path, body.into_inner().agent_id, |_| AgentAction::Release).await?;
    conversation(&state, &caller, &path).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The member (role agent or above) who takes it.
    to: String,
    agent_id: Option<String>,
}

/// `POST /api/conversations/{id}/transfer`: give it to another agent.
#[utoipa::path(post, path = "/api/conversations/{id}/transfer", tag = "agents", operation_id = "transfer_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = TransferBody,
    responses((status = 200, description = "The other agent holds it", body = ConversationView),
              (status = 409, description = "`not_assigned`: another agent holds it", body = ErrorBody)))]
pub async fn transfer(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<TransferBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    caller.require_agent_work()?;
    own(&state, &caller, &path).await?; // 404 before anything is said about `to`.
    let to = member(&state, &caller, &AccountId(body.to), "to").await?;
    let to = AgentRef { id: to.id, name: to.name };
    run(&state, &caller, &path, body.agent_id, |_| AgentAction::Transfer { to }).await?;
    conversation(&state, &caller, &path).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    resolution: Resolution,
    /// Ask the visitor for a 1–5 satisfaction score (their next message answers it).
    #[serde(default)]
    csat: bool,
    agent_id: Option<String>,
}

/// `POST /api/conversations/{id}/resolve`: close it with a resolution. A new visitor message
/// opens it again, with the bot.
#[utoipa::path(post, path = "/api/conversations/{id}/resolve", tag = "agents", operation_id = "resolve_conversation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = ResolveBody,
    responses((status = 200, description = "RESOLVED", body = ConversationView),
              (status = 409, description = "`not_assigned`: another agent holds it", body = ErrorBody)))]
pub async fn resolve(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let ResolveBody { resolution, csat, agent_id } = body.into_inner();
    run(&state, &caller, &path, agent_id, |_| AgentAction::Resolve { resolution, csat }).await?;
    conversation(&state, &caller, &path).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// The idempotency key: a retry with the same key is stored once.
    #[schema(min_length = 1, max_length = 128)]
    client_msg_id: String,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    text: String,
    agent_id: Option<String>,
}

/// Checks an agent's text (and a reply's `client_msg_id`) as the agent socket does.
fn checked(client_msg_id: Option<&str>, text: String) -> Result<String, ApiError> {
    parla_domain::input::check_agent_text(client_msg_id, &text)
        .map_err(parla_engine::EngineError::from)?;
    Ok(text)
}

/// `POST /api/conversations/{id}/replies`: the holding agent writes to the visitor (sender
/// `human`). 201 once stored; 200 with the original for a repeated `client_msg_id`.
#[utoipa::path(post, path = "/api/conversations/{id}/replies", tag = "agents", operation_id = "reply_as_agent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = ReplyBody,
    responses((status = 201, description = "Stored and sent to the visitor", body = Posted),
              (status = 200, description = "This `client_msg_id` was already stored: the original", body = Posted),
              (status = 409, description = "`not_assigned`: claim it first", body = ErrorBody)))]
pub async fn reply(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<ReplyBody>,
) -> Result<HttpResponse, ApiError> {
    let ReplyBody { client_msg_id, text, agent_id } = body.into_inner();
    let text = checked(Some(&client_msg_id), text)?;
    caller.require_agent_work()?;
    own(&state, &caller, &path).await?; // 404 before anything is said about the text.
    let text = match state.engine.expand_canned(&caller.tenant, text).await? {
        Ok(text) => text,
        Err(shortcut) => {
            return Err(ApiError::invalid("text", format!("no canned response /{shortcut}")));
        }
    };
    let outcome =
        run(&state, &caller, &path, agent_id, |_| AgentAction::Message { client_msg_id, text })
            .await?;
    let CommandOutcome::Message { message, duplicate } = outcome else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no message"));
    };
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok(HttpResponse::build(status).json(Posted { message: *message, duplicate }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    text: String,
    agent_id: Option<String>,
}

/// `POST /api/conversations/{id}/notes`: a note for agents; the visitor never sees it.
#[utoipa::path(post, path = "/api/conversations/{id}/notes", tag = "agents", operation_id = "add_note",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = NoteBody,
    responses((status = 201, description = "Stored", body = Note)))]
pub async fn add_note(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<NoteBody>,
) -> Result<HttpResponse, ApiError> {
    let NoteBody { text, agent_id } = body.into_inner();
    let text = checked(None, text)?;
    match run(&state, &caller, &path, agent_id, |_| AgentAction::Note { text }).await? {
        CommandOutcome::Note(note) => Ok(HttpResponse::Created().json(note)),
        _ => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no note")),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoteList {
    /// Oldest first.
    pub data: Vec<Note>,
}

/// `GET /api/conversations/{id}/notes`: the agents' notes on a conversation.
#[utoipa::path(get, path = "/api/conversations/{id}/notes", tag = "agents", operation_id = "list_notes",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, description = "Oldest first", body = NoteList)))]
pub async fn list_notes(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let id = own(&state, &caller, &path).await?;
    let data = state.store.list_notes(&caller.tenant, &id).await?;
    Ok(HttpResponse::Ok().json(NoteList { data }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inbox {
    /// Waiting for an agent first (longest waiting first), then held by agents, then the bot's,
    /// newest activity first. Resolved conversations are left out.
    pub data: Vec<InboxEntry>,
}

/// `GET /api/inbox`: the live conversations of the workspace, as agents triage them.
#[utoipa::path(get, path = "/api/inbox", tag = "agents", operation_id = "inbox",
    security(("bearer" = [])),
    responses((status = 200, description = "The inbox", body = Inbox)))]
pub async fn inbox(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let data = state.engine.inbox(&caller.tenant, INBOX_SCAN).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(Inbox { data }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// Members who may take conversations (agents, admins, owners), online first.
    pub data: Vec<AgentPresence>,
}

/// `GET /api/agents`: who can take conversations, and who is online, away or offline now.
#[utoipa::path(get, path = "/api/agents", tag = "agents", operation_id = "list_agents",
    security(("bearer" = [])),
    responses((status = 200, description = "The workspace's agents and their presence", body = AgentList)))]
pub async fn agents(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let anywhere = state.engine.presence().list_anywhere(&caller.tenant).await;
    let status = |id: &AccountId| {
        anywhere.iter().find(|p| p.agent.id == *id).map_or(PresenceStatus::Offline, |p| p.status)
    };
    let mut data: Vec<AgentPresence> = state
        .store
        .list_accounts(&caller.tenant)
        .await?
        .into_iter()
        .filter(|a| a.role <= Role::Agent)
        .map(|a| AgentPresence {
            status: status(&a.id),
            agent: AgentRef { id: a.id, name: a.name },
        })
        .collect();
    data.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.agent.name.cmp(&b.agent.name)));
    Ok(HttpResponse::Ok().json(AgentList { data }))
}
