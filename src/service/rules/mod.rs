//! Business rules: pure functions of (command, state, now) → events or a rejection.
//!
//! Nothing here touches disk, network, clock or randomness: ids and token digests come in
//! with the command, `now` is an argument. That is what lets every rule be tested with
//! given-state → when-command → then-events tests, and lets the writer decide a whole batch
//! against its own copy of the state before anything is written.

pub mod caller;
pub mod create_api_key;
pub mod directory;
pub mod grace_period;
pub mod last_use;
pub mod revoke_api_key;
pub mod rotate_api_key;
pub mod update_api_key;
pub mod visibility;

#[cfg(test)]
pub(crate) mod given;
#[cfg(test)]
mod hardening_tests;

use keyledger_projections::{Actor, Event};

/// One thing wrong with a request, reported with all the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A sentence: "Name can't be blank".
    pub title: String,
    pub detail: String,
    /// JSON pointer into the request document: `/data/attributes/name`.
    pub pointer: String,
}

impl Problem {
    pub fn new(pointer: &str, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem { title: title.into(), detail: detail.into(), pointer: pointer.to_owned() }
    }

    /// A problem with an attribute of the request's `data`.
    pub fn attribute(name: &str, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem::new(&format!("/data/attributes/{name}"), title, detail)
    }
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The key behind the request no longer authenticates (revoked, expired, owner gone).
    #[error("invalid token")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request presented a key's previous secret (in its grace period), which may
    /// read but never change anything.
    #[error("this token was replaced by a rotation")]
    SupersededSecret,
    #[error("{} problem(s) with the request", .0.len())]
    Invalid(Vec<Problem>),
    #[error("not found or unauthorized")]
    NotFound,
}

/// What a rule decided: the events to record and who caused them.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub actor: Actor,
    pub events: Vec<Event>,
}
