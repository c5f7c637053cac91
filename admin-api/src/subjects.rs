//! `/api/data-subjects`: a workspace answers a person's request about their data — finds every
//! conversation of theirs (by email, phone number, name or a conversation's id), exports all of
//! it as one archive, erases all of it. Owners and admins, signed in (people only: an API key
//! cannot export or erase a person).

use std::io::Write;

use actix_web::{HttpResponse, web};
use parla_engine::subjects::{ConversationExport, Erasure, SubjectConversation};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use parla_domain::model::rfc3339;

use crate::views::ConversationView;
use crate::{AdminState, error::ApiError, routes::Caller};

/// How long an erasure waits for each conversation's actor.
const ERASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubjectQuery {
    /// An email address, a phone number (with its country code), a name as given in a form,
    /// or a conversation's id.
    #[param(min_length = 1, max_length = 254)]
    #[schema(min_length = 1, max_length = 254)]
    #[serde(default)]
    query: String,
}

impl SubjectQuery {
    fn checked(&self) -> Result<&str, ApiError> {
        let query = self.query.trim();
        if query.is_empty() || query.chars().count() > 254 {
            return Err(ApiError::invalid("query", "1 to 254 characters"));
        }
        Ok(query)
    }
}

/// A conversation of the person.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectConversationView {
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// What found it: `email`, `phone`, `name` or `conversation`.
    pub matched: Vec<String>,
    /// Messages stored.
    pub messages: u64,
}

impl From<&SubjectConversation> for SubjectConversationView {
    fn from(found: &SubjectConversation) -> Self {
        Self {
            conversation: (&found.conversation).into(),
            matched: found.matched.clone(),
            messages: found.messages,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectList {
    pub data: Vec<SubjectConversationView>,
}

/// `GET /api/data-subjects?query=`.
#[utoipa::path(get, path = "/api/data-subjects", tag = "data-protection", operation_id = "find_data_subject",
    security(("bearer" = [])),
    params(SubjectQuery),
    responses((status = 200, description = "The person's conversations in this workspace, oldest first", body = SubjectList),
              (status = 422, description = "`query` is blank or longer than 254 characters", body = crate::views::ErrorBody)))]
pub async fn find(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<SubjectQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let found = state.engine.find_subject(&caller.tenant, query.checked()?).await?;
    Ok(HttpResponse::Ok().json(SubjectList { data: found.iter().map(Into::into).collect() }))
}

/// `POST /api/data-subjects/export`.
#[utoipa::path(post, path = "/api/data-subjects/export", tag = "data-protection", operation_id = "export_data_subject",
    security(("bearer" = [])),
    request_body = SubjectQuery,
    responses((status = 200, description = "A zip archive: `subject.json` (every conversation whole — record, messages with their delivery, form data, contact, push devices, notes) and a readable transcript per conversation",
               content((Vec<u8> = "application/zip")))))]
pub async fn export(
    state: web::Data<AdminState>,
    caller: Caller,
    req: actix_web::HttpRequest,
    body: crate::body::Json<SubjectQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let query = body.checked()?;
    let found = state.engine.export_subject(&caller.tenant, query).await?;
    let ids: Vec<_> = found.iter().map(|c| c.conversation.id.clone()).collect();
    crate::audit::note(&req, serde_json::json!({ "conversations": ids }));
    let archive = archive(&found).map_err(|e| {
        tracing::error!(error = %e, "could not write a data-subject archive");
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    tracing::info!(conversations = found.len(), account = ?caller.account, "data-subject export");
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(("Content-Disposition", "attachment; filename=\"data-subject.zip\""))
        .insert_header(("Cache-Control", "no-store"))
        .body(archive))
}

/// `POST /api/data-subjects/erase`.
#[utoipa::path(post, path = "/api/data-subjects/erase", tag = "data-protection", operation_id = "erase_data_subject",
    security(("bearer" = [])),
    request_body = SubjectQuery,
    responses((status = 200, description = "What was erased: each conversation through its actor (connected sockets are told), then the store's freed space reclaimed. Counters stay. `failed` lists conversations to retry", body = Erasure)))]
pub async fn erase(
    state: web::Data<AdminState>,
    caller: Caller,
    req: actix_web::HttpRequest,
    body: crate::body::Json<SubjectQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let query = body.checked()?;
    let erasure = state.engine.erase_subject(&caller.tenant, query, ERASE_WAIT).await?;
    // What was found, for the record; not the query (it names the person).
    crate::audit::note(
        &req,
        serde_json::json!({
            "conversations": erasure.conversations,
            "messages": erasure.messages,
            "failed": erasure.failed,
        }),
    );
    tracing::info!(
        conversations = erasure.conversations.len(),
        messages = erasure.messages,
        failed = erasure.failed.len(),
        account = ?caller.account,
        "data-subject erasure"
    );
    Ok(HttpResponse::Ok().json(erasure))
}

/// The export archive: `subject.json` and `transcripts/{conversation}.txt`.
fn archive(found: &[ConversationExport]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let json = serde_json::json!({
        "exported_at": parla_engine::model::now_ms(),
        "conversations": found,
    });
    zip.start_file("subject.json", options).map_err(|e| e.to_string())?;
    let text = serde_json::to_vec_pretty(&json).map_err(|e| e.to_string())?;
    zip.write_all(&text).map_err(|e| e.to_string())?;
    for conversation in found {
        let name = format!("transcripts/{}.txt", conversation.conversation.id);
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(transcript(conversation).as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// A conversation as a person reads it: one line per message, time and who.
fn transcript(found: &ConversationExport) -> String {
    let c = &found.conversation;
    let mut out =
        format!("Conversation {} ({:?}), started {}\n", c.id, c.source, rfc3339(c.started_at));
    if let Some((_, contact)) = &found.contact {
        out.push_str(&format!("Contact: {contact}\n"));
    }
    for (key, value) in &found.user_data {
        out.push_str(&format!("{key}: {value}\n"));
    }
    out.push('\n');
    for m in &found.messages {
        let who = serde_json::to_value(m.sender).ok();
        let who = who.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        out.push_str(&format!("[{}] {who}: {}\n", rfc3339(m.created_at), m.text));
    }
    out
}
