//! The demo tenant and its bot `demo`, created on first start so a newcomer can chat at once.

use crate::{
    model::*,
    store::{Store, StoreError},
};

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_BOT: &str = "demo";

/// Creates the demo tenant, bot and intents if the bot `demo` does not exist, and caps the demo
/// tenant's LLM tokens per month at `llm_budget` (anyone can chat with the demo bot: it must
/// not spend the server's LLM key without a limit). Returns whether it created them.
pub async fn ensure_demo(store: &dyn Store, llm_budget: u64) -> Result<bool, StoreError> {
    let tenant = TenantId::from(DEMO_TENANT);
    if store.resolve_bot(&BotId::from(DEMO_BOT)).await?.is_some() {
        // A demo from before the budget, or with another one: capped as configured now.
        if let Some(mut existing) = store.get_tenant(&tenant).await?
            && existing.monthly_token_budget != Some(llm_budget)
        {
            existing.monthly_token_budget = Some(llm_budget);
            store.put_tenant(&existing).await?;
        }
        return Ok(false);
    }
    let now = now_ms();
    let mut demo = Tenant::new(tenant.clone(), "Parla demo".into(), now);
    demo.monthly_token_budget = Some(llm_budget);
    store.put_tenant(&demo).await?;
    let bot = demo_bot(now);
    let intents = demo_intents(&bot.id);
    store.put_bot(&bot).await?;
    store.put_intents(&tenant, &bot.id, &intents).await?;
    Ok(true)
}

/// The demo bot as [`ensure_demo`] creates it at `now`.
fn demo_bot(now: i64) -> Bot {
    Bot {
        id: BotId::from(DEMO_BOT),
        tenant_id: TenantId::from(DEMO_TENANT),
        name: "Parla demo bot".into(),
        description: Some("Answers questions about Parla itself.".into()),
        category: BotCategory::CustomerSupport,
        language: "en".into(),
        status: BotStatus::Active,
        config: BotConfig {
            welcome_message: Some(
                "Hi! I'm Parla's demo bot. Ask me what Parla is, how streaming works, or what \
             happens if you reload this page."
                    .into(),
            ),
            fallback_message: "I'm not sure I understood. Try: \"what is Parla?\", \"how does \
                           streaming work?\" or \"what if I reload the page?\""
                .into(),
            personality: Some("friendly, concise".into()),
            retention_days: None,
        },
        appearance: Appearance {
            title: Some("Parla demo".into()),
            color: Some("#3b5bdb".into()),
            ..Appearance::default()
        },
        integration: BotIntegration::default(),
        installed_from: None,
        created_at: now,
        updated_at: now,
    }
}

/// The tokens the demo bot streams in reply to `text` when it answers with its built-in
/// responder (intents at or above `min_confidence`, else the fallback message): for load tests
/// that check every frame of other servers against Parla's (`parla demo-reply`).
pub fn demo_reply(text: &str, min_confidence: f32) -> Vec<String> {
    use crate::responder::builtin::{classify, tokenize};
    let bot = demo_bot(0);
    let intents = demo_intents(&bot.id);
    let reply = match classify(&intents, text) {
        Some((intent, score)) if score >= min_confidence => intent.response.text.clone(),
        _ => bot.config.fallback_message.clone(),
    };
    tokenize(&reply)
}

fn demo_intents(bot: &BotId) -> Vec<Intent> {
    let intent = |name: &str, examples: &[&str], text: &str| Intent {
        id: format!("demo-{name}"),
        bot_id: bot.clone(),
        name: name.into(),
        description: None,
        examples: examples.iter().map(|s| (*s).to_owned()).collect(),
        response: IntentResponse { text: text.into(), quick_replies: vec![], content: None },
        actions: vec![],
    };
    vec![
        intent(
            "greeting",
            &["hi", "hello", "hey there", "good morning", "ciao", "buongiorno", "salve"],
            "Hello! Ask me what Parla is, how streaming works, or what happens if you reload the page.",
        ),
        intent(
            "what_is_parla",
            &[
                "what is parla",
                "tell me about parla",
                "what can you do",
                "what are you",
                "cos'è parla",
            ],
            "Parla is a multi-tenant, real-time messaging engine for AI chatbots. Every conversation \
             is an actor that stores each message durably, with a sequence number, before anyone \
             sees it, and bot replies stream token by token.",
        ),
        intent(
            "streaming",
            &[
                "how does streaming work",
                "why do words appear one by one",
                "token streaming",
                "stream",
            ],
            "Each reply arrives as a stream: a stream_start frame, one token frame per word, then \
             stream_end with the stored message's seq. An LLM plugs into exactly the same path.",
        ),
        intent(
            "resume",
            &[
                "what happens if I reload the page",
                "what if I reload the page",
                "reconnect",
                "resume the conversation",
                "do you lose messages",
            ],
            "Nothing is lost. The widget keeps the conversation id, its resume token and the last \
             seq it saw; on reconnect it says hello with last_seq and the server replays every \
             message it missed, in order, before live traffic. Try reloading!",
        ),
        intent(
            "human",
            &["talk to a human", "speak to an agent", "operator", "parlare con un operatore"],
            "Human agents can take a conversation over from the bot and hand it back; that part of \
             the demo is coming soon.",
        ),
        intent(
            "pricing",
            &["how much does it cost", "pricing", "price", "quanto costa"],
            "Parla runs on one machine with zero setup, and scales out with Kafka, ScyllaDB and \
             Redis when you need it.",
        ),
        intent(
            "thanks",
            &["thanks", "thank you", "bye", "goodbye", "grazie"],
            "You're welcome! Come back any time.",
        ),
    ]
}
