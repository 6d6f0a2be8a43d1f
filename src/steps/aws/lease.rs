//! The AWS side of the instance lock: a lease in a DynamoDB table, for instances without
//! Kubernetes.
//!
//! One item per instance in `aws.lease_table` (partition key `instance`, a string):
//! `{instance, run_id, holder, expires_at}`. Taking the lease is a conditional PutItem —
//! it succeeds only if no item exists or the existing one has expired — so two runs on two
//! machines cannot both hold it. The holder renews `expires_at` every TTL/3 while the run
//! lasts (a conditional update on its own run id) and deletes the item when the run ends;
//! if opsctl dies, the lease expires after the TTL. A second run reads the item and exits 3
//! naming the holder and when the lease expires.
//!
//! `expires_at` is written by the holder's clock and read by the taker's. So a lease that
//! looks expired is watched for one renewal period (`ttl_seconds`/3, the holder's TTL, kept
//! in the item) before it is taken over: if the holder renewed it meanwhile, its clock is
//! behind and the run exits 3 saying so; if not, the takeover is a conditional put on the
//! item as it was seen, and a warning names the run it took over from.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::instance::Instance;
use crate::lease::{Held, Holder, LeaseError, Scope};

/// How long a lease lives without renewal.
pub const TTL: Duration = Duration::from_secs(300);

/// The instance lease for instances with `aws.lease_table` (when no Kubernetes Lease
/// applies: the registry tries that one first).
pub struct DynamoLease;

#[async_trait::async_trait]
impl crate::lease::Lease for DynamoLease {
    fn name(&self) -> &'static str {
        "DynamoDB lease"
    }

    fn scope(&self) -> Scope {
        Scope::Instance
    }

    fn applies(&self, instance: &Instance, _needs: &[&str]) -> bool {
        instance.aws.as_ref().is_some_and(|a| a.lease_table.is_some())
    }

    async fn acquire(&self, instance: &Instance, holder: &Holder, _: &'static dyn crate::kind::Backends) -> Result<Box<dyn Held>, LeaseError> {
        let Some((settings, table)) = instance.aws.as_ref().and_then(|a| a.lease_table.as_deref().map(|t| (a, t))) else {
            return Err(LeaseError::Unavailable("the instance has no `aws.lease_table`".into()));
        };
        let config = super::load(settings).await;
        Ok(Box::new(HeldLease::take(&config, table, &instance.name, holder).await?))
    }
}

