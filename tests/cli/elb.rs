//! Load balancer target health against moto (through the test proxy, which sets a target's
//! health on request: moto reports every registered target healthy). Each test names its own
//! target groups: the emulator is shared.

use crate::aws::{creds, inventory, run, setup};
use crate::support::Run;
use crate::support::aws::xml_value;

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn targets_healthy_unhealthy_draining_empty_and_missing() {
    let Some((s, aws)) = setup() else { return };
    let (vpc, subnets) = aws.vpc();
    let web = aws.target_group("web-tg", &vpc, &["10.0.1.10", "10.0.1.11", "10.0.1.12"]);
    aws.target_health("web-tg", "10.0.1.11", "unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [502]");
    aws.target_health("web-tg", "10.0.1.12", "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress");
    aws.target_group("down-tg", &vpc, &["10.0.2.5"]);
    aws.target_health("down-tg", "10.0.2.5", "unhealthy", "Target.Timeout", "Request timed out");
    aws.target_group("empty-tg", &vpc, &[]);
    aws.target_group("ok-tg", &vpc, &["10.0.1.20", "10.0.1.21"]);
    inventory(&s, aws, "    elb: { target_groups: [ok-tg] }\n");
    let r = run(
        &s,
        &format!(
            "  - {{ id: web, elb.targets: {{ target_groups: [web-tg] }} }}\n\
             \x20 - {{ id: strict, elb.targets: {{ target_groups: [\"{web}\"], min_healthy: 2 }}, on_failure: continue }}\n\
             \x20 - {{ id: down, elb.targets: {{ target_groups: [down-tg, ok-tg] }}, on_failure: continue }}\n\
             \x20 - {{ id: empty, elb.targets: {{ target_groups: [empty-tg] }}, on_failure: continue }}\n\
             \x20 - {{ id: empty_ok, elb.targets: {{ target_groups: [empty-tg], on_empty: pass }} }}\n\
             \x20 - {{ id: nope, elb.targets: {{ target_groups: [nope-tg] }}, on_failure: continue }}\n\
             \x20 - {{ id: default, elb.targets: {{}} }}\n"
        ),
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "web"), "warned", "{}", r.stdout);
    assert_eq!(
        message(&r, "web"),
        "web-tg: 1/3 healthy; not healthy: web-tg/10.0.1.11:8080 (unhealthy, Target.ResponseCodeMismatch: Health checks failed with these codes: [502]); web-tg/10.0.1.12:8080 (draining, Target.DeregistrationInProgress: Target deregistration is in progress)"
    );
    assert_eq!(r.step("web")["outputs"]["target_groups"]["web-tg"]["healthy"], 1);
    assert_eq!(r.step("web")["outputs"]["target_groups"]["web-tg"]["targets"][1]["reason"], "Target.ResponseCodeMismatch");
    assert_eq!(status(&r, "strict"), "failed");
    assert!(message(&r, "strict").starts_with("web-tg: 1/3 healthy, fewer than 2; not healthy: "), "{}", message(&r, "strict"));
    assert_eq!(status(&r, "down"), "failed");
    assert_eq!(message(&r, "down"), "down-tg: 0/1 healthy, fewer than 1; not healthy: down-tg/10.0.2.5:8080 (unhealthy, Target.Timeout: Request timed out)");
    assert_eq!(r.step("down")["outputs"]["healthy"], 2);
    assert_eq!(message(&r, "empty"), "empty-tg has no targets (on_empty: fail)");
    assert_eq!(status(&r, "empty_ok"), "passed");
    assert!(message(&r, "nope").starts_with("target group nope-tg does not exist [region us-east-1"), "{}", message(&r, "nope"));
    assert_eq!(message(&r, "default"), "2 targets healthy in 1 target group");

    // Every target group a load balancer's listeners forward to.
    let elb = |p: &[(&str, &str)]| aws.query("elasticloadbalancing", "2015-12-01", p);
    let lb = xml_value(&elb(&[("Action", "CreateLoadBalancer"), ("Name", "lb-a"), ("Subnets.member.1", &subnets[0]), ("Subnets.member.2", &subnets[1])]), "LoadBalancerArn");
    elb(&[
        ("Action", "CreateListener"),
        ("LoadBalancerArn", &lb),
        ("Protocol", "HTTP"),
        ("Port", "80"),
        ("DefaultActions.member.1.Type", "forward"),
        ("DefaultActions.member.1.TargetGroupArn", &web),
    ]);
    let r = run(&s, "  - { id: lb, elb.targets: { load_balancer: lb-a } }\n  - { id: nolb, elb.targets: { load_balancer: lb-none } }\n", &[]);
    r.code(1);
    assert_eq!(status(&r, "lb"), "warned");
    assert!(message(&r, "lb").starts_with("web-tg: 1/3 healthy; not healthy: "), "{}", message(&r, "lb"));
    assert!(message(&r, "nolb").starts_with("load balancer lb-none does not exist [region us-east-1"), "{}", message(&r, "nolb"));
}

#[test]
fn check_covers_the_target_groups_of_instances_that_have_them() {
    let Some((s, aws)) = setup() else { return };
    let (vpc, _) = aws.vpc();
    aws.target_group("chk-tg", &vpc, &["10.0.3.1"]);
    aws.target_health("chk-tg", "10.0.3.1", "unhealthy", "Target.FailedHealthChecks", "Health checks failed");
    inventory(&s, aws, "    elb: { target_groups: [chk-tg] }\n");
    let r = creds(s.opsctl()).args(["check", "-i", "a", "-o", "json"]).run();
    r.code(1);
    assert_eq!(message(&r, "elb"), "chk-tg: 0/1 healthy, fewer than 1; not healthy: chk-tg/10.0.3.1:8080 (unhealthy, Target.FailedHealthChecks: Health checks failed)");
}
