//! From the engine's model to the protocol's frames (the protocol crate knows no engine).

use parla_engine::model::{Message, MessageType};
use parla_protocol::widget::MessageFrame;

/// A stored message as the widget's `message` frame shows it.
pub(crate) fn message_frame(m: &Message) -> MessageFrame {
    MessageFrame {
        seq: m.seq,
        id: m.id.0.clone(),
        sender: m.sender,
        text: m.text.clone(),
        client_msg_id: m.client_msg_id.clone(),
        created_at: m.created_at,
        kind: (m.kind != MessageType::Text).then_some(m.kind),
        content: m.content.as_deref().cloned(),
    }
}
