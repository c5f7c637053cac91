//! Parla's integration tests: one test binary (linking the whole dependency tree once, not once
//! per file), each former file a module. Every test speaks to a real server through its public
//! door: `common` starts one (in-process, or the real `parla` binary) and holds the clients.
//!
//! Run one area with a filter, e.g. `cargo test --test integration widget::` (or
//! `hardening::` …). The workspace's dependency arrows are a test binary of their own
//! (`tests/arrows.rs`): it links nothing of Parla.

mod common;

mod admin_auth;
mod admin_bots;
mod admin_conversations;
mod admin_keys;
mod admin_mail;
mod admin_matrix;
mod admin_members;
mod admin_openapi;
mod admin_webhooks;
mod agent_routing;
mod agents;
mod analytics;
mod audit;
mod billing;
mod billing_stripe;
mod cli;
mod cluster;
mod data_subjects;
mod durability;
mod escalation;
mod hardening;
mod hardening_auth;
mod hardening_egress;
mod knowledge;
mod knowledge_model;
mod knowledge_scrape;
mod llm;
mod loadtest;
mod marketplace;
mod observability;
mod preview;
mod push;
mod redaction;
mod retention;
mod rich_messages;
mod secrets;
mod sms;
mod tls;
mod vectors;
mod whatsapp;
mod widget;
