//! `/v1/agent/ws`: the agent socket (documented in `docs/protocol.md`, part 2).
//!
//! One socket per agent session, authenticated by the admin API's access token in its first
//! frame (browsers cannot set headers on a WebSocket, and a token in the URL ends up in logs).
//! It carries the tenant's live inbox and any number of subscribed conversations, each frame
//! naming its `conversation_id`. Commands (claim, release, transfer, message, note, resolve,
//! read) run in the conversation's actor through [`Engine::command`] and are answered with
//! `ack` or `error` carrying the client's `ref`.
//!
//! The task owns the socket, one forwarding task per subscribed conversation reading its
//! [`ConversationFeed`] (every stored message once, in order, gaps filled from the store; their
//! items meet in one queue), and the tenant's inbox feed.
//!
//! The member's right to read the workspace is checked again — one store read, never one per
//! event — whenever their account changes (the tenant's feed carries
//! [`TenantEvent::Member`] from whichever node changed it, and the task takes the feed before
//! anything else), on every subscription and inbox request, when the feed lagged, and every
//! [`RECHECK`] in case a notice was lost. A removed member, one whose sessions ended (a
//! password reset) or whose role no longer allows the socket gets `error` (`member_removed`,
//! `session_ended`, `forbidden`) and the socket closes (1008).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use parla_domain::{
    input::check_agent_text,
    sessions::{Member, MemberSessions, Refusal},
    store::{Accounts, AuditLog, Conversations},
};
use parla_engine::{
    Engine, EngineError,
    agents::{AgentAction, AgentCommand, CommandOutcome, InboxEntry},
    bus::{Event, TenantEvent},
    engine::INBOX_SCAN,
    feed::{ConversationFeed, FeedItem},
    metrics::{ErrorSource, SocketGuard, SocketKind},
    model::{
        AccountId, AgentRef, ConnId, ConversationId, ConversationKey, Handling, Message, Note,
        Resolution, Role, Sender, TenantId,
    },
    presence::{AgentPresence, PresenceStatus, SessionId},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

/// What every agent socket shares: the engine, the members' sessions (the admin API's tokens,
/// checked against accounts as they are now) and the store ports the socket reads.
#[derive(Debug, Clone)]
pub struct AgentState {
    pub engine: Engine,
    pub sessions: Arc<dyn MemberSessions>,
    pub accounts: Arc<dyn Accounts>,
    pub conversations: Arc<dyn Conversations>,
    /// Where claims, releases, transfers and resolutions are recorded, as their REST mirrors
    /// are by the admin API.
    pub audit: Arc<dyn AuditLog>,
    /// The proxies whose `X-Forwarded-For` names the client (for the audit log's address).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Largest frame read at all; bigger closes the socket with 1009.
const MAX_FRAME_BYTES: usize = 65_536;
/// Conversations one socket may watch at once.
const MAX_SUBSCRIPTIONS: usize = 200;
const HEARTBEAT: Duration = Duration::from_secs(10);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a socket checks its member's session with no notice of a change: the backstop
/// for a notice lost between nodes (a Redis reconnection), one store read a minute a socket.
const RECHECK: Duration = Duration::from_secs(60);

/// A frame from the agent's client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    /// Authenticates the socket: an access token from `POST /api/auth/login`.
    Hello {
        token: String,
    },
    /// A fresh access token, before the current one expires.
    Auth {
        token: String,
    },
    Inbox,
    Subscribe {
        conversation_id: String,
        last_seq: Option<u64>,
        r#ref: Option<String>,
    },
    Unsubscribe {
        conversation_id: String,
    },
    Claim {
        conversation_id: String,
        r#ref: Option<String>,
    },
    Release {
        conversation_id: String,
        r#ref: Option<String>,
    },
    Transfer {
        conversation_id: String,
        to: String,
        r#ref: Option<String>,
    },
    Message {
        conversation_id: String,
        client_msg_id: String,
        text: String,
        r#ref: Option<String>,
    },
    Note {
        conversation_id: String,
        text: String,
        r#ref: Option<String>,
    },
    Resolve {
        conversation_id: String,
        resolution: Resolution,
        /// Ask the visitor for a 1–5 satisfaction score.
        #[serde(default)]
        csat: bool,
        r#ref: Option<String>,
    },
    Read {
        conversation_id: String,
        seq: u64,
    },
    Typing {
        conversation_id: String,
        on: bool,
    },
    /// `online` (takes new conversations) or `away`.
    Presence {
        status: PresenceStatus,
    },
    Ping,
}

/// A frame to the agent's client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Welcome {
        agent: &'a AgentRef,
        role: Role,
        expires_at: u64,
        protocol: u32,
        /// The workspace's agents and their presence.
        agents: Vec<AgentPresence>,
    },
    /// An agent came online, went away or offline.
    Presence {
        agent: &'a AgentRef,
        status: PresenceStatus,
    },
    Authenticated {
        expires_at: u64,
    },
    Inbox {
        conversations: Vec<InboxEntry>,
    },
    /// A conversation changed hands or got a message; `last_message` absent = unchanged.
    InboxUpdate {
        conversation_id: &'a ConversationId,
        bot_id: &'a str,
        #[serde(flatten)]
        handling: &'a Handling,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_message: Option<&'a Message>,
    },
    Subscribed {
        conversation_id: &'a ConversationId,
        conversation: InboxEntry,
        notes: Vec<Note>,
    },
    Message {
        conversation_id: &'a ConversationId,
        message: &'a Message,
    },
    StreamStart {
        conversation_id: &'a ConversationId,
        stream_id: &'a str,
        sender: Sender,
    },
    Token {
        conversation_id: &'a ConversationId,
        stream_id: &'a str,
        delta: &'a str,
    },
    StreamEnd {
        conversation_id: &'a ConversationId,
        stream_id: &'a str,
        message: &'a Message,
    },
    StreamCancelled {
        conversation_id: &'a ConversationId,
        stream_id: &'a str,
    },
    Typing {
        conversation_id: &'a ConversationId,
        sender: Sender,
        on: bool,
    },
    Read {
        conversation_id: &'a ConversationId,
        sender: Sender,
        seq: u64,
    },
    Handoff {
        conversation_id: &'a ConversationId,
        to: Sender,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<&'a AgentRef>,
    },
    Handling {
        conversation_id: &'a ConversationId,
        handling: &'a Handling,
    },
    Note {
        conversation_id: &'a ConversationId,
        note: &'a Note,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        conversation_id: &'a ConversationId,
        #[serde(skip_serializing_if = "Option::is_none")]
        handling: Option<&'a Handling>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a Message>,
        #[serde(skip_serializing_if = "Option::is_none")]
        duplicate: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a Note>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a ConversationId>,
    },
    Pong,
}

