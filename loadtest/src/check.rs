//! The integrity checker: one [`ConversationCheck`] per simulated visitor sees every stored
//! frame (`message`, `stream_end`) in the order the socket delivered it and counts what breaks
//! the protocol's promise (docs/protocol.md section 4): seqs gapless and strictly increasing,
//! each stored once, a resume continuing exactly after the client's `last_seq`.
//!
//! It also keeps the reply budget of an epoch: bot replies that answer no visitor message
//! are allowed once (a target's greeting of a new conversation), never more.
//!
//! It is pure bookkeeping (no I/O, no clock) so crafted inputs can test it; the client
//! (`client.rs`) adds what only it knows: messages never echoed or never answered, streams
//! never ended.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A gap wider than this is counted but its seqs are not remembered one by one, so a bogus
/// seq (say 2^60) cannot make the checker allocate without bound.
const MAX_TRACKED_GAP: u64 = 100_000;

/// Every count of the checks, summed over conversations. The `lost`, `duplicates` and
/// `out_of_order` families fail a run when nonzero; the rest describe it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckCounts {
    /// Seqs skipped over and never delivered (within one conversation epoch).
    pub seq_gaps: u64,
    /// Visitor messages sent (and resent, after reconnects) that were never echoed.
    pub unconfirmed: u64,
    /// Visitor messages echoed whose bot reply never came (no `stream_end`, no bot `message`).
    pub unanswered: u64,
    /// Seqs a resume's `welcome` no longer had: its `last_seq` was below the client's.
    pub regressed: u64,
    /// A seq delivered a second time (not explained by a resent message's acknowledgement).
    pub duplicated: u64,
    /// One `client_msg_id` echoed under two different seqs: the message was stored twice.
    pub double_stored: u64,
    /// A seq delivered after a higher one (a gap filled late).
    pub out_of_order: u64,
    /// Streams whose `token` deltas did not add up to the `stream_end` text: tokens lost.
    pub incomplete_streams: u64,
    /// Bot replies beyond the messages sent: a reply (a new `stream_end` or bot `message`)
    /// with no visitor message waiting for one, past the epoch's one greeting. A message
    /// answered twice.
    #[serde(default)]
    pub extra_replies: u64,
    /// A `stream_start` whose stream neither ended nor was stored otherwise (its reply as a
    /// plain `message`) by the end of the drain, on a socket that was still open (streams
    /// cut by a reconnect are dropped, as the protocol tells clients to).
    #[serde(default)]
    pub unfinished_streams: u64,
    /// Frames that are not the protocol (not JSON, a stored frame without `seq`, …).
    pub malformed: u64,
    /// `error` frames from the server.
    pub server_errors: u64,
    /// Sockets the server (or the network) closed while the run was going on.
    pub unexpected_disconnects: u64,
    /// Reconnects that found no working connection in the attempts allowed.
    pub reconnect_failures: u64,
    /// Resumes refused where the target promises them (Parla): a fresh conversation came back.
    pub resume_failures: u64,
    /// Informational: the original echo sent again in answer to a resent message (allowed).
    pub resend_acks: u64,
    /// Informational: reconnects that resumed the conversation (replay or recovery).
    pub resumed: u64,
    /// Informational: reconnects that started a fresh conversation (targets without resume).
    pub fresh_reconnects: u64,
    /// Informational: bot replies with no visitor message waiting, at most one per epoch
    /// where the target greets (Parla's greeting of a new conversation); more are
    /// `extra_replies`.
    pub unsolicited: u64,
    /// Informational: `stream_end`s whose seq had arrived already (by replay): they close
    /// their stream, as the protocol allows.
    #[serde(default)]
    pub replayed_stream_ends: u64,
}

impl CheckCounts {
    /// Messages or seqs that did not arrive.
    pub fn lost(&self) -> u64 {
        self.seq_gaps + self.unconfirmed + self.unanswered + self.regressed
    }

