//! moto's AWS emulator, behind the test proxy (`tests/aws/proxy.py`), once per test binary.
//!
//! The proxy passes requests to moto, translates CloudWatch's RPCv2-CBOR into the Query
//! protocol moto serves, and injects faults on request (throttling, 5xx). opsctl talks to
//! the proxy; the tests set up and inspect state by talking to moto directly over its own
//! wire protocols (DynamoDB JSON, Secrets Manager JSON, CloudWatch Query, S3 REST), so a
//! fault meant for opsctl never hits the setup. `scripts/test.sh` makes the venv
//! (`$OPSCTL_TEST_VENV`, default `~/.cache/opsctl-venv`); without it the AWS tests skip —
//! except under `CI=true`, where they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use super::in_ci;

pub struct Aws {
    /// The proxy: what opsctl is pointed at.
    pub port: u16,
    /// moto itself: what the tests set up state through.
    pub moto: u16,
    _child: Mutex<Child>,
}

static SHARED: OnceLock<Result<Aws, String>> = OnceLock::new();

pub fn venv() -> PathBuf {
    std::env::var_os("OPSCTL_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/opsctl-venv"))
}

/// The emulator shared by this test binary; `None` (after saying why) outside CI when the
/// venv is missing.
pub fn shared() -> Option<&'static Aws> {
    match SHARED.get_or_init(Aws::start) {
        Ok(a) => Some(a),
        Err(why) => {
            assert!(!in_ci(), "moto is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// One HTTP/1.0 exchange with a loopback server: (status, body).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("emulator reachable");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

fn auth(service: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=test/20261123/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
}

impl Aws {
    fn start() -> Result<Aws, String> {
        let python = venv().join("bin/python");
        if !python.is_file() {
            return Err(format!("no Python venv with moto at {} (scripts/test.sh makes it)", venv().display()));
        }
        let script = super::repo().join("tests/aws/proxy.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 3 || parts[0] != "READY" {
            let _ = child.kill();
            return Err(format!("the moto proxy did not start (said {line:?})"));
        }
        // Its stdin stays open as long as this process lives; it exits when it closes.
        Ok(Aws { port: parts[1].parse().unwrap(), moto: parts[2].parse().unwrap(), _child: Mutex::new(child) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An inventory `aws:` block for this emulator.
    pub fn settings(&self, region: &str) -> String {
        format!("{{ region: {region}, endpoint_url: \"{}\", max_attempts: 3 }}", self.endpoint())
    }

    /// A DynamoDB call straight to moto: (status, answer).
    pub fn dynamodb_try(&self, op: &str, body: Value) -> (u16, Value) {
        let target = format!("DynamoDB_20120810.{op}");
        let (status, out) = http(
            self.moto,
            "POST",
            "/",
            &[("X-Amz-Target", &target), ("Content-Type", "application/x-amz-json-1.0"), ("Authorization", &auth("dynamodb"))],
            body.to_string().as_bytes(),
        );
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    }

    #[track_caller]
    pub fn dynamodb(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.dynamodb_try(op, body);
        assert_eq!(status, 200, "DynamoDB {op}: {out}");
        out
    }

    /// A table keyed by `id` (a string) with `n` items `{id: u<i>, n: <i>, name: "user <i>"}`.
    pub fn table(&self, name: &str, n: usize) {
        self.dynamodb(
            "CreateTable",
            json!({
                "TableName": name,
                "AttributeDefinitions": [{ "AttributeName": "id", "AttributeType": "S" }],
                "KeySchema": [{ "AttributeName": "id", "KeyType": "HASH" }],
                "ProvisionedThroughput": { "ReadCapacityUnits": 5, "WriteCapacityUnits": 5 },
            }),
        );
        self.put_items(name, 0..n);
    }

    pub fn put_items(&self, table: &str, range: std::ops::Range<usize>) {
        let items: Vec<usize> = range.collect();
        for chunk in items.chunks(25) {
            let requests: Vec<Value> = chunk
                .iter()
                .map(|i| json!({ "PutRequest": { "Item": { "id": { "S": format!("u{i}") }, "n": { "N": i.to_string() }, "name": { "S": format!("user {i}") } } } }))
                .collect();
            self.dynamodb("BatchWriteItem", json!({ "RequestItems": { table: requests } }));
        }
    }

    /// `n` items of about `size` bytes each (for exports bigger than one upload part).
    pub fn put_big_items(&self, table: &str, n: usize, size: usize) {
        let pad = "x".repeat(size);
        let items: Vec<usize> = (0..n).collect();
        for chunk in items.chunks(10) {
            let requests: Vec<Value> = chunk.iter().map(|i| json!({ "PutRequest": { "Item": { "id": { "S": format!("b{i}") }, "pad": { "S": pad } } } })).collect();
            self.dynamodb("BatchWriteItem", json!({ "RequestItems": { table: requests } }));
        }
    }

    /// Deletes the items `u<i>` for `i` in `range`.
    pub fn delete_items(&self, table: &str, range: std::ops::Range<usize>) {
        let items: Vec<usize> = range.collect();
        for chunk in items.chunks(25) {
            let requests: Vec<Value> = chunk.iter().map(|i| json!({ "DeleteRequest": { "Key": { "id": { "S": format!("u{i}") } } } })).collect();
            self.dynamodb("BatchWriteItem", json!({ "RequestItems": { table: requests } }));
        }
    }

    /// Items in a table, counted exactly.
    pub fn count(&self, table: &str) -> i64 {
        let mut total = 0;
        let mut start = Value::Null;
        loop {
            let mut req = json!({ "TableName": table, "Select": "COUNT" });
            if !start.is_null() {
                req["ExclusiveStartKey"] = start.clone();
            }
            let out = self.dynamodb("Scan", req);
            total += out["Count"].as_i64().unwrap();
            start = out["LastEvaluatedKey"].clone();
            if start.is_null() {
                return total;
            }
        }
    }

    /// A JSON 1.1 call (`X-Amz-Target: <target>`, signed for `service`) to moto, or through
    /// the proxy when `proxied`; asserts it succeeded.
    fn json11(&self, proxied: bool, target: &str, service: &str, body: Value) -> Value {
        let (status, out) = http(
            if proxied { self.port } else { self.moto },
            "POST",
            "/",
            &[("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.1"), ("Authorization", &auth(service))],
            body.to_string().as_bytes(),
        );
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{target}: {v}");
        v
    }

    pub fn secrets(&self, op: &str, body: Value) -> Value {
        self.json11(false, &format!("secretsmanager.{op}"), "secretsmanager", body)
    }

    /// An ECS call through the proxy, which completes a created or updated service's
    /// deployment as a cluster with capacity would (see tests/aws/proxy.py).
    pub fn ecs(&self, op: &str, body: Value) -> Value {
        self.json11(true, &format!("AmazonEC2ContainerServiceV20141113.{op}"), "ecs", body)
    }

    /// Sets what moto cannot produce: a service's counts and rollout, or a stopped task
    /// (`POST /__ecs`, see tests/aws/proxy.py).
    pub fn ecs_control(&self, body: Value) {
        let (status, out) = http(self.port, "POST", "/__ecs", &[("Content-Type", "application/json")], body.to_string().as_bytes());
        assert_eq!(status, 200, "ECS control {body}: {}", String::from_utf8_lossy(&out));
    }

    /// A cluster whose services (`name`, desired count) each run revision 1 of a task
    /// definition family named like the service, image `<name>:1`, settled.
    pub fn ecs_cluster(&self, cluster: &str, services: &[(&str, i64)]) {
        self.ecs("CreateCluster", json!({ "clusterName": cluster }));
        for (name, desired) in services {
            self.ecs(
                "RegisterTaskDefinition",
                json!({ "family": name, "containerDefinitions": [{ "name": name, "image": format!("{name}:1"), "memory": 128 }] }),
            );
            self.ecs("CreateService", json!({ "cluster": cluster, "serviceName": name, "taskDefinition": format!("{name}:1"), "desiredCount": desired }));
        }
    }

    /// A Query-protocol call straight to moto (`service` as in the signature, e.g.
    /// `elasticloadbalancing`, `ec2`); returns the XML.
    pub fn query(&self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", version);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let (status, out) = http(
            self.moto,
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &auth(service))],
            form.finish().as_bytes(),
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(status, 200, "{service} {params:?}: {text}");
        text
    }

    /// A VPC with two subnets (in two zones); returns (vpc, [subnets]).
    pub fn vpc(&self) -> (String, Vec<String>) {
        let ec2 = |p: &[(&str, &str)]| self.query("ec2", "2016-11-15", p);
        let vpc = xml_value(&ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")]), "vpcId");
        let subnets = [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")]
            .iter()
            .map(|(cidr, az)| xml_value(&ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", cidr), ("AvailabilityZone", az)]), "subnetId"))
            .collect();
        (vpc, subnets)
    }

    /// A target group (`ip` targets, HTTP 80) in `vpc` with these targets registered;
    /// returns its ARN.
    pub fn target_group(&self, name: &str, vpc: &str, targets: &[&str]) -> String {
        let elb = |p: &[(&str, &str)]| self.query("elasticloadbalancing", "2015-12-01", p);
        let arn = xml_value(
            &elb(&[("Action", "CreateTargetGroup"), ("Name", name), ("Protocol", "HTTP"), ("Port", "80"), ("VpcId", vpc), ("TargetType", "ip")]),
            "TargetGroupArn",
        );
        let mut params: Vec<(String, String)> = vec![("Action".into(), "RegisterTargets".into()), ("TargetGroupArn".into(), arn.clone())];
        for (i, t) in targets.iter().enumerate() {
            params.push((format!("Targets.member.{}.Id", i + 1), t.to_string()));
            params.push((format!("Targets.member.{}.Port", i + 1), "8080".into()));
        }
        if !targets.is_empty() {
            elb(&params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
        }
        arn
    }

    /// Sets a target's health as the next DescribeTargetHealth reports it.
    pub fn target_health(&self, group: &str, target: &str, state: &str, reason: &str, description: &str) {
        let body = json!({ "target_group": group, "target": target, "state": state, "reason": reason, "description": description });
        let (status, _) = http(self.port, "POST", "/__elb", &[("Content-Type", "application/json")], body.to_string().as_bytes());
        assert_eq!(status, 200);
    }

    /// A CloudWatch Logs call straight to moto.
    pub fn logs(&self, op: &str, body: Value) -> Value {
        self.json11(false, &format!("Logs_20140328.{op}"), "logs", body)
    }

    /// A PostgreSQL DB instance (20 GiB, backups kept 7 days unless `retention` says), with
    /// the automated snapshot moto takes at creation.
    pub fn db_instance(&self, id: &str, retention: u32, multi_az: bool) {
        let retention = retention.to_string();
        let multi_az = multi_az.to_string();
        self.query(
            "rds",
            "2014-10-31",
            &[
                ("Action", "CreateDBInstance"),
                ("DBInstanceIdentifier", id),
                ("DBInstanceClass", "db.t3.micro"),
                ("Engine", "postgres"),
                ("AllocatedStorage", "20"),
                ("MasterUsername", "app"),
                ("MasterUserPassword", "not-a-real-password-1"),
                ("BackupRetentionPeriod", &retention),
                ("MultiAZ", &multi_az),
            ],
        );
    }

    /// Sets RDS state moto cannot produce (`POST /__rds`, see tests/aws/proxy.py).
    pub fn rds_control(&self, body: Value) {
        let (status, out) = http(self.port, "POST", "/__rds", &[("Content-Type", "application/json")], body.to_string().as_bytes());
        assert_eq!(status, 200, "RDS control {body}: {}", String::from_utf8_lossy(&out));
    }

    /// Makes Logs Insights queries over `group` run forever (until stopped).
    pub fn hold_queries(&self, group: &str) {
        let (status, _) = http(self.port, "POST", "/__logs", &[("Content-Type", "application/json")], json!({ "hold_group": group }).to_string().as_bytes());
        assert_eq!(status, 200);
    }

    /// A log group whose streams hold these (stream, seconds ago, message) events.
    pub fn log_group(&self, group: &str, events: &[(&str, u64, &str)]) {
        self.logs("CreateLogGroup", json!({ "logGroupName": group }));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut streams: Vec<&str> = events.iter().map(|e| e.0).collect();
        streams.sort();
        streams.dedup();
        for stream in streams {
            self.logs("CreateLogStream", json!({ "logGroupName": group, "logStreamName": stream }));
            let mut mine: Vec<Value> = events
                .iter()
                .filter(|e| e.0 == stream)
                .map(|(_, ago, message)| json!({ "timestamp": now - ago * 1000, "message": message }))
                .collect();
            mine.sort_by_key(|e| e["timestamp"].as_u64());
            self.logs("PutLogEvents", json!({ "logGroupName": group, "logStreamName": stream, "logEvents": mine }));
        }
    }

    /// A CloudWatch Query call straight to moto; returns the XML.
    pub fn cloudwatch(&self, params: &[(&str, &str)]) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", "2010-08-01");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let (status, out) = http(
            self.moto,
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &auth("monitoring"))],
            form.finish().as_bytes(),
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(status, 200, "CloudWatch {params:?}: {text}");
        text
    }

    fn s3(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        http(self.moto, method, path, &[("Authorization", &auth("s3"))], body)
    }

    pub fn bucket(&self, name: &str) {
        let (status, out) = self.s3("PUT", &format!("/{name}"), b"");
        assert_eq!(status, 200, "CreateBucket {name}: {}", String::from_utf8_lossy(&out));
    }

    pub fn s3_get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, out) = self.s3("GET", &format!("/{bucket}/{key}"), b"");
        (status == 200).then_some(out)
    }

    pub fn s3_put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, out) = self.s3("PUT", &format!("/{bucket}/{key}"), body);
        assert_eq!(status, 200, "PutObject {key}: {}", String::from_utf8_lossy(&out));
    }

    /// Keys under a prefix.
    pub fn s3_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, out) = self.s3("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), b"");
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&out);
        text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect()
    }

    /// Makes the next `times` requests through the proxy that contain every `matches`
    /// string fail with `status` and error `code`.
    pub fn fault(&self, matches: &[&str], status: u16, code: &str, times: u32) {
        let rule = json!({ "match": matches, "status": status, "code": code, "times": times });
        let (s, _) = http(self.port, "POST", "/__faults", &[("Content-Type", "application/json")], rule.to_string().as_bytes());
        assert_eq!(s, 200);
    }

    /// How many times each rule with this first match string fired.
    pub fn faults_served(&self, first: &str) -> u64 {
        let (_, out) = http(self.port, "GET", "/__faults", &[], b"");
        let rules: Value = serde_json::from_slice(&out).unwrap();
        rules.as_array().unwrap().iter().filter(|r| r["match"][0] == first).map(|r| r["served"].as_u64().unwrap()).sum()
    }
}

/// The text of the first `<tag>…</tag>` in an XML answer.
pub fn xml_value(xml: &str, tag: &str) -> String {
    xml.split(&format!("<{tag}>")).nth(1).and_then(|r| r.split(&format!("</{tag}>")).next()).unwrap_or_else(|| panic!("no <{tag}> in {xml}")).to_string()
}
