//! Agent presence: who is online, away or offline, kept by heartbeats.
//!
//! Every agent socket is a session: it joins as online, beats on every frame and pong, may set
//! itself away, and leaves when it closes. An agent's status is the best of their live
//! sessions (online > away); a session silent for the timeout counts as gone. A sweeper task
//! turns those silent sessions into changes, so everyone watching (consoles, the dispatcher)
//! hears of a timeout as of any other change, on the tenant's feed.
//!
//! Sessions are kept in the process that holds the agent's socket. In a cluster each node also
//! records its agents' statuses in Redis (through the bus, refreshed by the sweeper), so every
//! node sees every agent: the inbox's list and the dispatcher ([`Presence::list_anywhere`]), and
//! an engine node telling a visitor whether anyone is online
//! ([`Presence::anyone_online_anywhere`]). Changes reach other nodes' consoles as tenant events.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use crate::{
    bus::{Bus, TenantEvent},
    model::{AccountId, AgentRef, TenantId},
};

pub use parla_domain::presence::{AgentPresence, PresenceStatus};

#[derive(Debug)]
struct Session {
    status: PresenceStatus,
    last_seen: Instant,
}

#[derive(Debug)]
struct Agent {
    agent: AgentRef,
    sessions: HashMap<u64, Session>,
    /// The status last announced.
    announced: PresenceStatus,
}

