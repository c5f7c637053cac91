//! The [`Delivery`] port.

use std::sync::Arc;

use async_trait::async_trait;

use super::{BusError, Envelope, InboundHandler};
use crate::model::ConversationKey;

/// Getting inbound events to the node and actor hosting their conversation, and agents' commands
/// run there.
#[async_trait]
pub trait Delivery: Send + Sync + std::fmt::Debug + 'static {
    /// Hands an inbound event to the node hosting its conversation. Waits while that actor's
    /// mailbox is full (backpressure).
    async fn deliver(&self, envelope: Envelope) -> Result<(), BusError>;

    /// Makes `handler` the receiver of inbound events (the local engine).
    fn bind(&self, handler: Arc<dyn InboundHandler>);

    /// Runs an agent's command on the node hosting the conversation and returns its outcome;
    /// `None` when this bus has a single node (the caller runs it locally).
    async fn command(
        &self,
        _key: &ConversationKey,
        _command: &crate::agents::AgentCommand,
    ) -> Option<Result<crate::agents::CommandOutcome, crate::EngineError>> {
        None
    }

    /// Sends the outcome of an [`Inbound::Command`] back to the node that asked.
    fn answer(
        &self,
        _reply_to: &str,
        _request: &str,
        _outcome: &Result<crate::agents::CommandOutcome, crate::EngineError>,
    ) {
    }

    /// Whether an inbound event may be delivered again after a node failed, so that an actor
    /// starting on a conversation must finish what its predecessor left (answer a visitor
    /// message stored but never answered).
    fn redelivers(&self) -> bool {
        false
    }
}
