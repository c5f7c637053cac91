//! The OpenAPI 3.1 document of `/api`, derived from the handlers' `#[utoipa::path]` attributes
//! and the request and view types, served at `GET /api/openapi.json`.
//!
//! Responses every endpoint of a kind can give are added here by convention rather than
//! repeated on each handler: an endpoint with a body or a query can answer 400 (malformed) and
//! 422 (a field failed validation), one with a body 413 (too large); one that needs a bearer token 401 and 403; one
//! with an id in its path 404; every `/api/auth/*` endpoint 429 with `Retry-After`.
//!
//! Links (OpenAPI 3.1 `links`) say where a created resource's id goes next — a new bot's `id`
//! into `GET /api/bots/{id}` and the rest — so clients and schemathesis's stateful phase can
//! follow them.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, HeaderBuilder, Ref, RefOr, ResponseBuilder,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    analytics, audit, billing, bots, canned, channels, conversations, documents, handover, keys,
    marketplace, members, recovery, routes, subjects, totp, workspace,
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Parla admin API",
        description = "Tenants manage accounts, members, API keys, bots, intents and \
                       conversations. Authenticate with `Authorization: Bearer <token>`: an \
                       access token from `/api/auth/login`, or an API key (`pk_…`). Errors \
                       always have the shape `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::register, routes::login, routes::refresh, routes::logout,
        recovery::forgot_password, recovery::reset_password, recovery::verify_email, recovery::resend_verification, recovery::me,
        totp::enroll, totp::confirm,
        workspace::get, workspace::update,
        members::accept, members::list, members::invite, members::set_role, members::remove,
        members::list_invitations, members::revoke_invitation,
        keys::create, keys::list, keys::revoke,
        routes::list_bots, bots::create, bots::get, bots::update, bots::delete, bots::publish,
        bots::pause,
        bots::list_intents, bots::create_intent, bots::get_intent, bots::update_intent, bots::add_example,
        bots::delete_intent,
        conversations::list, conversations::open, conversations::get, conversations::delete,
        conversations::post_message,
        handover::inbox, handover::agents, handover::claim, handover::release, handover::transfer, handover::resolve,
        handover::reply, handover::add_note, handover::list_notes,
        canned::list, canned::create, canned::update, canned::delete,
        channels::list, channels::create, channels::delete,
        documents::list, documents::upload, documents::scrape, documents::get, documents::delete,
        documents::reprocess,
        analytics::overview_handler, analytics::bot_handler, analytics::conversations_handler,
        analytics::intents_handler, analytics::export_handler,
        billing::plans, billing::usage, billing::checkout, billing::portal, billing::subscriptions,
        marketplace::browse, marketplace::get, marketplace::put_listing, marketplace::get_listing,
        marketplace::delete_listing, marketplace::connect, marketplace::connect_status,
        marketplace::subscribe, marketplace::cancel,
        subjects::find, subjects::export, subjects::erase, audit::list,
    ),
    components(schemas(crate::views::ErrorBody)),
    modifiers(&Conventions),
    tags(
        (name = "auth", description = "Accounts, sessions, password reset, two-factor authentication"),
        (name = "workspace", description = "The tenant: its LLM endpoint and token budget"),
        (name = "members", description = "A tenant's people, roles and invitations"),
        (name = "api-keys", description = "Keys for server-to-server integrations"),
        (name = "bots", description = "Bots and their lifecycle"),
        (name = "intents", description = "What a bot recognises and answers"),
        (name = "conversations", description = "Conversations and their messages"),
        (name = "agents", description = "Human agents: the inbox, taking conversations over from the bot and handing them back"),
        (name = "channels", description = "A bot's connections to WhatsApp (SMS and push to come)"),
        (name = "knowledge", description = "A bot's documents, answered from when no intent matches"),
        (name = "billing", description = "The workspace's plan, its usage against the plan's limits, checkout and the customer portal (Stripe)"),
        (name = "marketplace", description = "Creators list bots and get paid (Stripe Connect); buyers browse (no sign-in), subscribe and get the bot installed"),
        (name = "data-protection", description = "A person's data in the workspace: found by email, phone, name or conversation id, exported as one archive, erased everywhere; the audit log of who did what"),
        (name = "analytics", description = "A tenant's numbers, kept as counters while messages flow; export as CSV or JSON"),
    ),
)]
pub struct ApiDoc;

/// The security scheme and the conventional error responses (see the module docs).
struct Conventions;

/// Reusable error responses: (component name, description).
const ERRORS: [(&str, &str); 7] = [
    ("BadRequest", "Malformed JSON or query, or an invalid, used or expired token"),
    ("PayloadTooLarge", "The body is larger than 64 KiB"),
    ("ValidationFailed", "A field failed validation; `details.field` names it"),
    ("Unauthenticated", "No, an invalid or an expired bearer token"),
    ("Forbidden", "The role or the API key's scopes do not allow this"),
    ("NotFound", "No such resource in the caller's tenant"),
    ("TooManyRequests", "Rate limited; retry after `Retry-After` seconds"),
];

/// (from operation, its status, link to operation, parameters as runtime expressions).
type LinkRule = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

const BOT_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const INTENT_ID: &[(&str, &str)] =
    &[("id", "$request.path.id"), ("intent_id", "$response.body#/id")];
