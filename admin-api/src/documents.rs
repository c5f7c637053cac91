//! `/api/bots/{id}/documents`: a bot's knowledge base. Uploads are stored with their bytes
//! (PENDING) and processed in the background (PROCESSING → COMPLETED or FAILED with the
//! reason); the answer to an upload does not wait for it. Reads need `bots:read`, writes
//! `bots:write`; another tenant's bot or document is a 404.

use actix_multipart::Multipart;
use actix_web::{HttpResponse, http::StatusCode, web};
use futures_util::StreamExt;
use parla_domain::billing::Limit;
use parla_engine::model::{Bot, BotId, Document, DocumentType, ProcessStatus, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AdminState, error::ApiError, routes::Caller};

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

/// The caller's bot `id`, or 404 (another tenant's bot is not found either).
pub(crate) async fn owned_bot(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> Result<Bot, ApiError> {
    state
        .store
        .get_bot(&caller.tenant, &BotId(id.to_owned()))
        .await?
        .ok_or_else(|| not_found("bot"))
}

async fn owned_document(
    state: &AdminState,
    caller: &Caller,
    bot: &str,
    id: &str,
) -> Result<Document, ApiError> {
    state
        .store
        .get_document(&caller.tenant, id)
        .await?
        .filter(|d| d.bot_id.as_str() == bot)
        .ok_or_else(|| not_found("document"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub data: Vec<Document>,
}

/// The multipart form of an upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the form; the handler reads the stream field by field.
pub struct UploadForm {
    /// The document: .txt, .md, .csv, .json, .html, .pdf or .docx.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A title; the file name when absent.
    title: Option<String>,
}

/// The type of a file from its name, else its declared media type.
fn document_type(file_name: &str, media_type: Option<&str>) -> Option<DocumentType> {
    let extension = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let by_name = match extension.as_deref() {
        Some("txt" | "text") => Some(DocumentType::Txt),
        Some("md" | "markdown") => Some(DocumentType::Markdown),
        Some("csv") => Some(DocumentType::Csv),
        Some("json") => Some(DocumentType::Json),
        Some("html" | "htm") => Some(DocumentType::Html),
        Some("pdf") => Some(DocumentType::Pdf),
        Some("docx") => Some(DocumentType::Docx),
        _ => None,
    };
    by_name.or(match media_type {
        Some("text/plain") => Some(DocumentType::Txt),
        Some("text/markdown") => Some(DocumentType::Markdown),
        Some("text/csv") => Some(DocumentType::Csv),
        Some("application/json") => Some(DocumentType::Json),
        Some("text/html") => Some(DocumentType::Html),
        Some("application/pdf") => Some(DocumentType::Pdf),
        Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document") => {
            Some(DocumentType::Docx)
        }
        _ => None,
    })
}

/// `GET /api/bots/{id}/documents`.
#[utoipa::path(get, path = "/api/bots/{id}/documents", tag = "knowledge", operation_id = "list_documents",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot's documents with their processing status", body = DocumentList)))]
pub async fn list(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:read")?;
    let bot = owned_bot(&state, &caller, &path).await?;
    let data = state.store.list_documents(&caller.tenant, &bot.id).await?;
    Ok(HttpResponse::Ok().json(DocumentList { data }))
}

/// `GET /api/bots/{id}/documents/{doc_id}`.
#[utoipa::path(get, path = "/api/bots/{id}/documents/{doc_id}", tag = "knowledge", operation_id = "get_document",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("doc_id" = String, Path, description = "The document's id")),
    responses((status = 200, description = "The document and its processing status", body = Document)))]
pub async fn get(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:read")?;
    let (bot, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(owned_document(&state, &caller, &bot, &id).await?))
}

/// `POST /api/bots/{id}/documents/upload`: multipart, field `file` (and optional `title`).
#[utoipa::path(post, path = "/api/bots/{id}/documents/upload", tag = "knowledge", operation_id = "upload_document",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 202, description = "Stored and queued: PENDING", body = Document),
              (status = 415, description = "`unsupported_document_type`", body = crate::views::ErrorBody)))]
pub async fn upload(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let bot = owned_bot(&state, &caller, &path).await?;
    let max = state.engine.knowledge().max_document_bytes();
    let malformed = |e: actix_multipart::MultipartError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("invalid multipart body: {e}"),
        )
    };
    let (mut file, mut title) = (None, None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        let file_name =
            field.content_disposition().and_then(|d| d.get_filename()).map(str::to_owned);
        let media_type = field.content_type().map(|m| m.essence_str().to_owned());
        let limit = if name == "file" { max } else { 1024 };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(malformed)?;
            if bytes.len() + chunk.len() > limit {
                let mut e = ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the {name} field is larger than {limit} bytes"),
                );
                e.details = serde_json::json!({ "field": name, "max_bytes": limit });
                return Err(e);
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "file" => file = Some((file_name.unwrap_or_default(), media_type, bytes)),
            "title" => title = Some(String::from_utf8_lossy(&bytes).trim().to_owned()),
            _ => {}
        }
    }
    let Some((file_name, media_type, bytes)) = file else {
        return Err(ApiError::invalid("file", "required: the document, as a multipart field"));
    };
    if bytes.is_empty() {
        return Err(ApiError::invalid("file", "the file is empty"));
    }
    let Some(kind) = document_type(&file_name, media_type.as_deref()) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_document_type",
            "send .txt, .md, .csv, .json, .html, .pdf or .docx",
        ));
    };
    let title = title.filter(|t| !t.is_empty()).unwrap_or_else(|| file_name.clone());
    let title = crate::routes::validate_text("title", &title, 300)
        .unwrap_or_else(|_| "Untitled document".to_owned());
    let source = Some(file_name).filter(|f| !f.is_empty());
    let size = bytes.len() as u64;
    queue_new(&state, &caller, &bot, (title, kind, source, size), &bytes).await
}