    /// Frames or messages that arrived (or were stored, or answered) twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicated + self.double_stored + self.extra_replies
    }

    /// Everything that fails a run, each with its name, when nonzero.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        [
            ("seq_gaps", self.seq_gaps),
            ("unconfirmed", self.unconfirmed),
            ("unanswered", self.unanswered),
            ("regressed", self.regressed),
            ("duplicated", self.duplicated),
            ("double_stored", self.double_stored),
            ("out_of_order", self.out_of_order),
            ("incomplete_streams", self.incomplete_streams),
            ("extra_replies", self.extra_replies),
            ("unfinished_streams", self.unfinished_streams),
            ("malformed", self.malformed),
            ("server_errors", self.server_errors),
            ("unexpected_disconnects", self.unexpected_disconnects),
            ("reconnect_failures", self.reconnect_failures),
            ("resume_failures", self.resume_failures),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    pub fn add(&mut self, o: &CheckCounts) {
        self.seq_gaps += o.seq_gaps;
        self.unconfirmed += o.unconfirmed;
        self.unanswered += o.unanswered;
        self.regressed += o.regressed;
        self.duplicated += o.duplicated;
        self.double_stored += o.double_stored;
        self.out_of_order += o.out_of_order;
        self.incomplete_streams += o.incomplete_streams;
        self.extra_replies += o.extra_replies;
        self.unfinished_streams += o.unfinished_streams;
        self.malformed += o.malformed;
        self.server_errors += o.server_errors;
        self.unexpected_disconnects += o.unexpected_disconnects;
        self.reconnect_failures += o.reconnect_failures;
        self.resume_failures += o.resume_failures;
        self.resend_acks += o.resend_acks;
        self.resumed += o.resumed;
        self.fresh_reconnects += o.fresh_reconnects;
        self.unsolicited += o.unsolicited;
        self.replayed_stream_ends += o.replayed_stream_ends;
    }
}

/// What the checker made of one stored frame; the client acts only on `New` and `Late`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next seq (or one after a gap).
    New,
    /// A seq from an earlier gap, delivered out of order.
    Late,
    /// Already delivered: ignore it.
    Duplicate,
    /// The original echo again, answering a resend: ignore it, it is allowed.
    ResendAck,
    /// A `stream_end` of an open stream whose seq arrived already (by replay): close the
    /// stream, nothing more.
    AlreadyStored,
}

/// The seq bookkeeping of one conversation. An *epoch* is one server-side conversation: a
/// reconnect that resumes continues the epoch; one that gets a fresh conversation (a baseline
/// without resume) starts a new one with its own seqs.
#[derive(Debug)]
pub struct ConversationCheck {
    /// The seq expected next: everything below it was delivered or is in `missing`.
    next: u64,
    /// Seqs skipped over that may still arrive late.
    missing: BTreeSet<u64>,
    /// The seq each visitor message was echoed with, in this epoch.
    echoed: HashMap<String, u64>,
    /// Messages resent since their echo: one repeat of their echo is an acknowledgement.
    resent: HashSet<String>,
    /// Replies an epoch may have that answer no visitor message: 1 where the target greets
    /// a new conversation, else 0.
    greetings: u64,
    /// Replies of this epoch that answered no visitor message.
    unsolicited_in_epoch: u64,
    pub counts: CheckCounts,
}

impl ConversationCheck {
    /// A conversation whose `welcome` said `last_seq` (0 for a new one).
    pub fn new(last_seq: u64) -> Self {
        Self {
            next: last_seq.saturating_add(1),
            missing: BTreeSet::new(),
            echoed: HashMap::new(),
            resent: HashSet::new(),
            greetings: 1,
            unsolicited_in_epoch: 0,
            counts: CheckCounts::default(),
        }
    }

    /// Whether the target greets every new conversation with one bot message (Parla: its
    /// bot's welcome message); the default. A target that does not gets no unsolicited reply.
    pub fn greets(mut self, greets: bool) -> Self {
        self.greetings = u64::from(greets);
        self
    }

    /// The highest seq delivered: the `last_seq` a resume says it has.
    pub fn highest(&self) -> u64 {
        self.next - 1
    }

    /// A resume's `welcome`: the server's highest seq must be at least the client's, and the
    /// replay must continue right after the client's (the next `on_stored` checks that).
    pub fn on_resumed(&mut self, welcome_last_seq: u64) {
        let had = self.highest();
        if welcome_last_seq < had {
            self.counts.regressed += had - welcome_last_seq;
        }
    }

    /// A fresh conversation after a reconnect: a new epoch of seqs. Gaps of the old one stay
    /// counted.
    pub fn new_epoch(&mut self, last_seq: u64) {
        self.next = last_seq.saturating_add(1);
        self.missing.clear();
        self.echoed.clear();
        self.resent.clear();
        self.unsolicited_in_epoch = 0;
    }

    /// A stored bot reply (a new `stream_end` or bot `message`) found no visitor message
    /// waiting for one. The first of an epoch is the greeting (where the target greets);
    /// any other is a reply too many. A resume continues the epoch, so it brings no second
    /// greeting: its replay only holds what this epoch already counts (seqs already had are
    /// dropped before they get here) and the replies to messages echoed.
    pub fn on_unsolicited_reply(&mut self) {
        if self.unsolicited_in_epoch < self.greetings {
            self.unsolicited_in_epoch += 1;
            self.counts.unsolicited += 1;
        } else {
            self.counts.extra_replies += 1;
        }
    }

