"""A contact's device list changes while a conversation goes on: a second
device appears (alice must encrypt for it too), a device is removed (alice
must stop encrypting for it). alice runs the plugin in a libpurple client;
bob's devices are independent python OMEMO peers.

The helpers here are shared with scenarios_robust.py."""

import xml.etree.ElementTree as ET

from harness import OMEMO_PLUGIN, befriend, parse_xml

NS = "eu.siacs.conversations.axolotl"
NODE_DEVICELIST = NS + ".devicelist"
NODE_BUNDLES = NS + ".bundles:"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"


# ---- helpers ---------------------------------------------------------------

def _publishes(node_prefix):
    def match(el):
        return (el.tag == "iq" and el.get("type") == "set"
                and any((p.get("node") or "").startswith(node_prefix) for p in el.iter("publish")))
    return match


def wait_omemo_published(client, timeout=20, since=None):
    """Waits until the plugin's device list and bundle publishes (the first
    ones after `since`) were answered with a result; returns its device id."""
    device_id = None
    for node in (NODE_DEVICELIST, NODE_BUNDLES):
        out = parse_xml(client.wait_xml_out(_publishes(node), timeout=timeout, since=since)["xml"])
        iq_id = out.get("id")
        answer = parse_xml(client.wait_xml_in(
            lambda el, i=iq_id: el.tag == "iq" and el.get("id") == i
            and el.get("type") in ("result", "error"), timeout=timeout, since=since)["xml"])
        assert answer.get("type") == "result", "%s: publishing %s failed: %s" % (
            client.name, node, answer)
        if node == NODE_BUNDLES:
            published = next(p.get("node") for p in out.iter("publish"))
            device_id = int(published[len(NODE_BUNDLES):])
    return device_id


def devicelist_publish_iq(iq_id, ids):
    """A PEP publish of a legacy device list, open to everyone (what the
    plugin and Conversations publish)."""
    devices = "".join("<device id='%d'/>" % i for i in ids)
    return ("<iq type='set' id='%s'><pubsub xmlns='%s'>"
            "<publish node='%s'><item id='current'><list xmlns='%s'>%s</list></item></publish>"
            "<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field>"
            "</x></publish-options></pubsub></iq>"
            % (iq_id, NS_PUBSUB, NODE_DEVICELIST, NS, devices, NS_PUBSUB))


def peer_publish_devicelist(peer, ids, iq_id="devicelist-by-test"):
    """The peer publishes `ids` as its account's device list, raw."""
    since = peer.mark()
    peer.send_raw(devicelist_publish_iq(iq_id, ids))
    answer = peer.wait_for("iq-result", id=iq_id, since=since)
    assert answer["type"] == "result", answer


def devicelist_event_ids(el, from_bare):
    """The ids in a PEP device list notification from from_bare, or None."""
    if el.tag != "message" or (el.get("from") or "").split("/")[0] != from_bare:
        return None
    items = el.find(".//items")
    if items is None or items.get("node") != NODE_DEVICELIST:
        return None
    lst = items.find(".//list")
    if lst is None:
        return None
    return {int(d.get("id")) for d in lst.findall("device")}


def wait_devicelist_event(client, from_bare, predicate, since=None, timeout=10):
    """Until client received a device list notification from from_bare whose
    id set satisfies predicate; returns that set."""
    def match(el):
        ids = devicelist_event_ids(el, from_bare)
        return ids is not None and predicate(ids)
    ev = client.wait_xml_in(match, since=since, timeout=timeout)
    return devicelist_event_ids(parse_xml(ev["xml"]), from_bare)


def parse_xml_text(el):
    return ET.tostring(el, encoding="unicode")


def messages_out(client, to_bare, since=None):
    """(xml text, element) of every <message> client wrote to to_bare."""
    found = []
    for xml in client.xml_out("<message", since=since):
        el = parse_xml(xml)
        if el is not None and el.tag == "message" \
                and (el.get("to") or "").split("/")[0] == to_bare:
            found.append((xml, el))
    return found


def assert_never_on_wire(client, text, since=None):
    """No byte client wrote (any stanza, not only messages) holds text."""
    leaked = client.xml_out(text, since=since)
    assert not leaked, "%s: the plaintext %r went on the wire: %s" % (client.name, text, leaked)


