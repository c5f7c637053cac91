//! A responder backed by any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama,
//! llama.cpp's server), streamed: each `delta.content` of the server-sent events becomes a token
//! of the conversation's stream the moment it arrives.
//!
//! The prompt is the bot's personality and language, the retrieved knowledge-base passages
//! (numbered, with their headings), the last `history_messages` turns and the question. A
//! matching intent still answers by itself, without a call. Retries happen only before the first
//! token: a refused or failed request (network, 429, 5xx) or a first token slower than
//! `first_token_timeout_ms` is retried, up to `attempts` in all; once a token is out, an error
//! ends the answer where it is. Dropping the reply (the actor aborts it when the conversation is
//! deleted) drops the HTTP response, which closes the upstream request.
//!
//! The endpoint is the tenant's own when it set one, else the server's (`[llm]`); with neither,
//! or when the tenant's monthly token budget is spent, the built-in responder answers. A
//! tenant's endpoint is called under the rules for a tenant's targets ([`crate::guard`]): no
//! redirect, and the address connected to must be public unless the operator allows otherwise;
//! the server's endpoint follows no redirect either.
//!
//! # Bounds
//! Whatever the endpoint does, a reply ends: past `max_reply_chars` characters or
//! `max_reply_time` after the question, the answer stops there, the upstream response is
//! dropped (which closes its connection: the endpoint sees the client go) and the text that came
//! is kept with [`CUT_MARKER`] appended — streamed as the last token, so the widget shows what
//! is stored. One server-sent event larger than [`LlmConfig::max_event_bytes`] ends the answer
//! as an error (it is never buffered whole). A cut reply whose usage never came is charged an
//! estimate (a token per four characters), so a runaway stream is not free against the budget.
//!
//! Written on reqwest rather than async-openai: the wire format is small, and owning it gives
//! exact control of the first-token timeout, the retry boundary and cancellation.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

use parla_domain::{
    model::{Sender, TenantLlm},
    responder::{Reply, ReplyRequest, Responder, ResponderError, Usage},
};

/// Where and how to call the model.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The server's API base, e.g. `https://api.openai.com/v1`; empty = none (only tenants
    /// with their own endpoint get LLM answers).
    pub base_url: String,
    pub model: String,
    pub api_key: String,
    pub first_token_timeout: Duration,
    pub attempts: u32,
    pub history_messages: usize,
    pub max_tokens: u32,
    /// Intents at or above this confidence answer without the model.
    pub min_confidence: f32,
    /// Let tenants' own endpoints resolve to non-public addresses (tests; a trusted network).
    pub tenant_endpoints_allow_private: bool,
    /// Longest reply kept, in characters: a reply past it is cut (see the module docs).
    pub max_reply_chars: usize,
    /// Longest a reply may take, from the question to its last token.
    pub max_reply_time: Duration,
}

impl LlmConfig {
    /// Largest server-sent event buffered: one event carries one delta, so a reply's worth of
    /// characters (as JSON, up to 6 bytes each when escaped), and at least 1 MiB.
    pub fn max_event_bytes(&self) -> usize {
        self.max_reply_chars.saturating_mul(6).max(1 << 20)
    }
}

/// Ends a reply cut at [`LlmConfig::max_reply_chars`] or [`LlmConfig::max_reply_time`]: the
/// ellipsis in brackets marks an elision in any language.
pub const CUT_MARKER: &str = " […]";

pub struct LlmResponder {
    /// For the server's endpoint (`[llm] base_url`): the operator's, anywhere.
    client: reqwest::Client,
    /// For tenants' endpoints: public addresses only (unless allowed), checked at connection.
    tenant_client: reqwest::Client,
    /// The rules `tenant_client` follows, to judge a literal address before the call.
    tenant_egress: crate::guard::TenantEgress,
    config: LlmConfig,
    /// Answers matched intents, and everything when no endpoint may be called (the engine's
    /// built-in responder).
    fallback: Arc<dyn Responder>,
}

