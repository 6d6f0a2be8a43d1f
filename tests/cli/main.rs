//! Integration tests: the real `opsctl` binary against real local endpoints.
//! One test binary (see DEVELOPERS.md: every file under tests/ links the crate again).

mod support;

mod alertmanager;
mod architecture;
mod aws;
mod compose;
mod demo;
mod dryrun;
mod ecs;
mod elb;
mod engine;
mod errors;
mod examples;
mod faults;
mod fuzz;
mod fleet;
mod golden;
mod host;
mod k8s;
mod logs;
mod http;
mod incluster;
mod outputs;
mod permissions;
mod port_forward;
mod postgres;
mod procedures;
mod prometheus;
mod rds;
mod redis;
mod schema;
mod secrets;
mod tty;
