#!/usr/bin/python3
"""Runs a few of the end-to-end flows against ejabberd instead of Prosody.

    ejabberd_check.py --build build/libomemo-c [-k substring] [--keep] [--force-open]

Not part of `make check`: a one-off look at how the plugin gets on with a
second server (Debian's `ejabberd` package). Each flow gets a fresh
ejabberd (see ejabberd.py); output is "PASS name" or "FAIL name: reason"
per flow and one line "N passed, N failed". A failing flow's state (client
debug logs, events, ejabberd.log) stays in BUILD/e2e-runs/ejabberd-NAME-XXXX.

--force-open adds Debian's stock `force_node_config` that makes every
OMEMO node open whatever the client asks for; without it, the nodes are
open only if ejabberd honours the plugin's publish-options.
"""

import argparse
import base64
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402
from harness import OMEMO_PLUGIN, parse_xml  # noqa: E402
from ejabberd import Ejabberd  # noqa: E402
from run import reason_of  # noqa: E402
import scenarios_omemo  # noqa: E402
from scenarios_omemo import NS, encrypted_messages_out, wait_published  # noqa: E402

DEVICELIST = NS + ".devicelist"
PUBSUB = "http://jabber.org/protocol/pubsub"


def _stanza_text(el):
    import xml.etree.ElementTree as ET
    return ET.tostring(el, encoding="unicode")


def _encrypted_in(client, sender_bare, text):
    """Messages from sender that client received: each must carry
    <encrypted> and nowhere the plaintext."""
    got = []
    for xml in client.xml_in("<message"):
        el = parse_xml(xml)
        if el is None or el.tag != "message":
            continue
        if not (el.get("from") or "").startswith(sender_bare):
            continue
        if el.find(".//encrypted") is None:
            continue
        assert text not in xml, "plaintext in a received stanza: %s" % xml
        got.append(el)
    return got


def flow_plugin_to_plugin_both_ways(ctx):
    """The existing scenario, unchanged, on ejabberd."""
    scenarios_omemo.scenario_plugin_to_plugin_both_ways(ctx)


def flow_plugin_and_peer_both_ways(ctx):
    """The plugin and the independent peer, not contacts of each other: the
    bundles and lists are readable only if the nodes really are open."""
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.peer("bob")
    alice.wait_signed_on()
    wait_published(alice)
    ready = bob.wait_ready()

    text = "to the peer, on ejabberd"
    alice.send(bob.bare, text)
    got = bob.wait_for("message", text=text, timeout=30)
    assert got["encrypted"] is True, got
    assert got["sender_device"], got
    alice.wait_for("conv", flags="send", plain=text)
    sent = encrypted_messages_out(alice, bob.bare)
    assert sent, alice.xml_out("<message")
    for el in sent:
        wire = _stanza_text(el)
        assert text not in wire, "plaintext on the wire: %s" % wire
        enc = el.find(".//encrypted")
        assert enc is not None and enc.get("_ns") == NS, wire
        rids = {k.get("rid") for k in enc.iter("key")}
        assert str(ready["device_id"]) in rids, (rids, ready["device_id"])
    assert text not in got["raw"], got["raw"]

    reply = "back from the peer, on ejabberd"
    bob.send(alice.bare, reply)
    bob.wait_for("sent", to=alice.bare, encrypted=True)
    alice.wait_for("conv", flags="recv", plain=reply, timeout=30)
    assert _encrypted_in(alice, bob.bare, reply), alice.xml_in("<message")

    # The stranger reads alice's list and bundle: the identity key it gets
    # is the one alice published.
    device, fingerprint = _published_identity(alice)
    bob.refresh(alice.bare)
    seen = bob.wait_for("devices", jid=alice.bare, timeout=15)
    assert seen["devices"] == [device], (seen, device)
    assert seen["fingerprints"].get(str(device)) == fingerprint, (seen, fingerprint)


def _published_identity(client):
    """(device id, fingerprint) from the bundle the client published."""
    for xml in client.xml_out("<bundle"):
        el = parse_xml(xml)
        publish = el.find(".//publish") if el is not None else None
        if publish is None or not publish.get("node", "").startswith(NS + ".bundles:"):
            continue
        key = base64.b64decode(el.find(".//identityKey").text)
        assert len(key) == 33 and key[0] == 5, key
        return int(publish.get("node").rsplit(":", 1)[1]), key[1:].hex()
    raise AssertionError("%s published no bundle" % client.name)


def _access_model(raw):
    """The current pubsub#access_model in a node configuration form."""
    el = parse_xml(raw)
    for field in el.iter("field") if el is not None else ():
        if field.get("var") == "pubsub#access_model":
            return field.findtext("value")
    return None


