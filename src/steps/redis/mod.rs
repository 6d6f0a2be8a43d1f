//! The Redis backend: what operators do with `redis-cli` every morning and in incidents —
//! `PING`, `INFO memory`, `INFO stats`, `LLEN queue`, `SLOWLOG GET` — as typed checks, over
//! a connection of its own ([`conn`]).
//!
//! ```yaml
//! redis: { url: { env: REDIS_URL } }     # redis://[user:password@]host:6379/0, rediss:// for TLS
//! ```

pub mod backup;
pub mod conn;
pub mod info;
pub mod ping;
pub mod queue_depth;
pub mod rdb;
pub mod settings;
pub mod slowlog;

use conn::Conn;
use settings::RedisSettings;

use crate::kind::StepContext;
use crate::vocab::StepError;

/// The instance's Redis settings, or a clear error.
pub fn settings(ctx: &StepContext) -> Result<&RedisSettings, StepError> {
    ctx.instance.redis.as_ref().ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no Redis settings; add `redis: {{ url: {{ env: REDIS_URL }} }}` to it in the inventory",
            ctx.instance.name
        ))
    })
}

/// A connection to the instance's Redis (through the API server with `port_forward`).
pub async fn connect(ctx: &StepContext) -> Result<Conn, StepError> {
    let settings = settings(ctx)?;
    let via = match &settings.port_forward {
        Some(to) => Some(ctx.run.backends.port_forward(&ctx.instance, &ctx.resources, to).await?),
        None => None,
    };
    Conn::open(settings, via.as_deref()).await
}
