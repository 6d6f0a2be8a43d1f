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
        let expires = now() + TTL.as_secs() as i64;
        let holder_json = serde_json::to_string(holder).unwrap_or_default();
        let item = HashMap::from([
            ("instance".to_string(), s(instance)),
            ("run_id".to_string(), s(&holder.run_id)),
            ("holder".to_string(), s(&holder_json)),
            ("expires_at".to_string(), AttributeValue::N(expires.to_string())),
        ]);
        let put = client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#i) OR #e < :now")
            .expression_attribute_names("#i", "instance")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":now", AttributeValue::N(now().to_string()))
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                return Err(LeaseError::Held(Self::holder(&client, table, instance).await));
            }
            Err(e) => {
                let msg = super::sdk_error(e, &format!("taking the lease in DynamoDB table {table}"), config).message;
                return Err(LeaseError::Unavailable(msg));
            }
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

    /// Who holds the lease, for the error.
    async fn holder(client: &aws_sdk_dynamodb::Client, table: &str, instance: &str) -> String {
        let item = client.get_item().table_name(table).key("instance", s(instance)).consistent_read(true).send().await.ok().and_then(|o| o.item);
        let Some(item) = item else { return "another run (its lease has just gone)".to_string() };
        let text = |k: &str| match item.get(k) {
            Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
            _ => String::new(),
        };
        let expires = text("expires_at").parse::<i64>().ok().and_then(|t| jiff::Timestamp::from_second(t).ok());
        let who = serde_json::from_str::<Holder>(&text("holder")).map(|h| h.to_string()).unwrap_or_else(|_| format!("run {}", text("run_id")));
        match expires {
            Some(t) => format!("{who} (DynamoDB lease in {table}, expires {} unless renewed)", t.strftime("%Y-%m-%d %H:%M:%SZ")),
            None => format!("{who} (DynamoDB lease in {table})"),
        }
    }

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