/// Stores a new PENDING document of `bot` with its `content`, queues it, answers 202.
async fn queue_new(
    state: &AdminState,
    caller: &Caller,
    bot: &Bot,
    (title, kind, source, size_bytes): (String, DocumentType, Option<String>, u64),
    content: &[u8],
) -> Result<HttpResponse, ApiError> {
    let billing = state.engine.billing();
    billing.ensure_room(&caller.tenant, Limit::Documents, 1).await?;
    billing.ensure_room(&caller.tenant, Limit::StorageMb, size_bytes).await?;
    let now = now_ms();
    let document = Document {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: caller.tenant.clone(),
        bot_id: bot.id.clone(),
        title,
        kind,
        source,
        size_bytes,
        status: ProcessStatus::Pending,
        progress: 0,
        error: None,
        chunks: 0,
        created_at: now,
        updated_at: now,
    };
    state.store.put_document(&document, Some(content)).await?;
    state.engine.knowledge().submit(&caller.tenant, &document.id).await;
    Ok(HttpResponse::Accepted().json(document))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeBody {
    /// The first page, `http://` or `https://`.
    #[schema(max_length = 2048)]
    url: String,
    /// A title; the URL when absent.
    #[schema(min_length = 1, max_length = 300, pattern = r"\S")]
    title: Option<String>,
    /// Pages to read at most, the first included: 1 (default) to 50.
    #[schema(minimum = 1, maximum = 50)]
    max_pages: Option<u32>,
    /// Same-site link hops to follow from the first page: 0 (default) to 3.
    #[schema(minimum = 0, maximum = 3)]
    max_depth: Option<u32>,
}

/// `POST /api/bots/{id}/documents/scrape`: a web page (optionally with the same site's pages
/// it links to) as a document, fetched in the background; robots.txt is honoured.
#[utoipa::path(post, path = "/api/bots/{id}/documents/scrape", tag = "knowledge", operation_id = "scrape_document",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    request_body = ScrapeBody,
    responses((status = 202, description = "Queued: PENDING; the pages are fetched in the background", body = Document)))]
pub async fn scrape(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<ScrapeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let bot = owned_bot(&state, &caller, &path).await?;
    let body = body.into_inner();
    let url = body.url.trim().to_owned();
    parla_domain::http::check_url(&url).map_err(|problem| ApiError::invalid("url", problem))?;
    let max_pages = body.max_pages.unwrap_or(1);
    if !(1..=50).contains(&max_pages) {
        return Err(ApiError::invalid("max_pages", "1 to 50"));
    }
    let max_depth = body.max_depth.unwrap_or(0);
    if max_depth > 3 {
        return Err(ApiError::invalid("max_depth", "0 to 3"));
    }
    let title = match body.title {
        Some(t) => crate::routes::validate_text("title", &t, 300)?,
        None => url.chars().take(300).collect(),
    };
    let request = parla_domain::knowledge::ScrapeRequest { url: url.clone(), max_pages, max_depth };
    let content = serde_json::to_vec(&request).map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })?;
    queue_new(&state, &caller, &bot, (title, DocumentType::WebPage, Some(url), 0), &content).await
}

/// `DELETE /api/bots/{id}/documents/{doc_id}`: the document, its bytes and its chunks.
#[utoipa::path(delete, path = "/api/bots/{id}/documents/{doc_id}", tag = "knowledge", operation_id = "delete_document",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("doc_id" = String, Path, description = "The document's id")),
    responses((status = 204, description = "Deleted; the bot stops answering from it at once")))]
pub async fn delete(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let (bot, id) = path.into_inner();
    let document = owned_document(&state, &caller, &bot, &id).await?;
    state.engine.knowledge().delete_document(&caller.tenant, &document.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/bots/{id}/documents/{doc_id}/reprocess`: extracts and chunks it again (after a
/// failure, or with new chunking settings).
#[utoipa::path(post, path = "/api/bots/{id}/documents/{doc_id}/reprocess", tag = "knowledge", operation_id = "reprocess_document",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("doc_id" = String, Path, description = "The document's id")),
    responses((status = 202, description = "Queued again: PENDING", body = Document)))]
pub async fn reprocess(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let (bot, id) = path.into_inner();
    let mut document = owned_document(&state, &caller, &bot, &id).await?;
    document.status = ProcessStatus::Pending;
    document.progress = 0;
    document.error = None;
    document.updated_at = now_ms();
    state.store.put_document(&document, None).await?;
    state.engine.knowledge().submit(&caller.tenant, &document.id).await;
    Ok(HttpResponse::Accepted().json(document))
}
