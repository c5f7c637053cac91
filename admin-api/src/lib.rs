//! Parla's admin REST API, under `/api`.
//!
//! The tenants' API from the product brief: auth (register, login, refresh, logout, password
//! reset, TOTP), tenancy and roles, API keys, bots, intents, knowledge base, conversations and
//! analytics, with an OpenAPI 3.1 document generated from the code. Handlers stay thin: they
//! call the engine's services and its store port, and every query is scoped to the caller's
//! tenant. Dependency direction: `admin-api` → `engine`; never another transport.
//!
//! # Layout
//! - [`auth`]: the credential primitives every endpoint builds on — Argon2id password hashes,
//!   HS256 access tokens (JWT) with their claims, opaque refresh tokens and API keys stored only
//!   as SHA-256 digests. Pure functions, no I/O.
//!
//! The endpoints themselves (issue 3) are not built yet.

pub mod auth;
