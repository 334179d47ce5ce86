//! The role a node plays, shared by every protocol (`consensus.Role`).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    Follower = 0,
    PreCandidate = 1,
    Candidate = 2,
    Leader = 3,
    Learner = 4,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}
