"""More one-to-one behaviour of the plugin, against the independent python
peer over a real Prosody: the own device put back on a list another device
republished without it, one bundle republish after a burst of prekey
messages, "/omemo off" surviving a restart, messages typed before anything
was fetched keeping their order, notices for messages that cannot be
decrypted or came in the clear, message types other than chat, and living
next to Debian's message carbons plugin.

Each exchange is checked on both sides (what the other program decrypted or
showed) and on the wire (the raw stanza text never holds the plaintext)."""

import base64
import os
import re
import time

from harness import OMEMO_PLUGIN, parse_xml, protobuf_fields
from scenarios_devices import (NODE_BUNDLES, NODE_DEVICELIST, assert_never_on_wire,
                               assert_sent_encrypted, exchange_one, messages_out,
                               peer_publish_devicelist, start_alice_with_peer_bob,
                               wait_devicelist_event, wait_omemo_published)
from scenarios_interop import (assert_no_plaintext, encrypted_in, keys_of, wait_own_list_has,
                               wait_published)

NS = "eu.siacs.conversations.axolotl"
CARBONS_PLUGIN = "core-riba-carbons"  # Debian's purple-xmpp-carbons
CARBONS_SO = "/usr/lib/purple-2/carbons.so"
# The peer's fallback <body> (test/e2e/peer.py): only its messages with a
# payload carry it, never its key transport messages.
PEER_FALLBACK = "your client could not decrypt it"
REPUBLISH_DELAY = 5  # seconds the plugin waits before republishing its bundle

# What the plugin writes into the conversation (src/manager.c, src/cmd.c).
NOT_ENCRYPTED = "NOT encrypted"
COULD_NOT_DECRYPT = "could not be decrypted"
NOT_FOR_THIS_DEVICE = "not encrypted for this device"
SENT_WITHOUT_ENCRYPTION = "WITHOUT encryption"


# ---- helpers ---------------------------------------------------------------

def _with(bare):
    """Matches a conversation name for bare (full JID when a message opened it)."""
    return lambda name: (name or "").split("/")[0] == bare


def notices(client, bare, contains, since=None):
    return [e for e in client.find("conv", since=since, flags="system", conv=_with(bare))
            if contains in (e.get("plain") or "")]


def shown(client, text, flag, since=None):
    """conv events showing exactly text with flag."""
    return client.find("conv", since=since, flags=flag, plain=text)


def assert_no_criticals(client):
    found = client.find("glib-log", level="critical")
    assert not found, "%s: glib criticals: %s" % (client.name, found[:3])


def publishes(client, node_prefix, since=None):
    """(event, element) of every pubsub publish to a node starting with
    node_prefix that the client wrote."""
    found = []
    for e in client.find("xml-out", since=since):
        if "<publish" not in e["xml"]:
            continue
        el = parse_xml(e["xml"])
        if el is None or el.tag != "iq" or el.get("type") != "set":
            continue
        if any((p.get("node") or "").startswith(node_prefix) for p in el.iter("publish")):
            found.append((e, el))
    return found


def wait_iq_result(client, iq_id, since=None, timeout=10):
    """The server's answer to the client's iq iq_id; fails unless a result."""
    ev = client.wait_xml_in(lambda el: el.tag == "iq" and el.get("id") == iq_id
                            and el.get("type") in ("result", "error"),
                            since=since, timeout=timeout)
    el = parse_xml(ev["xml"])
    assert el.get("type") == "result", "%s: iq %s failed: %s" % (client.name, iq_id, ev["xml"])
    return ev


def devicelist_ids(el):
    lst = next((x for x in el.iter("list") if x.get("_ns") == NS), None)
    return None if lst is None else {int(d.get("id")) for d in lst.findall("device")}


def bundle_prekeys(el):
    """{prekey id: base64 public key} of the <bundle> in a publish."""
    bundle = next(x for x in el.iter("bundle") if x.get("_ns") == NS)
    return {int(p.get("preKeyId")): (p.text or "").strip()
            for p in bundle.iter("preKeyPublic")}


