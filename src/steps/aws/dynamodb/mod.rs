//! DynamoDB steps and what they share: items as typed JSON, table descriptions, waiting.

pub mod backup;
pub mod export;
pub mod pitr;
pub mod restore;
pub mod set_capacity;
pub mod table;
pub mod table_status;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, TableDescription, TableStatus};
use aws_smithy_types::Blob;

use super::{Retries, config, sdk_error};
use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// A DynamoDB client for the instance, with its configuration (for messages) and the
/// step's retry counter.
pub async fn client(ctx: &StepContext) -> Result<(aws_sdk_dynamodb::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_dynamodb::Client::from_conf(conf), c, retries))
}

/// An attribute value from DynamoDB's typed JSON: `{"S": "x"}`, `{"N": "1"}`, `{"M": {...}}`
/// (what exports and `aws dynamodb scan` write; see `export::write_line` for the other way).
pub fn from_json(v: &serde_json::Value) -> Result<AttributeValue, String> {
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| format!("expected one typed value such as {{\"S\": \"x\"}}, found {v}"))?;
    let (t, x) = obj.iter().next().expect("one entry");
    let strs = |x: &serde_json::Value| -> Result<Vec<String>, String> {
        x.as_array().ok_or(format!("{t} holds a list"))?.iter().map(|s| s.as_str().map(str::to_string).ok_or(format!("{t} holds strings"))).collect()
    };
    let blob = |s: &str| aws_smithy_types::base64::decode(s).map(Blob::new).map_err(|e| format!("bad base64: {e}"));
    Ok(match t.as_str() {
        "S" => AttributeValue::S(x.as_str().ok_or("S holds a string")?.to_string()),
        "N" => AttributeValue::N(match x {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err("N holds a number".into()),
        }),
        "B" => AttributeValue::B(blob(x.as_str().ok_or("B holds base64 text")?)?),
        "BOOL" => AttributeValue::Bool(x.as_bool().ok_or("BOOL holds true or false")?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strs(x)?),
        "NS" => AttributeValue::Ns(strs(x)?),
        "BS" => AttributeValue::Bs(strs(x)?.iter().map(|s| blob(s)).collect::<Result<_, _>>()?),
        "L" => AttributeValue::L(x.as_array().ok_or("L holds a list")?.iter().map(from_json).collect::<Result<_, _>>()?),
        "M" => AttributeValue::M(item_from_json(x)?),
        other => return Err(format!("unknown DynamoDB type `{other}`")),
    })
}

pub fn item_from_json(v: &serde_json::Value) -> Result<HashMap<String, AttributeValue>, String> {
    v.as_object()
        .ok_or_else(|| format!("an item is an object of typed values, found {v}"))?
        .iter()
        .map(|(k, v)| from_json(v).map(|a| (k.clone(), a)))
        .collect()
}

/// The table's description; a missing table says which region was looked in.
pub async fn describe(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str) -> Result<TableDescription, StepError> {
    let out = client.describe_table().table_name(table).send().await.map_err(|e| {
        let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
        if not_found {
            StepError::new(ErrorClass::Failed, format!("table {table} does not exist in {} (check aws.region)", super::target(config)))
        } else {
            sdk_error(e, &format!("describing table {table}"), config)
        }
    })?;
    out.table.ok_or_else(|| StepError::error(format!("DescribeTable for {table} returned no table")))
}

/// Whether a table exists.
pub async fn exists(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str) -> Result<bool, StepError> {
    match describe(client, config, table).await {
        Ok(_) => Ok(true),
        Err(e) if e.class == ErrorClass::Failed => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until the table (and its indexes) are ACTIVE.
pub async fn wait_active(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str, within: Duration) -> Result<TableDescription, StepError> {
    let started = Instant::now();
    loop {
        let t = describe(client, config, table).await?;
        let indexes_active = t.global_secondary_indexes().iter().all(|g| g.index_status().is_none_or(|s| s.as_str() == "ACTIVE"));
        if t.table_status() == Some(&TableStatus::Active) && indexes_active {
            return Ok(t);
        }
        if started.elapsed() > within {
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!("table {table} is still {} after {}", t.table_status().map_or("?", |s| s.as_str()), crate::duration::Duration(within)),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Counts a table's items exactly, with parallel `Select=COUNT` scans (consistent reads
/// to see what was just written).
pub async fn count_items(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str, segments: i32, consistent: bool) -> Result<i64, StepError> {
    let counts = futures_util::future::join_all((0..segments).map(|segment| async move {
        let mut total = 0i64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = client
                .scan()
                .table_name(table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(consistent)
                .segment(segment)
                .total_segments(segments)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("counting the items of {table}"), config))?;
            total += i64::from(out.count());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok::<i64, StepError>(total),
            }
        }
    }))
    .await;
    counts.into_iter().sum()
}

fn build<T>(r: Result<T, aws_smithy_types::error::operation::BuildError>) -> Result<T, StepError> {
    r.map_err(|e| StepError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_json_round_trips() {
        let mut item = HashMap::new();
        item.insert("id".to_string(), AttributeValue::S("u1".into()));
        item.insert("n".to_string(), AttributeValue::N("42".into()));
        item.insert("tags".to_string(), AttributeValue::Ss(vec!["a".into(), "b".into()]));
        item.insert("raw".to_string(), AttributeValue::B(Blob::new(vec![0u8, 255])));
        item.insert("nested".to_string(), AttributeValue::M(HashMap::from([("ok".to_string(), AttributeValue::Bool(true))])));
        let mut line = Vec::new();
        export::write_line(&mut line, &item).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["Item"]["id"], serde_json::json!({ "S": "u1" }));
        assert_eq!(json["Item"]["raw"], serde_json::json!({ "B": "AP8=" }));
        assert_eq!(item_from_json(&json["Item"]).unwrap(), item);
        assert_eq!(from_json(&serde_json::json!({ "N": 5 })).unwrap(), AttributeValue::N("5".into()));
        assert!(from_json(&serde_json::json!({ "X": 1 })).unwrap_err().contains("unknown DynamoDB type"));
        assert!(from_json(&serde_json::json!({ "S": "a", "N": "1" })).is_err());
    }
}
