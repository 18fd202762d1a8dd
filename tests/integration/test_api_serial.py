"""test_api_serial.py - PUT /serial: console output to a file, its byte rate
limiter (dropped bytes counted in uart.rate_limiter_dropped_bytes), and the
endpoint's errors and state rules."""
import json
import os
import time

from harness import check, test
from test_api import Ember, configure, counters


def start_and_finish(e, ctx, metrics_path=None):
    code, body = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
    check(code == 204, "InstanceStart: %d %r" % (code, body))
    rc = e.wait(timeout=20)
    check(rc == 0, "exit status %d\n%s" % (rc, e.log()))


@test("fast")
def test_api_serial_out_path(ctx):
    e = Ember(ctx)
    try:
        configure(e, ctx, args="")
        out = os.path.join(ctx.workdir, "serial.out")
        code, body = e.curl("PUT", "/serial", {"serial_out_path": out})
        check(code == 204, "PUT /serial: %d %r" % (code, body))
        start_and_finish(e, ctx)
        text = open(out, "rb").read().decode("utf-8", "replace")
        check("ember-test-guest: entry=" in text and "guest: done" in text,
              "the guest's report is not in serial_out_path: %r" % text[:500])
        check("ember-test-guest" not in e.console(), "the report also went to stdout")
    finally:
        e.kill()


@test("fast")
def test_api_serial_rate_limiter(ctx):
    e = Ember(ctx)
    try:
        configure(e, ctx, args="")
        out = os.path.join(ctx.workdir, "serial.out")
        metrics_path = os.path.join(ctx.workdir, "metrics.json")
        check(e.curl("PUT", "/metrics", {"metrics_path": metrics_path})[0] == 204, "PUT /metrics")
        # 64 bytes, refilled over 10 s: the ~400-byte report cannot all pass.
        code, body = e.curl("PUT", "/serial", {"serial_out_path": out,
                                               "rate_limiter": {"size": 64, "refill_time": 10000}})
        check(code == 204, "PUT /serial: %d %r" % (code, body))
        start_and_finish(e, ctx)
        text = open(out, "rb").read()
        check(0 < len(text) <= 80, "rate-limited output should be about 64 bytes, got %d" % len(text))
        lines = [json.loads(l) for l in open(metrics_path)]
        dropped = sum(l["uart"]["rate_limiter_dropped_bytes"] for l in lines)
        written = sum(l["uart"]["write_count"] for l in lines)
        check(dropped > 0 and dropped + len(text) == written,
              "dropped %d + kept %d != written %d" % (dropped, len(text), written))
    finally:
        e.kill()


@test("fast")
def test_api_serial_errors(ctx):
    e = Ember(ctx)
    try:
        configure(e, ctx, args="counter=0")
        for body, msg in [
            ({"serial_out_path": 3}, "serial.serial_out_path: expected a string"),
            ({"serial_out_path": "/tmp/x", "colour": 1}, "serial.colour: unknown field"),
            ({"rate_limiter": {"size": -1, "refill_time": 10}}, "serial.rate_limiter.size"),
            ({"rate_limiter": {"size": 10}}, "serial.rate_limiter.refill_time"),
            ("[1]", "must be a JSON object"),
        ]:
            code, r = e.curl("PUT", "/serial", body)
            check(code == 400 and msg in r["fault_message"], "PUT /serial %r: %d %r" % (body, code, r))
        code, r = e.curl("GET", "/serial")
        check(code == 400, "GET /serial: %d" % code)
        # A path that cannot be opened fails InstanceStart, naming the field.
        check(e.curl("PUT", "/serial", {"serial_out_path": ctx.workdir})[0] == 204, "PUT dir")
        code, r = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 400 and "serial.serial_out_path" in r["fault_message"],
              "InstanceStart with a directory as serial_out_path: %d %r" % (code, r))
        check(e.curl("PUT", "/serial", {})[0] == 204, "PUT /serial {} (stdout)")
        code, r = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 204, "InstanceStart after fixing /serial: %d %r" % (code, r))
        for _ in range(300):
            if counters(e.console()):
                break
            time.sleep(0.01)
        code, r = e.curl("PUT", "/serial", {})
        check(code == 400 and "serial" in r["fault_message"], "PUT /serial after start: %d %r" % (code, r))
    finally:
        e.kill()