const CONVERSATION_ID: &[(&str, &str)] = &[("id", "$response.body#/conversation_id")];

const LINKS: &[LinkRule] = &[
    ("create_bot", "201", "get_bot", BOT_ID),
    ("create_bot", "201", "update_bot", BOT_ID),
    ("create_bot", "201", "publish_bot", BOT_ID),
    ("create_bot", "201", "pause_bot", BOT_ID),
    ("create_bot", "201", "delete_bot", BOT_ID),
    ("create_bot", "201", "list_intents", BOT_ID),
    ("create_bot", "201", "create_intent", BOT_ID),
    ("create_bot", "201", "list_conversations", BOT_ID),
    ("create_bot", "201", "list_channels", BOT_ID),
    ("create_bot", "201", "create_channel", BOT_ID),
    ("create_intent", "201", "get_intent", INTENT_ID),
    ("create_intent", "201", "update_intent", INTENT_ID),
    ("create_intent", "201", "delete_intent", INTENT_ID),
    ("open_conversation", "201", "get_conversation", CONVERSATION_ID),
    ("open_conversation", "201", "post_message", CONVERSATION_ID),
    ("open_conversation", "201", "delete_conversation", CONVERSATION_ID),
    ("open_conversation", "201", "claim_conversation", CONVERSATION_ID),
    ("open_conversation", "201", "release_conversation", CONVERSATION_ID),
    ("open_conversation", "201", "resolve_conversation", CONVERSATION_ID),
    ("open_conversation", "201", "add_note", CONVERSATION_ID),
    ("open_conversation", "201", "list_notes", CONVERSATION_ID),
    ("create_api_key", "201", "revoke_api_key", BOT_ID),
    ("create_canned", "201", "update_canned", BOT_ID),
    ("create_canned", "201", "delete_canned", BOT_ID),
    ("accept_invitation", "201", "set_member_role", BOT_ID),
    ("accept_invitation", "201", "remove_member", BOT_ID),
    ("invite_member", "202", "revoke_invitation", BOT_ID),
];

impl Modify for Conventions {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or an API key pk_…")
                    .build(),
            ),
        );
        for (name, description) in ERRORS {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            );
            if name == "TooManyRequests" {
                let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new().schema(seconds).description(Some("Seconds")).build(),
                );
            }
            components.responses.insert(name.to_owned(), RefOr::T(response.build()));
        }
        for (path, item) in api.paths.paths.iter_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    })
                });
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut conventional = Vec::new();
                if has_body || has_query {
                    conventional.push(("400", "BadRequest"));
                }
                if has_body {
                    conventional.push(("413", "PayloadTooLarge"));
                }
                if has_body || has_query {
                    conventional.push(("422", "ValidationFailed"));
                }
                if secured {
                    conventional.extend([("401", "Unauthenticated"), ("403", "Forbidden")]);
                }
                if path.contains('{') {
                    conventional.push(("404", "NotFound"));
                }
                if path.starts_with("/api/auth/") {
                    conventional.push(("429", "TooManyRequests"));
                }
                for (status, name) in conventional {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// Adds [`LINKS`] to the rendered document. (Done on the JSON: utoipa 5.5 serialises a link's
/// `operationId` as `operation_id`, which no OpenAPI tool reads.)
fn add_links(document: &mut serde_json::Value) {
    let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for operation in paths.values_mut().filter_map(|item| item.as_object_mut()).flat_map(|item| {
        item.values_mut().filter(|operation| operation.get("operationId").is_some())
    }) {
        let from = operation["operationId"].as_str().unwrap_or_default().to_owned();
        for (_, status, to, parameters) in LINKS.iter().filter(|rule| rule.0 == from) {
            let parameters: serde_json::Map<_, _> =
                parameters.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
            operation["responses"][*status]["links"][*to] =
                json!({ "operationId": to, "parameters": parameters });
        }
    }
}

/// The document, rendered once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let rendered = serde_json::to_value(ApiDoc::openapi()).and_then(|mut document| {
            add_links(&mut document);
            serde_json::to_string_pretty(&document)
        });
        rendered.unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not render the OpenAPI document");
            String::from("{}")
        })
    })
}

/// `GET /api/openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

#[cfg(test)]
mod tests {
    /// The console's TypeScript types (`widget/src/console/api.gen.ts`) come from the document's
    /// schemas; a stale committed copy fails here. `PARLA_WRITE_SCHEMA=1 cargo test -p
    /// parla-admin-api api_schemas` rewrites it (then `npm run gen-types --prefix widget`).
    #[test]
    fn api_schemas_are_committed() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../widget/src/console/api.schema.json");
        let document: serde_json::Value =
            serde_json::from_str(super::document()).expect("the document is JSON");
        let schemas =
            serde_json::json!({ "components": { "schemas": document["components"]["schemas"] } });
        let fresh = serde_json::to_string_pretty(&schemas).expect("json") + "\n";
        if std::env::var_os("PARLA_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &fresh).expect("write the schemas");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{path} is stale: run PARLA_WRITE_SCHEMA=1 cargo test -p parla-admin-api api_schemas, \
             then npm run gen-types --prefix widget"
        );
    }
}
