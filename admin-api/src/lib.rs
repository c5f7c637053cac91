//! Parla's admin REST API, under `/api`.
//!
//! Nothing lives here yet. This crate will hold the tenants' API from the product brief: auth
//! (register, login, refresh, logout, password reset, TOTP), tenancy and roles, API keys, bots,
//! intents, knowledge base, conversations and analytics, with an OpenAPI 3.1 document generated
//! from the code. Handlers stay thin: they call the engine's services and its store port, and
//! every query is scoped to the caller's tenant.
//! Dependency direction: `admin-api` → `engine`; never another transport.
