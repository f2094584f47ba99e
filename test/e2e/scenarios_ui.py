"""The plugin's user interface as libpurple's UI-neutral APIs carry it to
Pidgin and Finch alike: plugin actions ("Show my fingerprint", "Manage my
devices", "Check the server"), the buddy menu ("Enable/Disable OMEMO",
"Fingerprints and trust"), the preferences page and "/omemo server". The
client runs actions and menu items by label and fills request-fields dialogs
the way a user would (commands action, menu, fields-set, fields-ok,
fields-cancel, prefs)."""

import time
import re

from harness import OMEMO_PLUGIN, escape_line
from scenarios_devices import (NODE_DEVICELIST, exchange_one, start_alice_with_peer_bob,
                               wait_devicelist_event, wait_omemo_published)

TRUST_CHOICES = ["undecided", "trusted (not verified)", "verified", "distrusted"]
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


# ---- helpers ---------------------------------------------------------------

def run_action(client, label):
    """Runs the plugin action `label`; returns the "actions" event."""
    since = client.mark()
    client.write("action %s %s" % (OMEMO_PLUGIN, label))
    ev = client.wait_for("actions", since=since)
    assert ev["ran"] == label, "no action %r among %s" % (label, ev["labels"])
    return ev


def run_menu(client, jid, label):
    """Runs the buddy menu item `label` for jid; returns the "menu" event."""
    since = client.mark()
    client.write("menu %s %s" % (jid, label))
    ev = client.wait_for("menu", since=since)
    assert ev["ran"] == label, "no menu item %r among %s" % (label, ev["labels"])
    return ev


def menu_labels(client, jid):
    """The buddy menu of jid, without running anything."""
    since = client.mark()
    client.write("menu %s %s" % (jid, "(nothing)"))
    ev = client.wait_for("menu", since=since)
    client.wait_for("error", text__contains="no item with this label", since=since)
    return ev["labels"]


def fields_set(client, field_id, value):
    since = client.mark()
    client.write("fields-set %s %s" % (field_id, escape_line(str(value))))
    ev = client.wait_for(lambda e: e.get("event") in ("field-set", "error"), since=since)
    assert ev["event"] == "field-set", ev
    return ev


def fields_answer(client, request, ok=True):
    since = client.mark()
    client.write("fields-ok" if ok else "fields-cancel")
    client.wait_for("answered", id=request["id"], since=since)
    client.wait_for("request-closed", id=request["id"], since=since)


def field(request, field_id):
    found = [f for f in request["field_info"] if f["id"] == field_id]
    assert len(found) == 1, "field %s: %s" % (field_id, request["field_info"])
    return found[0]


def spaced(fp):
    """A fingerprint in the plugin's form: lower case, 8 groups of 8."""
    hexa = re.sub(r"[^0-9a-fA-F]", "", fp).lower()
    assert len(hexa) == 64, fp
    return " ".join(hexa[i:i + 8] for i in range(0, 64, 8))


def report_line(report, name):
    """The line of a server report about `name` (e.g. "PEP")."""
    lines = [line for line in report.split("\n") if line.lstrip("- ").startswith(name)]
    assert len(lines) == 1, "no single line about %s in:\n%s" % (name, report)
    return lines[0]


def disco_info_sent_to(client, to, since=None):
    def match(el):
        return (el.tag == "iq" and el.get("type") == "get" and el.get("to") == to
                and any(q.get("_ns") == NS_DISCO_INFO for q in el.iter("query")))
    return client.xml_out(match, since=since)


def assert_full_prosody_report(report):
    # The stock Prosody of the suite: pep, carbons and mam loaded.
    assert "present" in report_line(report, "PEP"), report
    assert "present" in report_line(report, "Publish options"), report
    assert "present" in report_line(report, "Message Carbons"), report
    assert "present" in report_line(report, "Message archive"), report
    assert "MISSING" not in report, report
    assert "everything OMEMO needs" in report, report


# ---- scenarios -------------------------------------------------------------

