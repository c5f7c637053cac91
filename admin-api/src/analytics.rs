//! `/api/analytics/*`: a tenant's numbers, read from the counters the store keeps as messages
//! flow ([`parla_engine::analytics`]), never by scanning transcripts.
//!
//! Every range is `[from, to)` in Unix milliseconds, widened to whole UTC hours (the counters'
//! grain): `from` down to its hour, `to` up. The default is the last 7 days; at most 366 days.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, http::StatusCode, web};
use futures_util::stream::{self, StreamExt};
use parla_engine::{
    analytics::{CounterRow, Counters, DAY_MS, HOUR_MS, hour_of},
    model::{BotId, TenantId, now_ms, rfc3339},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{AdminState, error::ApiError, routes::Caller, views::ErrorBody};

/// The longest range one request may ask for.
const MAX_RANGE_MS: i64 = 366 * DAY_MS;
const DEFAULT_RANGE_MS: i64 = 7 * DAY_MS;
/// The latest time a range may name: 10000-01-01T00:00:00Z. Keeps every sum of times and
/// intervals below far from `i64::MAX`.
const MAX_TIME_MS: i64 = 253_402_300_800_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start, Unix milliseconds (default: `to` minus 7 days); rounded down to its UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    from: Option<i64>,
    /// End, exclusive, Unix milliseconds (default: now); rounded up to a UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    to: Option<i64>,
    /// Only this bot (one of the caller's).
    bot_id: Option<String>,
}

/// A checked range and bot filter.
struct Scope {
    from: i64,
    to: i64,
    bot: Option<BotId>,
}

impl Scope {
    fn keeps(&self, bot: &BotId) -> bool {
        self.bot.as_ref().is_none_or(|b| b == bot)
    }
}

async fn scope(
    state: &AdminState,
    caller: &Caller,
    from: Option<i64>,
    to: Option<i64>,
    bot: Option<&str>,
) -> Result<Scope, ApiError> {
    caller.require("analytics:read")?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    let ceil_hour = |ms: i64| hour_of(ms.saturating_add(HOUR_MS - 1));
    let out_of_range = |t: i64| !(0..=MAX_TIME_MS).contains(&t);
    let to = match to {
        Some(to) if out_of_range(to) => {
            return Err(ApiError::invalid("to", "must be 0 to 253402300800000 (year 10000)"));
        }
        Some(to) => ceil_hour(to),
        None => ceil_hour(now_ms()),
    };
    let from = match from {
        Some(from) if out_of_range(from) => {
            return Err(ApiError::invalid("from", "must be 0 to 253402300800000 (year 10000)"));
        }
        Some(from) => hour_of(from),
        None => to.saturating_sub(DEFAULT_RANGE_MS).max(0),
    };
    if from >= to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    if to - from > MAX_RANGE_MS {
        return Err(ApiError::invalid("to", "the range may span at most 366 days"));
    }
    let bot =
        match bot {
            None => None,
            Some(id) => {
                let id = BotId(id.to_owned());
                state.store.get_bot(&caller.tenant, &id).await?.ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such bot")
                })?;
                Some(id)
            }
        };
    Ok(Scope { from, to, bot })
}

