//! [`RedisLimits`]: the domain's [`SharedLimits`] in Redis — each check-and-count one Lua
//! script (atomic across nodes), on Redis's clock.

use std::time::Duration;

use async_trait::async_trait;
use parla_domain::limits::{LimitsError, SharedLimits};

/// Budgets and backoffs every node sees alike.
pub struct RedisLimits {
    conn: redis::aio::ConnectionManager,
    /// Namespaces the keys (the cluster's topic prefix).
    prefix: String,
    gcra: redis::Script,
    begin: redis::Script,
    end: redis::Script,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimits").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// GCRA: the key holds the budget's theoretical arrival time (ms). A request is allowed if
/// spending it keeps that time within `burst` intervals of now; else it returns how long to
/// wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - interval * burst
if over > 0 then return over end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

/// [`SharedLimits::begin_attempt`]: KEYS are the counts, ARGV[1] the longest backoff (ms),
/// ARGV[2..] each count's free attempts. Refused (the wait in ms) while any backoff runs; else
/// counts the attempt in every key.
const BEGIN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local function wait(key, free)
  local v = redis.call('HMGET', key, 'count', 'last')
  local count, last = tonumber(v[1]), tonumber(v[2])
  if count == nil or last == nil or count < free then return 0 end
  local backoff = math.min(1000 * 2 ^ math.min(count - free, 20), max)
  return math.max(0, backoff - math.max(0, now - last))
end
local w = 0
for i, key in ipairs(KEYS) do
  w = math.max(w, wait(key, tonumber(ARGV[i + 1])))
end
if w > 0 then return math.ceil(w) end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HSET', key, 'last', now)
  redis.call('PEXPIRE', key, max)
end
return 0
";

/// [`SharedLimits::end_attempt`]: the first ARGV[1] keys go, every other gives one attempt
/// back and goes at zero (a key that is gone stays gone).
const END: &str = r"
local cleared = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if i <= cleared then
    redis.call('DEL', key)
  elseif redis.call('EXISTS', key) == 1 then
    if redis.call('HINCRBY', key, 'count', -1) <= 0 then redis.call('DEL', key) end
  end
end
return 0
";

impl RedisLimits {
    /// Connects to `redis_url`; every key goes under `{prefix}:limit:`.
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            gcra: redis::Script::new(GCRA),
            begin: redis::Script::new(BEGIN),
            end: redis::Script::new(END),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:limit:{key}", self.prefix)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn wait(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[async_trait]
impl SharedLimits for RedisLimits {
    async fn spend(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, LimitsError> {
        let mut conn = self.conn.clone();
        let ms: u64 = self
            .gcra
            .key(self.key(key))
            .arg(millis(interval).max(1))
            .arg(burst.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(wait(ms))
    }

    async fn begin_attempt(
        &self,
        counts: &[(&str, u32)],
        max: Duration,
    ) -> Result<Option<Duration>, LimitsError> {
        let mut conn = self.conn.clone();
        let mut call = self.begin.prepare_invoke();
        call.arg(millis(max));
        for (key, free) in counts {
            call.key(self.key(key)).arg(*free);
        }
        let ms: u64 = call.invoke_async(&mut conn).await.map_err(|e| e.to_string())?;
        Ok(wait(ms))
    }

    async fn end_attempt(
        &self,
        clear: Option<&str>,
        give_back: &[&str],
    ) -> Result<(), LimitsError> {
        let mut conn = self.conn.clone();
        let mut call = self.end.prepare_invoke();
        call.arg(usize::from(clear.is_some()));
        for key in clear.iter().chain(give_back) {
            call.key(self.key(key));
        }
        call.invoke_async::<()>(&mut conn).await.map_err(|e| e.to_string())
    }
}
