//! Calls answered in turn, for the datastore protocols whose server answers a connection's requests in
//! the order they came (Redis, PostgreSQL, MySQL): the calls waiting for their answer, oldest first.
//!
//! A call is judged unanswered only when its connection ends without the answer, never by a timer: a
//! query may run for minutes and a blocking command (`BLPOP`) may wait for hours by design, and a client
//! that stops waiting closes or resets its connection, which is then what tells (`unanswered`). Capture
//! loss on a connection loses the calls waiting on it (counted), never reports them.

use std::collections::VecDeque;

use crate::dissect::Ending;
use crate::entry::Side;
use crate::time::Timestamp;

/// How long a client must have waited before it left for the call it left to be unanswered: a client
/// that closes a moment after asking (a library's background metadata refresh as the process exits, a
/// pipeline's last command before QUIT) did not wait for the answer, and no server failed it.
pub const WAITED_MS: f64 = 1_000.0;

/// Whether a call asked at `asked` and still waiting when its connection ended at `ended`, as `ending`
/// says, went unanswered: the server reset the connection, or the client had waited `WAITED_MS`. At the
/// end of a capture nothing is known.
pub fn unanswered(ending: Ending, asked: Timestamp, ended: Timestamp) -> bool {
    match ending {
        Ending::CaptureEnded => false,
        Ending::Reset(Side::Server) | Ending::Refused => true,
        Ending::Closed | Ending::Reset(Side::Client) => ended.millis_since(asked) >= WAITED_MS,
    }
}

/// Calls waiting at once on one connection, at most (a pipeline deeper than this is not paired past it:
/// counted).
pub const MAX_WAITING: usize = 4096;

/// A call and when it was asked.
pub struct Waiting<C> {
    pub ts: Timestamp,
    pub call: C,
}

pub struct Calls<C> {
    waiting: VecDeque<Waiting<C>>,
    /// Calls not tracked because `MAX_WAITING` were: their answers are then not paired either.
    pub over_limit: u64,
    /// Calls dropped because capture loss may have hidden their answers.
    pub lost: u64,
    /// Answers to come that belong to calls not tracked (over the limit): skipped, not paired.
    untracked_answers: u64,
}

impl<C> Default for Calls<C> {
    fn default() -> Self {
        Calls { waiting: VecDeque::new(), over_limit: 0, lost: 0, untracked_answers: 0 }
    }
}

impl<C> Calls<C> {
    pub fn ask(&mut self, ts: Timestamp, call: C) {
        if self.waiting.len() >= MAX_WAITING {
            self.over_limit += 1;
            self.untracked_answers += 1;
            return;
        }
        self.waiting.push_back(Waiting { ts, call });
    }

    /// The call an answer that just came belongs to: the oldest waiting. `None` when nothing waits (a
    /// reply to a request never seen), or the answer belongs to a call not tracked.
    pub fn answered(&mut self) -> Option<Waiting<C>> {
        if self.waiting.is_empty() && self.untracked_answers > 0 {
            self.untracked_answers -= 1;
            return None;
        }
        self.waiting.pop_front()
    }

    pub fn oldest_mut(&mut self) -> Option<&mut Waiting<C>> {
        self.waiting.front_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Capture loss: what waits may have been answered unseen — dropped, counted.
    pub fn lose_all(&mut self) {
        self.lost += self.waiting.len() as u64 + self.untracked_answers;
        self.waiting.clear();
        self.untracked_answers = 0;
    }

    /// The calls still waiting, oldest first, taken out (the connection ended).
    pub fn take_all(&mut self) -> impl Iterator<Item = Waiting<C>> + '_ {
        self.untracked_answers = 0;
        self.waiting.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_pair_oldest_first_and_the_bound_is_counted_and_kept_in_step() {
        let mut c = Calls::default();
        for i in 0..MAX_WAITING + 2 {
            c.ask(Timestamp(i as u64), i);
        }
        assert_eq!((c.len(), c.over_limit), (MAX_WAITING, 2));
        for i in 0..MAX_WAITING {
            assert_eq!(c.answered().map(|w| w.call), Some(i));
        }
        // The two untracked calls' answers are not taken for anything else's.
        assert!(c.answered().is_none() && c.answered().is_none());
        c.ask(Timestamp(9), 7);
        assert_eq!(c.answered().map(|w| w.call), Some(7));
        c.ask(Timestamp(10), 8);
        c.lose_all();
        assert_eq!((c.lost, c.is_empty()), (1, true));
    }
}
