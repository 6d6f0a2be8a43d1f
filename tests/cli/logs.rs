//! CloudWatch Logs against moto: `FilterLogEvents` counts over a window (stream prefix,
//! filter pattern, regex, a bound on what is read) and Logs Insights queries (moto runs
//! `fields`, `sort` and `limit` only, so thresholds on a numeric field are tested on
//! messages that are numbers). Each test names its own log groups: the emulator is shared.

use crate::aws::{inventory, run, setup};
use crate::support::Run;

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn log_events_counted_over_a_window() {
    let Some((s, aws)) = setup() else { return };
    aws.log_group(
        "/ecs/prod/app-l1",
        &[
            ("team-a/api", 600, "INFO started"),
            ("team-a/api", 500, "ERROR db timeout after 5s"),
            ("team-a/api", 400, "INFO ok"),
            ("team-a/api", 300, "ERROR db timeout after 5s"),
            ("team-a/api", 200, "INFO ok"),
            ("team-a/worker", 100, "ERROR queue full"),
            ("team-b/api", 50, "ERROR something else"),
            ("team-a/api", 7200, "ERROR long ago"),
        ],
    );
    inventory(&s, aws, "    cloudwatch_logs: { groups: [/ecs/prod/app-l1] }\n");
    let r = run(
        &s,
        "  - { id: errors, cloudwatch.logs: { filter_pattern: ERROR, warn_above: 0 } }\n\
         \x20 - { id: team_a, cloudwatch.logs: { stream_prefix: team-a, filter_pattern: ERROR, fail_above: 2 }, on_failure: continue }\n\
         \x20 - { id: timeouts, cloudwatch.logs: { pattern: \"(?i)timeout\", fail_above: 5 } }\n\
         \x20 - { id: bounded, cloudwatch.logs: { pattern: ERROR, fail_above: 10, max_events: 3 } }\n\
         \x20 - { id: nope, cloudwatch.logs: { groups: [/nope/l1], fail_above: 0 }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "errors"), "warned", "{}", r.stdout);
    assert!(message(&r, "errors").starts_with("4 of 4 events in /ecs/prod/app-l1 in the last 1h match filter \"ERROR\", e.g. team-a/api: ERROR db timeout after 5s"), "{}", message(&r, "errors"));
    assert_eq!(status(&r, "team_a"), "failed");
    assert_eq!(r.step("team_a")["outputs"]["matches"], 3);
    assert_eq!(status(&r, "timeouts"), "passed");
    assert_eq!((r.step("timeouts")["outputs"]["matches"].as_u64(), r.step("timeouts")["outputs"]["lines"].as_u64()), (Some(2), Some(7)));
    // Stopped at the bound: a count that passes proves nothing, so it warns.
    assert_eq!(status(&r, "bounded"), "warned");
    assert_eq!(r.step("bounded")["outputs"]["truncated"], true);
    assert!(message(&r, "bounded").starts_with("at least 1 of 3 events"), "{}", message(&r, "bounded"));
    assert!(message(&r, "bounded").contains("(stopped reading at max_events: 3)"), "{}", message(&r, "bounded"));
    assert!(message(&r, "nope").starts_with("log group /nope/l1 does not exist [region us-east-1"), "{}", message(&r, "nope"));

    // A count without a threshold is refused before anything runs.
    let r = run(&s, "  - { id: x, cloudwatch.logs: { filter_pattern: ERROR } }\n", &[]);
    r.code(2);
    assert!(r.stderr.contains("give `warn_above` or `fail_above`: a count with no threshold checks nothing"), "{}", r.stderr);
}

#[test]
fn insights_queries_run_to_completion_and_are_judged() {
    let Some((s, aws)) = setup() else { return };
    aws.log_group("/ecs/prod/metrics-l2", &[("m", 300, "42"), ("m", 200, "7"), ("m", 100, "120"), ("m", 50, "not a number")]);
    aws.log_group("/ecs/prod/empty-l2", &[("m", 7200, "old")]);
    inventory(&s, aws, "    cloudwatch_logs: { groups: [/ecs/prod/metrics-l2] }\n");
    let r = run(
        &s,
        "  - { id: rows, cloudwatch.logs_query: { query: \"fields @timestamp, @message | sort @timestamp desc | limit 3\", warn_above: 2, poll: 100ms } }\n\
         \x20 - { id: value, cloudwatch.logs_query: { query: \"fields @message\", field: \"@message\", warn_above: 50, fail_above: 100, poll: 100ms }, on_failure: continue }\n\
         \x20 - { id: low, cloudwatch.logs_query: { query: \"fields @message\", field: \"@message\", fail_below: 1, poll: 100ms } }\n\
         \x20 - { id: empty, cloudwatch.logs_query: { query: \"fields @message\", groups: [/ecs/prod/empty-l2], field: \"@message\", fail_above: 1, poll: 100ms }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "rows"), "warned", "{}", r.stdout);
    assert!(message(&r, "rows").starts_with("the query returned 3 rows in "), "{}", message(&r, "rows"));
    assert_eq!(r.step("rows")["outputs"]["count"], 3);
    assert_eq!(r.step("rows")["outputs"]["rows"][0]["@message"], "not a number", "newest first: {}", r.stdout);
    assert!(r.step("rows")["outputs"]["rows"][0].get("@ptr").is_none());
    assert_eq!(status(&r, "value"), "failed");
    assert_eq!(message(&r, "value"), "4 rows; `@message` 120 at worst (1 rows without a number in `@message`)");
    assert_eq!(r.step("value")["threshold"], "warn > 50, fail > 100");
    assert_eq!(status(&r, "low"), "passed");
    assert_eq!(status(&r, "empty"), "failed");
    assert_eq!(message(&r, "empty"), "the query returned no rows (on_empty: fail)");
}

#[test]
fn an_insights_query_that_does_not_complete_is_stopped_at_its_timeout() {
    let Some((s, aws)) = setup() else { return };
    aws.log_group("/ecs/prod/slow-l3", &[("m", 60, "x")]);
    aws.hold_queries("/ecs/prod/slow-l3");
    inventory(&s, aws, "");
    let started = std::time::Instant::now();
    let r = run(&s, "  - { id: q, cloudwatch.logs_query: { query: \"fields @message\", groups: [/ecs/prod/slow-l3], fail_above: 1, timeout: 1s, poll: 200ms } }\n", &[]);
    r.code(1);
    assert_eq!(r.step("q")["error_class"], "timeout");
    assert!(message(&r, "q").starts_with("the Logs Insights query did not complete in 1s; it was stopped (query id "), "{}", message(&r, "q"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let r = run(&s, "  - { id: q, cloudwatch.logs_query: { query: \"fields @message\", groups: [/nope/l3], fail_above: 1 } }\n", &[]);
    r.code(1);
    assert!(message(&r, "q").starts_with("log group /nope/l3 does not exist"), "{}", message(&r, "q"));
}
