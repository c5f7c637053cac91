//! An actor's life: spawned by its supervisor, its run loop (each message under
//! `catch_unwind`, passivation when idle), giving up, release to another node, hydration from
//! the store, and reloading a changed bot.

use super::*;

impl ConversationActor {
    /// Spawns a new actor for `key`; returns its handle.
    pub(crate) fn spawn(
        key: ConversationKey,
        generation: u64,
        deps: Arc<Deps>,
        supervisor: Weak<TenantSupervisor>,
    ) -> ActorHandle {
        let (tx, rx) = mpsc::channel(deps.settings.mailbox_capacity);
        let (release, released) = tokio::sync::watch::channel(false);
        let activity = Arc::new(Activity::default());
        activity.last_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        let actor = ConversationActor {
            key,
            generation,
            deps: deps.clone(),
            supervisor,
            me: tx.downgrade(),
            in_flight: HashMap::new(),
            deleted: false,
            receipt: None,
            activity: activity.clone(),
        };
        deps.metrics.actor_starts.inc();
        deps.metrics.live_conversations.inc();
        deps.runtime.spawn(actor.run(rx, released));
        ActorHandle { tx, generation, release: Arc::new(release), activity }
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<ActorMsg>,
        mut released: tokio::sync::watch::Receiver<bool>,
    ) {
        // The handlers' futures are boxed while they run: inlined, their largest state would be
        // part of this loop's future, which every live actor holds while it idles.
        let hydrated = Box::pin(self.hydrate_with_retry()).instrument(self.span()).await;
        let mut state = match hydrated {
            Ok(state) => state,
            Err(EngineError::BotNotFound) => {
                let span = self.span();
                return Box::pin(self.orphaned(&mut rx)).instrument(span).await;
            }
            Err(e) => return self.give_up(&mut rx, &e),
        };
        if self.deps.bus.redelivers() {
            // This node may be taking over from one that failed mid-reply.
            let span = self.span();
            Box::pin(self.answer_unanswered(&mut state)).instrument(span).await;
        }
        let idle = self.deps.settings.idle_passivate();
        // Every handle gone (the engine is stopping): no release can come any more, and the
        // mailbox is drained as it closes.
        let mut orphaned = false;
        loop {
            // Passivatable by the supervisor while it waits here with nothing in flight.
            if self.in_flight.is_empty() {
                self.activity.set_idle();
            }
            // A release comes before anything queued: that belongs to the conversation's next
            // node.
            let next = tokio::select! {
                biased;
                changed = released.changed(), if !orphaned => match changed {
                    Ok(()) => None,
                    Err(_) => {
                        orphaned = true;
                        continue;
                    }
                },
                next = tokio::time::timeout(idle, rx.recv()) => Some(next),
            };
            if !self.activity.take_busy() {
                // Evicted while taking this message: the supervisor forgot this actor with an
                // empty mailbox, so the message in hand is the only one; it goes to the
                // conversation's next actor, untouched.
                if let Some(Ok(Some(msg))) = next
                    && let Some(supervisor) = self.supervisor.upgrade()
                {
                    let conversation = self.key.conversation_id.clone();
                    self.deps.runtime.spawn(async move {
                        if let Err(e) = supervisor.deliver_msg(conversation, msg).await {
                            tracing::warn!(error = %e, "an event lost its actor as it was passivated");
                        }
                    });
                }
                rx.close();
                self.deps.metrics.actor_passivations.inc();
                break;
            }
            let Some(next) = next else {
                if self.activity.evicted() {
                    // Passivated under pressure: the supervisor already forgot it, with an
                    // empty mailbox and nothing in flight; nothing is left to hand over.
                    rx.close();
                    self.deps.metrics.actor_passivations.inc();
                    tracing::debug!(conversation = %self.key.conversation_id, "passivated under pressure");
                } else {
                    self.release(&mut rx);
                }
                break;
            };
            match next {
                Ok(Some(msg)) => {
                    self.deps.metrics.mailbox_depth(rx.len());
                    // One span per message handled, not per actor: nothing is kept while the
                    // actor idles, and every log line of the handling names the conversation.
                    let span = self.span();
                    let handled = Box::pin(self.handle_supervised(&mut state, msg));
                    if let Err(e) = handled.instrument(span).await {
                        return self.give_up(&mut rx, &e);
                    }
                    self.activity.last_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                    if self.deleted {
                        return self.give_up(&mut rx, &EngineError::ConversationNotFound);
                    }
                }
                Ok(None) => break,
                Err(_idle) => {
                    if self.in_flight.is_empty() && self.deregister(&mut rx) {
                        self.deps.metrics.actor_passivations.inc();
                        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                        tracing::debug!(tenant = %t, conversation = %c, "passivated");
                        break;
                    }
                }
            }
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// The span of this conversation's work: its tenant and conversation ids, so that its log
    /// lines can be filtered (`[log] format = "json"` puts them on every line).
    pub(super) fn span(&self) -> tracing::Span {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info_span!("conversation", tenant = %t, conversation = %c)
    }

    /// The conversation cannot go on (deleted, or the store stayed unreachable): leave the
    /// supervisor, refuse everything queued with `error`, and stop. The next event for the
    /// conversation starts a fresh actor, which tries again.
    pub(super) fn give_up(&mut self, rx: &mut mpsc::Receiver<ActorMsg>, error: &EngineError) {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info!(tenant = %t, conversation = %c, %error, "stopping the conversation's actor");
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        // Removed under the supervisor's lock, so only a sender already waiting for a slot can
        // still get in before the close; the drain below answers it too.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            self.reject(msg, error);
        }
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// The conversation's bot is gone (deleted): its conversations go with it
    /// ([`crate::Engine::delete_bot`] asks each one's actor), and this one goes now, whoever
    /// woke it — a purge's `Delete`, or a visitor who opened it before the bot was deleted and
    /// wrote after its purge had listed the bot's conversations. Everything else queued is
    /// refused with `bot_not_found`.
    pub(super) async fn orphaned(&mut self, rx: &mut mpsc::Receiver<ActorMsg>) {
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        rx.close();
        let mut deletes = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) if matches!(envelope.inbound, Inbound::Delete) => {
                    deletes.push(envelope)
                }
                other => self.reject(other, &EngineError::BotNotFound),
            }
        }
        // A refusal of the deletion goes to the first who asked for it, if anyone did.
        self.on_delete(deletes.first().and_then(|e| e.origin)).await;
        for envelope in deletes {
            envelope.receipt.done();
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// Lets go of the conversation (it moved to another node): streams stop unstored and every
    /// receipt in hand is abandoned, so the new owner gets those events again.
    pub(super) fn release(&mut self, rx: &mut mpsc::Receiver<ActorMsg>) {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info!(tenant = %t, conversation = %c, "releasing the conversation to another node");
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) => envelope.receipt.abandon(),
                ActorMsg::Command(_, reply) => {
                    let _ = reply.send(Err(EngineError::ConversationBusy));
                }
                ActorMsg::ReplyDone(_) => {}
            }
        }
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
            stream.receipt.abandon(); // Its question is answered by the conversation's new node.
        }
    }

    /// Removes this actor from its supervisor and closes the mailbox, if nothing is queued.
    /// Anything that slipped in is handed to the supervisor again, in order, which starts a
    /// successor.
    pub(super) fn deregister(&self, rx: &mut mpsc::Receiver<ActorMsg>) -> bool {
        let Some(supervisor) = self.supervisor.upgrade() else {
            rx.close();
            return true;
        };
        if !supervisor.remove_if_idle(&self.key.conversation_id, self.generation, rx) {
            return false;
        }
        rx.close();
        let mut leftovers = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) => leftovers.push(*envelope),
                // Cannot happen: we only passivate with no stream in flight.
                ActorMsg::ReplyDone(done) => {
                    tracing::warn!(stream = %done.stream_id, "a reply finished after its actor stopped")
                }
                ActorMsg::Command(_, reply) => {
                    // Refused rather than re-routed: the caller may simply retry.
                    let _ = reply.send(Err(EngineError::ConversationBusy));
                }
            }
        }
        if !leftovers.is_empty() {
            self.deps.runtime.spawn(async move {
                for envelope in leftovers {
                    if let Err(e) = supervisor.deliver(envelope).await {
                        tracing::warn!(error = %e, "event lost its actor while it stopped");
                    }
                }
            });
        }
        true
    }

    /// Loads the state, retrying store failures with backoff; a missing conversation or bot is
    /// final at once.
    pub(super) async fn hydrate_with_retry(&self) -> Result<State, EngineError> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match self.hydrate().await {
                Ok(state) => return Ok(state),
                Err(e @ (EngineError::ConversationNotFound | EngineError::BotNotFound)) => {
                    return Err(e);
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, conversation = %self.key.conversation_id, "rehydration failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    pub(super) async fn hydrate(&self) -> Result<State, EngineError> {
        let store = &self.deps.store;
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let deps = &self.deps;
        let conversation = deps
            .timed(StoreOp::GetConversation, store.get_conversation(t, c))
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let loaded =
            self.deps.load_bot(t, &conversation.bot_id).await?.ok_or(EngineError::BotNotFound)?;
        let last_seq = deps.timed(StoreOp::LastSeq, store.last_seq(t, c)).await?;
        Ok(State {
            bot: loaded.bot,
            intents: loaded.intents,
            index: loaded.index,
            bot_version: loaded.version,
            last_seq,
            handling: conversation.handling,
            fallbacks: 0,
            channel: conversation.source,
        })
    }

    /// Handles one message; a panic restarts the actor's state from the store. Fails when that
    /// restart failed.
    pub(super) async fn handle_supervised(
        &mut self,
        state: &mut State,
        msg: ActorMsg,
    ) -> Result<(), EngineError> {
        let origin = match &msg {
            ActorMsg::Inbound(envelope) => envelope
                .origin
                .map(|conn| (conn, envelope.inbound.client_msg_id().map(str::to_owned))),
            ActorMsg::ReplyDone(_) | ActorMsg::Command(..) => None,
        };
        if AssertUnwindSafe(self.handle(state, msg)).catch_unwind().await.is_ok() {
            return Ok(());
        }
        self.deps.metrics.actor_restarts.inc();
        if let Some(receipt) = self.receipt.take() {
            receipt.done(); // Refused below: its sender is told.
        }
        tracing::error!(conversation = %self.key.conversation_id, "conversation actor panicked; restarting from the store");
        if let Some((conn, client_msg_id)) = origin {
            self.publish_rejection(Some(conn), client_msg_id, &EngineError::Internal);
        }
        *state = self.hydrate_with_retry().await?;
        Ok(())
    }

    /// Reloads the bot and its intents if they changed since they were loaded.
    pub(super) async fn refresh_bot(&self, state: &mut State) {
        let version = self.deps.bot_version(&state.bot.id);
        if version == state.bot_version {
            return;
        }
        match self.deps.load_bot(&self.key.tenant_id, &state.bot.id).await {
            Ok(Some(loaded)) => {
                (state.bot, state.intents, state.index) =
                    (loaded.bot, loaded.intents, loaded.index);
                state.bot_version = loaded.version;
            }
            // Deleted, or the store failed: keep answering with what we have.
            _ => tracing::warn!(bot = %state.bot.id, "could not reload a changed bot"),
        }
    }
}
