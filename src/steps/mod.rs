//! The backends: one folder per backend (one file for the smallest), each holding its
//! inventory section (`settings.rs`, pure data) and one file per step kind.
//!
//! A backend never imports another: what two backends share lives in `crate::helpers`,
//! and what one asks of another (a backup store in S3, a program run in a pod) goes through
//! `crate::kind::Backends`, which the registry answers. Every kind is listed in
//! `crate::registry::KINDS`.

pub mod alertmanager;
pub mod assert;
pub mod aws;
pub mod backup;
pub mod compose;
pub mod host;
pub mod http;
pub mod k8s;
pub mod notify;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod sleep;
pub mod timeline;
