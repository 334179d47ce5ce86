//! The Python methods every protocol's node class and Ready class have (docs/design.md §3), written
//! once over the core's `ProtocolNode` and `ReadyView` contract. A protocol module declares its
//! classes and calls [`node_class!`] and [`ready_class!`] with the methods only it has.

use consensus_core::ProtocolNode;
use pyo3::prelude::*;

use crate::errors::to_py;

/// Starts an election (a Paxos Phase 1) now; `ProtocolError` saying `exhausted` when the term or
/// round reached `TERM_MAX` and the node can no longer campaign.
pub fn campaign<N: ProtocolNode>(node: &mut N, exhausted: &str) -> PyResult<()> {
    if node.term_exhausted() {
        return Err(to_py(consensus_core::Error::Protocol(exhausted.to_owned())));
    }
    node.campaign();
    Ok(())
}

/// Advances past the Ready whose mark is `mark`.
pub fn advance<N: ProtocolNode>(node: &mut N, mark: &N::Mark) -> PyResult<()>
where
    N::Mark: Clone,
{
    node.advance(mark.clone()).map_err(to_py)
}

/// Steps every frame of `frames` in order (all from `sender` when given); stops at, and raises,
/// the first bad one: the frames before it stay stepped.
pub fn step_many<N: ProtocolNode>(node: &mut N, frames: &Bound<'_, PyAny>, sender: Option<u64>) -> PyResult<()> {
    for frame in frames.try_iter()? {
        let frame = crate::convert::frame_of(&frame?)?;
        node.step_from(&frame, sender).map_err(to_py)?;
    }
    Ok(())
}

