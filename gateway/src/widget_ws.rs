//! `/v1/widget/ws`: one task per visitor socket, speaking widget protocol v1.
//!
//! The task decodes frames, calls the [`Engine`], and encodes the conversation's events; no
//! business rule lives here. It owns:
//! - the socket (actix-ws session and message stream),
//! - the conversation's [`ConversationFeed`], once `hello` succeeded: every stored message
//!   once, in seq order, replayed then live (the feed skips what was sent and fills gaps),
//! - a per-connection rate limiter and the heartbeat clock,
//! - its client's slot in the per-address socket limit, and a new conversation that is not
//!   stored yet ([`parla_engine::Pending`]): a `hello` stores nothing; the visitor's first
//!   message (or anything else that writes) stores it.
//!
//! [`VisitorLimits`], shared by every socket, keep anonymous clients from flooding a tenant:
//! sockets and `hello`s per client address (IPv6 by /64), new conversations per bot.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use futures_util::StreamExt;
use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use parla_config::GatewaySettings;
use parla_engine::{
    Engine, EngineError, OpenRequest, Pending,
    bus::{Event, Inbound},
    clients::{KeyedRate, Slot, Slots, client_group, client_ip, forwarded_for},
    feed::{ConversationFeed, FeedItem},
    input::VisitorInput,
    metrics::{ErrorSource, SocketGuard, SocketKind},
    model::{BotId, ConnId, ConversationId, ConversationKey, MessageType, Sender},
};
use tracing::Instrument;

use crate::{
    frames::message_frame,
    protocol::{BotInfo, ClientFrame, MAX_PUSH_TOKEN_LEN, ServerFrame, codes},
};

/// How long a closing socket waits for the client's close frame.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// Largest `delta` of a `token` frame made of several queued tokens.
const MAX_COALESCED_TOKEN_BYTES: usize = 4096;

/// What anonymous visitors may do at once, shared by every widget socket of this process.
#[derive(Debug)]
pub struct VisitorLimits {
    /// Open sockets per client address: each costs a file descriptor and a task.
    sockets: Arc<Slots<IpAddr>>,
    /// `hello`s per client address: each costs store reads (and, resumed, a replay).
    hellos: KeyedRate<IpAddr>,
    /// New conversations per bot: each is stored for good, in the tenant's name.
    new_conversations: KeyedRate<BotId>,
    /// New conversations per client address: a few addresses cannot spend a bot's budget.
    new_conversations_per_client: KeyedRate<IpAddr>,
    /// The operator's reverse proxies, whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl VisitorLimits {
    pub fn new(settings: &GatewaySettings, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        Self {
            sockets: Slots::new(settings.max_sockets_per_ip),
            hellos: KeyedRate::per_minute(
                settings.hellos_per_ip_per_minute,
                settings.hello_burst_per_ip,
            ),
            new_conversations: KeyedRate::per_minute(
                settings.new_conversations_per_bot_per_minute,
                settings.new_conversation_burst_per_bot,
            ),
            new_conversations_per_client: KeyedRate::per_minute(
                settings.new_conversations_per_ip_per_minute,
                settings.new_conversation_burst_per_ip,
            ),
            trusted_proxies,
        }
    }

