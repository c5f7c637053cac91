//! What visitors do to a conversation: open or resume it, write (text, postbacks, forms),
//! delete it; and what the bot says back that is not a streamed reply (greetings, escalation,
//! notices).

use super::*;

impl ConversationActor {
    /// A visitor opened or resumed the conversation: greet a new one; answer a visitor message
    /// that was stored but never answered (the process stopped mid-reply).
    pub(super) async fn on_start(&mut self, state: &mut State) {
        if state.last_seq == 0 {
            let Some(welcome) = state.bot.config.welcome_message.clone() else { return };
            let message = self.new_message(state, Sender::Bot, welcome, None);
            if let Some(stored) = self.store_message(state, message, None).await {
                self.tell_inbox(state, Some(&stored));
                self.deps.bus.publish(&self.key, Event::Message { message: stored });
            }
            return;
        }
        self.answer_unanswered(state).await;
    }

    /// Answers the last message if it is the visitor's and nothing answers it: a process (or
    /// node) stopped mid-reply.
    pub(super) async fn answer_unanswered(&mut self, state: &mut State) {
        if state.last_seq == 0
            || !self.in_flight.is_empty()
            || state.handling.status == ConversationStatus::Assigned
        {
            return; // A reply is on its way, or an agent answers.
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let last = self.deps.store.messages_after(t, c, state.last_seq - 1, 1);
        let last = self.deps.timed(StoreOp::MessagesAfter, last).await;
        if let Ok([message]) = last.as_deref()
            && message.sender == Sender::User
        {
            tracing::info!(conversation = %c, seq = message.seq, "answering a message left unanswered");
            if message.form.is_some() {
                return self.thank_for_form(state).await;
            }
            let text = message.text.clone();
            let postback = message.postback.clone();
            self.refresh_bot(state).await;
            let best = postback
                .and_then(|payload| postback_intent(&state.intents, &payload))
                .map(|i| (i, 1.0))
                .or_else(|| state.index.classify(&text));
            self.start_reply(state, text, best).await;
        }
    }

    /// Deletes the conversation and everything in it, as its single writer, then stops.
    pub(super) async fn on_delete(&mut self, origin: Option<ConnId>) {
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        match self
            .deps
            .timed(StoreOp::DeleteConversation, self.deps.store.delete_conversation(t, c))
            .await
        {
            Ok(_) => {
                self.deleted = true;
                self.announce("conversation_deleted", "this conversation was deleted".into());
            }
            Err(e) => self.publish_rejection(origin, None, &EngineError::Store(e)),
        }
    }

    /// Stores a visitor's message (text, postback or form; checked for shape by the transport)
    /// and answers it. Refusals are told to `origin`, the connection that sent it.
    pub(super) async fn on_visitor_message(
        &mut self,
        state: &mut State,
        origin: Option<ConnId>,
        input: VisitorInput,
    ) {
        let VisitorInput { client_msg_id, text, postback, form } = input;
        let panic_text = &self.deps.settings.panic_on_text;
        if !panic_text.is_empty() && text == *panic_text {
            panic!("fault injection: engine.panic_on_text matched");
        }
        self.refresh_bot(state).await;
        // A form sent before (a resend from the widget's outbox): acknowledged, and nothing
        // merged again — a stale resend must not overwrite what a later form collected. Other
        // messages need no read first: the append itself finds a duplicate, atomically.
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        if form.is_some()
            && let Ok(Some(existing)) = self
                .deps
                .timed(
                    StoreOp::MessageByClientId,
                    self.deps.store.message_by_client_id(t, c, &client_msg_id),
                )
                .await
        {
            return self.acknowledge(origin, existing);
        }
        if let Some(form) = &form {
            // Checked against the bot's form of that id before anything is stored; its values
            // are merged before the message is (a retry after a failed append merges the same
            // values again, where the reverse order could lose them).
            let fields = find_form(&state.intents, &form.form_id).ok_or_else(|| {
                EngineError::InvalidForm(format!(
                    "form.form_id: {} is not a form of this bot",
                    form.form_id
                ))
            });
            let checked = fields.and_then(|fields| {
                form.validate_against(fields).map_err(|e| EngineError::InvalidForm(e.to_string()))
            });
            let merged = match checked {
                Ok(()) => self.merge_user_data(&form.filled()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = merged {
                return self.refuse_visitor(origin, Some(client_msg_id), &e);
            }
        }
        // Masked before it is stored, when the workspace asks: the clear text is never written.
        let text = if self.deps.privacy(t).await.redact_transcripts {
            parla_domain::redact::redact(&text).into_owned()
        } else {
            text
        };
        let mut message = self.new_message(state, Sender::User, text, Some(client_msg_id));
        let best = match (&postback, &form) {
            (Some(payload), _) => {
                // A payload picks its intent only if the bot offered it here: a visitor cannot
                // fire an intent (and its webhook) by naming it.
                let direct = if self.offered(state, payload).await {
                    postback_intent(&state.intents, payload)
                } else {
                    None
                };
                direct.map(|i| (i, 1.0)).or_else(|| state.index.classify(&message.text))
            }
            // A form is answered with a thank-you below, not by an intent.
            (None, Some(_)) => None,
            (None, None) => {
                message.sentiment = crate::sentiment::score(&message.text);
                state.index.classify(&message.text)
            }
        };
        // Matched only if the responder answers with it: a closest intent below its threshold
        // leaves the message unmatched (what the console offers to turn into a phrase).
        let threshold = self.deps.responder.min_confidence();
        if let Some((i, confidence)) = best.filter(|(_, c)| *c >= threshold) {
            (message.intent, message.confidence) =
                (Some(state.intents[i].name.clone()), Some(confidence));
        }
        (message.postback, message.form) = (postback, form.map(Box::new));
        let text = message.text.clone();
        let stored = match self.try_store(state, &message).await {
            Ok(Appended::Stored) => message,
            Ok(Appended::Duplicate(existing)) => return self.acknowledge(origin, existing),
            Err(e) => return self.refuse_visitor(origin, message.client_msg_id, &e.into()),
        };
        let was_form = stored.form.is_some();
        self.tell_inbox(state, Some(&stored));
        self.deps.bus.publish(&self.key, Event::Message { message: stored });
        if was_form {
            // Details left in a resolved conversation are a new episode the inbox must show.
            self.reopen_if_resolved(state).await;
            if state.handling.status != ConversationStatus::Assigned {
                self.thank_for_form(state).await;
            }
            return;
        }
        self.answer_visitor(state, text, best).await;
    }

    /// Tells the connection that sent a visitor message why it was not stored (a message with
    /// no connection to tell is only counted: a broadcast would reach every visitor's screen).
    fn refuse_visitor(
        &self,
        origin: Option<ConnId>,
        client_msg_id: Option<String>,
        e: &EngineError,
    ) {
        match origin {
            Some(_) => self.publish_rejection(origin, client_msg_id, e),
            None => self.deps.metrics.inbound_rejected.inc(),
        }
    }

    /// A message sent again (same `client_msg_id`): nothing stored; its sender gets the
    /// original back.
    fn acknowledge(&self, origin: Option<ConnId>, existing: Message) {
        self.deps.metrics.duplicates_acknowledged.inc();
        if let Some(conn) = origin {
            self.deps.bus.publish(&self.key, Event::Ack { conn, message: existing });
        }
    }

    /// Whether a button with `payload` is among the bot's last [`OFFER_WINDOW`] messages.
    pub(super) async fn offered(&self, state: &State, payload: &str) -> bool {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let after = state.last_seq.saturating_sub(OFFER_WINDOW);
        let recent = self.deps.store.messages_after(t, c, after, OFFER_WINDOW as usize);
        let recent = self.deps.timed(StoreOp::MessagesAfter, recent).await;
        recent.unwrap_or_default().iter().any(|m| {
            m.sender != Sender::User
                && m.content.as_ref().is_some_and(|x| x.offers_payload(payload))
        })
    }

    /// A submitted form is answered with a thank-you, not by an intent (its summary would only
    /// make the bot fall back).
    pub(super) async fn thank_for_form(&self, state: &mut State) {
        let thanks = if state.bot.language.starts_with("it") {
            "Grazie, abbiamo ricevuto i tuoi dati."
        } else {
            "Thank you, we have received your details."
        };
        self.say(state, thanks.to_owned()).await;
    }

    /// Merges a submitted form's values into the conversation's user data.
    pub(super) async fn merge_user_data(
        &self,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if fields.is_empty() {
            return Ok(());
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let merged = self.deps.store.merge_user_data(t, c, fields);
        if self.deps.timed(StoreOp::MergeUserData, merged).await? {
            Ok(())
        } else {
            Err(EngineError::ConversationNotFound)
        }
    }

    /// The visitor is back in a resolved conversation: a new episode, with the bot.
    pub(super) async fn reopen_if_resolved(&mut self, state: &mut State) {
        if state.handling.status != ConversationStatus::Resolved {
            return;
        }
        let handling = Handling {
            status: ConversationStatus::Open,
            resolution: None,
            ended_at: None,
            csat_pending: false,
            ..state.handling.clone()
        };
        if let Err(e) = self.set_handling(state, handling).await {
            tracing::warn!(error = %e, "could not reopen a resolved conversation");
        }
    }

    pub(super) async fn answer_visitor(
        &mut self,
        state: &mut State,
        text: String,
        best: Option<(usize, f32)>,
    ) {
        if state.handling.status == ConversationStatus::Resolved
            && state.handling.csat_pending
            && let Some(score) = csat_score(&text)
        {
            let handling =
                Handling { csat: Some(score), csat_pending: false, ..state.handling.clone() };
            if let Err(e) = self.set_handling(state, handling).await {
                tracing::warn!(error = %e, "could not record a CSAT score");
            }
            let thanks = if state.bot.language.starts_with("it") {
                "Grazie per la tua valutazione!"
            } else {
                "Thank you for your rating!"
            };
            self.say(state, thanks.to_owned()).await;
            return;
        }
        self.reopen_if_resolved(state).await;
        if state.handling.status == ConversationStatus::Assigned {
            return; // The agent answers.
        }
        if crate::sentiment::asks_for_a_person(&text) {
            self.escalate(state, "the visitor asked for a person").await;
        }
        self.start_reply(state, text, best).await;
    }

    /// Marks an OPEN conversation ESCALATED, for an agent to take over. A preview is never
    /// escalated: it is the tenant trying its bot, nobody for an agent to answer.
    pub(super) async fn escalate(&self, state: &mut State, why: &str) {
        if state.handling.status != ConversationStatus::Open || state.channel == Channel::Preview {
            return;
        }
        let handling = Handling {
            status: ConversationStatus::Escalated,
            waiting_since: Some(now_ms()),
            ..state.handling.clone()
        };
        match self.set_handling(state, handling).await {
            Ok(()) => {
                tracing::info!(conversation = %self.key.conversation_id, why, "conversation escalated");
                self.tell_if_nobody_answers(state).await;
            }
            Err(e) => {
                tracing::warn!(conversation = %self.key.conversation_id, error = %e, "could not escalate")
            }
        }
    }

    /// Outside business hours, or with no agent online, the visitor hears it at once (and the
    /// bot keeps the conversation meanwhile).
    pub(super) async fn tell_if_nobody_answers(&self, state: &mut State) {
        let t = &self.key.tenant_id;
        let settings =
            match self.deps.timed(StoreOp::GetTenant, self.deps.store.get_tenant(t)).await {
                Ok(Some(tenant)) => tenant.agents,
                _ => crate::model::AgentSettings::default(),
            };
        let open = settings.business_hours.as_ref().is_none_or(|h| h.open_at(now_ms()));
        if open && self.deps.presence.anyone_online_anywhere(t).await {
            return;
        }
        let italian = state.bot.language.starts_with("it");
        let text = settings.offline_message.clone().unwrap_or_else(|| {
            match (italian, open) {
                (false, true) => {
                    "No one from our team is online right now. I will keep helping \
                                  you here, and a person will follow up as soon as possible."
                }
                (false, false) => {
                    "Our team is away now (outside opening hours). I will keep \
                                   helping you here, and a person will follow up when we open."
                }
                (true, true) => {
                    "Al momento nessuno del nostro team è online. Continuo ad \
                                 aiutarti io, e una persona ti risponderà appena possibile."
                }
                (true, false) => {
                    "Il nostro team ora non è disponibile (fuori orario). Continuo \
                                  ad aiutarti io, e una persona ti risponderà all'apertura."
                }
            }
            .to_owned()
        });
        self.say(state, text).await;
    }

    /// Stores and publishes a message from the bot that is not a streamed answer (notices,
    /// questions).
    pub(super) async fn say(&self, state: &mut State, text: String) {
        let message = self.new_message(state, Sender::Bot, text, None);
        if let Some(stored) = self.store_message(state, message, None).await {
            self.tell_inbox(state, Some(&stored));
            self.deps.bus.publish(&self.key, Event::Message { message: stored });
        }
    }
}