/// A lease item this run holds; [`Held::release`] deletes it, and renewal stops on drop.
struct HeldLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    instance: String,
    run_id: String,
    renewal: tokio::task::JoinHandle<()>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl HeldLease {
    async fn take(config: &aws_config::SdkConfig, table: &str, instance: &str, holder: &Holder) -> Result<HeldLease, LeaseError> {
        let client = aws_sdk_dynamodb::Client::new(config);
        let holder_json = serde_json::to_string(holder).unwrap_or_default();
        // Made at each attempt: the expiry counts from when it is written.
        let item = || {
            HashMap::from([
                ("instance".to_string(), s(instance)),
                ("run_id".to_string(), s(&holder.run_id)),
                ("holder".to_string(), s(&holder_json)),
                ("expires_at".to_string(), AttributeValue::N((now() + TTL.as_secs() as i64).to_string())),
                ("ttl_seconds".to_string(), AttributeValue::N(TTL.as_secs().to_string())),
            ])
        };
        // Our item, on a condition each use adds.
        let put_ours = || client.put_item().table_name(table).set_item(Some(item()));
        let unavailable = |e| LeaseError::Unavailable(super::sdk_error(e, &format!("taking the lease in DynamoDB table {table}"), config).message);
        let conflict = |e: &aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>| {
            e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception())
        };
        let mut taken = false;
        for _ in 0..3 {
            // Free (or released meanwhile): take it.
            let put = put_ours().condition_expression("attribute_not_exists(#i)").expression_attribute_names("#i", "instance").send().await;
            match put {
                Ok(_) => {
                    taken = true;
                    break;
                }
                Err(e) if conflict(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
            let Some(current) = Self::read(&client, table, instance).await else { continue };
            if current.expires_at >= now() {
                return Err(LeaseError::Held(current.describe(table)));
            }
            // Expired by our clock. A holder whose clock is behind ours renews a lease that
            // looks expired here: watch it for one renewal period, by our own clock, before
            // believing it (as the Kubernetes Lease does), and say what was found.
            let ttl = current.ttl.max(1);
            tokio::time::sleep(Duration::from_millis(ttl * 1000 / 3 + 500)).await;
            let Some(after) = Self::read(&client, table, instance).await else { continue };
            if after.run_id != current.run_id {
                continue;
            }
            if after.expires_at != current.expires_at {
                return Err(LeaseError::Held(format!(
                    "{}; it is being renewed, though by this machine's clock it expired {} ago: the holder's clock is behind this one's (check NTP on both)",
                    after.describe(table),
                    ago(after.expires_at)
                )));
            }
            // Not renewed: take it over, only if it is still the one watched.
            let put = put_ours()
                .condition_expression("run_id = :old AND #e = :seen")
                .expression_attribute_names("#e", "expires_at")
                .expression_attribute_values(":old", s(&current.run_id))
                .expression_attribute_values(":seen", AttributeValue::N(current.expires_at.to_string()))
                .send()
                .await;
            match put {
                Ok(_) => {
                    tracing::warn!(
                        "took over the expired {} (DynamoDB lease in {table}): it expired {} ago and was not renewed in the {}s since",
                        current.who(),
                        ago(current.expires_at),
                        ttl / 3
                    );
                    taken = true;
                    break;
                }
                Err(e) if conflict(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        if !taken {
            let who = Self::read(&client, table, instance).await.map(|c| c.describe(table));
            return Err(LeaseError::Held(who.unwrap_or_else(|| format!("another run (the DynamoDB lease in {table} kept changing)"))));
        }
        let renewal = {
            let (client, table, instance, run_id) = (client.clone(), table.to_string(), instance.to_string(), holder.run_id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(TTL / 3).await;
                    let r = client
                        .update_item()
                        .table_name(&table)
                        .key("instance", s(&instance))
                        .update_expression("SET #e = :e")
                        .condition_expression("run_id = :me")
                        .expression_attribute_names("#e", "expires_at")
                        .expression_attribute_values(":e", AttributeValue::N((now() + TTL.as_secs() as i64).to_string()))
                        .expression_attribute_values(":me", s(&run_id))
                        .send()
                        .await;
                    if let Err(e) = r {
                        tracing::warn!("could not renew the lease of {instance} in {table}: {}", crate::helpers::errors::chain(&e));
                    }
                }
            })
        };
        Ok(HeldLease { client, table: table.to_string(), instance: instance.to_string(), run_id: holder.run_id.clone(), renewal })
    }

    /// The lease item as it is now (a consistent read); `None` when there is none or it
    /// cannot be read.
    async fn read(client: &aws_sdk_dynamodb::Client, table: &str, instance: &str) -> Option<Current> {
        let item = client.get_item().table_name(table).key("instance", s(instance)).consistent_read(true).send().await.ok()?.item?;
        let text = |k: &str| match item.get(k) {
            Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
            _ => String::new(),
        };
        Some(Current {
            run_id: text("run_id"),
            holder: serde_json::from_str::<Holder>(&text("holder")).ok(),
            expires_at: text("expires_at").parse().unwrap_or(0),
            // Written by the holder (items from before it was: the TTL then, 300 s).
            ttl: text("ttl_seconds").parse().unwrap_or(TTL.as_secs()),
        })
    }
}

/// A lease item read back.
struct Current {
    run_id: String,
    holder: Option<Holder>,
    /// Seconds since the epoch, by the holder's clock.
    expires_at: i64,
    ttl: u64,
}

impl Current {
    /// Who holds it and until when, for messages.
    fn describe(&self, table: &str) -> String {
        match jiff::Timestamp::from_second(self.expires_at) {
            Ok(t) => format!("{} (DynamoDB lease in {table}, expires {} unless renewed)", self.who(), t.strftime("%Y-%m-%d %H:%M:%SZ")),
            Err(_) => format!("{} (DynamoDB lease in {table})", self.who()),
        }
    }

    fn who(&self) -> String {
        self.holder.as_ref().map(|h| h.to_string()).unwrap_or_else(|| format!("run {}", self.run_id))
    }
}

/// How long ago `at` (seconds since the epoch) was, by this machine's clock: `2m`.
fn ago(at: i64) -> String {
    crate::duration::short(Duration::from_secs((now() - at).max(0) as u64)).to_string()
}

#[async_trait::async_trait]
impl Held for HeldLease {
    /// Deletes the lease if it is still ours.
    async fn release(self: Box<Self>) {
        self.renewal.abort();
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("instance", s(&self.instance))
            .condition_expression("run_id = :me")
            .expression_attribute_values(":me", s(&self.run_id))
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!("could not release the lease of {} in {}: {} (it expires by itself)", self.instance, self.table, crate::helpers::errors::chain(&e));
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}
