//! Parla's channels: WhatsApp Cloud API, SMS (Twilio) and push (FCM).
//!
//! Nothing lives here yet. This crate will hold, for each channel, the same shape: its config,
//! a webhook source (signature-verified, idempotent by the provider's message id) that turns
//! provider payloads into engine `Inbound` events, an outbound sink that turns a bot's token
//! stream into the chunks the provider accepts, a provider client with a configurable base URL,
//! a health check, and tests against a double that speaks the provider's wire format.
//! Dependency direction: `channels` → `engine`; never another transport.