    /// The key a request's client is limited under.
    fn client(&self, req: &HttpRequest) -> IpAddr {
        let lines = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        let forwarded = forwarded_for(lines);
        let peer = req.peer_addr().map(|a| a.ip());
        client_ip(peer, forwarded.as_deref(), &self.trusted_proxies)
            .map(client_group)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// Shared by every socket of the server.
#[derive(Debug, Clone)]
pub struct WidgetState {
    pub engine: Engine,
    pub settings: Arc<GatewaySettings>,
    pub limits: Arc<VisitorLimits>,
    /// Turns true when the server is shutting down: every socket closes with 1001 (going away)
    /// so widgets reconnect, instead of being cut when the grace period ends.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Upgrades the request and spawns the socket's task on the current actix worker.
pub async fn widget_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<WidgetState>,
) -> Result<HttpResponse, actix_web::Error> {
    let client = state.limits.client(&req);
    let Some(slot) = state.limits.sockets.acquire(client) else {
        state.engine.metrics().error(ErrorSource::Widget, codes::TOO_MANY_SOCKETS);
        let message = format!(
            "at most {} chat sockets per address at once",
            state.settings.max_sockets_per_ip
        );
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((actix_web::http::header::RETRY_AFTER, "10"))
            .json(serde_json::json!({
                "error": { "code": codes::TOO_MANY_SOCKETS, "message": message }
            })));
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let hard = state.settings.hard_frame_bytes;
    let stream = stream.max_frame_size(hard).aggregate_continuations().max_continuation_size(hard);
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    let origin = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect());
    let mut conn = Connection::new(state.get_ref().clone(), session, user_agent, origin);
    conn.client = client;
    conn._slot = Some(slot);
    actix_web::rt::spawn(conn.run(stream));
    Ok(response)
}

/// The conversation a socket has opened.
struct Open {
    key: ConversationKey,
    /// The visitor counts as online while this socket is open (no push notifications).
    _online: parla_engine::engine::VisitorGuard,
    /// A new conversation not stored yet: stored by the first frame that writes.
    pending: Option<Pending>,
}

struct Connection {
    id: ConnId,
    state: WidgetState,
    ws: actix_ws::Session,
    user_agent: Option<String>,
    /// The page's `Origin` header, checked against the bot's allowed origins.
    origin: Option<String>,
    /// Per-connection frame budget: a flooding client gets `rate_limited`, others are unaffected.
    limiter: DefaultDirectRateLimiter,
    last_activity: Instant,
    open: Option<Open>,
    /// Counts this socket in `parla_sockets_open{kind="widget"}` while it lives.
    _counted: SocketGuard,
    /// The client's address (its /64 for IPv6), what its limits are counted under.
    client: IpAddr,
    /// Its place in the per-address socket limit, given back when the socket ends.
    _slot: Option<Slot<IpAddr>>,
}

/// What the socket loop does next.
enum Flow {
    Continue,
    Close(Option<CloseReason>),
}

/// A failed send means the peer is gone.
struct Gone;

impl Connection {
    fn new(
        state: WidgetState,
        ws: actix_ws::Session,
        user_agent: Option<String>,
        origin: Option<String>,
    ) -> Self {
        let per_second = NonZeroU32::new(state.settings.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(state.settings.rate_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            id: ConnId::generate(),
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            _counted: state.engine.metrics().socket_opened(SocketKind::Widget),
            state,
            ws,
            user_agent,
            origin,
            last_activity: Instant::now(),
            open: None,
            client: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            _slot: None,
        }
    }

    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        let settings = self.state.settings.clone();
        let mut heartbeat = tokio::time::interval(settings.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hello_deadline = tokio::time::sleep(settings.hello_timeout());
        tokio::pin!(hello_deadline);
        let mut feed: Option<ConversationFeed> = None;
        let mut shutdown = self.state.shutdown.clone();

        let close = loop {
            let flow = tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(frame)) => {
                        self.last_activity = Instant::now();
                        // A span per client frame (not per event sent: tokens are the hot
                        // path), naming the conversation once the socket has one.
                        let span = self.span();
                        // Boxed while it runs (here and below): inlined, the handlers' largest
                        // state would be part of this loop's future, held by every idle socket.
                        Box::pin(self.on_frame(frame, &mut feed)).instrument(span).await
                    }
                    Some(Err(ProtocolError::Overflow)) => Ok(Flow::Close(Some(CloseReason {
                        code: CloseCode::Size,
                        description: Some("frame exceeds the hard size limit".into()),
                    }))),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket protocol error");
                        Ok(Flow::Close(Some(CloseCode::Protocol.into())))
                    }
                    None => Ok(Flow::Close(None)),
                },
                item = next_item(&mut feed) => Box::pin(self.on_item(item, &mut feed)).await,
                _ = heartbeat.tick() => self.on_heartbeat().await,
                _ = shutdown.wait_for(|stopping| *stopping) => Ok(Flow::Close(Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("server shutting down".into()),
                }))),
                _ = &mut hello_deadline, if self.open.is_none() => {
                    self.error(codes::HELLO_TIMEOUT, "no hello in time", None, None).await
                        .map(|()| Flow::Close(Some(CloseReason {
                            code: CloseCode::Policy,
                            description: Some("hello timeout".into()),
                        })))
                }
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close(reason)) => break reason,
                Err(Gone) => break None,
            }
        };
        let _ = self.ws.close(close).await;
        // Closing handshake: read until the client's own close (or give up), so the TCP close
        // does not race the client's last frames and reset the connection before it reads ours.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, AggregatedMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// The span of a client frame's handling: the conversation's tenant and id once `hello`
    /// opened one.
    fn span(&self) -> tracing::Span {
        match &self.open {
            Some(open) => {
                let (t, c) = (&open.key.tenant_id, &open.key.conversation_id);
                tracing::info_span!("widget", tenant = %t, conversation = %c)
            }
            None => tracing::info_span!("widget"),
        }
    }

    async fn on_heartbeat(&mut self) -> Result<Flow, Gone> {
        if self.last_activity.elapsed() > self.state.settings.client_timeout() {
            return Ok(Flow::Close(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("heartbeat timeout".into()),
            })));
        }
        self.ws.ping(b"").await.map_err(|_| Gone)?;
        Ok(Flow::Continue)
    }

    async fn on_frame(
        &mut self,
        frame: AggregatedMessage,
        feed: &mut Option<ConversationFeed>,
    ) -> Result<Flow, Gone> {
        let text = match frame {
            AggregatedMessage::Text(text) => text,
            AggregatedMessage::Binary(_) => {
                self.error(codes::UNSUPPORTED_FRAME, "binary frames are not supported", None, None)
                    .await?;
                return Ok(Flow::Continue);
            }
            AggregatedMessage::Ping(bytes) => {
                self.ws.pong(&bytes).await.map_err(|_| Gone)?;
                return Ok(Flow::Continue);
            }
            AggregatedMessage::Pong(_) => return Ok(Flow::Continue),
            AggregatedMessage::Close(_) => return Ok(Flow::Close(None)),
        };
        if let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            self.error(codes::RATE_LIMITED, "too many frames; slow down", None, Some(retry))
                .await?;
            return Ok(Flow::Continue);
        }
        if text.len() > self.state.settings.max_frame_bytes {
            let msg =
                format!("frames are limited to {} bytes", self.state.settings.max_frame_bytes);
            self.error(codes::FRAME_TOO_LARGE, &msg, None, None).await?;
            return Ok(Flow::Continue);
        }
        let frame = match serde_json::from_str::<ClientFrame>(&text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error(codes::MALFORMED_FRAME, &format!("invalid frame: {e}"), None, None)
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        match frame {
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await?,
            ClientFrame::Hello { bot_id, conversation_id, resume_token, last_seq } => {
                self.on_hello(bot_id, conversation_id, resume_token, last_seq, feed).await?
            }
            other => {
                let Some(key) = self.open.as_ref().map(|o| o.key.clone()) else {
                    self.error(codes::HELLO_REQUIRED, "send hello first", None, None).await?;
                    return Ok(Flow::Continue);
                };
                self.on_conversation_frame(key, other).await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn on_hello(
        &mut self,
        bot_id: String,
        conversation_id: Option<String>,
        resume_token: Option<String>,
        last_seq: Option<u64>,
        feed: &mut Option<ConversationFeed>,
    ) -> Result<(), Gone> {
        if self.open.is_some() {
            return self
                .error(codes::ALREADY_OPEN, "this socket already has a conversation", None, None)
                .await;
        }
        if let Err(wait) = self.state.limits.hellos.check(&self.client) {
            let retry = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let msg = "too many conversations opened from this address; retry later";
            return self.error(codes::RATE_LIMITED, msg, None, Some(retry)).await;
        }
        let resume = match (conversation_id, resume_token) {
            (Some(c), Some(t)) => Some((ConversationId(c), t)),
            (None, None) => None,
            _ => {
                let msg = "conversation_id and resume_token go together";
                return self.error(codes::INVALID_HELLO, msg, None, None).await;
            }
        };
        let request = OpenRequest {
            bot_id: BotId(bot_id),
            resume,
            user_agent: self.user_agent.clone(),
            source: parla_engine::model::Channel::Web,
            origin: self.origin.clone(),
        };
        let opened = match self.state.engine.open(request).await {
            Ok(opened) => opened,
            Err(e) => return self.engine_error(&e, None).await,
        };
        // What the client says it has (never beyond what exists) counts as sent.
        let has = last_seq.unwrap_or(0).min(opened.last_seq);
        let feed = feed.insert(
            ConversationFeed::open(&self.state.engine, opened.key.clone(), Some(self.id), has)
                .await,
        );
        let fresh = opened.pending.is_some();
        let greeting = opened.pending.as_ref().and_then(|p| p.greeting.clone());
        self.open = Some(Open {
            key: opened.key.clone(),
            _online: self.state.engine.visitor_joined(&opened.key),
            pending: opened.pending,
        });
        self.send(&ServerFrame::Welcome {
            conversation_id: opened.key.conversation_id.0.clone(),
            resume_token: opened.resume_token,
            last_seq: opened.last_seq,
            protocol: crate::protocol::PROTOCOL_VERSION,
            bot: BotInfo {
                id: opened.bot.id.0.clone(),
                name: opened.bot.name.clone(),
                language: Some(opened.bot.language.clone()),
                appearance: opened.bot.appearance.clone(),
            },
        })
        .await?;
        if fresh {
            // A new conversation: nothing stored, no actor woken. The bot's greeting goes out
            // at once and is stored with the conversation when the visitor first writes (its
            // seq and id decided now, so both agree).
            let Some(greeting) = greeting else { return Ok(()) };
            feed.greeted(greeting.seq);
            return self.send(&ServerFrame::Message(message_frame(&greeting))).await;
        }
        // The replay, before anything else is said. A failed read is told and the rest goes on
        // (the actor is still woken): the feed reads the gap again with a later message.
        loop {
            match feed.next_stored().await {
                Ok(Some(message)) => {
                    self.send(&ServerFrame::Message(message_frame(&message))).await?
                }
                Ok(None) => break,
                Err(e) => {
                    self.engine_error(&e, None).await?;
                    break;
                }
            }
        }
        if let Some(agent) = opened.handling.assignee.as_ref() {
            // Resumed while an agent holds it: the widget shows who answers.
            self.send(&ServerFrame::Handoff { to: Sender::Human, agent: Some(agent.name.clone()) })
                .await?;
        }
        // Wakes the conversation's actor: it greets a new conversation and answers a message a
        // crash left unanswered.
        match self.state.engine.send(opened.key, Some(self.id), Inbound::Start).await {
            Ok(()) => Ok(()),
            Err(e) => self.engine_error(&e, None).await,
        }
    }

    /// Stores the socket's new conversation if it is still pending (the visitor's first write),
    /// under the bot's budget of new conversations. False when it could not be: the client was
    /// told why (with `client_msg_id`, so a widget retries that message).
    async fn stored(&mut self, client_msg_id: Option<&str>) -> Result<bool, Gone> {
        let Some(pending) = self.open.as_ref().and_then(|o| o.pending.clone()) else {
            return Ok(true);
        };
        let id = client_msg_id.map(str::to_owned);
        let bot = &pending.conversation.bot_id;
        if let Err(wait) = self.state.limits.new_conversations_per_client.check(&self.client) {
            let retry = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let msg = "too many new conversations from this address; retry later";
            self.error(codes::RATE_LIMITED, msg, id, Some(retry)).await?;
            return Ok(false);
        }
        if let Err(wait) = self.state.limits.new_conversations.check(bot) {
            let retry = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let msg = "this chat is taking too many new conversations; retry shortly";
            self.error(codes::RATE_LIMITED, msg, id, Some(retry)).await?;
            return Ok(false);
        }
        if let Err(e) = self.state.engine.materialize(&pending).await {
            self.engine_error(&e, id).await?;
            return Ok(false);
        }
        if let Some(open) = self.open.as_mut() {
            open.pending = None;
        }
        Ok(true)
    }

    async fn on_conversation_frame(
        &mut self,
        key: ConversationKey,
        frame: ClientFrame,
    ) -> Result<(), Gone> {
        let engine = self.state.engine.clone();
        let pending = self.open.as_ref().is_some_and(|o| o.pending.is_some());
        match frame {
            ClientFrame::Message { client_msg_id, text, postback, form } => {
                let input = VisitorInput { client_msg_id, text, postback, form };
                if let Err(e) = input.check(engine.max_text_chars()) {
                    // An id out of shape is not echoed back.
                    let id = (e.field != "client_msg_id").then(|| input.client_msg_id.clone());
                    return self.error(e.code, &e.to_string(), id, None).await;
                }
                let id = input.client_msg_id.clone();
                if !self.stored(Some(&id)).await? {
                    return Ok(());
                }
                // Refusals and a duplicate's original come back on the feed (`on_item`).
                if let Err(e) =
                    engine.send(key, Some(self.id), Inbound::VisitorMessage(input)).await
                {
                    return self.engine_error(&e, Some(id)).await;
                }
            }
            ClientFrame::Typing { on } => engine.typing(&key, Some(self.id), Sender::User, on),
            // Nothing stored to have read yet (the greeting is not a stored message until the
            // visitor writes).
            ClientFrame::Read { .. } if pending => {}
            ClientFrame::Read { seq } => {
                if let Err(e) = engine.send(key, Some(self.id), Inbound::Read { seq }).await {
                    return self.engine_error(&e, None).await;
                }
            }
            ClientFrame::PushToken { token } => {
                if token.is_empty() || token.len() > MAX_PUSH_TOKEN_LEN {
                    let msg = format!("token must be 1 to {MAX_PUSH_TOKEN_LEN} bytes");
                    return self.error(codes::INVALID_PUSH_TOKEN, &msg, None, None).await;
                }
                // A device to notify belongs to a stored conversation.
                if !self.stored(None).await? {
                    return Ok(());
                }
                if let Err(e) = engine.add_push_token(&key, &token).await {
                    return self.engine_error(&e, None).await;
                }
            }
            ClientFrame::Hello { .. } | ClientFrame::Ping => {}
        }
        Ok(())
    }

    async fn on_item(
        &mut self,
        item: Result<FeedItem, EngineError>,
        feed: &mut Option<ConversationFeed>,
    ) -> Result<Flow, Gone> {
        let event = match item {
            Ok(FeedItem::Message(message)) => {
                self.send(&ServerFrame::Message(message_frame(&message))).await?;
                return Ok(Flow::Continue);
            }
            Ok(FeedItem::Live(event)) => event,
            // The store failed while filling a gap: the feed tries again with a later message.
            Err(e) => {
                self.engine_error(&e, None).await?;
                return Ok(Flow::Continue);
            }
        };
        let me = Some(self.id);
        let frame = match &*event {
            // A new stored message, or this socket's own sent again (the feed let only those
            // through): the `message` frame either way.
            Event::Message { message } | Event::Ack { message, .. } => {
                ServerFrame::Message(message_frame(message))
            }
            Event::StreamEnd { stream_id, message } => ServerFrame::StreamEnd {
                stream_id: stream_id.clone(),
                seq: message.seq,
                id: message.id.0.clone(),
                text: message.text.clone(),
                created_at: message.created_at,
                kind: (message.kind != MessageType::Text).then_some(message.kind),
                content: message.content.as_deref().cloned(),
            },
            Event::StreamStart { stream_id, sender } => {
                ServerFrame::StreamStart { stream_id: stream_id.clone(), sender: *sender }
            }
            Event::Token { stream_id, delta } => {
                let mut delta = delta.clone();
                if let Some(feed) = feed.as_mut() {
                    // Behind: one frame for the stream's queued tokens, not one each. At
                    // saturation a frame (a JSON encode and a send syscall) is the unit of cost.
                    feed.coalesce_tokens(stream_id, &mut delta, MAX_COALESCED_TOKEN_BYTES);
                }
                ServerFrame::Token { stream_id: stream_id.clone(), delta }
            }
            Event::Typing { sender, on, origin } if *origin != me => {
                ServerFrame::Typing { sender: *sender, on: *on }
            }
            Event::Read { sender, seq, origin } if *origin != me => {
                ServerFrame::Read { sender: *sender, seq: *seq }
            }
            Event::Typing { .. } | Event::Read { .. } => return Ok(Flow::Continue),
            Event::StreamCancelled { stream_id } => {
                ServerFrame::StreamCancelled { stream_id: stream_id.clone() }
            }
            Event::Handoff { to, agent } => {
                ServerFrame::Handoff { to: *to, agent: agent.as_ref().map(|a| a.name.clone()) }
            }
            // For agents only: notes never reach the visitor.
            Event::Handling { .. } | Event::Note { .. } => return Ok(Flow::Continue),
            Event::Rejected { conn, client_msg_id, code, message } => {
                if conn.is_some() && *conn != me {
                    return Ok(Flow::Continue);
                }
                ServerFrame::Error {
                    code: code.clone(),
                    message: message.clone(),
                    client_msg_id: client_msg_id.clone(),
                    retry_after_ms: None,
                }
            }
        };
        self.send(&frame).await?;
        Ok(Flow::Continue)
    }

    async fn engine_error(
        &mut self,
        e: &EngineError,
        client_msg_id: Option<String>,
    ) -> Result<(), Gone> {
        if matches!(e, EngineError::Store(_) | EngineError::Internal) {
            let conversation = self.open.as_ref().map(|o| o.key.conversation_id.as_str());
            tracing::error!(error = %e, conversation, "engine error on widget socket");
        }
        self.error(e.code(), &e.public_message(), client_msg_id, None).await
    }

    async fn error(
        &mut self,
        code: &str,
        message: &str,
        client_msg_id: Option<String>,
        retry_after_ms: Option<u64>,
    ) -> Result<(), Gone> {
        self.send(&ServerFrame::Error {
            code: code.to_owned(),
            message: message.to_owned(),
            client_msg_id,
            retry_after_ms,
        })
        .await
    }

    async fn send(&mut self, frame: &ServerFrame) -> Result<(), Gone> {
        if let ServerFrame::Error { code, .. } = frame {
            self.state.engine.metrics().error(ErrorSource::Widget, code);
        }
        let json = match serde_json::to_string(frame) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a server frame");
                return Ok(());
            }
        };
        // A client that stops reading fills the session's queue; give up on it after the
        // heartbeat timeout rather than parking this task (and its heartbeat) forever.
        match tokio::time::timeout(self.state.settings.client_timeout(), self.ws.text(json)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Gone),
        }
    }
}

/// The conversation's next item, or never when the socket has no conversation yet.
async fn next_item(feed: &mut Option<ConversationFeed>) -> Result<FeedItem, EngineError> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}