def bundle_identity(el):
    bundle = next(x for x in el.iter("bundle") if x.get("_ns") == NS)
    return (bundle.findtext("identityKey") or "").strip()


def prekey_id_of(key_b64):
    """The one-time prekey id a serialized PreKeyWhisperMessage (version
    byte 0x33, then protobuf: preKeyId is field 1) uses, or None."""
    data = base64.b64decode(key_b64)
    assert data and data[0] == 0x33, "not a version 3 Signal message: %r" % data[:4]
    return protobuf_fields(data[1:]).get(1, [None])[0]


def b64(data):
    return base64.b64encode(data).decode()


def crafted_encrypted(to, msg_id, sid, keys, payload=True):
    """An OMEMO message with made-up content: keys is [(rid, key bytes,
    prekey?)]; random IV and payload."""
    key_xml = "".join("<key rid='%d'%s>%s</key>" % (rid, " prekey='true'" if pk else "", b64(k))
                      for rid, k, pk in keys)
    return ("<message to='%s' type='chat' id='%s'>"
            "<encrypted xmlns='%s'><header sid='%d'>%s<iv>%s</iv></header>%s</encrypted>"
            "<store xmlns='urn:xmpp:hints'/>"
            "<encryption xmlns='urn:xmpp:eme:0' name='OMEMO' namespace='%s'/>"
            "<body>[made-up OMEMO message %s]</body></message>"
            % (to, msg_id, NS, sid, key_xml, b64(os.urandom(12)),
               "<payload>%s</payload>" % b64(os.urandom(40)) if payload else "", NS, msg_id))


def garbage_key():
    """33..60 random bytes that start like a Signal message (0x33)."""
    return b"\x33" + os.urandom(32 + int.from_bytes(os.urandom(1), "big") % 28)


def plain_out(client, to_bare, text, since):
    """Messages with body == text the client sent to to_bare, unencrypted."""
    return [el for _, el in messages_out(client, to_bare, since)
            if el.findtext("body") == text and el.find("encrypted") is None]


# ---- 1. another device drops ours from the list ------------------------------