async fn rows(
    state: &AdminState,
    tenant: &TenantId,
    s: &Scope,
) -> Result<Vec<CounterRow>, ApiError> {
    let mut rows = state.store.analytics(tenant, s.from, s.to).await?;
    rows.retain(|r| s.keeps(&r.bot_id));
    Ok(rows)
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageCounts {
    pub total: i64,
    pub visitor: i64,
    pub bot: i64,
    pub agent: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionCounts {
    pub resolved: i64,
    pub unresolved: i64,
    pub escalated: i64,
    pub abandoned: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Csat {
    /// Mean score, 1 to 5; null without answers.
    pub average: Option<f64>,
    pub responses: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCounts {
    pub prompt: i64,
    pub completion: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCounts {
    pub conversations: i64,
    pub messages: i64,
}

/// A tenant's (or a bot's) numbers over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub from: i64,
    pub to: i64,
    /// Set when the numbers are one bot's.
    pub bot_id: Option<String>,
    /// Conversations started in the range.
    pub conversations: i64,
    /// Messages stored in the range.
    pub messages: MessageCounts,
    /// Conversations whose visitor wrote, counted once per UTC day.
    pub active_visitors: i64,
    /// The tenant's visitors with the widget open now; null for one bot, and in a cluster
    /// (their sockets are spread over the gateway nodes).
    pub visitors_online: Option<usize>,
    /// Of the conversations started in the range: those handed to people (escalated or
    /// taken over), and their share.
    pub handovers: i64,
    pub escalation_rate: Option<f64>,
    /// Of the conversations started in the range, how the resolved ones ended.
    pub resolutions: ResolutionCounts,
    /// Share of the conversations started in the range that are RESOLVED as resolved.
    pub resolution_rate: Option<f64>,
    /// First visitor message to the first answer (bot or agent) after it, mean.
    pub avg_first_response_ms: Option<f64>,
    /// Start to resolution of the resolved conversations, mean.
    pub avg_duration_ms: Option<f64>,
    /// Mean visitor sentiment, -1 to 1.
    pub sentiment: Option<f64>,
    pub csat: Csat,
    pub llm_tokens: TokenCounts,
    /// Visitor messages an intent matched, those none did, and the matched share.
    pub intents_matched: i64,
    pub intents_unmatched: i64,
    pub match_rate: Option<f64>,
    pub by_channel: BTreeMap<String, ChannelCounts>,
}

/// Conversations and messages per channel.
fn by_channel(rows: &[CounterRow]) -> BTreeMap<String, ChannelCounts> {
    let mut by_channel: BTreeMap<String, ChannelCounts> = BTreeMap::new();
    for r in rows {
        let c = by_channel
            .entry(r.channel.as_str().to_owned())
            .or_insert(ChannelCounts { conversations: 0, messages: 0 });
        c.conversations += r.counters.conversations;
        c.messages += r.counters.messages();
    }
    by_channel
}

fn overview(s: &Scope, rows: &[CounterRow], visitors_online: Option<usize>) -> Overview {
    let mut t = Counters::default();
    for r in rows {
        t.add(&r.counters);
    }
    let mean = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    Overview {
        from: s.from,
        to: s.to,
        bot_id: s.bot.as_ref().map(|b| b.0.clone()),
        conversations: t.conversations,
        messages: MessageCounts {
            total: t.messages(),
            visitor: t.visitor_messages,
            bot: t.bot_messages,
            agent: t.agent_messages,
        },
        active_visitors: t.active_visitors,
        visitors_online,
        handovers: t.handovers,
        escalation_rate: ratio(t.handovers, t.conversations),
        resolutions: ResolutionCounts {
            resolved: t.resolved,
            unresolved: t.unresolved,
            escalated: t.escalated,
            abandoned: t.abandoned,
        },
        resolution_rate: ratio(t.resolved, t.conversations),
        avg_first_response_ms: mean(t.first_response_ms as f64, t.first_responses),
        avg_duration_ms: mean(t.duration_ms as f64, t.durations),
        sentiment: mean(t.sentiment_sum, t.sentiment_count),
        csat: Csat { average: mean(t.csat_sum as f64, t.csat_count), responses: t.csat_count },
        llm_tokens: TokenCounts { prompt: t.prompt_tokens, completion: t.completion_tokens },
        intents_matched: t.matched,
        intents_unmatched: t.unmatched,
        match_rate: ratio(t.matched, t.matched + t.unmatched),
        by_channel: by_channel(rows),
    }
}

/// The overview of `bot` (or the whole tenant) over a range: both overview endpoints.
async fn overview_response(
    state: &AdminState,
    caller: &Caller,
    (from, to): (Option<i64>, Option<i64>),
    bot: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let s = scope(state, caller, from, to, bot).await?;
    let rows = rows(state, &caller.tenant, &s).await?;
    let online = state.engine.visitors_online(&caller.tenant).filter(|_| s.bot.is_none());
    Ok(HttpResponse::Ok().json(overview(&s, &rows, online)))
}

/// `GET /api/analytics/overview`: the tenant's numbers over a range (or one bot's).
#[utoipa::path(get, path = "/api/analytics/overview", tag = "analytics", operation_id = "analytics_overview",
    security(("bearer" = [])),
    params(RangeQuery),
    responses((status = 200, description = "The numbers", body = Overview),
              (status = 404, description = "No such bot in the caller's tenant", body = ErrorBody)))]
pub async fn overview_handler(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    overview_response(&state, &caller, (q.from, q.to), q.bot_id.as_deref()).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BotRangeQuery {
    /// Start, Unix milliseconds (default: `to` minus 7 days); rounded down to its UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    from: Option<i64>,
    /// End, exclusive, Unix milliseconds (default: now); rounded up to a UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    to: Option<i64>,
}

/// `GET /api/analytics/bots/{id}`: one bot's numbers over a range.
#[utoipa::path(get, path = "/api/analytics/bots/{id}", tag = "analytics", operation_id = "analytics_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), BotRangeQuery),
    responses((status = 200, description = "The bot's numbers", body = Overview)))]
pub async fn bot_handler(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<BotRangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    overview_response(&state, &caller, (q.from, q.to), Some(path.as_str())).await
}

/// The grain of a series.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    #[default]
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Start, Unix milliseconds (default: `to` minus 7 days); rounded down to its UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    from: Option<i64>,
    /// End, exclusive, Unix milliseconds (default: now); rounded up to a UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    to: Option<i64>,
    /// Only this bot (one of the caller's).
    bot_id: Option<String>,
    /// `hour` or `day` (UTC; default `day`).
    #[param(inline)]
    interval: Option<Interval>,
}

