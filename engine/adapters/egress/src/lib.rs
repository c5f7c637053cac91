//! Parla's outbound HTTP adapter: everything that calls out to an address a tenant or the
//! operator chose, under one set of rules.
//!
//! # Layout
//! - [`guard`]: the rules (SSRF): address classes, no redirects, the address checked is the
//!   address connected to ([`guard::TenantEgress`]); the operator's client.
//! - [`llm`]: the domain's `Responder` on any OpenAI-compatible chat-completions API, streamed
//!   and bounded; a matched intent, or no endpoint, falls back to the responder it wraps.
//! - [`webhooks`]: the domain's `IntentHooks` as signed intent webhooks (sign, verify, retry).
//! - [`http`]: the domain's `TenantHttp` (GETs for the scraper) on the guard.
//!
//! Depends on the domain and the settings only (the workspace's arrows): the engine's core
//! never sees reqwest.

pub mod guard;
pub mod http;
pub mod llm;
pub mod webhooks;