def scenario_own_device_readded(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    alice_id = wait_omemo_published(alice)

    mark = alice.mark()
    phone = ctx.peer("alice", name="alice-phone")
    ready = phone.wait_ready()
    phone_id = ready["device_id"]
    assert set(ready["devices"]) == {alice_id, phone_id}, ready
    wait_own_list_has(alice, phone_id, since=mark)

    # The phone republishes the account's list without alice's client.
    since = alice.mark()
    peer_publish_devicelist(phone, [phone_id], iq_id="drop-alice")
    wait_devicelist_event(alice, alice.bare, lambda ids: ids == {phone_id}, since=since)

    # The plugin noticed and put itself back, keeping the phone.
    ev = alice.wait_xml_out(lambda el: el.tag == "iq" and el.get("type") == "set"
                            and any(p.get("node") == NODE_DEVICELIST for p in el.iter("publish")),
                            since=since)
    republished = parse_xml(ev["xml"])
    assert devicelist_ids(republished) == {alice_id, phone_id}, ev["xml"]
    access = [f.findtext("value") for f in republished.iter("field")
              if f.get("var") == "pubsub#access_model"]
    assert access == ["open"], ev["xml"]
    wait_iq_result(alice, republished.get("id"), since=since)
    # What others read now: both devices.
    p_mark = phone.mark()
    phone.refresh(alice.bare)
    got = phone.wait_for("devices", jid=alice.bare, since=p_mark)
    assert got["devices"] == sorted([alice_id, phone_id]), got
    # ...and the notification of alice's own publish did not start a loop.
    wait_devicelist_event(alice, alice.bare, lambda ids: ids == {alice_id, phone_id}, since=since)
    alice.sync()
    assert len(publishes(alice, NODE_DEVICELIST, since=since)) == 1, \
        [el.get("id") for _, el in publishes(alice, NODE_DEVICELIST, since=since)]
    assert_no_criticals(alice)


# ---- 2. a burst of prekey messages republishes the bundle once ----------------

BURST_DEVICES = 10


def scenario_bundle_republished_once_after_burst(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    # Ten new devices, each of its own account: devices of one account
    # starting at the same moment would race on its device list (each reads
    # and rewrites it), and would send each other session traffic.
    bobs = [ctx.peer(ctx.account("bob%d" % i), name="bob%d" % i) for i in range(BURST_DEVICES)]
    alice.wait_signed_on()
    alice_id = wait_omemo_published(alice)
    first = publishes(alice, NODE_BUNDLES)
    assert len(first) == 1, first
    initial = bundle_prekeys(first[0][1])
    assert len(initial) == 100, len(initial)
    identity = bundle_identity(first[0][1])
    bob_ids = [b.wait_ready(timeout=60)["device_id"] for b in bobs]
    assert len(set(bob_ids)) == BURST_DEVICES, bob_ids

    # Each new device writes alice its first message, all within moments.
    since = alice.mark()
    marks = [b.mark() for b in bobs]
    texts = ["burst greeting number %d, hello alice" % i for i in range(BURST_DEVICES)]
    for b, text in zip(bobs, texts):
        b.send(alice.bare, text)
    for b, m in zip(bobs, marks):
        sent = b.wait_for("sent", to=alice.bare, since=m, timeout=30)
        assert sent["encrypted"] is True and sent["prekey_devices"] \
            and alice_id in sent["prekey_devices"], sent
    for text in texts:
        alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=30)

    # What arrived: one prekey message per device, each for alice's device.
    senders = {b.bare for b in bobs}
    arrived = []
    for e in alice.find("xml-in", since=since):
        el = parse_xml(e["xml"])
        if el is None or el.tag != "message" or el.find("encrypted/payload") is None:
            continue
        if (el.get("from") or "").split("/")[0] not in senders:
            continue
        key = next((k for k in el.iter("key") if k.get("rid") == str(alice_id)), None)
        if key is not None:
            arrived.append((e, el, key))
    assert len(arrived) == BURST_DEVICES, [e["xml"] for e, _, _ in arrived]
    used = set()
    for e, el, key in arrived:
        assert key.get("prekey") in ("true", "1"), e["xml"]
        used.add(prekey_id_of(key.text))
    # Each device picks a prekey at random, so two may share one: the
    # plugin keeps a used prekey for a while for exactly that case.
    assert used <= set(initial), (used, sorted(initial))
    t_first = arrived[0][0]["_t"]
    t_last = arrived[-1][0]["_t"]
    assert t_last - t_first < REPUBLISH_DELAY - 0.5, \
        "the burst took %.1f s: too slow to test the debounce" % (t_last - t_first)

    # Exactly one bundle publish, about REPUBLISH_DELAY after the first.
    ev = alice.wait_xml_out(lambda el: el.tag == "iq" and any(
        (p.get("node") or "") == NODE_BUNDLES + str(alice_id) for p in el.iter("publish")),
        since=since, timeout=REPUBLISH_DELAY + 5)
    wait_iq_result(alice, parse_xml(ev["xml"]).get("id"), since=since)
    delay = ev["_t"] - t_first
    assert REPUBLISH_DELAY - 1 <= delay <= REPUBLISH_DELAY + 2, delay
    # Watch long enough that a second (undebounced) publish would show.
    time.sleep(max(0.0, t_last + REPUBLISH_DELAY + 2 - time.monotonic()))
    alice.sync()
    again = publishes(alice, NODE_BUNDLES, since=since)
    assert len(again) == 1, "%d bundle publishes after the burst: %s" % (
        len(again), [round(e["_t"] - t_first, 2) for e, _ in again])
    fresh = bundle_prekeys(again[0][1])
    assert len(fresh) == 100, len(fresh)
    assert not used & set(fresh), "used prekeys still offered: %s" % sorted(used & set(fresh))
    assert bundle_identity(again[0][1]) == identity
    # The unused ones stay the same keys.
    for pid in set(initial) - used:
        assert fresh.get(pid) == initial[pid], pid

    # Every device got its session completed (key transport) and nothing leaked.
    for b, m in zip(bobs, marks):
        kt = b.wait_for("key-transport", since=m, sender_device=alice_id, for_us=True)
        assert kt["from"] == alice.bare, kt
    for text in texts:
        assert len(shown(alice, text, "recv")) == 1, shown(alice, text, "recv")
        assert_no_plaintext(alice, text)
    assert not alice.find("conv", flags="system", since=since), \
        alice.find("conv", flags="system", since=since)
    assert_no_criticals(alice)


# ---- 3. "/omemo off" survives a restart ----------------------------------------

def _status(alice, bob, want):
    since = alice.mark()
    res = alice.cmd(bob.bare, "/omemo status")
    assert res["status"] == 0, res
    ev = alice.wait_for("conv", flags="system", conv=_with(bob.bare), since=since,
                        plain=lambda p: p is not None and "OMEMO is " in p)
    assert ("OMEMO is %s for %s" % (want, bob.bare)) in ev["plain"], ev
    return ev["plain"]


def _send_plain_checked(alice, bob, text):
    since, b = alice.mark(), bob.mark()
    alice.send(bob.bare, text)
    got = bob.wait_for("message", text=text, since=b, timeout=15)
    assert got["encrypted"] is False and "omemo_element" not in got, got
    alice.wait_for("conv", flags="send", plain=text, since=since)
    out = plain_out(alice, bob.bare, text, since)
    assert len(out) == 1, alice.xml_out("<message", since=since)
    assert not [x for x, el in messages_out(alice, bob.bare, since)
                if el.find("encrypted") is not None and el.find("encrypted/payload") is not None]


def scenario_omemo_off_persists_across_restart(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    since = exchange_one(alice, [bob], "encrypted while omemo is on")
    assert_sent_encrypted(alice, bob.bare, "encrypted while omemo is on", since, rids={bob_id})
    assert "(automatic)" in _status(alice, bob, "on")

    start = alice.mark()
    res = alice.cmd(bob.bare, "/omemo off")
    assert res["status"] == 0, res
    alice.wait_for("conv", flags="system", plain__contains="now OFF", since=start)
    assert "(your choice)" in _status(alice, bob, "off")
    for text in ("first in the clear by choice", "second in the clear by choice"):
        _send_plain_checked(alice, bob, text)
    alice.sync()
    said = notices(alice, bob.bare, NOT_ENCRYPTED, since=start)
    assert len(said) == 1, alice.find("conv", since=start, flags="system")

    # A new process on the same state: the choice is on disk.
    alice.restart()
    alice.wait_signed_on()
    assert wait_published(alice, devicelist=False) == alice_id
    start = alice.mark()
    assert "(your choice)" in _status(alice, bob, "off")
    _send_plain_checked(alice, bob, "still in the clear after the restart")
    alice.sync()
    assert len(notices(alice, bob.bare, NOT_ENCRYPTED, since=start)) == 1, \
        alice.find("conv", since=start, flags="system")

    res = alice.cmd(bob.bare, "/omemo on")
    assert res["status"] == 0, res
    alice.wait_for("conv", flags="system", plain__contains="now ON", since=start)
    assert "(your choice)" in _status(alice, bob, "on")
    text = "encrypted again after omemo on"
    since = exchange_one(alice, [bob], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id})
    got = bob.find("message", text=text)
    assert got and got[-1]["encrypted"] is True and got[-1]["sender_device"] == alice_id, got
    assert not notices(alice, bob.bare, "NOT sent"), notices(alice, bob.bare, "NOT sent")
    assert_no_criticals(alice)


# ---- 4. messages typed before anything was fetched keep their order ----------

def scenario_queued_messages_keep_order(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx, befriended=False)
    texts = ["queued one: the first", "queued two: the second", "queued three: the third"]
    since, b = alice.mark(), bob.mark()
    for text in texts:
        alice.send(bob.bare, text)
    for text in texts:
        bob.wait_for("message", text=text, since=b, timeout=20)
    got = [e for e in bob.find("message", since=b) if e["text"] in texts]
    assert [e["text"] for e in got] == texts, [e["text"] for e in got]
    assert all(e["encrypted"] and e["sender_device"] == alice_id for e in got), got
    for text in texts:
        alice.wait_for("conv", flags="send", plain=text, since=since)
    mine = [e["plain"] for e in alice.find("conv", flags="send", since=since)]
    assert mine == texts, mine

    # The wire: nothing left before bob's device list and bundle were in,
    # then three OMEMO messages, and no plaintext anywhere.
    def asked(node):
        return lambda el: el.tag == "iq" and el.get("type") == "get" \
            and (el.get("to") or "") == bob.bare and any(i.get("node") == node
                                                         for i in el.iter("items"))
    out = alice.find("xml-out", since=since)
    dl = [e for e in out if "<items" in e["xml"] and asked(NODE_DEVICELIST)(parse_xml(e["xml"]))]
    bu = [e for e in out if "<items" in e["xml"]
          and asked(NODE_BUNDLES + str(bob_id))(parse_xml(e["xml"]))]
    assert len(dl) == 1 and len(bu) == 1, (dl, bu)
    bundle_answer = wait_iq_result(alice, parse_xml(bu[0]["xml"]).get("id"), since=since)
    msgs = [e for e in out if e["xml"].startswith("<message")
            and parse_xml(e["xml"]).find("encrypted/payload") is not None]
    assert len(msgs) == 3, [e["xml"] for e in msgs]
    assert dl[0]["_seq"] < bu[0]["_seq"] < bundle_answer["_seq"] < msgs[0]["_seq"], \
        "a message left before the bundle was in"
    # The first starts the session; bob's key transport may complete it
    # before the others leave, so only the first must be a prekey message.
    for i, e in enumerate(msgs):
        keys = keys_of(parse_xml(e["xml"]))
        assert set(keys) == {bob_id} and (i or keys[bob_id] == "true"), e["xml"]
    for text in texts:
        assert_never_on_wire(alice, text, since=since)
        assert_no_plaintext(alice, text)
    # The one notice: the conversation says once that it is encrypted.
    notices = [e["plain"] for e in alice.find("conv", flags="system", since=since)]
    assert notices == ["Messages in this conversation are encrypted with OMEMO."], notices


# ---- 5. messages that cannot be decrypted --------------------------------------

def scenario_undecryptable_and_not_for_us_notices(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    # A genuine session first (bob starts it, alice completes it).
    since, b = alice.mark(), bob.mark()
    first = "genuine words before anything broken"
    bob.send(alice.bare, first)
    alice.wait_for("conv", flags="recv", plain=first, since=since)
    bob.wait_for("key-transport", since=b, sender_device=alice_id)

    # Keys for alice's device that are no Signal message at all: once as a
    # normal key, once claiming to be a prekey message.
    start = alice.mark()
    other_rid = alice_id + 1 if alice_id < 2**31 - 1 else alice_id - 1
    crafted = [
        ("junk-normal", [(alice_id, garbage_key(), False)], COULD_NOT_DECRYPT),
        ("junk-prekey", [(alice_id, garbage_key(), True)], COULD_NOT_DECRYPT),
        ("elsewhere", [(other_rid, garbage_key(), False)], NOT_FOR_THIS_DEVICE),
    ]
    for msg_id, keys, expected in crafted:
        since = alice.mark()
        bob.send_raw(crafted_encrypted(alice.bare, msg_id, bob_id, keys))
        arrived = alice.wait_xml_in(lambda el, i=msg_id: el.tag == "message"
                                    and el.get("id") == i, since=since)
        assert "<encrypted" in arrived["xml"], arrived
        alice.wait_for("conv", flags="system", conv=_with(bob.bare), since=since,
                       plain__contains=expected)
    alice.sync()
    assert len(notices(alice, bob.bare, COULD_NOT_DECRYPT, since=start)) == 2, \
        alice.find("conv", since=start)
    assert len(notices(alice, bob.bare, NOT_FOR_THIS_DEVICE, since=start)) == 1, \
        alice.find("conv", since=start)
    # The notice names the sender; the made-up fallback bodies never show.
    for e in notices(alice, bob.bare, "", since=start):
        assert bob.bare in e["plain"], e
    assert not [e for e in alice.find("conv", since=start) if "made-up" in (e.get("plain") or "")]
    assert not alice.find("conv", flags="recv", since=start)

    # The session survived: bob's next message decrypts, alice's reply too.
    text = "genuine words after those broken ones"
    since = alice.mark()
    bob.send(alice.bare, text)
    alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=15)
    xml, el = encrypted_in(alice, bob.bare, since)[0]
    assert set(keys_of(el)) == {alice_id}, xml
    exchange_one(alice, [bob], "and alice still answers")
    assert alice.alive()
    assert not bob.find("decrypt-error"), bob.find("decrypt-error")
    assert_no_plaintext(alice, text)
    assert_no_criticals(alice)


# ---- 6. a plain message where OMEMO is on ---------------------------------------

def scenario_plaintext_in_omemo_conversation_is_flagged(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "alice starts encrypted")
    since = alice.mark()
    bob.send(alice.bare, "bob answers encrypted")
    alice.wait_for("conv", flags="recv", plain="bob answers encrypted", since=since)
    assert not notices(alice, bob.bare, SENT_WITHOUT_ENCRYPTION)

    text = "bob forgot to encrypt this one"
    since = alice.mark()
    bob.send_plain(alice.bare, text)
    msg = alice.wait_for("conv", flags="recv", plain=text, since=since)
    notice = alice.wait_for("conv", flags="system", since=since, conv=_with(bob.bare),
                            plain__contains=SENT_WITHOUT_ENCRYPTION)
    # The notice announces "the next message": it comes first.
    assert notice["_seq"] < msg["_seq"], (notice, msg)
    arrived = alice.xml_in(lambda el: el.tag == "message" and el.findtext("body") == text,
                           since=since)
    assert len(arrived) == 1 and "<encrypted" not in arrived[0], arrived
    alice.sync()
    assert len(notices(alice, bob.bare, SENT_WITHOUT_ENCRYPTION)) == 1

    # An encrypted message after it gets no such notice.
    since = alice.mark()
    bob.send(alice.bare, "back to encryption")
    alice.wait_for("conv", flags="recv", plain="back to encryption", since=since)
    alice.sync()
    assert not notices(alice, bob.bare, SENT_WITHOUT_ENCRYPTION, since=since)
    assert_no_criticals(alice)


# ---- 7. OMEMO messages of type normal, and without a type ----------------------

def _retyped(xml, msg_type):
    """The stanza alice received, as bob sends it again: the server's own
    additions and the stamped sender go, type becomes msg_type (None: no
    type attribute)."""
    head, sep, rest = xml.partition(">")
    head = re.sub(r"\s(from|type)=(['\"])[^'\"]*\2", "", head)
    if msg_type is not None:
        head += " type='%s'" % msg_type
    xml = head + sep + rest
    xml = re.sub(r"<stanza-id [^>]*/>", "", xml)
    xml = re.sub(r"<delay [^>]*/>", "", xml)
    return xml


def scenario_message_types_normal_and_none(ctx):
    # The peer only sends type='chat'. So alice's client withholds two of
    # bob's real OMEMO messages from the plugin (as if the server had not
    # delivered them; their keys stay unused), and bob sends the same
    # stanzas again with type 'normal' and with no type.
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    alice.drop_in(PEER_FALLBACK)
    texts = {"normal": "first replayed greeting from bob", None: "second replayed greeting from bob"}
    captured = {}
    for msg_type, text in texts.items():
        since = alice.mark()
        bob.send(alice.bare, text)
        captured[msg_type] = alice.wait_for("dropped", since=since)["xml"]
    alice.drop_in_clear()
    assert not alice.find("conv", flags="recv"), alice.find("conv")

    for msg_type, text in texts.items():
        stanza = _retyped(captured[msg_type], msg_type)
        el = parse_xml(stanza)
        assert el is not None and el.get("type") == msg_type, stanza
        assert el.find("encrypted/payload") is not None
        since = alice.mark()
        bob.send_raw(stanza)
        got = alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=15)
        assert got["conv"].split("/")[0] == bob.bare and got["type"] == "im", got
        arrived = alice.xml_in(lambda e: e.tag == "message" and e.find("encrypted") is not None,
                               since=since)
        assert len(arrived) == 1, arrived
        assert parse_xml(arrived[0]).get("type") == msg_type, arrived[0]
        assert text not in arrived[0]
    for text in texts.values():
        assert len(shown(alice, text, "recv")) == 1, shown(alice, text, "recv")
        assert_no_plaintext(alice, text)
    assert not alice.find("conv", flags="system"), alice.find("conv", flags="system")
    # bob got the session completed, and alice's answer decrypts.
    exchange_one(alice, [bob], "alice answers both")
    assert_no_criticals(alice)