/// One point of a series: what happened in `[start, start + interval)`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Point {
    pub start: i64,
    pub conversations: i64,
    pub messages: i64,
    pub visitor_messages: i64,
    pub bot_messages: i64,
    pub agent_messages: i64,
    pub active_visitors: i64,
    pub handovers: i64,
    pub resolved: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub from: i64,
    pub to: i64,
    pub interval: String,
    /// Every interval of the range, oldest first, zeros included.
    pub points: Vec<Point>,
    /// The range's conversations and messages per channel.
    pub by_channel: BTreeMap<String, ChannelCounts>,
}

/// `GET /api/analytics/conversations`: conversations and messages as a series by hour or
/// day, and by channel.
#[utoipa::path(get, path = "/api/analytics/conversations", tag = "analytics", operation_id = "analytics_conversations",
    security(("bearer" = [])),
    params(SeriesQuery),
    responses((status = 200, description = "The series", body = Series),
              (status = 404, description = "No such bot in the caller's tenant", body = ErrorBody)))]
pub async fn conversations_handler(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let interval = q.interval.unwrap_or_default();
    let mut s = scope(&state, &caller, q.from, q.to, q.bot_id.as_deref()).await?;
    let step = match interval {
        Interval::Hour => HOUR_MS,
        Interval::Day => {
            // Whole UTC days.
            s.from = s.from.div_euclid(DAY_MS) * DAY_MS;
            s.to = (s.to + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
            DAY_MS
        }
    };
    let rows = rows(&state, &caller.tenant, &s).await?;
    let slots = usize::try_from((s.to - s.from) / step).unwrap_or(0);
    let mut points: Vec<Point> =
        (0..slots).map(|i| Point { start: s.from + i as i64 * step, ..Point::default() }).collect();
    for r in &rows {
        let c = &r.counters;
        let slot = usize::try_from((r.hour - s.from) / step).unwrap_or(usize::MAX);
        if let Some(p) = points.get_mut(slot) {
            p.conversations += c.conversations;
            p.messages += c.messages();
            p.visitor_messages += c.visitor_messages;
            p.bot_messages += c.bot_messages;
            p.agent_messages += c.agent_messages;
            p.active_visitors += c.active_visitors;
            p.handovers += c.handovers;
            p.resolved += c.resolved;
        }
    }
    let interval = match interval {
        Interval::Hour => "hour",
        Interval::Day => "day",
    };
    Ok(HttpResponse::Ok().json(Series {
        from: s.from,
        to: s.to,
        interval: interval.into(),
        points,
        by_channel: by_channel(&rows),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntentsQuery {
    /// Start, Unix milliseconds (default: `to` minus 7 days); rounded down to its UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    from: Option<i64>,
    /// End, exclusive, Unix milliseconds (default: now); rounded up to a UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    to: Option<i64>,
    /// Only this bot (one of the caller's).
    bot_id: Option<String>,
    /// Unmatched messages to list, newest first, 0 to 200 (default 50).
    #[param(minimum = 0, maximum = 200)]
    unmatched_limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentStat {
    pub bot_id: String,
    pub intent: String,
    pub hits: i64,
    pub avg_confidence: Option<f64>,
}

/// A visitor message no intent matched: material to train the bot on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unmatched {
    pub bot_id: String,
    pub conversation_id: String,
    pub seq: u64,
    pub text: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentReport {
    pub from: i64,
    pub to: i64,
    /// Most hits first.
    pub intents: Vec<IntentStat>,
    /// Visitor messages no intent matched in the range.
    pub unmatched_total: i64,
    /// The newest of them (deleted conversations' left out).
    pub unmatched: Vec<Unmatched>,
}

/// `GET /api/analytics/intents`: hits and mean confidence per intent, and the messages no
/// intent matched.
#[utoipa::path(get, path = "/api/analytics/intents", tag = "analytics", operation_id = "analytics_intents",
    security(("bearer" = [])),
    params(IntentsQuery),
    responses((status = 200, description = "The intents' numbers", body = IntentReport),
              (status = 404, description = "No such bot in the caller's tenant", body = ErrorBody)))]
pub async fn intents_handler(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<IntentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = match q.unmatched_limit {
        None => 50,
        Some(l) if l <= 200 => l as usize,
        Some(_) => return Err(ApiError::invalid("unmatched_limit", "must be 0 to 200")),
    };
    let s = scope(&state, &caller, q.from, q.to, q.bot_id.as_deref()).await?;
    let mut totals: BTreeMap<(BotId, String), (i64, f64)> = BTreeMap::new();
    for row in state.store.intent_counts(&caller.tenant, s.from, s.to).await? {
        if s.keeps(&row.bot_id) {
            let t = totals.entry((row.bot_id, row.intent)).or_default();
            t.0 += row.hits;
            t.1 += row.confidence_sum;
        }
    }
    let mut intents: Vec<IntentStat> = totals
        .into_iter()
        .map(|((bot, intent), (hits, sum))| IntentStat {
            bot_id: bot.0,
            intent,
            hits,
            avg_confidence: (hits > 0).then(|| sum / hits as f64),
        })
        .collect();
    intents.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.intent.cmp(&b.intent)));
    let unmatched_total =
        rows(&state, &caller.tenant, &s).await?.iter().map(|r| r.counters.unmatched).sum();
    let unmatched = if limit == 0 {
        Vec::new()
    } else {
        state.store.unmatched_messages(&caller.tenant, s.bot.as_ref(), s.from, s.to, limit).await?
    };
    let unmatched = unmatched
        .into_iter()
        .map(|(bot, m)| Unmatched {
            bot_id: bot.0,
            conversation_id: m.conversation_id.0,
            seq: m.seq,
            text: m.text,
            created_at: m.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(IntentReport {
        from: s.from,
        to: s.to,
        intents,
        unmatched_total,
        unmatched,
    }))
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csv,
    Json,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Start, Unix milliseconds (default: `to` minus 7 days); rounded down to its UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    from: Option<i64>,
    /// End, exclusive, Unix milliseconds (default: now); rounded up to a UTC hour.
    #[param(minimum = 0, maximum = 253_402_300_800_000_i64)]
    to: Option<i64>,
    /// Only this bot (one of the caller's).
    bot_id: Option<String>,
    /// `csv` (default) or `json`.
    #[param(inline)]
    format: Option<Format>,
}

/// The bucket columns of an export, before every counter ([`Counters::NAMES`]).
const BUCKET_COLUMNS: [&str; 4] = ["hour", "hour_utc", "bot_id", "channel"];

/// The columns of an export, in order: the bucket, then every counter.
pub fn export_columns() -> impl Iterator<Item = &'static str> {
    BUCKET_COLUMNS.into_iter().chain(Counters::NAMES)
}

/// One export row: an hour's counts for a bot and a channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportRow {
    /// Start of the UTC hour, Unix ms.
    pub hour: i64,
    pub hour_utc: String,
    pub bot_id: String,
    pub channel: String,
    #[serde(flatten)]
    pub counters: Counters,
}

impl From<CounterRow> for ExportRow {
    fn from(r: CounterRow) -> Self {
        ExportRow {
            hour: r.hour,
            hour_utc: rfc3339(r.hour),
            bot_id: r.bot_id.0,
            channel: r.channel.as_str().to_owned(),
            counters: r.counters,
        }
    }
}

impl ExportRow {
    fn csv_line(&self) -> String {
        // Ids, channels and dates need no quoting; a bot id is quoted anyway if it ever would,
        // so a field can never break the line.
        let bucket = [self.hour.to_string(), self.hour_utc.clone(), csv_field(&self.bot_id)];
        let mut cells: Vec<String> = bucket.into();
        cells.push(self.channel.clone());
        cells.extend(self.counters.cells());
        let mut line = cells.join(",");
        line.push('\n');
        line
    }
}

/// RFC 4180 quoting when a field needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `GET /api/analytics/export`: every counter row of the range (one per hour, bot and
/// channel with any activity), as CSV or a JSON array, streamed a day at a time.
#[utoipa::path(get, path = "/api/analytics/export", tag = "analytics", operation_id = "analytics_export",
    security(("bearer" = [])),
    params(ExportQuery),
    responses((status = 200, description = "The rows: CSV with a header line, or a JSON array of rows",
               content((String = "text/csv"), (Vec<ExportRow> = "application/json"))),
              (status = 404, description = "No such bot in the caller's tenant", body = ErrorBody)))]