impl std::fmt::Debug for LlmResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("LlmResponder")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .finish_non_exhaustive()
    }
}

impl LlmResponder {
    pub fn new(config: LlmConfig, fallback: Arc<dyn Responder>) -> Self {
        let user_agent = concat!("Parla/", env!("CARGO_PKG_VERSION"));
        let client = crate::guard::operator_client()
            .connect_timeout(config.first_token_timeout)
            .user_agent(user_agent)
            .build()
            .unwrap_or_default();
        let tenant_egress = crate::guard::TenantEgress::new(config.tenant_endpoints_allow_private);
        let tenant_client = tenant_egress
            .client()
            .connect_timeout(config.first_token_timeout)
            .user_agent(user_agent)
            .build()
            .unwrap_or_default();
        Self { client, tenant_client, tenant_egress, config, fallback }
    }

    /// The endpoint for `request`: the tenant's, else the server's, else none.
    fn endpoint(&self, request: &ReplyRequest) -> Option<TenantLlm> {
        request.llm.clone().or_else(|| {
            (!self.config.base_url.is_empty()).then(|| TenantLlm {
                base_url: self.config.base_url.clone(),
                model: self.config.model.clone(),
                api_key: self.config.api_key.clone(),
            })
        })
    }

    fn body(&self, request: &ReplyRequest, model: &str) -> Value {
        let bot = &request.bot;
        let mut system = format!(
            "You are {}, a helpful assistant. Answer in the language tagged {} unless the user \
             writes in another. Be concise.",
            bot.name, bot.language
        );
        if let Some(personality) = &bot.config.personality {
            system.push_str(&format!("\nPersonality: {personality}"));
        }
        if request.passages.is_empty() {
            system.push_str(&format!(
                "\nIf you do not know the answer, say: {}",
                bot.config.fallback_message
            ));
        } else {
            system.push_str(
                "\nAnswer from these passages of the knowledge base; if they do not hold the \
                 answer, say you do not know.",
            );
            for (i, passage) in request.passages.iter().enumerate() {
                system.push_str(&format!("\n[{}] {}: {}", i + 1, passage.title, passage.text));
            }
        }
        let mut messages = vec![json!({"role": "system", "content": system})];
        let history = request.history.iter().rev().take(self.config.history_messages).rev();
        for message in history {
            let role = if message.sender == Sender::User { "user" } else { "assistant" };
            messages.push(json!({"role": role, "content": message.text}));
        }
        // The question is the last message of the history when the actor stored it first.
        if request.history.last().is_none_or(|m| m.sender != Sender::User || m.text != request.text)
        {
            messages.push(json!({"role": "user", "content": request.text}));
        }
        json!({
            "model": model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": self.config.max_tokens,
        })
    }

    /// One attempt: the request, then events until the first token.
    async fn open(
        &self,
        client: &reqwest::Client,
        endpoint: &TenantLlm,
        body: &Value,
    ) -> Result<(String, Events), Attempt> {
        let url = format!("{}/chat/completions", endpoint.base_url.trim_end_matches('/'));
        let mut call = client.post(url).json(body);
        if !endpoint.api_key.is_empty() {
            call = call.bearer_auth(&endpoint.api_key);
        }
        let response = call.send().await.map_err(|e| match crate::guard::refusal(&e) {
            Some(reason) => Attempt::Fail(format!("the tenant's LLM endpoint: {reason}")),
            None => Attempt::Retry(e.without_url().to_string()),
        })?;
        let status = response.status();
        if !status.is_success() {
            let reason = format!("the LLM answered {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Attempt::Retry(reason)
            } else {
                Attempt::Fail(reason)
            });
        }
        let mut events = Events::new(response, self.config.max_event_bytes());
        match events.next_token().await {
            Ok(Some(token)) => Ok((token, events)),
            Ok(None) => Err(Attempt::Retry("the LLM ended without a token".into())),
            Err(e) => Err(Attempt::Retry(e)),
        }
    }
}

enum Attempt {
    Retry(String),
    Fail(String),
}