def scenario_ui_omemo_server_command_reports_prosody(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    wait_omemo_published(alice)
    since = alice.mark()
    alice.cmd("bob@localhost", "omemo server")
    alice.wait_for("conv", flags="system", plain__contains="Asking the server", since=since)
    got = alice.wait_for("conv", flags="system", plain__contains="What the server of", since=since,
                         timeout=25)
    assert_full_prosody_report(got["text"])
    # It asked the account (PEP, MAM) and the server domain (carbons).
    assert disco_info_sent_to(alice, alice.bare, since=since)
    assert disco_info_sent_to(alice, "localhost", since=since)
    # The help names the subcommand.
    since = alice.mark()
    alice.cmd("bob@localhost", "omemo help")
    alice.wait_for("conv", flags="system", plain__contains="server: what your server offers",
                   since=since)


def scenario_ui_check_the_server_action(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    wait_omemo_published(alice)
    since = alice.mark()
    actions = run_action(alice, "Check the server")
    assert actions["labels"] == ["Show my fingerprint", "Manage my devices",
                                 "Check the server"], actions
    note = alice.wait_for("request", kind="formatted", title="OMEMO server check", since=since,
                          timeout=25)
    assert note["primary"].startswith(alice.bare), note
    text = note["text"].replace("<br>", "\n")
    assert_full_prosody_report(text)


def scenario_ui_show_my_fingerprint_action(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    alice_id = wait_omemo_published(alice)
    since = alice.mark()
    run_action(alice, "Show my fingerprint")
    note = alice.wait_for("request", kind="formatted", since=since)
    m = re.search(r"xmpp:%s\?omemo-sid-%d=([0-9a-f]{64})" % (re.escape(alice.bare), alice_id),
                  note["text"])
    assert m, note
    # The same key in 8 groups, and the same as "/omemo fp" says.
    assert spaced(m.group(1)) in note["text"], note
    mark = alice.mark()
    alice.cmd("bob@localhost", "omemo fp")
    fp = alice.wait_for("conv", flags="system", plain__contains="Fingerprint", since=mark)
    assert m.group(0) in fp["plain"], (fp, m.group(0))


def scenario_ui_fingerprints_and_trust_dialog_verifies_device(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "hello before the dialog")
    bob_fp = spaced(bob.wait_ready()["fingerprint"])

    labels = menu_labels(alice, bob.bare)
    assert "Disable OMEMO" in labels and "Fingerprints and trust" in labels, labels
    assert "Enable OMEMO" not in labels, labels

    since = alice.mark()
    run_menu(alice, bob.bare, "Fingerprints and trust")
    req = alice.wait_for("request", kind="fields", title="Fingerprints and trust", since=since)
    assert req["primary"] == "OMEMO devices of %s" % bob.bare, req
    dev = field(req, "device-%d" % bob_id)
    assert dev["type"] == "choice", dev
    # The choice is labelled by device; its whole fingerprint is in the
    # explanation (a field label would be cut short in a terminal).
    assert dev["label"] == "Device %d" % bob_id, dev
    assert ("Device %d: %s" % (bob_id, bob_fp)) in req["secondary"], req
    assert dev["choices"] == TRUST_CHOICES, dev
    # Blind trust before verification: trusted, not verified.
    assert dev["choices"][dev["value"]] == "trusted (not verified)", dev

    fields_set(alice, "device-%d" % bob_id, "verified")
    mark = alice.mark()
    fields_answer(alice, req, ok=True)
    alice.wait_for("conv", flags="system", plain__contains="is now verified", since=mark)

    mark = alice.mark()
    alice.cmd(bob.bare, "omemo devices")
    listing = alice.wait_for("conv", flags="system", plain__contains="OMEMO devices of",
                             since=mark)
    line = [l for l in listing["text"].split("\n") if l.startswith(str(bob_id))]
    assert len(line) == 1, listing
    assert line[0].endswith("verified") and "not verified" not in line[0], listing

    # Reopened, the dialog shows the stored decision; Cancel changes nothing.
    since = alice.mark()
    run_menu(alice, bob.bare, "Fingerprints and trust")
    req = alice.wait_for("request", kind="fields", title="Fingerprints and trust", since=since)
    dev = field(req, "device-%d" % bob_id)
    assert dev["choices"][dev["value"]] == "verified", dev
    fields_set(alice, "device-%d" % bob_id, "distrusted")
    mark = alice.mark()
    fields_answer(alice, req, ok=False)
    alice.sync()
    assert not alice.find("conv", plain__contains="is now", since=mark)
    # The verified device still gets the messages.
    exchange_one(alice, [bob], "still verified")


def scenario_ui_buddy_menu_turns_omemo_off_and_on(ctx):
    alice, bob, _, _ = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "encrypted first")

    mark = alice.mark()
    run_menu(alice, bob.bare, "Disable OMEMO")
    alice.wait_for("conv", conv=bob.bare, flags="system", plain__contains="now OFF", since=mark)
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo status")
    alice.wait_for("conv", flags="system", plain__contains="OMEMO is off for", since=mark)
    labels = menu_labels(alice, bob.bare)
    assert "Enable OMEMO" in labels and "Disable OMEMO" not in labels, labels

    # Off means off: the next message goes in plain text.
    mark = alice.mark()
    bob_mark = bob.mark()
    alice.send(bob.bare, "plain on purpose")
    bob.wait_for("message", text="plain on purpose", encrypted=False, since=bob_mark)

    mark = alice.mark()
    run_menu(alice, bob.bare, "Enable OMEMO")
    alice.wait_for("conv", conv=bob.bare, flags="system", plain__contains="now ON", since=mark)
    exchange_one(alice, [bob], "encrypted again")


def scenario_ui_manage_my_devices_removes_stale_device(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.peer("bob")
    alice.wait_signed_on()
    bob.wait_ready()
    alice_id = wait_omemo_published(alice)

    # A second device of alice's account comes up once, then is gone.
    mark = alice.mark()
    alice2 = ctx.peer(alice.account, name="alice2")
    ready2 = alice2.wait_ready()
    alice2_id = ready2["device_id"]
    wait_devicelist_event(alice, alice.bare, lambda ids: alice2_id in ids, since=mark)
    assert alice2.quit() == 0

    # A message to bob is also encrypted for alice's other device: from
    # then on its key (fingerprint) is known.
    from harness import befriend
    befriend(alice, bob)
    exchange_one(alice, [bob], "makes a session with the other device")

    since = alice.mark()
    run_action(alice, "Manage my devices")
    req = alice.wait_for("request", kind="fields", title="My OMEMO devices", since=since)
    assert req["primary"] == "OMEMO devices of %s" % alice.bare, req
    # What each device is stands in the explanation; the fields are only
    # the tick boxes (Finch shows no label fields).
    assert "Device %d (this device)" % alice_id in req["secondary"], req
    assert "Device %d\n" % alice2_id in req["secondary"], req
    ids = {f["id"] for f in req["field_info"]}
    assert "remove-%d" % alice_id not in ids, ids  # this device cannot remove itself
    remove = field(req, "remove-%d" % alice2_id)
    assert remove["type"] == "boolean" and remove["value"] is False, remove
    assert remove["label"] == "Remove device %d from the published list" % alice2_id, remove
    assert ("Fingerprint: " + spaced(ready2["fingerprint"])) in req["secondary"], req
    assert "Last seen in your device list" in req["secondary"], req

    fields_set(alice, "remove-%d" % alice2_id, "true")
    mark = alice.mark()
    fields_answer(alice, req, ok=True)
    note = alice.wait_for("request", kind="formatted", title="My OMEMO devices", since=mark)
    assert "%d was removed" % alice2_id in note["text"], note

    # The list alice published has only her own device, and the server
    # says so to anyone who asks.
    def publishes_list_without(el):
        if el.tag != "iq" or el.get("type") != "set":
            return False
        pub = [p for p in el.iter("publish") if p.get("node") == NODE_DEVICELIST]
        return bool(pub) and {int(d.get("id")) for d in pub[0].iter("device")} == {alice_id}
    alice.wait_xml_out(publishes_list_without, since=mark)
    # The server applies the publish on its own time: ask until it has.
    deadline = time.time() + 15
    while True:
        bob_mark = bob.mark()
        bob.refresh(alice.bare)
        got = bob.wait_for("devices", jid=alice.bare, since=bob_mark)
        if alice2_id not in got["devices"] or time.time() > deadline:
            break
        time.sleep(0.2)
    assert alice2_id not in got["devices"] and alice_id in got["devices"], got


def scenario_ui_preferences_page(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    since = alice.mark()
    alice.write("prefs " + OMEMO_PLUGIN)
    prefs = alice.wait_for("prefs", since=since)
    root = "/plugins/core/purple-omemo/"
    assert [(e["name"], e["label"]) for e in prefs["entries"]] == [
        (root + "trust_manual",
         "Ask about every new device (no blind trust before verification)"),
        (root + "default_on", "Turn OMEMO on by itself for contacts who use it"),
        (root + "carbons", "Ask the server for copies of messages from my other devices "
                           "(carbons)"),
        (root + "hide_distrusted", "Do not show messages from distrusted devices, only a notice"),
        (root + "debug", "Log OMEMO details to the debug window"),
    ], prefs
    values = {e["name"]: e["value"] for e in prefs["entries"]}
    assert values == {root + "trust_manual": False, root + "default_on": True,
                      root + "carbons": True, root + "hide_distrusted": False,
                      root + "debug": False}, values


def scenario_ui_unload_closes_open_dialogs(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "hello")
    since = alice.mark()
    run_menu(alice, bob.bare, "Fingerprints and trust")
    trust = alice.wait_for("request", kind="fields", title="Fingerprints and trust", since=since)
    run_action(alice, "Manage my devices")
    mine = alice.wait_for("request", kind="fields", title="My OMEMO devices", since=since)
    assert alice.unload(OMEMO_PLUGIN)["loaded"] is False
    alice.wait_for("request-closed", id=trust["id"], since=since)
    alice.wait_for("request-closed", id=mine["id"], since=since)
    # Nothing of the plugin is left in the menu; loaded again, it works.
    labels = menu_labels(alice, bob.bare)
    assert "Fingerprints and trust" not in labels, labels
    assert alice.load(OMEMO_PLUGIN)["loaded"] is True
    since = alice.mark()
    run_menu(alice, bob.bare, "Fingerprints and trust")
    req = alice.wait_for("request", kind="fields", title="Fingerprints and trust", since=since)
    assert field(req, "device-%d" % bob_id)["type"] == "choice", req
    fields_answer(alice, req, ok=False)


def scenario_ui_server_check_says_what_is_not_known(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    wait_omemo_published(alice)
    # The account's answer (the one naming PEP and publish-options) never
    # arrives; the server's does.
    alice.drop_in("http://jabber.org/protocol/pubsub#publish-options")
    since = alice.mark()
    alice.cmd("bob@localhost", "omemo server")
    got = alice.wait_for("conv", flags="system", plain__contains="What the server of", since=since,
                         timeout=35)
    report = got["text"]
    assert "Your account did not answer (no answer in time)" in report, report
    assert "not known" in report_line(report, "PEP"), report
    assert "present" in report_line(report, "Message Carbons"), report
    assert "MISSING" not in report and "In short" not in report, report
