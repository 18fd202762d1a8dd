"""test_lifecycle_races.py - pause and resume racing the ways a VM ends.

Each round starts Ember with the API on the test guest and fires PATCH /vm Paused/Resumed from a
second thread as fast as answers come, while the VM ends one of four ways: the guest resets (its
normal exit after a few counter lines), the guest triple-faults (`fault=triple`), the API sends
Ctrl-Alt-Del (which the test guest ignores, so a SIGTERM ends that round), or Ember gets SIGTERM.
The guest's run is cut at a different point each round (counter=0..19, ~10 ms a line). Every
request must be answered within its deadline, and Ember must exit within its own with the status
that ending gives: 0, or 3 for the triple fault. A vCPU thread that leaves its loop while a pause
waits for it to park used to hang the main thread here (vm_pause waited forever).
"""
import os
import random
import signal
import subprocess
import threading
import time

from harness import check, test
from test_api import Ember

ROUNDS = 48
ANSWER_S = 10  # every API request
EXIT_S = 20    # every round's Ember process


def request(e, method, path, body):
    data = ("%s %s HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        method, path, len(body), body)).encode()
    resp = e.raw(data, timeout=ANSWER_S)
    return resp.split(b" ", 2)[1] if resp.startswith(b"HTTP/1.1 ") else b"none"


class Pauser(threading.Thread):
    """PATCH /vm Paused and Resumed in turn until told to stop or Ember is gone."""

    def __init__(self, e):
        super().__init__(daemon=True)
        self.e, self.stop, self.codes, self.error = e, threading.Event(), [], None

    def run(self):
        state = "Paused"
        while not self.stop.is_set() and self.e.proc.poll() is None:
            t0 = time.monotonic()
            try:
                code = request(self.e, "PATCH", "/vm", '{"state": "%s"}' % state)
            except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError,
                    BrokenPipeError):
                break  # the socket went away with the process
            except OSError as err:  # a timeout: the request went unanswered
                if self.e.proc.poll() is None:
                    self.error = "PATCH /vm %s: no answer within %d s (%s)" % (state, ANSWER_S, err)
                break
            if time.monotonic() - t0 > ANSWER_S:
                self.error = "PATCH /vm %s took %.1f s" % (state, time.monotonic() - t0)
                break
            self.codes.append(code)
            state = "Resumed" if state == "Paused" else "Paused"


def one_round(ctx, rnd, ending):
    e = Ember(ctx)
    try:
        args = "quiet smp=0 counter=%d" % random.Random(rnd).randrange(0, 20)
        if ending == "triple":
            args += " fault=triple"
        elif ending in ("ctrl-alt-del", "sigterm"):
            args = "quiet smp=0 counter=0"  # runs until the test ends it
        code, _ = e.curl("PUT", "/boot-source", {"kernel_image_path": ctx.guest("guest-pvh.elf"),
                                                 "boot_args": args})
        check(code == 204, "round %d: PUT /boot-source %d" % (rnd, code))
        code, _ = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 204, "round %d: InstanceStart %d" % (rnd, code))
        p = Pauser(e)
        p.start()
        if ending in ("ctrl-alt-del", "sigterm"):
            time.sleep(random.Random(rnd).uniform(0, 0.2))  # where in the pause cycle it lands
            if ending == "ctrl-alt-del":
                code = request(e, "PUT", "/actions", '{"action_type": "SendCtrlAltDel"}')
                check(code in (b"204", b"400"), "round %d: SendCtrlAltDel answered %r" % (rnd, code))
            e.proc.send_signal(signal.SIGTERM)
        try:
            rc = e.proc.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError("round %d (%s): Ember still running after %d s (requests so far: "
                                 "%s)\n%s" % (rnd, ending, EXIT_S, p.codes[-10:], e.log()[-2000:]))
        p.stop.set()
        p.join(ANSWER_S + 5)
        check(not p.is_alive(), "round %d (%s): the pausing thread is stuck" % (rnd, ending))
        check(p.error is None, "round %d (%s): %s\n%s" % (rnd, ending, p.error, e.log()[-2000:]))
        want = 3 if ending == "triple" else 0
        check(rc == want, "round %d (%s): exit status %s, want %d\n%s" % (
            rnd, ending, rc, want, e.log()[-2000:]))
        return len(p.codes)
    finally:
        e.kill()


@test("fast", timeout=900)
def test_pause_resume_race_the_vm_ending(ctx):
    endings = ["reset", "triple", "ctrl-alt-del", "sigterm"]
    answered = 0
    for rnd in range(ROUNDS):
        answered += one_round(ctx, rnd, endings[rnd % len(endings)])
    check(answered > ROUNDS, "only %d pause/resume requests were answered in %d rounds" % (
        answered, ROUNDS))
    print("     (%d rounds, %d pause/resume requests answered)" % (ROUNDS, answered), flush=True)