def assert_sent_encrypted(client, to_bare, text, since, rids=None):
    """Exactly one OMEMO message with a payload went from client to to_bare
    after `since`, its plaintext nowhere on the wire, and (if given) keys for
    exactly the device ids `rids`. Returns the set of key rids."""
    with_payload = [(x, el) for x, el in messages_out(client, to_bare, since)
                    if el.find("encrypted") is not None
                    and el.find("encrypted").find("payload") is not None]
    assert len(with_payload) == 1, "expected one encrypted message to %s, got %s" % (
        to_bare, [x for x, _ in messages_out(client, to_bare, since)])
    xml, el = with_payload[0]
    enc = el.find("encrypted")
    assert enc.get("_ns") == NS, xml
    assert el.find("encryption") is not None and el.find("store") is not None, xml
    assert_never_on_wire(client, text, since=since)
    got = {int(k.get("rid")) for k in enc.iter("key")}
    if rids is not None:
        assert got == set(rids), "keys for %s, expected exactly %s: %s" % (
            sorted(got), sorted(rids), xml)
    return got


def start_alice_with_peer_bob(ctx, befriended=True):
    """alice (plugin, her device list and bundle on the server) and bob as
    an OMEMO peer; returns (alice, bob, alice's device id, bob's device id)."""
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.peer("bob")
    alice.wait_signed_on()
    bob_ready = bob.wait_ready()
    alice_id = wait_omemo_published(alice)
    if befriended:
        befriend(alice, bob)
    return alice, bob, alice_id, bob_ready["device_id"]


def exchange_one(alice, devices, text):
    """alice writes text to the account of `devices` (peers of one account);
    each of them decrypts it. Returns alice's mark from before sending."""
    since = alice.mark()
    marks = [p.mark() for p in devices]
    alice.send(devices[0].bare, text)
    for p, m in zip(devices, marks):
        p.wait_for("message", text=text, encrypted=True, since=m, timeout=20)
    alice.wait_for("conv", flags="send", plain=text, since=since)
    return since


# ---- scenarios -------------------------------------------------------------

def _two_bob_devices(ctx):
    """alice talks to bob; then bob's second device comes up, alice learns
    of it from the PEP notification, and her next message reaches both."""
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    since = exchange_one(alice, [bob], "first words for bob alone")
    assert_sent_encrypted(alice, bob.bare, "first words for bob alone", since, rids={bob_id})

    pep_mark = alice.mark()
    bob2 = ctx.peer("bob", name="bob2")
    bob2_id = bob2.wait_ready()["device_id"]
    assert bob2_id != bob_id
    ids = wait_devicelist_event(alice, bob.bare, lambda ids: bob2_id in ids, since=pep_mark)
    assert ids == {bob_id, bob2_id}, ids

    text = "now for both devices of bob"
    since = exchange_one(alice, [bob, bob2], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id, bob2_id})
    # A device without a session: alice fetched its bundle, and its key is
    # a prekey message.
    assert alice.xml_out(lambda el: el.tag == "iq" and any(
        i.get("node") == NODE_BUNDLES + str(bob2_id) for i in el.iter("items")), since=since)
    msg = next(el for _, el in messages_out(alice, bob.bare, since)
               if el.find("encrypted/payload") is not None)
    key2 = next(k for k in msg.iter("key") if k.get("rid") == str(bob2_id))
    assert key2.get("prekey") == "true", parse_xml_text(msg)
    return alice, bob, bob2, bob_id, bob2_id


def scenario_contact_adds_device(ctx):
    _two_bob_devices(ctx)


def scenario_contact_removes_device(ctx):
    alice, bob, bob2, bob_id, bob2_id = _two_bob_devices(ctx)

    # bob retires his second device: it goes offline, and his first device
    # republishes the list without it.
    assert bob2.quit() == 0
    pep_mark = alice.mark()
    peer_publish_devicelist(bob, [bob_id])
    ids = wait_devicelist_event(alice, bob.bare, lambda ids: bob2_id not in ids, since=pep_mark)
    assert ids == {bob_id}, ids

    text = "only the remaining device of bob"
    since = exchange_one(alice, [bob], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id})
    for xml, _ in messages_out(alice, bob.bare, since):
        assert "rid='%d'" % bob2_id not in xml and 'rid="%d"' % bob2_id not in xml, xml
