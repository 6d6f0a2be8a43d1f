//! What backends share, below all of them: a backend never imports another, so a piece two
//! backends need lives here.
//!
//! Nothing here is a step kind or knows an instance; each module is a tool a kind uses.

pub mod cleanup;
pub mod errors;
pub mod exec;
pub mod http;
pub mod logscan;
pub mod random;
pub mod text;
pub mod threshold;
pub mod tls;
pub mod transport;
pub mod tunnel;