/// A protocol's node class `$class` (attributes `$meta`, the `#[pyclass]` among them) with the
/// methods every protocol's node has. Its fields: `node`, the core's `$core` (a `ProtocolNode`);
/// `storage`, the `NodeStorage` of the protocol's `$memory` and `$file` storage classes; `config`,
/// its `$config` class. `$ready` is its Ready class (fields `inner`, `mark`); `exhausted` the
/// message of a campaign refused at `TERM_MAX`. The protocol's own methods (constructor, status,
/// membership) go in `{ ... }`.
macro_rules! node_class {
    (
        $(#[$meta:meta])*
        $class:ident {
            core: $core:ty,
            memory: $memory:ident,
            file: $file:ident,
            ready: $ready:ident,
            config: $config:ident,
            exhausted: $exhausted:literal $(,)?
        },
        { $($own:tt)* }
    ) => {
        $(#[$meta])*
        pub struct $class {
            node: $core,
            storage: $crate::storage::NodeStorage<$memory, $file>,
            config: $config,
        }

        #[::pyo3::pymethods]
        impl $class {
            #[getter]
            fn id(&self) -> u64 {
                ::consensus_core::ProtocolNode::id(&self.node)
            }
            #[getter]
            fn role(&self) -> $crate::role::Role {
                ::consensus_core::ProtocolNode::role(&self.node).into()
            }
            /// The term (Paxos: the current ballot's round).
            #[getter]
            fn term(&self) -> u64 {
                ::consensus_core::ProtocolNode::term(&self.node)
            }
            /// The leader this node knows of (0: unknown).
            #[getter]
            fn leader(&self) -> u64 {
                ::consensus_core::ProtocolNode::leader(&self.node)
            }
            #[getter]
            fn commit_index(&self) -> u64 {
                ::consensus_core::ProtocolNode::commit_index(&self.node)
            }
            #[getter]
            fn applied_index(&self) -> u64 {
                ::consensus_core::ProtocolNode::applied_index(&self.node)
            }
            #[getter]
            fn last_index(&self) -> u64 {
                ::consensus_core::ProtocolNode::last_index(&self.node)
            }
            /// The storage given to the constructor (a `MemoryStorage` or a `FileStorage`).
            #[getter]
            fn storage(&self, py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<::pyo3::Py<::pyo3::PyAny>> {
                self.storage.to_object(py)
            }
            #[getter]
            fn config(&self) -> $config {
                self.config.clone()
            }

            /// One logical tick.
            fn tick(&mut self) {
                ::consensus_core::ProtocolNode::tick(&mut self.node);
            }
            /// `n` ticks in one call.
            fn tick_many(&mut self, n: u64) {
                for _ in 0..n {
                    ::consensus_core::ProtocolNode::tick(&mut self.node);
                }
            }
            /// Starts an election (Paxos: Phase 1 with a ballot above every one seen) now.
            /// `ProtocolError` when the term reached its limit (`TERM_MAX`): the node can no
            /// longer campaign.
            fn campaign(&mut self) -> ::pyo3::PyResult<()> {
                $crate::node::campaign(&mut self.node, $exhausted)
            }
            /// Proposes one command. Returns its index (Paxos: the slot it joins) on the leader, 0
            /// when forwarded by a follower.
            fn propose(&mut self, data: &[u8]) -> ::pyo3::PyResult<u64> {
                let data = $crate::convert::bytes_of(data);
                ::consensus_core::ProtocolNode::propose(&mut self.node, data).map_err($crate::errors::to_py)
            }
            /// Proposes a batch in one call: a list of bytes or a 2-D `uint8` NumPy array (one
            /// command per row). Returns the first one's index.
            fn propose_many(&mut self, batch: &::pyo3::Bound<'_, ::pyo3::PyAny>) -> ::pyo3::PyResult<u64> {
                let batch = $crate::convert::batch_from(batch)?;
                ::consensus_core::ProtocolNode::propose_many(&mut self.node, batch).map_err($crate::errors::to_py)
            }
            /// A linearizable read barrier, answered in `Ready.read_states`.
            fn read_index(&mut self, ctx: &[u8]) -> ::pyo3::PyResult<()> {
                let ctx = $crate::convert::bytes_of(ctx);
                ::consensus_core::ProtocolNode::read_index(&mut self.node, ctx).map_err($crate::errors::to_py)
            }
            /// Hands the leadership to `to`: proposals raise `ProposalDroppedError` until `to`,
            /// brought up to date, takes over (or an election timeout abandons the transfer).
            /// `NotLeaderError` on a node that does not lead, `ConfigError` for its own id or a
            /// node outside the configuration.
            fn transfer_leader(&mut self, to: u64) -> ::pyo3::PyResult<()> {
                ::consensus_core::ProtocolNode::transfer_leader(&mut self.node, to).map_err($crate::errors::to_py)
            }
            /// Steps one frame from a peer. Malformed bytes raise `DecodeError`; a well-formed
            /// message that fails validation (docs/wire-format.md, "Validation at the door")
            /// raises `ProtocolError` and changes nothing. With `sender` (the id the connection
            /// authenticated as), a frame whose `from` differs raises `ProtocolError`.
            #[pyo3(signature = (frame, *, sender = None))]
            fn step(&mut self, frame: &[u8], sender: Option<u64>) -> ::pyo3::PyResult<()> {
                let frame = $crate::convert::bytes_of(frame);
                ::consensus_core::ProtocolNode::step_from(&mut self.node, &frame, sender).map_err($crate::errors::to_py)
            }
            /// Steps frames in order (all from `sender` when given); stops at (and raises) the
            /// first bad one.
            #[pyo3(signature = (frames, *, sender = None))]
            fn step_many(
                &mut self,
                frames: &::pyo3::Bound<'_, ::pyo3::PyAny>,
                sender: Option<u64>,
            ) -> ::pyo3::PyResult<()> {
                $crate::node::step_many(&mut self.node, frames, sender)
            }
            fn has_ready(&self) -> bool {
                ::consensus_core::ProtocolNode::has_ready(&self.node)
            }
            fn ready(&mut self) -> ::pyo3::PyResult<$ready> {
                let inner = ::consensus_core::ProtocolNode::ready(&mut self.node).map_err($crate::errors::to_py)?;
                let mark = ::consensus_core::ReadyView::mark(&inner);
                Ok($ready { inner, mark })
            }
            fn advance(&mut self, rd: &$ready) -> ::pyo3::PyResult<()> {
                $crate::node::advance(&mut self.node, &rd.mark)
            }
            /// Persists `rd` into this node's storage, then advances: for callers that send and
            /// apply themselves between `ready()` and this call.
            fn persist_and_advance(&mut self, py: ::pyo3::Python<'_>, rd: &$ready) -> ::pyo3::PyResult<()> {
                self.storage.persist(py, &rd.inner)?;
                self.advance(rd)
            }
            /// The outcome of a snapshot sent to `to`.
            fn report_snapshot(&mut self, to: u64, ok: bool) {
                ::consensus_core::ProtocolNode::report_snapshot(&mut self.node, to, ok);
            }
            fn report_unreachable(&mut self, to: u64) {
                ::consensus_core::ProtocolNode::report_unreachable(&mut self.node, to);
            }
            $($own)*
        }
    };
}
pub(crate) use node_class;

/// A protocol's Ready class `$class` (attributes `$meta`, the `#[pyclass]` among them) wrapping
/// the core's `$core` Ready in `inner` and its `$mark` in `mark`, with the getters every
/// protocol's Ready has, plus the protocol's own in `{ ... }`. `$entry`, `$hard_state` and
/// `$snapshot` are the protocol's classes wrapping the core's (field `inner`); `$persists` names
/// the core Ready's list of what to store (for `__repr__`).
macro_rules! ready_class {
    (
        $(#[$meta:meta])*
        $class:ident {
            core: $core:ty,
            mark: $mark:ty,
            persists: $persists:ident,
            entry: $entry:ident,
            hard_state: $hard_state:ident,
            snapshot: $snapshot:ident $(,)?
        },
        { $($own:tt)* } $(,)?
    ) => {
        $(#[$meta])*
        pub struct $class {
            pub inner: $core,
            mark: $mark,
        }

        #[::pyo3::pymethods]
        impl $class {
            /// What to apply, in order (after `snapshot`, when there is one).
            #[getter]
            fn committed_entries(&self) -> Vec<$entry> {
                self.inner.committed_entries.iter().map(|e| $entry { inner: e.clone() }).collect()
            }
            /// The hard state to persist; `None` when unchanged since the previous Ready.
            #[getter]
            fn hard_state(&self) -> Option<$hard_state> {
                self.inner.hard_state.map(|inner| $hard_state { inner })
            }
            /// A snapshot to install (storage) and restore (application) before applying.
            #[getter]
            fn snapshot(&self) -> Option<$snapshot> {
                self.inner.snapshot.clone().map(|inner| $snapshot { inner })
            }
            /// `[(to, frame_bytes), ...]` that may be sent at once, before or while persisting (a
            /// leader's writes under a durable term or promise).
            #[getter]
            fn messages<'py>(
                &self,
                py: ::pyo3::Python<'py>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::types::PyList>> {
                $crate::convert::frame_list(py, ::consensus_core::ReadyView::messages(&self.inner))
            }
            /// `[(to, frame_bytes), ...]` to send only after this Ready is persisted.
            #[getter]
            fn persisted_messages<'py>(
                &self,
                py: ::pyo3::Python<'py>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::types::PyList>> {
                $crate::convert::frame_list(py, ::consensus_core::ReadyView::persisted_messages(&self.inner))
            }
            /// The index the application stands at once it applied this Ready; 0 when it
            /// applies nothing.
            #[getter]
            fn applied_through(&self) -> u64 {
                ::consensus_core::ReadyView::applied_through(&self.inner)
            }
            /// Whether persisting this Ready needs an fsync.
            #[getter]
            fn must_sync(&self) -> bool {
                ::consensus_core::ReadyView::must_sync(&self.inner)
            }
            #[getter]
            fn read_states(&self) -> Vec<$crate::common::ReadState> {
                ::consensus_core::ReadyView::read_states(&self.inner).iter().map(Into::into).collect()
            }
            #[getter]
            fn leader(&self) -> u64 {
                self.inner.leader
            }
            /// Number of committed entries (without building Entry objects).
            #[getter]
            fn committed_count(&self) -> usize {
                self.inner.committed_entries.len()
            }
            /// Number of messages, both lists (without building them).
            #[getter]
            fn message_count(&self) -> usize {
                self.inner.messages.len() + self.inner.persisted_messages.len()
            }
            fn __repr__(&self) -> String {
                format!(
                    "Ready({}={}, hard_state={:?}, committed_entries={}, messages={}, snapshot={}, must_sync={})",
                    stringify!($persists),
                    self.inner.$persists.len(),
                    self.inner.hard_state,
                    self.inner.committed_entries.len(),
                    self.message_count(),
                    self.inner.snapshot.is_some(),
                    self.inner.must_sync
                )
            }
            $($own)*
        }
    };
}
pub(crate) use ready_class;