#[async_trait]
impl Responder for LlmResponder {
    async fn reply(&self, request: ReplyRequest) -> Result<Reply, ResponderError> {
        let matched =
            request.matched_intent().is_some_and(|(_, score)| score >= self.config.min_confidence);
        let endpoint = self.endpoint(&request).filter(|_| request.llm_allowed);
        let Some(endpoint) = endpoint.filter(|_| !matched) else {
            return self.fallback.reply(request).await;
        };
        let deadline = Instant::now() + self.config.max_reply_time;
        let client = if request.llm.is_some() {
            // A literal address is judged here; a name when the client resolves it.
            if let Err(reason) = self.tenant_egress.check_url(&endpoint.base_url) {
                return Err(ResponderError::Backend(format!(
                    "the tenant's LLM endpoint: {reason}"
                )));
            }
            &self.tenant_client
        } else {
            &self.client
        };
        let body = self.body(&request, &endpoint.model);
        let mut last = String::from("no attempt");
        for attempt in 1..=self.config.attempts.max(1) {
            let attempt_call = self.open(client, &endpoint, &body);
            let first_token_by = (Instant::now() + self.config.first_token_timeout).min(deadline);
            match tokio::time::timeout_at(first_token_by, attempt_call).await {
                Ok(Ok((first, events))) => {
                    let usage = events.usage.clone();
                    let rest = futures_util::stream::unfold(events, |mut events| async move {
                        match events.next_token().await {
                            Ok(Some(token)) => Some((Ok(token), events)),
                            Ok(None) => None,
                            Err(e) => Some((Err(ResponderError::Backend(e)), events.ended())),
                        }
                    });
                    let tokens = futures_util::stream::once(async { Ok(first) }).chain(rest);
                    let bounds = Bounds {
                        max_chars: self.config.max_reply_chars,
                        deadline,
                        usage: usage.clone(),
                        prompt_tokens: estimate_tokens(body.to_string().chars().count()),
                    };
                    return Ok(Reply {
                        intent: None,
                        confidence: None,
                        // What the prompt held, whether or not the model used it.
                        sources: parla_domain::knowledge::sources(&request.passages),
                        tokens: bounded(tokens.boxed(), bounds),
                        usage: Some(usage),
                    });
                }
                Ok(Err(Attempt::Fail(reason))) => return Err(ResponderError::Backend(reason)),
                Ok(Err(Attempt::Retry(reason))) => last = reason,
                Err(_) => last = "no first token in time".into(),
            }
            tracing::warn!(attempt, reason = %last, "LLM attempt failed");
        }
        Err(ResponderError::Backend(last))
    }

    fn history_len(&self) -> usize {
        self.config.history_messages
    }

    fn min_confidence(&self) -> f32 {
        self.config.min_confidence
    }
}

/// Where a reply stops, and the usage to estimate when it is cut.
struct Bounds {
    max_chars: usize,
    deadline: Instant,
    usage: Arc<Mutex<Option<Usage>>>,
    /// The prompt's estimated tokens, charged when the reply is cut before the provider's count.
    prompt_tokens: u32,
}

