//! Leadership transfer: the leader stops taking proposals, waits for the target to hold every
//! decided slot, gives up its lease and sends `TimeoutNow`; the target starts Phase 1 at once.
//! Its state is [`Handover`].

use super::Paxos;
use crate::error::{Error, Result};
use crate::paxos::message::{Message, MessageType};
use crate::paxos::storage::PaxosStorage;
use crate::role::Role;

impl<S: PaxosStorage> Paxos<S> {
    /// Hands the leadership to acceptor `to` (docs/paxos.md §7.1): new proposals are dropped while
    /// the transfer lasts; once `to` holds every decided and every in-flight slot (and no queued
    /// value waits for a slot), it gets `TimeoutNow` and starts Phase 1 at once with a higher
    /// ballot. The transfer is abandoned after an election timeout. Asking again for the same
    /// target changes nothing; another target replaces the current one.
    pub fn transfer_leader(&mut self, to: u64) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader_hint: self.leader });
        }
        if to == self.id {
            return Err(Error::config("to", "names this node, which already leads"));
        }
        if !self.membership.latest().contains(&to) {
            return Err(Error::config("to", format!("node {to} is not an acceptor of the latest configuration")));
        }
        if self.transfer_target != to {
            self.transfer_target = to;
            self.handover.elapsed_ticks = 0;
            // Push the in-flight slots the target has not acknowledged now rather than one
            // message per heartbeat; decided slots it lacks follow by catch-up on its replies.
            let first_unacked = self.proposals.acks.iter().find(|(_, acks)| !acks.contains(&to)).map(|(slot, _)| *slot);
            if let Some(first) = first_unacked {
                self.send_accepts(to, first, self.next_slot - 1, usize::MAX);
            }
        }
        self.maybe_send_timeout_now();
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer target if it holds every decided slot and has accepted
    /// every in-flight one at this ballot, and no queued value waits for a slot. Sent again on
    /// each later reply of the target while the transfer lasts, in case one was lost. Returns
    /// whether it was sent.
    pub(super) fn maybe_send_timeout_now(&mut self) -> bool {
        let to = self.transfer_target;
        if to == 0 || !self.proposals.backlog.is_empty() || !self.proposals.batches.is_empty() || self.window_to_close()
        {
            return false;
        }
        let holds_decided = self.progress.get(&to).is_some_and(|p| p.decided >= self.commit);
        if !holds_decided || !self.proposals.acks.values().all(|acks| acks.contains(&to)) {
            return false;
        }
        // From here on acceptors that hold this leader's lease may promise the target (its
        // Prepares name this ballot), so no read may rely on the lease any more.
        self.handover.lease_surrendered = true;
        let msg = Message::new(MessageType::TimeoutNow, self.id, to, self.promised);
        self.send(msg);
        true
    }

    /// The leader of `m.ballot` hands its leadership to this node: start Phase 1 now, without the
    /// randomized wait.
    pub(super) fn handle_timeout_now(&mut self, m: Message) {
        if self.refuses_ballot_of(&m) {
            return;
        }
        self.follow(m.ballot);
        self.start_phase1(Some(m.ballot));
    }
}
