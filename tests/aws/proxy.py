"""moto's server behind a small proxy, for opsctl's AWS tests and benchmarks.

One process: moto's server (in a thread, on a free loopback port) and, in front of it, a
proxy on another free loopback port that

1. passes every request through to moto unchanged, except
2. CloudWatch requests in Smithy RPCv2-CBOR (what aws-sdk-cloudwatch speaks since 1.100,
   `POST /service/GraniteServiceVersion20100801/operation/<Op>`), which moto does not
   serve (getmoto/moto#9195): the CBOR body is decoded (cbor2), re-encoded as the Query
   protocol moto serves, with botocore's serializer and CloudWatch service model; moto's
   XML answer is parsed with botocore's Query parser and encoded back to CBOR (timestamps
   as tag 1, errors as `{"__type": …, "message": …}`), and
3. answers with injected faults when a test asks for them: `POST /__faults` with
   `{"match": ["DynamoDB_20120810.Scan", "users"], "status": 400, "code": "ProvisionedThroughputExceededException",
   "times": 3}` makes the next 3 requests whose "METHOD PATH TARGET BODY" contains every
   match string fail that way (a DynamoDB-style JSON error, an S3/Query-style XML one or a CBOR one,
   as the service speaks); `DELETE /__faults` clears them; `GET /__faults` tells how many
   were served;
4. makes ECS services behave like a cluster with capacity: moto never starts a service's
   tasks (its `runningCount` stays 0 and its rollout `IN_PROGRESS`), so after moto has
   handled CreateService or UpdateService, the service's deployment is completed at once
   (running = desired, one PRIMARY deployment, COMPLETED, on the service's task definition),
   unless a test holds the service; and `POST /__ecs` sets what a test needs that moto
   cannot produce: `{"op": "service", "cluster", "service", "running", "pending",
   "rollout", "reason", "deployments", "hold"}` sets a service's counts and rollout (and
   `hold: true` stops the completion above), `{"op": "failing_image", "image", "reason"}`
   makes every later rollout to a task definition with that image fail as the deployment
   circuit breaker fails it (no task starts), `{"op": "stopped", "cluster", "service",
   "task_definition", "reason", "stop_code", "exit_code", "container_reason",
   "age_seconds"}` adds a task of the service that stopped that long ago. moto runs in this
   process, so these set its state directly;
5. lets a test set a load balancer target's health, which moto always reports healthy for a
   registered target: `POST /__elb` with `{"target_group", "target", "state", "reason",
   "description"}` (moto's own answer is patched for that target only);
6. answers RDS's DescribePendingMaintenanceActions, which moto does not implement, with the
   actions a test set (`POST /__rds` with `{"op": "maintenance", "instance", "action",
   "description", "auto_applied_after"}`; none by default), and makes a snapshot as old as a
   test says (`{"op": "snapshot_age", "snapshot", "age_seconds"}`), and keeps DB instances
   whose identifier starts with a prefix `creating` (`{"op": "hold", "prefix"}`: moto makes a
   restored instance available at once);
7. keeps Logs Insights queries running: moto completes every query at once, so after
   `POST /__logs` with `{"hold_group": NAME}`, a query over that log group answers
   `Running` (with no results) until it is stopped.

It prints `READY <proxy port> <moto port>` on stdout once both listen, and exits when its
standard input closes (so it dies with the test process that started it).

Test fixture only: never shipped with opsctl.
"""

import http.client
import json
import os
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.parsers
import botocore.serialize
import botocore.session
import cbor2
from moto.server import ThreadedMotoServer

ELB_HEALTH = {}  # (target group name, target id) -> (state, reason, description)


def patch_elb():
    """Target health as a test sets it, else moto's."""
    from moto.elbv2 import models

    original = models.FakeTargetGroup.health_for

    def health_for(self, target, ec2_backend):
        o = ELB_HEALTH.get((self.name, target["Id"]))
        if o is None:
            return original(self, target, ec2_backend)
        t = self.targets.get(target["Id"], target)
        return models.FakeHealthStatus(target["Id"], t.get("Port", self.port), self.health_check_port, *o)

    models.FakeTargetGroup.health_for = health_for