impl Agent {
    fn status(&self, timeout: Duration) -> PresenceStatus {
        self.sessions
            .values()
            .filter(|s| s.last_seen.elapsed() < timeout)
            .map(|s| s.status)
            .min()
            .unwrap_or(PresenceStatus::Offline)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Presence {
    timeout: Duration,
    bus: Arc<dyn Bus>,
    agents: Mutex<HashMap<TenantId, HashMap<AccountId, Agent>>>,
    next_session: std::sync::atomic::AtomicU64,
}

/// A session's handle: pass it back to beat, set and leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(u64);

impl Presence {
    pub fn new(timeout: Duration, bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            bus,
            agents: Mutex::new(HashMap::new()),
            next_session: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Runs the sweeper on the current runtime until the registry is dropped.
    pub fn start_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = self.sweep_period();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(presence) = weak.upgrade() else { break };
                presence.sweep();
            }
        });
    }

    /// A new session of `agent`, online.
    pub fn join(&self, tenant: &TenantId, agent: AgentRef) -> SessionId {
        let id = self.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = Session { status: PresenceStatus::Online, last_seen: Instant::now() };
        {
            let mut agents = self.agents.lock();
            let entry = agents.entry(tenant.clone()).or_default();
            let record = entry.entry(agent.id.clone()).or_insert_with(|| Agent {
                agent: agent.clone(),
                sessions: HashMap::new(),
                announced: PresenceStatus::Offline,
            });
            record.agent = agent; // The name may have changed.
            record.sessions.insert(id, session);
        }
        self.announce(tenant);
        SessionId(id)
    }

    /// The session is alive.
    pub fn beat(&self, tenant: &TenantId, agent: &AccountId, session: SessionId) {
        let revived = {
            let mut agents = self.agents.lock();
            let Some(record) = agents.get_mut(tenant).and_then(|a| a.get_mut(agent)) else {
                return;
            };
            match record.sessions.get_mut(&session.0) {
                Some(s) => {
                    let was_gone = s.last_seen.elapsed() >= self.timeout;
                    s.last_seen = Instant::now();
                    was_gone
                }
                None => false,
            }
        };
        if revived {
            self.announce(tenant);
        }
    }

    /// The agent chose online or away on this session.
    pub fn set(
        &self,
        tenant: &TenantId,
        agent: &AccountId,
        session: SessionId,
        status: PresenceStatus,
    ) {
        if let Some(s) = self
            .agents
            .lock()
            .get_mut(tenant)
            .and_then(|a| a.get_mut(agent))
            .and_then(|r| r.sessions.get_mut(&session.0))
        {
            s.status = status;
            s.last_seen = Instant::now();
        }
        self.announce(tenant);
    }

    /// The session closed.
    pub fn leave(&self, tenant: &TenantId, agent: &AccountId, session: SessionId) {
        if let Some(record) = self.agents.lock().get_mut(tenant).and_then(|a| a.get_mut(agent)) {
            record.sessions.remove(&session.0);
        }
        self.announce(tenant);
    }

    /// Every agent of `tenant` seen since the process started, with their status.
    pub fn list(&self, tenant: &TenantId) -> Vec<AgentPresence> {
        let agents = self.agents.lock();
        let mut list: Vec<AgentPresence> = agents
            .get(tenant)
            .map(|a| {
                a.values()
                    .map(|r| AgentPresence {
                        agent: r.agent.clone(),
                        status: r.status(self.timeout),
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.agent.name.cmp(&b.agent.name)));
        list
    }

    /// Whether any agent of `tenant` is online on this node.
    pub fn anyone_online(&self, tenant: &TenantId) -> bool {
        self.list(tenant).iter().any(|p| p.status == PresenceStatus::Online)
    }

    /// Every agent of `tenant` seen here or online or away on another node, each with the best
    /// of its statuses.
    pub async fn list_anywhere(&self, tenant: &TenantId) -> Vec<AgentPresence> {
        let mut list = self.list(tenant);
        let Some(elsewhere) = self.bus.cluster_presence(tenant).await else { return list };
        for remote in elsewhere {
            match list.iter_mut().find(|p| p.agent.id == remote.agent.id) {
                Some(local) if local.status <= remote.status => {}
                Some(local) => local.status = remote.status,
                None => list.push(remote),
            }
        }
        list.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.agent.name.cmp(&b.agent.name)));
        list
    }

    /// Whether any agent of `tenant` is online on any node of the cluster.
    pub async fn anyone_online_anywhere(&self, tenant: &TenantId) -> bool {
        self.anyone_online(tenant)
            || self.bus.cluster_presence(tenant).await.is_some_and(|elsewhere| {
                elsewhere.iter().any(|p| p.status == PresenceStatus::Online)
            })
    }

    /// Tells the cluster the status of each agent seen here (entries expire after three
    /// sweeps unless told again).
    fn share(&self, tenant: &TenantId) {
        let statuses: Vec<AgentPresence> = {
            let agents = self.agents.lock();
            let Some(all) = agents.get(tenant) else { return };
            all.values()
                .map(|r| AgentPresence { agent: r.agent.clone(), status: r.status(self.timeout) })
                .collect()
        };
        for presence in statuses {
            self.bus.share_presence(tenant, &presence, self.sweep_period() * 3);
        }
    }

    fn sweep_period(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(50))
    }

    /// Publishes the changes of `tenant`'s agents since last announced.
    fn announce(&self, tenant: &TenantId) {
        let changed: Vec<AgentPresence> = {
            let mut agents = self.agents.lock();
            let Some(all) = agents.get_mut(tenant) else { return };
            all.values_mut()
                .filter_map(|r| {
                    let now = r.status(self.timeout);
                    (now != r.announced).then(|| {
                        r.announced = now;
                        AgentPresence { agent: r.agent.clone(), status: now }
                    })
                })
                .collect()
        };
        let any = !changed.is_empty();
        for presence in changed {
            self.bus.publish_tenant(tenant, TenantEvent::Presence { presence });
        }
        if any {
            self.share(tenant);
        }
    }

    /// Announces the sessions that went silent. (A silent session stays registered: its
    /// socket closes it within the socket's own heartbeat timeout, and a beat before that
    /// brings the agent back.)
    fn sweep(&self) {
        let tenants: Vec<TenantId> = self.agents.lock().keys().cloned().collect();
        for tenant in tenants {
            self.announce(&tenant);
            self.share(&tenant);
        }
    }
}