def flow_plugin_opens_node_created_closed(ctx):
    """alice's device list node exists already with ejabberd's default
    access model (presence): the plugin's publish with publish-options
    access_model=open no longer matches it. The plugin should configure the
    node open and publish again, after which a stranger can read it."""
    account = ctx.account("alice")
    plain = ctx.peer(account, name="alice-plain", omemo=False, resource="plain")
    plain.wait_ready()
    create = ("<iq type='set' id='precreate'><pubsub xmlns='%s'>"
              "<publish node='%s'><item id='current'>"
              "<list xmlns='%s'><device id='4242'/></list>"
              "</item></publish></pubsub></iq>" % (PUBSUB, DEVICELIST, NS))
    plain.send_raw(create)
    res = plain.wait_for("iq-result", id="precreate")
    assert res["type"] == "result", res
    check = ("<iq type='get' id='precheck'><pubsub xmlns='%s#owner'>"
             "<configure node='%s'/></pubsub></iq>" % (PUBSUB, DEVICELIST))
    plain.send_raw(check)
    conf = plain.wait_for("iq-result", id="precheck")

    forced = ctx.server.force_open
    # ejabberd's stock force_node_config makes the node open from the
    # start; otherwise it holds the PEP default.
    assert _access_model(conf["raw"]) == ("open" if forced else "presence"), conf["raw"]

    alice = ctx.client(account, plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    wait_published(alice)
    refused = alice.xml_in(lambda el: el.tag == "iq" and el.get("type") == "error"
                           and el.find(".//precondition-not-met") is not None)
    configured = alice.xml_out(lambda el: el.tag == "iq" and el.find(".//configure") is not None
                               and el.find(".//configure").get("node") == DEVICELIST)
    if forced:
        assert not refused and not configured, (refused, configured)
    else:
        assert refused, "ejabberd accepted a publish-options mismatch: %s" % alice.xml_in("<iq")
        assert configured, "no node configuration sent: %s" % alice.xml_out("<iq")

    # A stranger reads the list now, and it carries both devices.
    bob = ctx.peer("bob")
    bob.wait_ready()
    bob.refresh(alice.bare)
    devices = bob.wait_for("devices", jid=alice.bare, timeout=15)
    assert 4242 in devices["devices"] and len(devices["devices"]) == 2, devices

    text = "after reopening the node"
    bob.send(alice.bare, text)
    alice.wait_for("conv", flags="recv", plain=text, timeout=30)
    assert _encrypted_in(alice, bob.bare, text), alice.xml_in("<message")


FLOWS = [flow_plugin_to_plugin_both_ways, flow_plugin_and_peer_both_ways,
         flow_plugin_opens_node_created_closed]


def run_one(func, build, runs_dir, timeout, keep, force_open):
    name = func.__name__[len("flow_"):]
    workdir = tempfile.mkdtemp(prefix="ejabberd-%s-" % name, dir=runs_dir)
    started = time.monotonic()
    failure, details = None, ""
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        harness.kill_all_processes()

    guard = threading.Timer(timeout, on_timeout)
    guard.daemon = True
    guard.start()
    server = ctx = None
    try:
        server = Ejabberd(force_open=force_open)
        server.start()
        ctx = harness.Scenario(name, build, workdir, server)
        func(ctx)
    except Exception as exc:  # noqa: BLE001 - any error fails the flow
        failure, details = reason_of(exc)
        if not isinstance(exc, AssertionError):
            details = traceback.format_exc() + details
        elif not isinstance(exc, harness.HarnessError):
            details = "".join(traceback.format_tb(exc.__traceback__)[-2:]) + details
            if ctx is not None:
                details += "\n" + ctx.diagnostics()
    finally:
        problems = ctx.close() if ctx is not None else []
        guard.cancel()
        if server is not None:
            if failure or problems or keep:
                server.save_log(os.path.join(workdir, "ejabberd.log"))
            server.stop()
    if timed_out.is_set():
        failure = "flow exceeded %d s" % timeout
    if failure is None and problems:
        failure, details = problems[0], "\n".join(problems[1:])
    elapsed = time.monotonic() - started
    if failure is None:
        print("PASS %s (%.1f s)" % (name, elapsed), flush=True)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return True
    print("FAIL %s: %s" % (name, failure), flush=True)
    if details.strip():
        print("    " + details.strip().replace("\n", "\n    "), flush=True)
    print("    (state kept in %s)" % workdir, flush=True)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="directory with purple-omemo.so and e2e-client")
    ap.add_argument("-k", dest="pattern", help="run only flows whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep every flow's state directory")
    ap.add_argument("--force-open", action="store_true",
                    help="let ejabberd force OMEMO nodes open (Debian's stock setting)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per flow")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    missing = [p for p in ("e2e-client", "purple-omemo.so")
               if not os.path.exists(os.path.join(build, p))]
    if missing:
        print("FAIL setup: missing in %s: %s" % (build, ", ".join(missing)))
        print("0 passed, 1 failed")
        return 1
    flows = [f for f in FLOWS if not args.pattern or args.pattern in f.__name__]
    if not flows:
        print("FAIL selection: no flow matches")
        print("0 passed, 1 failed")
        return 1
    runs_dir = os.path.join(build, "e2e-runs")
    os.makedirs(runs_dir, exist_ok=True)
    passed = failed = 0
    for func in flows:
        if run_one(func, build, runs_dir, args.timeout, args.keep, args.force_open):
            passed += 1
        else:
            failed += 1
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