    /// A `stream_end`. `open` says whether its stream is one this socket saw start and
    /// that has not ended: only such a stream may end with a seq the client already has
    /// (docs/protocol.md section 4: it arrived by replay, the `stream_end` just closes the
    /// stream). Any other `stream_end` is checked as a stored frame.
    pub fn on_stream_end(&mut self, seq: u64, open: bool) -> Verdict {
        if open && seq < self.next && !self.missing.contains(&seq) {
            self.counts.replayed_stream_ends += 1;
            return Verdict::AlreadyStored;
        }
        self.on_stored(seq, None)
    }

    /// The client sent `client_msg_id` again (after a resume).
    pub fn note_resent(&mut self, client_msg_id: &str) {
        self.resent.insert(client_msg_id.to_owned());
    }

    /// A stored frame: `message` (with `client_msg_id` when it is the visitor's) or
    /// `stream_end`.
    pub fn on_stored(&mut self, seq: u64, client_msg_id: Option<&str>) -> Verdict {
        let verdict = if seq >= self.next {
            let gap = seq - self.next;
            if gap > 0 {
                self.counts.seq_gaps += gap;
                if gap <= MAX_TRACKED_GAP {
                    self.missing.extend(self.next..seq);
                }
            }
            self.next = seq.saturating_add(1);
            Verdict::New
        } else if self.missing.remove(&seq) {
            self.counts.seq_gaps -= 1;
            self.counts.out_of_order += 1;
            Verdict::Late
        } else {
            let acknowledges_resend = client_msg_id
                .is_some_and(|id| self.echoed.get(id) == Some(&seq) && self.resent.remove(id));
            if acknowledges_resend {
                self.counts.resend_acks += 1;
                return Verdict::ResendAck;
            }
            self.counts.duplicated += 1;
            return Verdict::Duplicate;
        };
        if let Some(id) = client_msg_id {
            match self.echoed.get(id) {
                Some(&first) if first != seq => self.counts.double_stored += 1,
                Some(_) => {}
                None => {
                    self.echoed.insert(id.to_owned(), seq);
                }
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(check: &mut ConversationCheck, seqs: &[u64]) -> Vec<Verdict> {
        seqs.iter().map(|&s| check.on_stored(s, None)).collect()
    }

    #[test]
    fn a_clean_sequence_counts_nothing() {
        let mut c = ConversationCheck::new(0);
        assert!(feed(&mut c, &[1, 2, 3, 4]).iter().all(|v| *v == Verdict::New));
        assert_eq!(c.counts, CheckCounts::default());
        assert_eq!(c.highest(), 4);
    }

    #[test]
    fn a_gap_is_loss() {
        let mut c = ConversationCheck::new(0);
        feed(&mut c, &[1, 2, 5, 6]);
        assert_eq!(c.counts.seq_gaps, 2);
        assert_eq!(c.counts.lost(), 2);
        assert!(!c.counts.failures().is_empty());
    }

    #[test]
    fn a_first_frame_after_the_welcome_must_be_next() {
        // The welcome said last_seq 3: seq 4 comes first.
        let mut c = ConversationCheck::new(3);
        feed(&mut c, &[5]);
        assert_eq!(c.counts.seq_gaps, 1);
    }

    #[test]
    fn a_repeated_seq_is_a_duplicate() {
        let mut c = ConversationCheck::new(0);
        let v = feed(&mut c, &[1, 2, 2, 3, 1]);
        assert_eq!(v[2], Verdict::Duplicate);
        assert_eq!(v[4], Verdict::Duplicate);
        assert_eq!(c.counts.duplicated, 2);
        assert_eq!(c.counts.lost(), 0);
    }

    #[test]
    fn a_reordered_pair_is_out_of_order_not_loss() {
        let mut c = ConversationCheck::new(0);
        let v = feed(&mut c, &[1, 3, 2, 4]);
        assert_eq!(v, [Verdict::New, Verdict::New, Verdict::Late, Verdict::New]);
        assert_eq!(c.counts.out_of_order, 1);
        assert_eq!(c.counts.seq_gaps, 0);
        // Once filled, the same seq again is a duplicate.
        assert_eq!(c.on_stored(2, None), Verdict::Duplicate);
    }

    #[test]
    fn one_message_under_two_seqs_is_stored_twice() {
        let mut c = ConversationCheck::new(0);
        c.on_stored(1, Some("a"));
        c.on_stored(2, None);
        c.on_stored(3, Some("a"));
        assert_eq!(c.counts.double_stored, 1);
        assert_eq!(c.counts.duplicates(), 1);
    }

    #[test]
    fn the_echo_repeated_for_a_resend_is_allowed_once() {
        let mut c = ConversationCheck::new(0);
        c.on_stored(1, Some("a"));
        c.on_stored(2, None);
        c.note_resent("a");
        assert_eq!(c.on_stored(1, Some("a")), Verdict::ResendAck);
        // Twice is not.
        assert_eq!(c.on_stored(1, Some("a")), Verdict::Duplicate);
        // Nor a repeat for a message never resent.
        c.on_stored(3, Some("b"));
        assert_eq!(c.on_stored(3, Some("b")), Verdict::Duplicate);
        assert_eq!(c.counts.resend_acks, 1);
        assert_eq!(c.counts.duplicated, 2);
    }

    #[test]
    fn a_resume_continues_after_the_clients_last_seq() {
        let mut c = ConversationCheck::new(0);
        feed(&mut c, &[1, 2, 3]);
        c.on_resumed(6);
        // The replay: 4, 5, 6, then live 7.
        feed(&mut c, &[4, 5, 6, 7]);
        assert_eq!(c.counts, CheckCounts::default());
        // A replay that restarts too late loses what it skipped.
        c.on_resumed(9);
        feed(&mut c, &[9]);
        assert_eq!(c.counts.seq_gaps, 1);
    }

    #[test]
    fn a_resume_behind_the_client_is_loss() {
        let mut c = ConversationCheck::new(0);
        feed(&mut c, &[1, 2, 3, 4]);
        c.on_resumed(2);
        assert_eq!(c.counts.regressed, 2);
    }

    #[test]
    fn a_new_epoch_restarts_the_seqs() {
        let mut c = ConversationCheck::new(0);
        feed(&mut c, &[1, 2]);
        c.on_stored(3, Some("a"));
        c.new_epoch(0);
        assert_eq!(c.on_stored(1, Some("a")), Verdict::New);
        assert_eq!(c.counts, CheckCounts::default());
    }

    #[test]
    fn one_unsolicited_reply_per_epoch_is_the_greeting_more_fail() {
        let mut c = ConversationCheck::new(0);
        c.on_unsolicited_reply();
        assert_eq!(c.counts.unsolicited, 1);
        assert!(c.counts.failures().is_empty());
        // A second one in the same conversation, e.g. a message answered twice.
        c.on_unsolicited_reply();
        assert_eq!(c.counts.extra_replies, 1);
        assert_eq!(c.counts.duplicates(), 1);
        assert_eq!(c.counts.failures(), [("extra_replies", 1)]);
        // A fresh conversation is greeted again.
        c.new_epoch(0);
        c.on_unsolicited_reply();
        assert_eq!((c.counts.unsolicited, c.counts.extra_replies), (2, 1));
        // A resume is the same epoch: no second greeting.
        c.on_resumed(0);
        c.on_unsolicited_reply();
        assert_eq!(c.counts.extra_replies, 2);
    }

    #[test]
    fn a_target_that_does_not_greet_gets_no_unsolicited_reply() {
        let mut c = ConversationCheck::new(0).greets(false);
        c.on_unsolicited_reply();
        assert_eq!(c.counts.extra_replies, 1);
        assert_eq!(c.counts.unsolicited, 0);
    }

    #[test]
    fn a_stream_end_whose_seq_came_by_replay_closes_its_stream() {
        let mut c = ConversationCheck::new(0);
        feed(&mut c, &[1, 2, 3]);
        // Seq 3 was the reply, replayed as a message; the live stream_end follows.
        assert_eq!(c.on_stream_end(3, true), Verdict::AlreadyStored);
        assert!(c.counts.failures().is_empty(), "{:?}", c.counts);
        assert_eq!(c.counts.replayed_stream_ends, 1);
        // A stream_end for no open stream with a seq already had is a duplicate, as is a
        // message.
        assert_eq!(c.on_stream_end(3, false), Verdict::Duplicate);
        assert_eq!(c.on_stored(3, None), Verdict::Duplicate);
        assert_eq!(c.counts.duplicated, 2);
        // A new seq is checked as usual; a gap's seq arriving late is still late.
        assert_eq!(c.on_stream_end(4, true), Verdict::New);
        assert_eq!(c.on_stream_end(6, true), Verdict::New);
        assert_eq!(c.on_stream_end(5, true), Verdict::Late);
        assert_eq!(c.counts.out_of_order, 1);
    }

    #[test]
    fn a_huge_jump_is_counted_without_remembering_every_seq() {
        let mut c = ConversationCheck::new(0);
        c.on_stored(1 << 40, None);
        assert_eq!(c.counts.seq_gaps, (1 << 40) - 1);
        assert!(c.missing.is_empty());
    }
}