RDS_MAINTENANCE = []  # (instance, action, description, auto_applied_after)
RDS_HELD = []  # identifier prefixes of DB instances kept `creating`
LOGS_HELD_GROUPS = set()
LOGS_HELD_QUERIES = set()

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
ECS_HELD = set()  # (cluster, service) pairs a test holds
ECS_FAILING = {}  # image → the circuit breaker's reason: its tasks never start
ECS_LOCK = threading.Lock()

CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
CLOUDWATCH = botocore.session.get_session().get_service_model("cloudwatch")
QUERY_SERIALIZER = botocore.serialize.create_serializer("query")
QUERY_PARSER = botocore.parsers.create_parser("query")

FAULTS = []  # dicts: match, status, code, message, times, served
FAULTS_LOCK = threading.Lock()
MOTO_PORT = 0


def take_fault(what):
    with FAULTS_LOCK:
        for f in FAULTS:
            wanted = f["match"] if isinstance(f["match"], list) else [f["match"]]
            if all(m in what for m in wanted) and f["served"] < f["times"]:
                f["served"] += 1
                return dict(f)
    return None


def strip_none(v):
    if isinstance(v, dict):
        return {k: strip_none(x) for k, x in v.items() if x is not None and k != "ResponseMetadata"}
    if isinstance(v, list):
        return [strip_none(x) for x in v]
    return v


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def moto(self, method, path, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", MOTO_PORT, timeout=120)
        hdrs = {k: v for k, v in headers.items() if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        if body or method in ("POST", "PUT"):
            hdrs["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        out = (r.status, r.getheaders(), data)
        conn.close()
        return out

    def control(self, body):
        if self.command == "POST":
            rule = json.loads(body or b"{}")
            rule.setdefault("status", 400)
            rule.setdefault("code", "ThrottlingException")
            rule.setdefault("message", "injected by the test proxy")
            rule.setdefault("times", 1)
            rule["served"] = 0
            with FAULTS_LOCK:
                FAULTS.append(rule)
        elif self.command == "DELETE":
            with FAULTS_LOCK:
                FAULTS.clear()
        with FAULTS_LOCK:
            state = [{"match": f["match"], "served": f["served"], "times": f["times"]} for f in FAULTS]
        self.reply(200, [("Content-Type", "application/json")], json.dumps(state).encode())

    def fault(self, f, cbor, target):
        if cbor:
            body = cbor2.dumps({"__type": "com.amazonaws.cloudwatch#" + f["code"], "message": f["message"]})
            headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        elif target:
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#" + f["code"], "message": f["message"]}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", f["code"])]
        else:
            body = (
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message><RequestId>x</RequestId></Error>"
                % (f["code"], f["message"])
            ).encode()
            headers = [("Content-Type", "application/xml")]
        self.reply(int(f["status"]), headers, body)

    def cloudwatch(self, op_name, body):
        op = CLOUDWATCH.operation_model(op_name)
        params = cbor2.loads(body) if body else {}
        req = QUERY_SERIALIZER.serialize_to_request(params, op)
        form = urllib.parse.urlencode(req["body"]).encode()
        if os.environ.get("PROXY_DEBUG"):
            sys.stderr.write("%r -> %r\n" % (params, form))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-type", "smithy-protocol", "accept")}
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        status, _, data = self.moto("POST", "/", headers, form)
        parsed = QUERY_PARSER.parse({"status_code": status, "headers": {}, "body": data}, op.output_shape)
        out_headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        if status >= 300:
            err = parsed.get("Error", {})
            shape = CLOUDWATCH.shape_for_error_code(err.get("Code", "")) if hasattr(CLOUDWATCH, "shape_for_error_code") else None
            code = shape.name if shape is not None else err.get("Code", "InternalFailure")
            doc = {"__type": "com.amazonaws.cloudwatch#" + code, "message": err.get("Message", "")}
            self.reply(status, out_headers, cbor2.dumps(doc))
            return
        self.reply(200, out_headers, cbor2.dumps(strip_none(parsed), datetime_as_timestamp=True, timezone=None))

    def ecs_control(self, body):
        import datetime
        from moto.ecs.models import Task, ecs_backends

        req = json.loads(body or b"{}")
        backend = ecs_backends["123456789012"][req.get("region", "us-east-1")]
        cluster = req.get("cluster", "default")
        with ECS_LOCK:
            if req["op"] == "service":
                svc = backend.services["%s:%s" % (cluster, req["service"])]
                if req.get("hold") is not None:
                    (ECS_HELD.add if req["hold"] else ECS_HELD.discard)((cluster, req["service"]))
                if "running" in req:
                    svc.running_count = req["running"]
                if "pending" in req:
                    svc.pending_count = req["pending"]
                dep = svc.deployments[0]
                dep["runningCount"], dep["pendingCount"] = svc.running_count, svc.pending_count
                if "rollout" in req:
                    dep["rolloutState"] = req["rollout"]
                    dep["rolloutStateReason"] = req.get("reason", "")
                n = req.get("deployments", 1)
                svc.deployments = [dep] + [dict(dep, status="ACTIVE", id="ecs-svc/old%d" % i) for i in range(1, n)]
            elif req["op"] == "failing_image":
                ECS_FAILING[req["image"]] = req.get("reason", "ECS deployment circuit breaker: tasks failed to start.")
            elif req["op"] == "stopped":
                td = backend.describe_task_definition(req["task_definition"])
                task = Task(backend.clusters[cluster], td, None, None, backend, group="service:" + req["service"], launch_type="EC2", started_by="ecs-svc/1")
                task.last_status = task.desired_status = "STOPPED"
                task.stopped_reason = req.get("reason", "")
                task.stop_code = req.get("stop_code", "EssentialContainerExited")
                task.stopped_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=req.get("age_seconds", 60))
                task.containers[0].exitCode = req.get("exit_code", 1)
                if req.get("container_reason"):
                    task.containers[0].reason = req["container_reason"]
                backend.tasks.setdefault(cluster, {})[task.task_arn] = task
        self.reply(200, [("Content-Type", "application/json")], b"{}")

    def rds_control(self, body):
        import datetime
        from moto.rds.models import rds_backends

        req = json.loads(body or b"{}")
        if req["op"] == "maintenance":
            RDS_MAINTENANCE.append((req["instance"], req["action"], req.get("description", ""), req.get("auto_applied_after", "")))
        elif req["op"] == "hold":
            RDS_HELD.append(req["prefix"])
        elif req["op"] == "snapshot_age":
            snap = rds_backends["123456789012"][req.get("region", "us-east-1")].database_snapshots[req["snapshot"]]
            snap.created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=req["age_seconds"])
        self.reply(200, [("Content-Type", "application/json")], b"{}")

    def rds_maintenance(self):
        from xml.sax.saxutils import escape

        items = "".join(
            "<ResourcePendingMaintenanceActions><ResourceIdentifier>arn:aws:rds:us-east-1:123456789012:db:%s</ResourceIdentifier>"
            "<PendingMaintenanceActionDetails><PendingMaintenanceAction><Action>%s</Action><Description>%s</Description>%s"
            "</PendingMaintenanceAction></PendingMaintenanceActionDetails></ResourcePendingMaintenanceActions>"
            % (escape(i), escape(a), escape(d), "<AutoAppliedAfterDate>%s</AutoAppliedAfterDate>" % escape(t) if t else "")
            for i, a, d, t in RDS_MAINTENANCE
        )
        xml = (
            '<DescribePendingMaintenanceActionsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
            "<DescribePendingMaintenanceActionsResult><PendingMaintenanceActions>%s</PendingMaintenanceActions>"
            "</DescribePendingMaintenanceActionsResult><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata>"
            "</DescribePendingMaintenanceActionsResponse>" % items
        )
        self.reply(200, [("Content-Type", "text/xml")], xml.encode())

    def ecs_settle(self, target, body, status):
        """After CreateService/UpdateService: complete the deployment, as a cluster with
        capacity would (moto never starts tasks)."""
        op = target[len(ECS_TARGET):]
        if status != 200 or op not in ("CreateService", "UpdateService"):
            return
        from moto.ecs.models import ecs_backends

        req = json.loads(body or b"{}")
        cluster = req.get("cluster", "default").split("/")[-1]
        name = (req.get("serviceName") or req.get("service", "")).split("/")[-1]
        region = self.headers.get("Authorization", "").split("/")[2] if "/" in self.headers.get("Authorization", "") else "us-east-1"
        with ECS_LOCK:
            if (cluster, name) in ECS_HELD:
                return
            svc = ecs_backends["123456789012"][region].services.get("%s:%s" % (cluster, name))
            if svc is None or not svc.deployments:
                return
            td = svc.task_definition
            tdobj = td if hasattr(td, "arn") else ecs_backends["123456789012"][region].describe_task_definition(td)
            arn = tdobj.arn
            images = [c.get("image") for c in getattr(tdobj, "container_definitions", None) or []]
            bad = next((ECS_FAILING[i] for i in images if i in ECS_FAILING), None)
            if bad:
                # Its tasks never start: the circuit breaker fails the rollout.
                svc.running_count, svc.pending_count = 0, 0
                svc.deployments = [dict(svc.deployments[0], status="PRIMARY", taskDefinition=arn, desiredCount=svc.desired_count,
                                        runningCount=0, pendingCount=0, rolloutState="FAILED", rolloutStateReason=bad)]
                return
            svc.running_count, svc.pending_count = svc.desired_count, 0
            dep = dict(svc.deployments[0], status="PRIMARY", taskDefinition=arn, desiredCount=svc.desired_count,
                       runningCount=svc.desired_count, pendingCount=0, rolloutState="COMPLETED",
                       rolloutStateReason="ECS deployment %s completed." % svc.deployments[0]["id"])
            svc.deployments = [dep]

    def handle_any(self):
        body = self.body()
        path = self.path
        if path.startswith("/__faults"):
            return self.control(body)
        if path.startswith("/__ecs"):
            return self.ecs_control(body)
        if path.startswith("/__rds"):
            return self.rds_control(body)
        if "Action=DescribePendingMaintenanceActions" in body.decode("utf-8", "replace"):
            return self.rds_maintenance()
        if path.startswith("/__logs"):
            LOGS_HELD_GROUPS.add(json.loads(body or b"{}")["hold_group"])
            return self.reply(200, [("Content-Type", "application/json")], b"{}")
        if path.startswith("/__elb"):
            req = json.loads(body or b"{}")
            ELB_HEALTH[(req["target_group"], req["target"])] = (req["state"], req.get("reason"), req.get("description"))
            return self.reply(200, [("Content-Type", "application/json")], b"{}")
        target = self.headers.get("X-Amz-Target", "")
        cbor = path.startswith(CBOR_PREFIX)
        shown = body[:4096]
        if cbor and body:
            shown = json.dumps(cbor2.loads(body), default=str).encode()
        f = take_fault("%s %s %s %s" % (self.command, path, target, shown.decode("utf-8", "replace")))
        if f:
            return self.fault(f, cbor, target)
        if cbor:
            return self.cloudwatch(path[len(CBOR_PREFIX):].split("?")[0], body)
        status, headers, data = self.moto(self.command, path, dict(self.headers.items()), body)
        if target.startswith(ECS_TARGET):
            self.ecs_settle(target, body, status)
        if RDS_HELD and b"Action=DescribeDBInstances" in body:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            ident = form.get("DBInstanceIdentifier", [""])[0]
            if ident and any(ident.startswith(p) for p in RDS_HELD):
                data = data.replace(b"<DBInstanceStatus>available</DBInstanceStatus>", b"<DBInstanceStatus>creating</DBInstanceStatus>")
        if target == "Logs_20140328.StartQuery" and status == 200:
            if set(json.loads(body).get("logGroupNames", [])) & LOGS_HELD_GROUPS:
                LOGS_HELD_QUERIES.add(json.loads(data)["queryId"])
        elif target == "Logs_20140328.GetQueryResults" and status == 200 and json.loads(body).get("queryId") in LOGS_HELD_QUERIES:
            answer = json.loads(data)
            answer["status"], answer["results"] = "Running", []
            data = json.dumps(answer).encode()
        self.reply(status, headers, data)

    def handle_safely(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            # The client went away first (opsctl drops a call when another one of the same
            # step failed): nobody is left to answer.
            self.close_connection = True
        except Exception:  # a proxy bug must show in the test, not as a closed connection
            text = traceback.format_exc()
            sys.stderr.write(text)
            self.reply(500, [("Content-Type", "text/plain")], ("test proxy error: " + text).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_safely


def main():
    global MOTO_PORT
    patch_elb()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    MOTO_PORT = moto.get_host_and_port()[1]
    proxy = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PROXY_PORT", "0"))), Handler)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    print("READY %d %d" % (proxy.server_address[1], MOTO_PORT), flush=True)
    # Live as long as whoever started us.
    sys.stdin.read()
    proxy.shutdown()
    moto.stop()


if __name__ == "__main__":
    main()
