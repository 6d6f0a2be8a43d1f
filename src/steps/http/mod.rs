//! The HTTP backend: `http.check` against an instance's endpoints, with the run's shared
//! clients (`crate::helpers::http`).

pub mod check;
pub mod settings;
