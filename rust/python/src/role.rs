//! `consensus.Role`, shared by every protocol.

use consensus_core::Role as CoreRole;
use pyo3::prelude::*;

#[pyclass(name = "Role", module = "consensus", from_py_object, eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum Role {
    FOLLOWER = 0,
    PRE_CANDIDATE = 1,
    CANDIDATE = 2,
    LEADER = 3,
    LEARNER = 4,
}

impl From<CoreRole> for Role {
    fn from(role: CoreRole) -> Self {
        match role {
            CoreRole::Follower => Role::FOLLOWER,
            CoreRole::PreCandidate => Role::PRE_CANDIDATE,
            CoreRole::Candidate => Role::CANDIDATE,
            CoreRole::Leader => Role::LEADER,
            CoreRole::Learner => Role::LEARNER,
        }
    }
}

#[pymethods]
impl Role {
    /// The lower-case name used by `/v1/status` and metrics (`"leader"`, `"pre_candidate"`, ...).
    #[getter]
    fn label(&self) -> &'static str {
        match self {
            Role::FOLLOWER => "follower",
            Role::PRE_CANDIDATE => "pre_candidate",
            Role::CANDIDATE => "candidate",
            Role::LEADER => "leader",
            Role::LEARNER => "learner",
        }
    }
}
