//! The bot's streamed reply: the task that retrieves passages and streams the responder's
//! tokens behind the publish gate, and the message stored when it ends.

use super::*;

impl ConversationActor {
    /// Starts answering `text`, whose best intent the caller classified against
    /// `state.intents` (so the bot is not reloaded in between).
    pub(super) async fn start_reply(
        &mut self,
        state: &mut State,
        text: String,
        best: Option<(usize, f32)>,
    ) {
        // An installed marketplace bot answers while its subscription is paid for; the
        // visitor's message is kept, and they are told.
        if let Some(from) = &state.bot.installed_from
            && !self.deps.billing.entitled(&self.key.tenant_id, &from.subscription).await
        {
            let e = EngineError::BotUnavailable;
            self.announce(e.code(), "this assistant is paused; your message was kept".into());
            return;
        }
        let stream_id = uuid::Uuid::now_v7().simple().to_string();
        let Some(me) = self.me.upgrade() else { return };
        let wanted = self.deps.responder.history_len() as u64;
        let history = if wanted == 0 {
            Vec::new()
        } else {
            let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
            let after = state.last_seq.saturating_sub(wanted);
            let history = self.deps.store.messages_after(t, c, after, wanted as usize);
            self.deps.timed(StoreOp::MessagesAfter, history).await.unwrap_or_default()
        };
        let question = text.clone();
        let mut request = ReplyRequest {
            bot: state.bot.clone(),
            intents: state.intents.clone(),
            text,
            best_intent: best,
            history,
            passages: Vec::new(),
            llm: None,
            llm_allowed: true,
        };
        let deps = self.deps.clone();
        let knowledge = self.deps.knowledge.clone();
        self.deps.bus.publish(
            &self.key,
            Event::StreamStart { stream_id: stream_id.clone(), sender: Sender::Bot },
        );
        let (responder, bus, key) =
            (self.deps.responder.clone(), self.deps.bus.clone(), self.key.clone());
        let fallback = state.bot.config.fallback_message.clone();
        let id = stream_id.clone();
        let gate = Arc::new(parking_lot::Mutex::new(true));
        let publish_gate = gate.clone();
        let task = self.deps.runtime.spawn(
            async move {
                let mut text = String::new();
                let (mut intent, mut confidence, mut usage) = (None, None, None);
                let mut sources = Vec::new();
                let streamed = AssertUnwindSafe(async {
                    let (t, b) = (&key.tenant_id, &request.bot.id);
                    match knowledge.search(t, b, &request.text).await {
                        Ok(passages) => request.passages = passages,
                        Err(e) => {
                            tracing::warn!(error = %e, "knowledge search failed; answering without")
                        }
                    }
                    // An installed bot knows the creator's documents too (and the buyer's own).
                    if let Some(from) = &request.bot.installed_from {
                        match knowledge.search(&from.tenant_id, &from.bot_id, &request.text).await {
                            Ok(theirs) => {
                                request.passages.extend(theirs);
                                request.passages.sort_by(|a, b| b.coverage.total_cmp(&a.coverage));
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the creator's knowledge search failed")
                            }
                        }
                    }
                    let tenant = deps.timed(StoreOp::GetTenant, deps.store.get_tenant(t)).await;
                    if let Ok(Some(mut tenant)) = tenant {
                        if tenant.privacy.redact_llm {
                            // What the responder sends on (to an LLM provider) is masked; the
                            // transcript keeps what was written.
                            let redact = |text: &mut String| {
                                if let std::borrow::Cow::Owned(masked) =
                                    parla_domain::redact::redact(text)
                                {
                                    *text = masked;
                                }
                            };
                            redact(&mut request.text);
                            request.history.iter_mut().for_each(|m| redact(&mut m.text));
                        }
                        request.llm = tenant.llm.take();
                        if let Some(budget) = deps.billing.llm_budget(&tenant).await {
                            let month = crate::model::month_of(now_ms());
                            let used = deps.store.token_usage(t, &month);
                            let used = deps.timed(StoreOp::TokenUsage, used).await.unwrap_or(0);
                            request.llm_allowed = used < budget;
                        }
                    }
                    let asked = Instant::now();
                    match responder.reply(request).await {
                        Ok(mut reply) => {
                            (intent, confidence) = (reply.intent.take(), reply.confidence);
                            sources = std::mem::take(&mut reply.sources);
                            usage = reply.usage.take();
                            // Only an LLM's answer reports usage: the built-in responder's is not
                            // timed as one.
                            let llm = usage.is_some();
                            let mut first = true;
                            while let Some(token) = reply.tokens.next().await {
                                match token {
                                    Ok(delta) => {
                                        if llm && first {
                                            deps.metrics.llm_first_token(asked.elapsed());
                                        }
                                        first = false;
                                        text.push_str(&delta);
                                        let open = publish_gate.lock();
                                        if !*open {
                                            return; // An agent took over.
                                        }
                                        bus.publish(
                                            &key,
                                            Event::Token { stream_id: id.clone(), delta },
                                        );
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "bot stream broke off");
                                        break;
                                    }
                                }
                            }
                            if llm {
                                deps.metrics.llm_reply(asked.elapsed());
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "responder failed"),
                    }
                })
                .catch_unwind()
                .await;
                if streamed.is_err() {
                    tracing::error!("the responder panicked; answering with the fallback message");
                }
                if text.trim().is_empty() {
                    text = fallback; // The visitor always gets an answer, and the actor its ReplyDone.
                    sources.clear(); // Drawn from nothing.
                }
                let usage = usage.and_then(|u| *u.lock());
                let done =
                    ReplyDone { stream_id: id, question, text, intent, confidence, sources, usage };
                // The actor stays alive while a stream is in flight, so this only fails on shutdown.
                let _ = me.send(ActorMsg::ReplyDone(Box::new(done))).await;
            }
            // The actor's span for this message: the reply's log lines name the conversation too.
            .in_current_span(),
        );
        let receipt = self.receipt.take().unwrap_or_default();
        self.in_flight.insert(stream_id, InFlight { abort: task.abort_handle(), gate, receipt });
    }