/// Tokens at a rough four characters each, for a reply cut before its usage came.
fn estimate_tokens(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// `tokens` until they end, or until `bounds` cut them: then the text within the bounds and
/// [`CUT_MARKER`], and `tokens` is dropped (with it the upstream response, which closes the
/// request).
fn bounded(
    tokens: futures_util::stream::BoxStream<'static, Result<String, ResponderError>>,
    bounds: Bounds,
) -> futures_util::stream::BoxStream<'static, Result<String, ResponderError>> {
    let bounds = Arc::new(bounds);
    futures_util::stream::unfold((Some(tokens), 0usize), move |(tokens, sent)| {
        let bounds = bounds.clone();
        async move {
            let mut tokens = tokens?;
            let cut = |sent: usize, why: &str| {
                tracing::warn!(chars = sent, why, "LLM reply cut");
                let mut usage = bounds.usage.lock();
                if usage.is_none() {
                    *usage = Some(Usage {
                        prompt_tokens: bounds.prompt_tokens,
                        completion_tokens: estimate_tokens(sent),
                    });
                }
            };
            match tokio::time::timeout_at(bounds.deadline, tokens.next()).await {
                Err(_) => {
                    drop(tokens);
                    cut(sent, "took longer than llm.max_reply_ms");
                    Some((Ok(CUT_MARKER.to_owned()), (None, sent)))
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(e), (None, sent))),
                Ok(Some(Ok(token))) => {
                    let room = bounds.max_chars.saturating_sub(sent);
                    let length = token.chars().count();
                    if length <= room {
                        return Some((Ok(token), (Some(tokens), sent + length)));
                    }
                    drop(tokens);
                    cut(sent + room, "longer than llm.max_reply_chars");
                    let mut kept: String = token.chars().take(room).collect();
                    kept.push_str(CUT_MARKER);
                    Some((Ok(kept), (None, sent + room)))
                }
            }
        }
    })
    .boxed()
}

/// The server-sent events of a streamed chat completion.
struct Events {
    response: Option<reqwest::Response>,
    buffer: Vec<u8>,
    pending: VecDeque<String>,
    usage: Arc<Mutex<Option<Usage>>>,
    /// `[DONE]` seen, or an error: nothing more.
    done: bool,
    /// Bytes one event may take before the stream is refused ([`LlmConfig::max_event_bytes`]).
    max_event_bytes: usize,
}

impl Events {
    fn new(response: reqwest::Response, max_event_bytes: usize) -> Self {
        Self {
            response: Some(response),
            buffer: Vec::new(),
            pending: VecDeque::new(),
            usage: Arc::new(Mutex::new(None)),
            done: false,
            max_event_bytes,
        }
    }

    /// After an error the stream yields nothing more.
    fn ended(mut self) -> Self {
        self.response = None;
        self.pending.clear();
        self.done = true;
        self
    }