/// Upgrades the request and runs the socket on the current actix worker.
pub async fn agent_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AgentState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (tx, rx) = mpsc::channel(1024);
    let counted = state.engine.metrics().socket_opened(SocketKind::Agent);
    let forwarded = parla_engine::clients::forwarded_for(
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()),
    );
    let peer = req.peer_addr().map(|a| a.ip());
    let client =
        parla_engine::clients::client_ip(peer, forwarded.as_deref(), &state.trusted_proxies);
    let connection = Connection {
        _counted: counted,
        state: state.into_inner(),
        ws: session,
        conn: ConnId::generate(),
        me: None,
        watched: HashMap::new(),
        events: tx,
        generations: 0,
        last_activity: Instant::now(),
        client,
    };
    actix_web::rt::spawn(connection.run(stream, rx));
    Ok(response)
}

/// The signed-in agent.
struct Me {
    token: String,
    member: Member,
    agent: AgentRef,
    expires_at: u64,
    /// This socket's presence session.
    session: SessionId,
}

/// A conversation this socket watches: the task that reads its [`ConversationFeed`] into the
/// socket's queue.
struct Watched {
    forwarder: tokio::task::JoinHandle<()>,
    /// Which subscription of the conversation this is: items a previous one queued before it
    /// was dropped (unsubscribed, then subscribed again) are not sent.
    generation: u64,
}

/// A conversation's feed item, with the subscription it came from.
type Forwarded = (ConversationId, u64, Result<FeedItem, EngineError>);

struct Connection {
    state: Arc<AgentState>,
    ws: actix_ws::Session,
    conn: ConnId,
    me: Option<Me>,
    watched: HashMap<ConversationId, Watched>,
    events: mpsc::Sender<Forwarded>,
    /// Subscriptions made so far (each [`Watched`] has its number).
    generations: u64,
    last_activity: Instant,
    /// Counts this socket in `parla_sockets_open{kind="agent"}` while it lives.
    _counted: SocketGuard,
    /// The client's address, for the audit log.
    client: Option<std::net::IpAddr>,
}

