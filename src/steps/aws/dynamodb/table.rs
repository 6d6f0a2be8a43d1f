//! What the table kinds share (`dynamodb.table_status`, `dynamodb.set_capacity`,
//! `dynamodb.pitr`): a table's billing mode and capacity, described for messages.

use aws_sdk_dynamodb::types::{BillingMode, TableDescription};

pub fn billing(t: &TableDescription) -> &'static str {
    match t.billing_mode_summary().and_then(|b| b.billing_mode()) {
        Some(BillingMode::PayPerRequest) => "on_demand",
        _ => "provisioned",
    }
}

pub fn capacity(t: &TableDescription) -> (i64, i64) {
    let p = t.provisioned_throughput();
    (p.and_then(|p| p.read_capacity_units()).unwrap_or(0), p.and_then(|p| p.write_capacity_units()).unwrap_or(0))
}

pub fn describe_capacity(t: &TableDescription) -> String {
    match billing(t) {
        "on_demand" => "on-demand".to_string(),
        _ => {
            let (r, w) = capacity(t);
            format!("provisioned {r} RCU / {w} WCU")
        }
    }
}
