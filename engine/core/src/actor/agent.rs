//! What agents do to a conversation: commands (claim, transfer, reply, release, resolve…),
//! the handling it is in, and what the inbox is told.

use super::*;

impl ConversationActor {
    /// Stores a new way of handling the conversation, then tells its subscribers and the
    /// tenant's inbox.
    pub(super) async fn set_handling(
        &self,
        state: &mut State,
        handling: Handling,
    ) -> Result<(), EngineError> {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let stored = self.deps.store.set_handling(t, c, &handling);
        if !self.deps.timed(StoreOp::SetHandling, stored).await? {
            return Err(EngineError::ConversationNotFound);
        }
        if handling.status != state.handling.status {
            state.fallbacks = 0; // A new episode: the bot's misses are counted afresh.
        }
        state.handling = handling.clone();
        self.tell_inbox(state, None);
        self.deps.bus.publish(&self.key, Event::Handling { handling });
        Ok(())
    }

    /// Tells the tenant's inbox watchers how the conversation stands (and its newest message).
    /// A preview is not theirs: they are never told of one.
    pub(super) fn tell_inbox(&self, state: &State, last_message: Option<&Message>) {
        if state.channel == Channel::Preview {
            return;
        }
        self.deps.bus.publish_tenant(
            &self.key.tenant_id,
            TenantEvent::Conversation {
                conversation_id: self.key.conversation_id.clone(),
                bot_id: state.bot.id.clone(),
                handling: state.handling.clone(),
                last_message: last_message.cloned().map(Box::new),
            },
        );
    }

    /// Stops every bot stream in flight: no token of theirs is published after this returns.
    pub(super) fn cancel_streams(&mut self) {
        for (stream_id, stream) in self.in_flight.drain() {
            stream.stop();
            self.deps.bus.publish(&self.key, Event::StreamCancelled { stream_id });
        }
    }

    pub(super) async fn on_command(
        &mut self,
        state: &mut State,
        command: AgentCommand,
    ) -> Result<CommandOutcome, EngineError> {
        let AgentCommand { agent, privileged, action } = command;
        let holder = state.handling.assignee.clone();
        let mine = holder.as_ref().is_some_and(|h| h.id == agent.id);
        // Another agent holds it and the caller may not override them.
        let held_by_other = holder.as_ref().is_some_and(|h| h.id != agent.id) && !privileged;
        match action {
            AgentAction::Claim => {
                if let Some(holder) = holder {
                    return if mine {
                        Ok(CommandOutcome::Handling(state.handling.clone()))
                    } else {
                        Err(EngineError::AlreadyClaimed(holder.name))
                    };
                }
                self.hand_to(state, agent).await
            }
            AgentAction::Assign { to } => {
                let waiting = state.handling.status == ConversationStatus::Escalated
                    && state.handling.assignee.is_none();
                if !waiting {
                    return Ok(CommandOutcome::Handling(state.handling.clone()));
                }
                self.hand_to(state, to).await
            }
            AgentAction::Transfer { to } => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                self.hand_to(state, to).await
            }
            AgentAction::Release => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                if holder.is_none() {
                    return Ok(CommandOutcome::Handling(state.handling.clone()));
                }
                let handling = Handling {
                    status: ConversationStatus::Open,
                    assignee: None,
                    ..state.handling.clone()
                };
                self.set_handling(state, handling).await?;
                self.deps.bus.publish(&self.key, Event::Handoff { to: Sender::Bot, agent: None });
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
            AgentAction::Resolve { resolution, csat } => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                let handling = Handling {
                    status: ConversationStatus::Resolved,
                    assignee: None,
                    resolution: Some(resolution),
                    ended_at: Some(now_ms()),
                    waiting_since: None,
                    csat_pending: csat,
                    ..state.handling.clone()
                };
                self.set_handling(state, handling).await?;
                self.cancel_streams();
                if holder.is_some() {
                    let handoff = Event::Handoff { to: Sender::Bot, agent: None };
                    self.deps.bus.publish(&self.key, handoff);
                }
                if csat {
                    let question = if state.bot.language.starts_with("it") {
                        "Come valuti questa conversazione? Rispondi con un numero da 1 (male) a 5 \
                         (benissimo)."
                    } else {
                        "How would you rate this conversation? Reply with a number from 1 (poor) \
                         to 5 (excellent)."
                    };
                    self.say(state, question.to_owned()).await;
                }
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
            AgentAction::Message { client_msg_id, text } => {
                if !mine {
                    return Err(EngineError::NotAssigned);
                }
                let mut message = self.new_message(state, Sender::Human, text, Some(client_msg_id));
                message.agent_id = Some(agent.id);
                let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                match self.deps.timed(StoreOp::Append, self.deps.store.append(&message)).await {
                    Ok(Appended::Stored) => {
                        state.last_seq = message.seq;
                        self.deps.metrics.message_stored(state.channel, Direction::Out);
                        self.tell_inbox(state, Some(&message));
                        self.deps
                            .bus
                            .publish(&self.key, Event::Message { message: message.clone() });
                        Ok(CommandOutcome::Message { message: Box::new(message), duplicate: false })
                    }
                    Ok(Appended::Duplicate(existing)) => {
                        let message = Box::new(existing);
                        Ok(CommandOutcome::Message { message, duplicate: true })
                    }
                    Err(e) => {
                        let last = self.deps.store.last_seq(t, c);
                        if let Ok(last) = self.deps.timed(StoreOp::LastSeq, last).await {
                            state.last_seq = last;
                        }
                        Err(EngineError::Store(e))
                    }
                }
            }
            AgentAction::Note { text } => {
                let note = Note {
                    id: uuid::Uuid::now_v7().simple().to_string(),
                    tenant_id: self.key.tenant_id.clone(),
                    conversation_id: self.key.conversation_id.clone(),
                    author: agent,
                    text,
                    created_at: now_ms(),
                };
                if !self.deps.timed(StoreOp::AddNote, self.deps.store.add_note(&note)).await? {
                    return Err(EngineError::ConversationNotFound);
                }
                self.deps.bus.publish(&self.key, Event::Note { note: note.clone() });
                Ok(CommandOutcome::Note(note))
            }
            AgentAction::Read { seq } => {
                let seq = seq.min(state.last_seq);
                if seq > state.handling.agent_read_seq {
                    let handling = Handling { agent_read_seq: seq, ..state.handling.clone() };
                    self.set_handling(state, handling).await?;
                }
                let read = Event::Read { sender: Sender::Human, seq, origin: None };
                self.deps.bus.publish(&self.key, read);
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
        }
    }

    /// Gives the conversation to `agent`: the bot's streams stop, and the visitor is told.
    pub(super) async fn hand_to(
        &mut self,
        state: &mut State,
        agent: AgentRef,
    ) -> Result<CommandOutcome, EngineError> {
        let handling = Handling {
            status: ConversationStatus::Assigned,
            assignee: Some(agent.clone()),
            resolution: None,
            ended_at: None,
            waiting_since: None,
            ..state.handling.clone()
        };
        self.set_handling(state, handling).await?;
        self.cancel_streams();
        self.deps.bus.publish(&self.key, Event::Handoff { to: Sender::Human, agent: Some(agent) });
        Ok(CommandOutcome::Handling(state.handling.clone()))
    }
}