/// The peer is gone.
struct Gone;

enum Flow {
    Continue,
    Close(Option<CloseReason>),
}

fn policy(description: &str) -> Flow {
    Flow::Close(Some(CloseReason {
        code: CloseCode::Policy,
        description: Some(description.into()),
    }))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Connection {
    async fn run(
        mut self,
        mut stream: actix_ws::AggregatedMessageStream,
        mut events: mpsc::Receiver<Forwarded>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
        tokio::pin!(hello_deadline);
        let mut inbox: Option<broadcast::Receiver<Arc<TenantEvent>>> = None;
        let close = loop {
            let expiry = self.me.as_ref().map_or(u64::MAX, |m| m.expires_at);
            let until_expiry = Duration::from_secs(expiry.saturating_sub(now_secs()).min(86_400));
            let flow = tokio::select! {
                // The feed first: a notice that the member's account changed is acted on
                // before any conversation event queued behind it is sent.
                biased;
                update = next_update(&mut inbox) => self.on_update(update).await,
                frame = stream.next() => match frame {
                    Some(Ok(frame)) => {
                        self.last_activity = Instant::now();
                        // A span per client frame (not per event forwarded): the workspace
                        // once signed in, so the agent's lines can be filtered.
                        let span = match &self.me {
                            Some(me) => tracing::info_span!("agent", tenant = %me.member.tenant, agent = %me.agent.id),
                            None => tracing::info_span!("agent"),
                        };
                        self.on_frame(frame, &mut inbox).instrument(span).await
                    }
                    Some(Err(actix_ws::ProtocolError::Overflow)) => Ok(Flow::Close(Some(CloseReason {
                        code: CloseCode::Size,
                        description: Some("frame exceeds the size limit".into()),
                    }))),
                    Some(Err(_)) => Ok(Flow::Close(Some(CloseCode::Protocol.into()))),
                    None => Ok(Flow::Close(None)),
                },
                Some((id, generation, item)) = events.recv() => {
                    self.on_event(&id, generation, item).await
                }
                _ = recheck.tick(), if self.me.is_some() => self.recheck().await,
                _ = heartbeat.tick() => {
                    if self.last_activity.elapsed() > CLIENT_TIMEOUT {
                        Ok(policy("heartbeat timeout"))
                    } else {
                        self.ws.ping(b"").await.map(|()| Flow::Continue).map_err(|_| Gone)
                    }
                }
                _ = tokio::time::sleep(until_expiry), if self.me.is_some() => {
                    self.error("token_expired", "the access token expired; reconnect with a fresh one", None, None)
                        .await
                        .map(|()| policy("token expired"))
                }
                _ = &mut hello_deadline, if self.me.is_none() => {
                    self.error("hello_timeout", "no hello in time", None, None)
                        .await
                        .map(|()| policy("hello timeout"))
                }
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close(reason)) => break reason,
                Err(Gone) => break None,
            }
        };
        for (_, watched) in self.watched.drain() {
            watched.forwarder.abort();
        }
        if let Some(me) = &self.me {
            self.state.engine.presence().leave(&me.member.tenant, &me.agent.id, me.session);
        }
        let _ = self.ws.close(close).await;
    }

    async fn on_frame(
        &mut self,
        frame: AggregatedMessage,
        inbox: &mut Option<broadcast::Receiver<Arc<TenantEvent>>>,
    ) -> Result<Flow, Gone> {
        let text = match frame {
            AggregatedMessage::Text(text) => text,
            AggregatedMessage::Binary(_) => {
                self.error("unsupported_frame", "binary frames are not supported", None, None)
                    .await?;
                return Ok(Flow::Continue);
            }
            AggregatedMessage::Ping(bytes) => {
                self.ws.pong(&bytes).await.map_err(|_| Gone)?;
                return Ok(Flow::Continue);
            }
            AggregatedMessage::Pong(_) => {
                self.beat();
                return Ok(Flow::Continue);
            }
            AggregatedMessage::Close(_) => return Ok(Flow::Close(None)),
        };
        self.beat();
        let frame = match serde_json::from_str::<ClientFrame>(&text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error("malformed_frame", &format!("invalid frame: {e}"), None, None).await?;
                return Ok(Flow::Continue);
            }
        };
        match frame {
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await?,
            ClientFrame::Hello { token } => {
                if self.me.is_some() {
                    self.error("already_open", "this socket is signed in", None, None).await?;
                } else if self.sign_in(&token).await? {
                    let me = self.me.as_ref().map(|m| m.member.tenant.clone());
                    if let Some(tenant) = me {
                        *inbox = Some(self.state.engine.subscribe_tenant(&tenant).await);
                    }
                    // A change between the sign-in's read and the feed's start is seen here.
                    if let Flow::Close(reason) = self.recheck().await? {
                        return Ok(Flow::Close(reason));
                    }
                    self.send_inbox().await?;
                }
            }
            other if self.me.is_none() => {
                drop(other);
                self.error("hello_required", "send hello with an access token first", None, None)
                    .await?;
            }
            ClientFrame::Auth { token } => {
                let tenant = self.me.as_ref().map(|m| m.member.tenant.clone());
                match self.state.sessions.member(&token).await {
                    Ok(member)
                        if Some(&member.tenant) == tenant.as_ref()
                            && Some(&member.account)
                                == self.me.as_ref().map(|m| &m.member.account) =>
                    {
                        let expires_at = member.expires_at;
                        if let Some(me) = self.me.as_mut() {
                            (me.token, me.expires_at) = (token, expires_at);
                        }
                        self.send(&ServerFrame::Authenticated { expires_at }).await?;
                    }
                    Ok(_) => {
                        self.error("forbidden", "that token is another member's", None, None)
                            .await?;
                    }
                    Err(e) => self.error(e.reason.code(), &e.message, None, None).await?,
                }
            }
            ClientFrame::Inbox => {
                if let Flow::Close(reason) = self.recheck().await? {
                    return Ok(Flow::Close(reason));
                }
                self.send_inbox().await?;
            }
            ClientFrame::Presence { status } => {
                if status == PresenceStatus::Offline {
                    let msg = "set online or away; close the socket to go offline";
                    self.error("invalid_status", msg, None, None).await?;
                } else if let Some(me) = &self.me {
                    let presence = self.state.engine.presence();
                    presence.set(&me.member.tenant, &me.agent.id, me.session, status);
                }
            }
            ClientFrame::Subscribe { conversation_id, last_seq, r#ref } => {
                if let Flow::Close(reason) = self.recheck().await? {
                    return Ok(Flow::Close(reason));
                }
                self.subscribe(ConversationId(conversation_id), last_seq.unwrap_or(0), r#ref)
                    .await?;
            }
            ClientFrame::Unsubscribe { conversation_id } => {
                if let Some(watched) = self.watched.remove(&ConversationId(conversation_id)) {
                    watched.forwarder.abort();
                }
            }
            ClientFrame::Typing { conversation_id, on } => {
                let id = ConversationId(conversation_id);
                if self.watched.contains_key(&id) {
                    let key = self.key(id);
                    self.state.engine.typing(&key, Some(self.conn), Sender::Human, on);
                } else {
                    self.error(
                        "not_subscribed",
                        "subscribe to the conversation first",
                        None,
                        Some(&id),
                    )
                    .await?;
                }
            }
            ClientFrame::Read { conversation_id, seq } => {
                self.command(conversation_id, None, |_| AgentAction::Read { seq }).await?;
            }
            ClientFrame::Claim { conversation_id, r#ref } => {
                self.command(conversation_id, r#ref, |_| AgentAction::Claim).await?;
            }
            ClientFrame::Release { conversation_id, r#ref } => {
                self.command(conversation_id, r#ref, |_| AgentAction::Release).await?;
            }
            ClientFrame::Resolve { conversation_id, resolution, csat, r#ref } => {
                self.command(conversation_id, r#ref, |_| AgentAction::Resolve { resolution, csat })
                    .await?;
            }
            ClientFrame::Transfer { conversation_id, to, r#ref } => {
                let id = ConversationId(conversation_id.clone());
                let tenant = self.me.as_ref().map(|m| m.member.tenant.clone());
                let target = match tenant {
                    Some(t) => self.state.accounts.get_account(&t, &AccountId(to)).await,
                    None => Ok(None),
                };
                match target {
                    Ok(Some(a)) if a.role <= Role::Agent => {
                        let to = AgentRef { id: a.id, name: a.name };
                        self.command(conversation_id, r#ref, |_| AgentAction::Transfer { to })
                            .await?;
                    }
                    Ok(_) => {
                        let msg = "`to` is not an agent of this workspace";
                        self.error("invalid_agent", msg, r#ref.as_deref(), Some(&id)).await?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store failed on the agent socket");
                        self.error(
                            "internal",
                            "temporary storage problem",
                            r#ref.as_deref(),
                            Some(&id),
                        )
                        .await?;
                    }
                }
            }
            ClientFrame::Message { conversation_id, client_msg_id, text, r#ref } => {
                if let Err(e) = check_agent_text(Some(&client_msg_id), &text) {
                    let id = ConversationId(conversation_id);
                    return self
                        .error(e.code, &e.problem, r#ref.as_deref(), Some(&id))
                        .await
                        .map(|()| Flow::Continue);
                }
                let tenant = self.key(ConversationId(String::new())).tenant_id;
                let text = match self.state.engine.expand_canned(&tenant, text).await {
                    Ok(Ok(text)) => text,
                    Ok(Err(shortcut)) => {
                        let id = ConversationId(conversation_id);
                        let msg = format!("no canned response /{shortcut}");
                        return self
                            .error("unknown_shortcut", &msg, r#ref.as_deref(), Some(&id))
                            .await
                            .map(|()| Flow::Continue);
                    }
                    Err(e) => {
                        let id = ConversationId(conversation_id);
                        return self
                            .engine_error(&e, r#ref.as_deref(), Some(&id))
                            .await
                            .map(|()| Flow::Continue);
                    }
                };
                self.command(conversation_id, r#ref, |_| AgentAction::Message {
                    client_msg_id,
                    text,
                })
                .await?;
            }
            ClientFrame::Note { conversation_id, text, r#ref } => {
                if let Err(e) = check_agent_text(None, &text) {
                    let id = ConversationId(conversation_id);
                    return self
                        .error(e.code, &e.problem, r#ref.as_deref(), Some(&id))
                        .await
                        .map(|()| Flow::Continue);
                }
                self.command(conversation_id, r#ref, |_| AgentAction::Note { text }).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The socket is alive: so is its agent's presence.
    fn beat(&self) {
        if let Some(me) = &self.me {
            self.state.engine.presence().beat(&me.member.tenant, &me.agent.id, me.session);
        }
    }

    fn key(&self, conversation_id: ConversationId) -> ConversationKey {
        let tenant_id =
            self.me.as_ref().map_or_else(|| TenantId(String::new()), |m| m.member.tenant.clone());
        ConversationKey { tenant_id, conversation_id }
    }

    /// Checks the token and the role; answers `welcome` or an error. Returns whether it worked.
    async fn sign_in(&mut self, token: &str) -> Result<bool, Gone> {
        let member = match self.state.sessions.member(token).await {
            Ok(ok) => ok,
            Err(e) => {
                return self.error(e.reason.code(), &e.message, None, None).await.map(|()| false);
            }
        };
        if member.role > Role::Agent {
            let msg = "viewers cannot use the agent socket";
            return self.error("forbidden", msg, None, None).await.map(|()| false);
        }
        let id = member.account.clone();
        let name = match self.state.accounts.get_account(&member.tenant, &id).await {
            Ok(Some(account)) => account.name,
            _ => {
                return self
                    .error("internal", "could not read the account", None, None)
                    .await
                    .map(|()| false);
            }
        };
        let (role, expires_at) = (member.role, member.expires_at);
        let agent = AgentRef { id, name };
        let engine = self.state.engine.clone();
        let session = engine.presence().join(&member.tenant, agent.clone());
        engine.agents_active(&member.tenant);
        let agents = engine.presence().list_anywhere(&member.tenant).await;
        let welcome = ServerFrame::Welcome { agent: &agent, role, expires_at, protocol: 1, agents };
        let sent = self.send(&welcome).await;
        self.me = Some(Me { token: token.to_owned(), member, agent, expires_at, session });
        sent.map(|()| true)
    }

    /// Checks the signed-in member's session as it is now (one store read): still a member,
    /// the session epoch their token was issued in, a role that may use the socket. When it no
    /// longer holds, tells the client why and closes; a store failure keeps the socket (the
    /// next check decides).
    async fn recheck(&mut self) -> Result<Flow, Gone> {
        let Some(token) = self.me.as_ref().map(|m| m.token.clone()) else {
            return Ok(Flow::Continue);
        };
        let (code, message) = match self.state.sessions.member(&token).await {
            Ok(member) if member.role <= Role::Agent => {
                if let Some(me) = self.me.as_mut() {
                    me.member.role = member.role;
                }
                return Ok(Flow::Continue);
            }
            Ok(_) => ("forbidden", "your role may no longer use the agent socket"),
            Err(e) => match e.reason {
                Refusal::Revoked => {
                    ("session_ended", "your sessions were ended (password reset); sign in again")
                }
                Refusal::Expired => {
                    ("token_expired", "the access token expired; reconnect with a fresh one")
                }
                Refusal::Invalid => {
                    ("member_removed", "you are no longer a member of this workspace")
                }
                Refusal::Unavailable => {
                    tracing::warn!(error = %e, "could not check an agent's session");
                    return Ok(Flow::Continue);
                }
            },
        };
        self.error(code, message, None, None).await?;
        Ok(policy(code))
    }

    async fn send_inbox(&mut self) -> Result<(), Gone> {
        let Some(tenant) = self.me.as_ref().map(|m| m.member.tenant.clone()) else {
            return Ok(());
        };
        match self.state.engine.inbox(&tenant, INBOX_SCAN).await {
            Ok(conversations) => self.send(&ServerFrame::Inbox { conversations }).await,
            Err(e) => self.engine_error(&e, None, None).await,
        }
    }

    async fn subscribe(
        &mut self,
        id: ConversationId,
        last_seq: u64,
        r#ref: Option<String>,
    ) -> Result<(), Gone> {
        let r = r#ref.as_deref();
        if self.watched.contains_key(&id) {
            return self.error("already_subscribed", "already watching it", r, Some(&id)).await;
        }
        if self.watched.len() >= MAX_SUBSCRIPTIONS {
            let msg = format!("a socket watches at most {MAX_SUBSCRIPTIONS} conversations");
            return self.error("too_many_subscriptions", &msg, r, Some(&id)).await;
        }
        let key = self.key(id.clone());
        // Subscribed before the conversation is read, so nothing falls between that and live.
        let mut feed =
            ConversationFeed::open(&self.state.engine, key.clone(), None, last_seq).await;
        let entry = match self.state.engine.inbox_entry(&key.tenant_id, &id).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let e = EngineError::ConversationNotFound;
                return self.engine_error(&e, r, Some(&id)).await;
            }
            Err(e) => return self.engine_error(&e, r, Some(&id)).await,
        };
        let notes = match self.state.conversations.list_notes(&key.tenant_id, &id).await {
            Ok(notes) => notes,
            Err(e) => return self.engine_error(&EngineError::Store(e), r, Some(&id)).await,
        };
        // What the client says it has (never beyond what exists) counts as sent; the stored
        // messages after it come first, through the queue like every later event.
        feed.clamp(entry.last_seq);
        let (tx, forwarded) = (self.events.clone(), id.clone());
        self.generations += 1;
        let generation = self.generations;
        let forwarder = actix_web::rt::spawn(async move {
            loop {
                let item = feed.next().await;
                if tx.send((forwarded.clone(), generation, item)).await.is_err() {
                    break;
                }
            }
        });
        self.watched.insert(id.clone(), Watched { forwarder, generation });
        self.send(&ServerFrame::Subscribed { conversation_id: &id, conversation: entry, notes })
            .await
    }

    /// Appends a handling change made on this socket to the workspace's audit log.
    async fn record(
        &self,
        tenant: TenantId,
        actor: AccountId,
        action: &str,
        id: &ConversationId,
        details: serde_json::Value,
    ) {
        let entry = parla_domain::audit::AuditEntry {
            id: uuid::Uuid::now_v7().simple().to_string(),
            tenant_id: tenant,
            at: parla_engine::model::now_ms(),
            actor: parla_domain::audit::AuditActor::Account(actor.to_string()),
            ip: self.client.map(|ip| ip.to_string()),
            action: format!("agent_socket.{action}"),
            target: format!("/api/conversations/{id}"),
            details,
        };
        if let Err(e) = self.state.audit.append_audit(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "could not append to the audit log");
        }
    }

    /// Runs a command as the signed-in agent (re-checked now: a removed or demoted member
    /// loses the right at once) and answers `ack` or `error`.
    async fn command(
        &mut self,
        conversation_id: String,
        r#ref: Option<String>,
        action: impl FnOnce(&AgentRef) -> AgentAction,
    ) -> Result<(), Gone> {
        let id = ConversationId(conversation_id);
        let r = r#ref.as_deref();
        let Some(token) = self.me.as_ref().map(|m| m.token.clone()) else { return Ok(()) };
        let member = match self.state.sessions.member(&token).await {
            Ok(member) if member.role <= Role::Agent => member,
            Ok(_) => {
                return self.error("forbidden", "your role may not do this", r, Some(&id)).await;
            }
            Err(e) => return self.error(e.reason.code(), &e.message, r, Some(&id)).await,
        };
        let Some(agent) = self.me.as_ref().map(|m| m.agent.clone()) else { return Ok(()) };
        let action = action(&agent);
        let command = AgentCommand { agent, privileged: member.role <= Role::Admin, action };
        let key = self.key(id.clone());
        // The conversation must exist in this tenant; otherwise the actor would be started
        // for nothing (and it answers `conversation_not_found` anyway).
        match self.state.conversations.get_conversation(&key.tenant_id, &id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return self.engine_error(&EngineError::ConversationNotFound, r, Some(&id)).await;
            }
            Err(e) => return self.engine_error(&EngineError::Store(e), r, Some(&id)).await,
        }
        let reads = matches!(command.action, AgentAction::Read { .. });
        let audited = audited(&command.action);
        let (tenant, actor) = (key.tenant_id.clone(), command.agent.id.clone());
        match self.state.engine.command(key, command).await {
            Ok(_) if reads => Ok(()),
            Ok(CommandOutcome::Handling(handling)) => {
                if let Some((action, details)) = audited {
                    self.record(tenant, actor, action, &id, details).await;
                }
                self.send(&ServerFrame::Ack {
                    r#ref: r,
                    conversation_id: &id,
                    handling: Some(&handling),
                    message: None,
                    duplicate: None,
                    note: None,
                })
                .await
            }
            Ok(CommandOutcome::Message { message, duplicate }) => {
                self.send(&ServerFrame::Ack {
                    r#ref: r,
                    conversation_id: &id,
                    handling: None,
                    message: Some(&message),
                    duplicate: Some(duplicate),
                    note: None,
                })
                .await
            }
            Ok(CommandOutcome::Note(note)) => {
                self.send(&ServerFrame::Ack {
                    r#ref: r,
                    conversation_id: &id,
                    handling: None,
                    message: None,
                    duplicate: None,
                    note: Some(&note),
                })
                .await
            }
            Err(e) => self.engine_error(&e, r, Some(&id)).await,
        }
    }

    async fn on_update(
        &mut self,
        update: Result<Arc<TenantEvent>, broadcast::error::RecvError>,
    ) -> Result<Flow, Gone> {
        match update {
            Ok(event) => match &*event {
                TenantEvent::Conversation { conversation_id, bot_id, handling, last_message } => {
                    self.send(&ServerFrame::InboxUpdate {
                        conversation_id,
                        bot_id: bot_id.as_str(),
                        handling,
                        last_message: last_message.as_deref(),
                    })
                    .await?;
                }
                TenantEvent::Presence { presence } => {
                    let frame =
                        ServerFrame::Presence { agent: &presence.agent, status: presence.status };
                    self.send(&frame).await?;
                }
                TenantEvent::Member { account_id } => {
                    let mine = self.me.as_ref().map(|m| &m.member.account);
                    if mine == Some(account_id) {
                        return self.recheck().await;
                    }
                }
            },
            // Fell behind: a notice about this member may be among what was lost; then the
            // whole inbox again.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Flow::Close(reason) = self.recheck().await? {
                    return Ok(Flow::Close(reason));
                }
                self.send_inbox().await?;
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
        Ok(Flow::Continue)
    }

    async fn on_event(
        &mut self,
        id: &ConversationId,
        generation: u64,
        item: Result<FeedItem, EngineError>,
    ) -> Result<Flow, Gone> {
        if self.watched.get(id).is_none_or(|w| w.generation != generation) {
            return Ok(Flow::Continue); // Unsubscribed meanwhile (and maybe subscribed again).
        }
        let conversation_id = id;
        let event = match item {
            Ok(FeedItem::Message(message)) => {
                self.send(&ServerFrame::Message { conversation_id, message: &message }).await?;
                return Ok(Flow::Continue);
            }
            Ok(FeedItem::Live(event)) => event,
            // The store failed while filling a gap: the feed tries again with a later message.
            Err(e) => {
                self.engine_error(&e, None, Some(id)).await?;
                return Ok(Flow::Continue);
            }
        };
        let me = self.conn;
        let frame = match &*event {
            Event::Message { message } => ServerFrame::Message { conversation_id, message },
            Event::StreamEnd { stream_id, message } => {
                ServerFrame::StreamEnd { conversation_id, stream_id, message }
            }
            Event::StreamStart { stream_id, sender } => {
                ServerFrame::StreamStart { conversation_id, stream_id, sender: *sender }
            }
            Event::Token { stream_id, delta } => {
                ServerFrame::Token { conversation_id, stream_id, delta }
            }
            Event::StreamCancelled { stream_id } => {
                ServerFrame::StreamCancelled { conversation_id, stream_id }
            }
            Event::Typing { sender, on, origin } if *origin != Some(me) => {
                ServerFrame::Typing { conversation_id, sender: *sender, on: *on }
            }
            Event::Read { sender, seq, origin } if *origin != Some(me) => {
                ServerFrame::Read { conversation_id, sender: *sender, seq: *seq }
            }
            Event::Handoff { to, agent } => {
                ServerFrame::Handoff { conversation_id, to: *to, agent: agent.as_ref() }
            }
            Event::Handling { handling } => ServerFrame::Handling { conversation_id, handling },
            Event::Note { note } => ServerFrame::Note { conversation_id, note },
            Event::Rejected { conn: None, code, message, .. } => ServerFrame::Error {
                code,
                message,
                r#ref: None,
                conversation_id: Some(conversation_id),
            },
            // Acks are for the connection that sent the message, never this socket.
            Event::Typing { .. }
            | Event::Read { .. }
            | Event::Rejected { .. }
            | Event::Ack { .. } => return Ok(Flow::Continue),
        };
        self.send(&frame).await?;
        Ok(Flow::Continue)
    }

    async fn engine_error(
        &mut self,
        e: &EngineError,
        r#ref: Option<&str>,
        conversation_id: Option<&ConversationId>,
    ) -> Result<(), Gone> {
        if matches!(e, EngineError::Store(_) | EngineError::Internal) {
            let conversation = conversation_id.map(|c| c.as_str());
            tracing::error!(error = %e, conversation, "engine error on the agent socket");
        }
        self.error(e.code(), &e.public_message(), r#ref, conversation_id).await
    }

    async fn error(
        &mut self,
        code: &str,
        message: &str,
        r#ref: Option<&str>,
        conversation_id: Option<&ConversationId>,
    ) -> Result<(), Gone> {
        self.send(&ServerFrame::Error { code, message, r#ref, conversation_id }).await
    }

    async fn send(&mut self, frame: &ServerFrame<'_>) -> Result<(), Gone> {
        if let ServerFrame::Error { code, .. } = frame {
            self.state.engine.metrics().error(ErrorSource::Agent, code);
        }
        let json = match serde_json::to_string(frame) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "could not encode an agent frame");
                return Ok(());
            }
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, self.ws.text(json)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }
}

async fn next_update(
    inbox: &mut Option<broadcast::Receiver<Arc<TenantEvent>>>,
) -> Result<Arc<TenantEvent>, broadcast::error::RecvError> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The audit log's name and details for a command that changes a conversation's handling
/// (its messages and notes are the transcript's, not the log's).
fn audited(action: &AgentAction) -> Option<(&'static str, serde_json::Value)> {
    match action {
        AgentAction::Claim => Some(("claim", serde_json::json!({}))),
        AgentAction::Release => Some(("release", serde_json::json!({}))),
        AgentAction::Transfer { to } => Some(("transfer", serde_json::json!({ "to": to.id }))),
        AgentAction::Resolve { resolution, .. } => {
            Some(("resolve", serde_json::json!({ "resolution": resolution })))
        }
        _ => None,
    }
}