pub async fn export_handler(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let format = q.format.unwrap_or_default();
    let s = scope(&state, &caller, q.from, q.to, q.bot_id.as_deref()).await?;
    let days: Vec<(i64, i64)> = (0..)
        .map(|i| s.from + i * DAY_MS)
        .take_while(|start| *start < s.to)
        .map(|start| (start, (start + DAY_MS).min(s.to)))
        .collect();
    let store = state.store.clone();
    let tenant = caller.tenant.clone();
    let bot = s.bot.clone();
    let head = match format {
        Format::Csv => format!("{}\n", export_columns().collect::<Vec<_>>().join(",")),
        Format::Json => "[".to_owned(),
    };
    let tail = match format {
        Format::Csv => String::new(),
        Format::Json => "]\n".to_owned(),
    };
    let mut first = true;
    let body = stream::iter(days)
        .then(move |(from, to)| {
            let (store, tenant) = (store.clone(), tenant.clone());
            async move { store.analytics(&tenant, from, to).await }
        })
        .map(move |day| {
            let rows = day.map_err(|e| {
                tracing::error!(error = %e, "analytics export: a day could not be read");
                actix_web::error::ErrorInternalServerError("export interrupted")
            })?;
            let mut chunk = String::new();
            for row in rows.into_iter().filter(|r| bot.as_ref().is_none_or(|b| *b == r.bot_id)) {
                let row = ExportRow::from(row);
                match format {
                    Format::Csv => chunk.push_str(&row.csv_line()),
                    Format::Json => {
                        if !first {
                            chunk.push(',');
                        }
                        first = false;
                        let json = serde_json::to_string(&row)
                            .map_err(actix_web::error::ErrorInternalServerError)?;
                        chunk.push_str(&json);
                    }
                }
            }
            Ok::<_, actix_web::Error>(web::Bytes::from(chunk))
        });
    let body = stream::once(async move { Ok(web::Bytes::from(head)) })
        .chain(body)
        .chain(stream::once(async move { Ok(web::Bytes::from(tail)) }));
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    // No `:` in a file name (Windows refuses it).
    let stamp = |ms: i64| rfc3339(ms).replace(':', "");
    let name = format!("parla-analytics-{}-{}.{extension}", stamp(s.from), stamp(s.to));
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("content-disposition", format!("attachment; filename=\"{name}\"")))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parla_engine::model::Channel;

    #[test]
    fn every_export_column_is_a_field_in_order() {
        let row = ExportRow::from(CounterRow {
            hour: 1_699_999_200_000,
            bot_id: BotId("b".into()),
            channel: Channel::Sms,
            counters: Counters { conversations: 3, unmatched: 7, ..Counters::default() },
        });
        let json = serde_json::to_value(&row).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut columns: Vec<&str> = export_columns().collect();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns, "the columns are the fields");
        let line = row.csv_line();
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        assert_eq!(cells.len(), export_columns().count());
        for (column, cell) in export_columns().zip(&cells) {
            match json[column].as_f64() {
                Some(n) => assert_eq!(cell.parse::<f64>().ok(), Some(n), "column {column}"),
                None => assert_eq!(json[column].as_str(), Some(*cell), "column {column}"),
            }
        }
        assert_eq!(cells[1], "2023-11-14T22:00:00Z");
    }

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