    pub(super) async fn on_reply_done(&mut self, state: &mut State, done: ReplyDone) {
        // Held until the reply is stored: its receipt tells the bus the question is answered.
        let Some(flight) = self.in_flight.remove(&done.stream_id) else {
            return; // Cancelled (an agent took over): never stored.
        };
        // Done once the reply is stored (the end of this call); a store failure is told to
        // the conversation, which counts as done too.
        flight.receipt.done();
        let mut message = self.new_message(state, Sender::Bot, done.text, None);
        let content = done.intent.as_deref().and_then(|name| {
            state.intents.iter().find(|i| i.name == name).and_then(|i| i.response.content.clone())
        });
        if let Some(content) = content {
            (message.kind, message.content) = (content.kind(), Some(Box::new(content)));
        }
        message.intent = done.intent;
        message.confidence = done.confidence;
        message.sources = done.sources;
        message.prompt_tokens = done.usage.map(|u| u.prompt_tokens);
        message.completion_tokens = done.usage.map(|u| u.completion_tokens);
        if let Some(usage) = done.usage {
            self.deps.metrics.llm_tokens(usage.prompt_tokens, usage.completion_tokens);
            let tokens = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
            let month = crate::model::month_of(now_ms());
            let t = &self.key.tenant_id;
            let added = self.deps.store.add_token_usage(t, &month, tokens);
            if let Err(e) = self.deps.timed(StoreOp::AddTokenUsage, added).await {
                tracing::warn!(error = %e, "could not record LLM token usage");
            }
        }
        let fell_back = message.text == state.bot.config.fallback_message;
        state.fallbacks = if fell_back { state.fallbacks + 1 } else { 0 };
        if let Some(stored) = self.store_message(state, message, None).await {
            self.tell_inbox(state, Some(&stored));
            let matched = stored.intent.as_deref().and_then(|name| {
                state.intents.iter().find(|i| i.name == name && !i.actions.is_empty())
            });
            if let Some(intent) = matched {
                let bot = state.bot.id.as_str();
                self.deps.hooks.intent_matched(bot, intent, &done.question, &stored);
            }
            self.deps.bus.publish(
                &self.key,
                Event::StreamEnd { stream_id: done.stream_id, message: stored },
            );
        }
        // After the answer is out: escalating may add a message (nobody online) after it.
        let limit = self.deps.settings.escalate_after_fallbacks;
        if limit > 0 && state.fallbacks >= limit {
            self.escalate(state, "the bot did not understand repeatedly").await;
        }
    }

    pub(super) fn new_message(
        &self,
        state: &State,
        sender: Sender,
        text: String,
        client_msg_id: Option<String>,
    ) -> Message {
        Message::text(&self.key, state.last_seq + 1, sender, text, client_msg_id)
    }

    /// Stores `message` (durable on return) and advances `last_seq`. Returns the message when it
    /// is new; answers a duplicate or a failure to `origin` and returns `None`.
    pub(super) async fn store_message(
        &self,
        state: &mut State,
        message: Message,
        origin: Option<ConnId>,
    ) -> Option<Message> {
        match self.try_store(state, &message).await {
            Ok(Appended::Stored) => Some(message),
            Ok(Appended::Duplicate(existing)) => {
                self.deps.metrics.duplicates_acknowledged.inc();
                if let Some(conn) = origin {
                    self.deps.bus.publish(&self.key, Event::Ack { conn, message: existing });
                }
                None
            }
            Err(e) => {
                self.publish_rejection(origin, message.client_msg_id, &EngineError::Store(e));
                None
            }
        }
    }

    /// Appends `message` and advances `last_seq` when it is stored; after a seq conflict,
    /// re-reads `last_seq` (our view was stale).
    pub(super) async fn try_store(
        &self,
        state: &mut State,
        message: &Message,
    ) -> Result<Appended, StoreError> {
        let appended = self.deps.timed(StoreOp::Append, self.deps.store.append(message)).await;
        match &appended {
            Ok(Appended::Stored) => {
                state.last_seq = message.seq;
                let direction =
                    if message.sender == Sender::User { Direction::In } else { Direction::Out };
                self.deps.metrics.message_stored(state.channel, direction);
            }
            Ok(Appended::Duplicate(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, conversation = %self.key.conversation_id, "append failed");
                if matches!(e, StoreError::SeqConflict(_) | StoreError::SeqGap { .. }) {
                    let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                    let last = self.deps.store.last_seq(t, c);
                    if let Ok(last) = self.deps.timed(StoreOp::LastSeq, last).await {
                        state.last_seq = last;
                    }
                }
            }
        }
        appended
    }
}