# ---- 8. next to Debian's carbons plugin -------------------------------------------

def scenario_carbons_plugin_coexists(ctx):
    if not os.path.exists(CARBONS_SO):
        raise AssertionError("%s is missing: install purple-xmpp-carbons" % CARBONS_SO)
    plugins = [OMEMO_PLUGIN, CARBONS_PLUGIN]
    bob = ctx.peer("bob")
    home = ctx.client("alice", plugins=plugins, resource="home", name="alice-home")
    home.wait_signed_on()
    for p in plugins:
        assert home.wait_for("plugin", id=p)["loaded"] is True
    home_id = wait_published(home)
    mark = home.mark()
    work = ctx.client("alice", plugins=plugins, resource="work", name="alice-work")
    work.wait_signed_on()
    work_id = wait_published(work)
    wait_own_list_has(home, work_id, since=mark)
    bob_id = bob.wait_ready()["device_id"]

    # home writes to bob: bob decrypts, work shows it once, on our side.
    text = "from alice at home, beside another extension"
    th, tw, b = home.mark(), work.mark(), bob.mark()
    home.send(bob.bare, text)
    got = bob.wait_for("message", text=text, since=b, timeout=15)
    assert got["encrypted"] is True and got["sender_device"] == home_id, got
    xml, el = [(x, e) for x, e in messages_out(home, bob.bare, th)
               if e.find("encrypted/payload") is not None][0]
    assert set(keys_of(el)) == {bob_id, work_id}, xml
    assert work.wait_xml_in(lambda e: e.tag == "message" and e.find("sent") is not None,
                            since=tw)
    work.wait_for("conv", flags="send", plain=text, since=tw)

    # bob answers the bare JID: each instance shows it once.
    reply = "bob answers both of alice's clients"
    th, tw, b = home.mark(), work.mark(), bob.mark()
    bob.send(home.bare, reply)
    home.wait_for("conv", flags="recv", plain=reply, since=th, timeout=15)
    work.wait_for("conv", flags="recv", plain=reply, since=tw, timeout=15)

    # One more round so late duplicates have time to show.
    last = "bob's last word"
    th, tw = home.mark(), work.mark()
    bob.send(home.bare, last)
    home.wait_for("conv", flags="recv", plain=last, since=th, timeout=15)
    work.wait_for("conv", flags="recv", plain=last, since=tw, timeout=15)
    home.sync()
    work.sync()

    for client in (home, work):
        mine = client.find("conv", plain=text)
        assert len(mine) == 1 and "send" in mine[0]["flags"], (client.name, mine)
        assert mine[0]["conv"].split("/")[0] == bob.bare, mine
        for t in (reply, last):
            got = client.find("conv", plain=t)
            assert len(got) == 1 and "recv" in got[0]["flags"], (client.name, t, got)
        fallback = [e for e in client.find("conv") if "OMEMO encrypted" in (e.get("plain") or "")]
        assert not fallback, (client.name, fallback)
        bad = [e for e in client.find("conv", flags="system")
               if any(n in e["plain"] for n in (COULD_NOT_DECRYPT, NOT_FOR_THIS_DEVICE,
                                                 "NOT sent", SENT_WITHOUT_ENCRYPTION))]
        assert not bad, (client.name, bad)
        for t in (text, reply, last):
            assert_no_plaintext(client, t)
        assert_no_criticals(client)
