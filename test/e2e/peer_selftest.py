#!/usr/bin/python3
"""Self-test of test/e2e/peer.py against a real Prosody.

Runs several peer processes (alice, bob on two devices, carol, dave, erin and
plain-XMPP clients) on a throwaway Prosody and checks what they report:
session set-up with prekey messages, key transport, a second device of one
account, carbons, a restart that keeps sessions, plain messages, the
fallback body, bad commands and bad OMEMO input, the precondition-not-met
path when publishing, manual trust and a fixed device id.

    /usr/bin/python3 test/e2e/peer_selftest.py [-v] [--keep]

Prints one line per check and "N passed, N failed"; exit status 1 on failure.
Peer stderr and the Prosody log end up in a temporary folder named at the end
when something failed (or always with --keep).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from prosody import Prosody  # noqa: E402

PEER = os.path.join(HERE, "peer.py")
PYTHON = "/usr/bin/python3"
VERBOSE = "-v" in sys.argv
KEEP = "--keep" in sys.argv


class PeerProc:
    """One peer process: commands in, JSON events out, events kept so a test
    can wait for one in any order."""

    def __init__(self, name, account, state, workdir, *extra):
        self.name = name
        self.account = account
        self.state = state
        self.workdir = workdir
        self.extra = list(extra)
        self.events = []
        self.consumed = set()
        self.gen = 0
        self.cv = threading.Condition()
        self.proc = None
        self.ready = None
        self.started = None

    def start(self):
        # Events of an earlier run stay (for the final error sweep), but
        # expect() looks only at this run's.
        with self.cv:
            self.gen = len(self.events)
        self.started = time.monotonic()
        err = open(os.path.join(self.workdir, f"{self.name}.stderr"), "ab")
        self.proc = subprocess.Popen(
            [PYTHON, PEER, "--jid", self.account.jid, "--password", self.account.password,
             "--host", "127.0.0.1", "--port", str(self.account.port), "--state", self.state] + self.extra,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        err.close()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc):
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "bad-json", "line": line.decode(errors="replace")}
            event["_t"] = time.monotonic()
            if VERBOSE:
                shown = {k: v for k, v in event.items() if k not in ("raw", "_t")}
                print(f"    [{self.name}] {json.dumps(shown)}", flush=True)
            with self.cv:
                self.events.append(event)
                self.cv.notify_all()
        with self.cv:
            self.events.append({"event": "_eof", "_t": time.monotonic()})
            self.cv.notify_all()

    def cmd(self, line):
        if VERBOSE:
            print(f"    [{self.name}] < {line}", flush=True)
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, pred, timeout=10.0):
        """The first unconsumed event matching pred (a dict of wanted fields or
        a function), or None after timeout."""
        if isinstance(pred, dict):
            wanted = pred
            pred = lambda e: all(e.get(k) == v for k, v in wanted.items())  # noqa: E731
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(self.gen, len(self.events)):
                    event = self.events[i]
                    if i not in self.consumed and pred(event):
                        self.consumed.add(i)
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def unconsumed(self, kind):
        with self.cv:
            return [e for i, e in enumerate(self.events) if i not in self.consumed and e.get("event") == kind]

    def wait_ready(self, timeout=15.0):
        self.ready = self.expect(lambda e: e["event"] in ("ready", "_eof") or
                                 (e["event"] == "error" and "start-up" in e.get("text", "")), timeout)
        if self.ready is not None and self.ready["event"] != "ready":
            self.ready = None
        return self.ready

    def quit(self, timeout=10.0):
        try:
            self.cmd("quit")
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + str(detail) if detail else ''}", flush=True)
        return ok


def brief(event):
    if event is None:
        return None
    return {k: v for k, v in event.items() if k not in ("raw", "_t")}


def run(r, server, work):
    accounts = {u: server.register(u) for u in ("alice", "bob", "carol", "dave", "erin", "frank")}
    peers = []

    def peer(name, user, state_name=None, *extra):
        p = PeerProc(name, accounts[user], os.path.join(work, state_name or name), work, *extra)
        peers.append(p)
        return p

    try:
        # -- two users come up ------------------------------------------------
        alice = peer("alice", "alice").start()
        bob = peer("bob", "bob").start()
        ra, rb = alice.wait_ready(), bob.wait_ready()
        if not r.check("alice and bob become ready", ra and rb, (brief(ra), brief(rb))):
            return
        print(f"     first start: alice {ra['startup_ms']} ms, bob {rb['startup_ms']} ms "
              f"(wall {round((ra['_t'] - alice.started) * 1000)} / {round((rb['_t'] - bob.started) * 1000)} ms)")
        a_id, b_id = ra["device_id"], rb["device_id"]
        r.check("first run publishes own device list", ra["first_run"] and ra["devices"] == [a_id]
                and rb["devices"] == [b_id], (brief(ra), brief(rb)))
        r.check("fingerprint is 64 hex digits", len(ra["fingerprint"]) == 64
                and all(c in "0123456789abcdef" for c in ra["fingerprint"]), ra["fingerprint"])

        # -- mutual subscription (auto-accepted both ways) ---------------------
        alice.cmd("subscribe bob@localhost")
        got_sub = alice.expect({"event": "subscription", "jid": "bob@localhost", "type": "subscribed"})
        got_back = alice.expect({"event": "subscription", "jid": "bob@localhost", "type": "subscribe"})
        r.check("subscription is accepted and returned", got_sub and got_back, (got_sub, got_back))
        # bob's subscribed presence reaches alice after his own request; wait
        # until bob has seen alice's answer so PEP notifications flow both ways.
        bob.expect({"event": "subscription", "jid": "alice@localhost", "type": "subscribed"}, 5)

        # -- alice -> bob: prekey message, key transport back -----------------
        t = time.monotonic()
        alice.cmd("send bob@localhost hello bob, first message")
        sent = alice.expect({"event": "sent", "to": "bob@localhost"})
        got = bob.expect({"event": "message", "from": "alice@localhost"})
        r.check("alice encrypts for bob's only device with a prekey",
                sent and sent["devices"] == [b_id] and sent["prekey_devices"] == [b_id], brief(sent))
        r.check("bob decrypts alice's first message (prekey)",
                got and got["text"] == "hello bob, first message" and got["encrypted"] is True
                and got["prekey"] is True and got["sender_device"] == a_id, brief(got))
        if got:
            print(f"     first message latency {round((got['_t'] - t) * 1000)} ms")
            r.check("the stanza carries store hint, EME and a fallback body",
                    "urn:xmpp:hints" in got["raw"] and "urn:xmpp:eme:0" in got["raw"] and "<body>" in got["raw"]
                    and "first message" not in got["raw"], got["raw"][:300])
        kt = alice.expect({"event": "key-transport", "from": "bob@localhost"})
        r.check("bob's key transport completes alice's session", kt and kt["sender_device"] == b_id, brief(kt))

        # -- bob -> alice ------------------------------------------------------
        t = time.monotonic()
        bob.cmd("send alice@localhost hi alice, bob here")
        sent = bob.expect({"event": "sent", "to": "alice@localhost"})
        got = alice.expect({"event": "message", "from": "bob@localhost"})
        r.check("bob's reply needs no prekey (his session is the passive one)",
                sent and sent["devices"] == [a_id] and sent["prekey_devices"] == [], brief(sent))
        r.check("alice decrypts bob's reply (no prekey)",
                got and got["text"] == "hi alice, bob here" and got["prekey"] is False
                and got["sender_device"] == b_id, brief(got))
        if got:
            print(f"     reply latency {round((got['_t'] - t) * 1000)} ms")
        alice.cmd("send bob@localhost second from alice")
        sent = alice.expect({"event": "sent", "to": "bob@localhost"})
        got = bob.expect({"event": "message", "from": "alice@localhost"})
        r.check("alice's next message is no longer a prekey message",
                sent and sent["prekey_devices"] == [] and got and got["prekey"] is False
                and got["text"] == "second from alice", (brief(sent), brief(got)))

        # -- a second device of bob ----------------------------------------------
        bob2 = peer("bob2", "bob").start()
        rb2 = bob2.wait_ready()
        if not r.check("bob's second device becomes ready", rb2, brief(rb2)):
            return
        b2_id = rb2["device_id"]
        r.check("both bob devices are on the published list",
                b2_id != b_id and rb2["devices"] == sorted([b_id, b2_id]), brief(rb2))
        note = alice.expect(lambda e: e["event"] == "devicelist" and e["jid"] == "bob@localhost"
                            and e["devices"] == sorted([b_id, b2_id]))
        r.check("alice hears of bob's new device by PEP notification", note, alice.unconsumed("devicelist"))
        note = bob.expect(lambda e: e["event"] == "devicelist" and e["jid"] == "bob@localhost"
                          and e["devices"] == sorted([b_id, b2_id]))
        r.check("bob's first device hears of the second", note, bob.unconsumed("devicelist"))
        alice.cmd("refresh bob@localhost")
        devs = alice.expect({"event": "devices", "jid": "bob@localhost"})
        r.check("refresh lists both devices with fingerprints",
                devs and devs["devices"] == sorted([b_id, b2_id]) and len(devs["fingerprints"]) == 2
                and devs["fingerprints"][str(b2_id)] == rb2["fingerprint"], brief(devs))

        t = time.monotonic()
        alice.cmd("send bob@localhost to both of bob's devices")
        sent = alice.expect({"event": "sent", "to": "bob@localhost"})
        g1 = bob.expect({"event": "message", "from": "alice@localhost"})
        g2 = bob2.expect({"event": "message", "from": "alice@localhost"})
        r.check("alice encrypts for both bob devices, prekey only for the new one",
                sent and sent["devices"] == sorted([b_id, b2_id]) and sent["prekey_devices"] == [b2_id],
                brief(sent))
        r.check("bob's first device decrypts (existing session)",
                g1 and g1["text"] == "to both of bob's devices" and g1["prekey"] is False, brief(g1))
        r.check("bob's second device decrypts (new session)",
                g2 and g2["text"] == "to both of bob's devices" and g2["prekey"] is True, brief(g2))
        if g1 and g2:
            print(f"     fan-out latency {round((max(g1['_t'], g2['_t']) - t) * 1000)} ms")
        alice.expect({"event": "key-transport", "from": "bob@localhost", "sender_device": b2_id}, 5)

        # -- carbons between bob's devices ----------------------------------------
        bob.cmd("send alice@localhost bob1 writes, bob2 reads the carbon")
        sent = bob.expect({"event": "sent", "to": "alice@localhost"})
        got = alice.expect({"event": "message", "from": "bob@localhost"})
        carbon = bob2.expect({"event": "message", "carbon": "sent"})
        r.check("bob encrypts for his other device too", sent and sent["own_devices"] == [b2_id], brief(sent))
        r.check("alice decrypts bob's message", got and got["text"] == "bob1 writes, bob2 reads the carbon",
                brief(got))
        r.check("bob2 decrypts the sent carbon", carbon and carbon["text"] == "bob1 writes, bob2 reads the carbon"
                and carbon["to"] == "alice@localhost" and carbon["from"] == "bob@localhost"
                and carbon["prekey"] is True, brief(carbon))
        kt = bob.expect({"event": "key-transport", "sender_device": b2_id, "for_us": True})
        r.check("bob2's key transport reaches bob", kt, bob.unconsumed("decrypt-error"))
        dup = bob.expect({"event": "duplicate", "sender_device": b2_id}, 1)
        r.check("no second copy of bob2's key transport is processed", not dup, brief(dup))

        # -- restart keeps identity and sessions ------------------------------------
        code = bob.quit()
        r.check("bob quits cleanly", code == 0 and bob.expect({"event": "disconnected"}, 1), code)
        bob.start()
        rb = bob.wait_ready()
        if not r.check("bob restarts with the same device", rb and rb["device_id"] == b_id
                       and rb["first_run"] is False, brief(rb)):
            return
        print(f"     restart: bob {rb['startup_ms']} ms (wall {round((rb['_t'] - bob.started) * 1000)} ms)")
        alice.cmd("send bob@localhost after bob's restart")
        sent = alice.expect({"event": "sent", "to": "bob@localhost"})
        got = bob.expect({"event": "message", "from": "alice@localhost"})
        r.check("no new prekey message after the restart", sent and sent["prekey_devices"] == [], brief(sent))
        r.check("restarted bob decrypts with the stored session",
                got and got["text"] == "after bob's restart" and got["prekey"] is False, brief(got))
        bob.cmd("send alice@localhost still me after the restart")
        sent = bob.expect({"event": "sent", "to": "alice@localhost"})
        got = alice.expect({"event": "message", "from": "bob@localhost"})
        r.check("restarted bob's reply decrypts without prekey",
                sent and sent["prekey_devices"] == [] and got and got["prekey"] is False
                and got["text"] == "still me after the restart", (brief(sent), brief(got)))
        carbon = bob2.expect({"event": "message", "carbon": "sent", "text": "still me after the restart"})
        r.check("restarted bob's session with his own other device survived too",
                carbon and carbon["prekey"] is False, brief(carbon))

        # -- plain messages ---------------------------------------------------------------
        alice.cmd("send-plain bob@localhost plain text, no OMEMO")
        g1 = bob.expect({"event": "message", "from": "alice@localhost", "encrypted": False})
        g2 = bob2.expect({"event": "message", "from": "alice@localhost", "encrypted": False})
        r.check("plain messages arrive unencrypted on both devices",
                g1 and g2 and g1["encrypted"] is False and g1["text"] == "plain text, no OMEMO"
                and g2["text"] == "plain text, no OMEMO", (brief(g1), brief(g2)))

        alice.cmd(f"send-raw <message to='bob@localhost/{rb['resource']}' type='chat' id='direct1'>"
                  "<body>to bob's first resource only</body></message>")
        g1 = bob.expect({"event": "message", "id": "direct1"})
        g2 = bob2.expect({"event": "message", "id": "direct1"})
        r.check("a message to one resource reaches the other as a received carbon",
                g1 and g1.get("carbon") is None and g2 and g2.get("carbon") == "received"
                and g2["text"] == "to bob's first resource only", (brief(g1), brief(g2)))

        # -- bad commands and bad input ---------------------------------------------------
        for line, why in (("frobnicate now", "unknown command"),
                          ("send", "send without arguments"),
                          ("send bob@localhost", "send without text"),
                          ("send a@b@c hello", "send to an invalid JID"),
                          ("send bob@localhost/res hello", "send to a full JID"),
                          ("send-raw <message><body>unclosed", "malformed raw XML"),
                          ("trust bob@localhost notanumber", "trust with a bad id"),
                          ("trust bob@localhost 12345", "trust an unknown device"),
                          ("send nobody@localhost hello?", "send to an account without devices")):
            alice.cmd(line)
            err = alice.expect({"event": "error", "command": line}, 5)
            r.check(f"error event for {why}", err, line)
        # Prosody answers <forbidden/> for a missing node of another account.
        alice.cmd("refresh erin@localhost")
        err = alice.expect(lambda e: e.get("command") == "refresh erin@localhost" or e.get("jid") == "erin@localhost")
        r.check("refresh of an account without a list reports the server's refusal",
                err and err["event"] == "error" and "forbidden" in err["text"], brief(err))
        # Malformed <encrypted> and a garbage key for bob's device.
        alice.cmd("send-raw <message to='bob@localhost' type='chat' id='bad1'>"
                  "<encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAAA</payload></encrypted>"
                  "</message>")
        err = bob.expect({"event": "decrypt-error", "id": "bad1"})
        r.check("decrypt-error for <encrypted> without header", err and "header" in err["error"], brief(err))
        alice.cmd("send-raw <message to='bob@localhost' type='chat' id='bad2'>"
                  f"<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='{a_id}'>"
                  f"<key rid='{b_id}'>MwgBEiEFAAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header>"
                  "<payload>AAAA</payload></encrypted></message>")
        err = bob.expect({"event": "decrypt-error", "id": "bad2"})
        r.check("decrypt-error for a garbage key", err and err["sender_device"] == a_id, brief(err))
        e1 = bob2.expect({"event": "decrypt-error", "id": "bad1"})
        e2 = bob2.expect({"event": "decrypt-error", "id": "bad2"})
        r.check("bob2 reports both bad messages too (one has no key for it)",
                e1 and e2 and "no key for our device" in e2["error"], (brief(e1), brief(e2)))
        bob.cmd("ping")
        alice.cmd("ping")
        r.check("peers still answer after bad input",
                bob.expect({"event": "pong"}) and alice.expect({"event": "pong"}))
        alice.cmd("send bob@localhost good again after garbage")
        got = bob.expect({"event": "message", "from": "alice@localhost", "text": "good again after garbage"})
        r.check("the session survives garbage", got and got["encrypted"], brief(got))

        # -- precondition-not-met: an existing node with the default access model ---------
        carol_plain = peer("carol-plain", "carol", None, "--no-omemo")
        carol_plain.start()
        if r.check("a --no-omemo peer becomes ready", carol_plain.wait_ready() and
                   carol_plain.ready["device_id"] is None, brief(carol_plain.ready)):
            carol_plain.cmd(
                "send-raw <iq type='set' id='pre1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                "<publish node='eu.siacs.conversations.axolotl.devicelist'><item id='current'>"
                "<list xmlns='eu.siacs.conversations.axolotl'><device id='77'/></list>"
                "</item></publish></pubsub></iq>")
            res = carol_plain.expect({"event": "iq-result", "id": "pre1"})
            r.check("a raw IQ reports its answer", res and res["type"] == "result", brief(res))
            # Not subscribed to carol, so a presence-only node is closed to bob.
            bob.cmd("refresh carol@localhost")
            closed = bob.expect(lambda e: e.get("command") == "refresh carol@localhost"
                                or e.get("jid") == "carol@localhost")
            r.check("carol's pre-made node is closed to non-contacts",
                    closed and closed["event"] == "error", brief(closed))
            carol = peer("carol", "carol").start()
            rc = carol.wait_ready()
            r.check("carol publishes over a node with another access model",
                    rc and carol.expect({"event": "node-reconfigured"}, 1) and rc["devices"] ==
                    sorted([77, rc["device_id"]]), (brief(rc), carol.unconsumed("error")))
            bob.cmd("refresh carol@localhost")
            devs = bob.expect({"event": "devices", "jid": "carol@localhost"})
            r.check("carol's list is open to non-contacts afterwards",
                    devs and rc and rc["device_id"] in devs["devices"], brief(devs))
            bob.cmd("send carol@localhost carol reads, her plain client sees the fallback")
            sent = bob.expect({"event": "sent", "to": "carol@localhost"})
            got = carol.expect({"event": "message", "from": "bob@localhost"})
            fb = carol_plain.expect({"event": "message", "from": "bob@localhost"})
            # Device 77 has no bundle: python-omemo leaves it out silently.
            r.check("a contact that is not subscribed gets messages",
                    sent and rc and sent["devices"] == [rc["device_id"]] and got
                    and got["text"] == "carol reads, her plain client sees the fallback",
                    (brief(sent), brief(got)))
            r.check("a client without OMEMO sees only the fallback body",
                    fb and fb["encrypted"] is False and fb.get("omemo_element") is True
                    and "carol reads" not in fb["text"], brief(fb))

        # -- manual trust ------------------------------------------------------------------
        dave = peer("dave", "dave", None, "--manual-trust").start()
        rd = dave.wait_ready()
        if r.check("a --manual-trust peer becomes ready", rd, brief(rd)):
            dave.cmd("send alice@localhost untrusted yet")
            err = dave.expect({"event": "error", "command": "send alice@localhost untrusted yet"})
            r.check("manual trust refuses to encrypt for an undecided device", err, dave.unconsumed("sent"))
            dave.cmd(f"trust alice@localhost {a_id}")
            tr = dave.expect({"event": "trust", "jid": "alice@localhost"})
            r.check("trust command trusts alice's device", tr and tr["device"] == a_id and tr["trust"] == "trusted"
                    and tr["fingerprint"] == ra["fingerprint"], brief(tr))
            dave.cmd("send alice@localhost trusted now")
            sent = dave.expect({"event": "sent", "to": "alice@localhost"})
            got = alice.expect({"event": "message", "from": "dave@localhost"})
            r.check("after trust, dave's message reaches alice",
                    sent and sent["devices"] == [a_id] and got and got["text"] == "trusted now", brief(got))
            alice.cmd("send dave@localhost back to dave")
            got = dave.expect({"event": "message", "from": "alice@localhost"})
            r.check("dave decrypts alice's answer", got and got["text"] == "back to dave"
                    and got["trust"] == "trusted", brief(got))
            dave.cmd(f"distrust alice@localhost {a_id}")
            dave.expect({"event": "trust", "jid": "alice@localhost"})
            alice.cmd("send dave@localhost you distrust me")
            err = dave.expect({"event": "decrypt-error", "from": "alice@localhost"})
            r.check("a distrusted device's message is refused", err and "Distrusted" in err["error"], brief(err))

        # -- a fixed device id -------------------------------------------------------------------
        erin = peer("erin", "erin", None, "--device-id", "4242").start()
        re_ = erin.wait_ready()
        r.check("--device-id fixes a new device's id", re_ and re_["device_id"] == 4242
                and re_["devices"] == [4242], brief(re_))
        if re_:
            erin.quit()
            erin.start()
            re_ = erin.wait_ready()
            r.check("--device-id matches the stored identity on restart",
                    re_ and re_["device_id"] == 4242 and re_["first_run"] is False, brief(re_))

        # -- another client drops bob from the list: he puts himself back ------------------------
        # Notifications from before (e.g. the last item resent at bob's restart) would
        # otherwise pass for the repair below.
        while bob.expect({"event": "devicelist"}, 0):
            pass
        bob2.cmd(
            "send-raw <iq type='set' id='drop1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            "<publish node='eu.siacs.conversations.axolotl.devicelist'><item id='current'>"
            f"<list xmlns='eu.siacs.conversations.axolotl'><device id='{b2_id}'/></list></item></publish>"
            "<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
            "</field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
            "</pubsub></iq>")
        res = bob2.expect({"event": "iq-result", "id": "drop1"})
        dropped = bob.expect({"event": "devicelist", "jid": "bob@localhost", "devices": [b2_id]})
        back = bob.expect({"event": "devicelist", "jid": "bob@localhost", "devices": sorted([b_id, b2_id])})
        r.check("a peer dropped from its own list re-adds itself",
                res and res["type"] == "result" and dropped and back, bob.unconsumed("devicelist"))
        alice.cmd("refresh bob@localhost")
        devs = alice.expect({"event": "devices", "jid": "bob@localhost"})
        r.check("others see the repaired list", devs and devs["devices"] == sorted([b_id, b2_id]), brief(devs))

        # -- deployed clients' quirks, reproduced -----------------------------------------------
        frank = peer("frank", "frank", None, "--quirk", "no-prekey-attr", "--quirk", "iv-first",
                     "--quirk", "bundle-item-1").start()
        rf = frank.wait_ready()
        if r.check("a peer with quirks becomes ready (bundle under item '1')", rf, brief(rf)):
            frank.cmd("send alice@localhost lurch-style prekey, dino-style iv")
            sent = frank.expect({"event": "sent", "to": "alice@localhost"})
            got = alice.expect({"event": "message", "from": "frank@localhost"})
            # alice needs frank's bundle (item '1') for his identity key to decrypt at all.
            r.check("a prekey message without prekey='true' from a bundle under item '1' decrypts",
                    sent and sent["prekey_devices"] == [a_id] and got and got["prekey"] is True
                    and got["text"] == "lurch-style prekey, dino-style iv"
                    and "prekey=" not in got["raw"], (brief(sent), brief(got)))
            alice.cmd("send frank@localhost found your bundle under item 1")
            got = frank.expect({"event": "message", "from": "alice@localhost"})
            r.check("the session built from the quirky prekey message works both ways",
                    got and got["text"] == "found your bundle under item 1" and got["prekey"] is False, brief(got))

        # -- leaving --------------------------------------------------------------------------------
        for p in (alice, bob, bob2):
            code = p.quit()
            r.check(f"{p.name} quits with status 0", code == 0, code)
        for p in peers:
            p.quit(5)
        errors = [(p.name, brief(e)) for p in peers for e in p.unconsumed("error")]
        r.check("no unexpected error events", not errors, errors)
        bad = [(p.name, brief(e)) for p in peers for e in p.unconsumed("decrypt-error")]
        r.check("no unexpected decrypt errors", not bad, bad)
    finally:
        for p in peers:
            p.kill()


def run_server_loss(r, work):
    """A peer whose server goes away says so and exits non-zero."""
    with Prosody() as server:
        p = PeerProc("lost", server.register("lost"), os.path.join(work, "lost"), work).start()
        try:
            if not r.check("a peer on a second server becomes ready", p.wait_ready(), p.unconsumed("error")):
                return
            server.stop()
            gone = p.expect({"event": "disconnected"}, 10)
            try:
                code = p.proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            r.check("losing the server gives 'disconnected' and a non-zero exit", gone and code == 1, code)
        finally:
            p.kill()


def main():
    work = tempfile.mkdtemp(prefix="e2e-peer-selftest-")
    r = Results()
    t0 = time.monotonic()
    try:
        with Prosody() as server:
            try:
                run(r, server, work)
            finally:
                server.save_log(os.path.join(work, "prosody.log"))
        run_server_loss(r, work)
    except Exception as e:
        r.check("self-test ran to the end", False, f"{type(e).__name__}: {e}")
    print(f"{r.passed} passed, {r.failed} failed ({time.monotonic() - t0:.1f} s)")
    if r.failed or KEEP:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