    /// The next non-empty `delta.content`; `None` at `[DONE]` or the end of the body.
    async fn next_token(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(token) = self.pending.pop_front() {
                return Ok(Some(token));
            }
            if self.done {
                return Ok(None);
            }
            if let Some(event) = self.take_event() {
                if self.handle(&event)? {
                    self.response = None;
                    self.done = true;
                }
                continue;
            }
            if self.buffer.len() > self.max_event_bytes {
                self.response = None;
                return Err(format!(
                    "the LLM sent an event larger than {} bytes",
                    self.max_event_bytes
                ));
            }
            let Some(response) = self.response.as_mut() else { return Ok(None) };
            match response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => {
                    self.response = None;
                    if self.buffer.iter().any(|b| !b.is_ascii_whitespace()) {
                        self.buffer.extend_from_slice(b"\n\n"); // A last event without its blank line.
                    }
                }
                Err(e) => return Err(format!("the LLM stream broke: {}", e.without_url())),
            }
        }
    }

    /// One complete event (up to a blank line) from the buffer, if there is one.
    /// Works on bytes, so a character split across network chunks is never mangled.
    fn take_event(&mut self) -> Option<String> {
        let find = |needle: &[u8]| self.buffer.windows(needle.len()).position(|w| w == needle);
        let (end, separator) = [find(b"\n\n").map(|i| (i, 2)), find(b"\r\n\r\n").map(|i| (i, 4))]
            .into_iter()
            .flatten()
            .min_by_key(|(i, _)| *i)?;
        let event = String::from_utf8_lossy(&self.buffer[..end]).replace('\r', "");
        self.buffer.drain(..end + separator);
        Some(event)
    }

    /// Queues the tokens of one event; returns true at `[DONE]`.
    fn handle(&mut self, event: &str) -> Result<bool, String> {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            return Ok(false); // A comment or a keep-alive.
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(&data)
            .map_err(|_| "the LLM sent an unreadable event".to_owned())?;
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().unwrap_or("unknown error");
            return Err(format!("the LLM reported an error: {message}"));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| u32::try_from(usage[k].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
            *self.usage.lock() = Some(Usage {
                prompt_tokens: count("prompt_tokens"),
                completion_tokens: count("completion_tokens"),
            });
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            if let Some(content) = choice["delta"]["content"].as_str().filter(|c| !c.is_empty()) {
                self.pending.push_back(content.to_owned());
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Events {
        Events {
            response: None,
            buffer: bytes.to_vec(),
            pending: VecDeque::new(),
            usage: Arc::new(Mutex::new(None)),
            done: false,
            max_event_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn server_sent_events_are_read_as_the_wire_format_allows() {
        let wire = ": keep-alive\r\n\r\n\
            data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"caffè\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":\ndata: {\"content\":\" ok\"}}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
            data: [DONE]\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"after done\"}}]}\n\n";
        let mut e = events(wire.as_bytes());
        assert_eq!(e.next_token().await, Ok(Some("caffè".to_owned())));
        assert_eq!(e.next_token().await, Ok(Some(" ok".to_owned())), "multi-line data joins");
        assert_eq!(e.next_token().await, Ok(None), "[DONE] ends it");
        assert_eq!(*e.usage.lock(), Some(Usage { prompt_tokens: 3, completion_tokens: 2 }));

        let mut e = events(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n");
        assert!(e.next_token().await.is_err_and(|m| m.contains("overloaded")));
        let mut e = events(b"data: not json\n\n");
        assert!(e.next_token().await.is_err());
    }

    #[tokio::test]
    async fn a_reply_is_cut_at_its_length_or_its_time_and_marked() {
        let usage = Arc::new(Mutex::new(None));
        let endless = futures_util::stream::repeat_with(|| Ok("abc".to_owned())).boxed();
        let bounds = Bounds {
            max_chars: 10,
            deadline: Instant::now() + Duration::from_secs(60),
            usage: usage.clone(),
            prompt_tokens: 5,
        };
        let tokens: Vec<String> =
            bounded(endless, bounds).map(|t| t.expect("a token")).collect().await;
        assert_eq!(tokens.concat(), format!("abcabcabca{CUT_MARKER}"));
        assert_eq!(*usage.lock(), Some(Usage { prompt_tokens: 5, completion_tokens: 3 }));

        // A token every 10 ms, forever: cut at the deadline (however many came by then); a
        // usage already reported stays.
        let reported = Usage { prompt_tokens: 1, completion_tokens: 2 };
        let usage = Arc::new(Mutex::new(Some(reported)));
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok("x".to_owned()), ()))
        })
        .boxed();
        let bounds = Bounds {
            max_chars: usize::MAX,
            deadline: Instant::now() + Duration::from_millis(200),
            usage: usage.clone(),
            prompt_tokens: 5,
        };
        let tokens: Vec<String> =
            bounded(trickle, bounds).map(|t| t.expect("a token")).collect().await;
        let text = tokens.concat();
        let kept = text.strip_suffix(CUT_MARKER).expect("ends with the marker");
        assert!(kept.chars().all(|c| c == 'x'), "{text}");
        assert_eq!(*usage.lock(), Some(reported));

        // Within bounds: untouched, no marker.
        let short = futures_util::stream::iter(["a", "b"].map(|t| Ok(t.to_owned()))).boxed();
        let bounds = Bounds {
            max_chars: 2,
            deadline: Instant::now() + Duration::from_secs(1),
            usage: Arc::new(Mutex::new(None)),
            prompt_tokens: 0,
        };
        let tokens: Vec<String> =
            bounded(short, bounds).map(|t| t.expect("a token")).collect().await;
        assert_eq!(tokens.concat(), "ab");
    }

    #[tokio::test]
    async fn an_event_without_end_is_refused_before_it_fills_memory() {
        let mut e = events(&vec![b'x'; 2 << 20]);
        e.max_event_bytes = 1 << 20;
        assert!(e.next_token().await.is_err_and(|m| m.contains("larger than")));
    }
}
