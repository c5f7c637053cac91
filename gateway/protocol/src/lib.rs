//! Parla's widget protocol v1, the public contract third parties write clients against
//! (`docs/protocol.md`), and the vocabulary the engine stores in the same words.
//!
//! Serde only, so a client (the load generator, a test) can speak the protocol without linking
//! the engine; the JSON Schema of the frames, from which the widget's TypeScript types are
//! generated, and the types' OpenAPI schemas come with the `schema` feature (the engine and the
//! gateway turn it on; its test `protocol_schema_is_committed` runs in the workspace's suite).
//!
//! # Layout
//! - [`vocab`]: who wrote a message ([`vocab::Sender`]), its kind ([`vocab::MessageType`]), how
//!   the widget looks ([`vocab::Appearance`]).
//! - [`rich`]: rich messages (image, file, card, carousel, form), postbacks and form
//!   submissions, with the limits they are checked against.
//! - [`widget`]: the widget socket's frames ([`widget::ClientFrame`], [`widget::ServerFrame`]),
//!   the version, the error codes the gateway produces, the JSON Schema.

pub mod rich;
pub mod vocab;
pub mod widget;
