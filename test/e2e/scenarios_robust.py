"""When OMEMO cannot work, nothing leaks: a contact whose device has no
bundle, a server that never answers the bundle request, OMEMO forced on for
a contact without it. When the contact has no OMEMO at all, messages go out
plain with one clear notice. Also: messages from purple-lurch 0.7, and
unloading and loading the plugin many times in a running client."""

from harness import LURCH_PLUGIN, OMEMO_PLUGIN, Peer, befriend, parse_xml
from scenarios_devices import (NODE_BUNDLES, assert_never_on_wire,
                               assert_sent_encrypted, exchange_one,
                               messages_out, peer_publish_devicelist,
                               start_alice_with_peer_bob, wait_devicelist_event,
                               wait_omemo_published)

# What the plugin writes into the conversation (src/manager.c).
NOT_SENT = "NOT sent"
NOT_ENCRYPTED = "NOT encrypted"
BUNDLE_TIMEOUT = 20  # the plugin's request timeout, in seconds


def _with(bare):
    """Matches a conversation name for bare: libpurple names a conversation
    that an incoming message opened by the sender's full JID."""
    return lambda name: (name or "").split("/")[0] == bare


def system_notices(client, bare, contains, since=None):
    return [e for e in client.find("conv", since=since, flags="system", conv=_with(bare))
            if contains in (e.get("plain") or "")]


def wait_not_sent(client, bare, text, since, timeout=10):
    """The fail-closed notice for text: it says NOT sent and quotes text."""
    return client.wait_for(
        "conv", conv=_with(bare), flags="system",
        plain=lambda p: p is not None and NOT_SENT in p and text in p,
        since=since, timeout=timeout)


def assert_no_criticals(client):
    """libpurple and GLib report failed assertions as criticals: none may
    come from what the plugin did."""
    found = client.find("glib-log", level="critical")
    assert not found, "%s: %d glib criticals, first: %s" % (
        client.name, len(found), found[:3])


def assert_fails_closed(alice, peer, text, timeout=10):
    """alice types text for peer; it is refused: the notice quotes it, not
    one stanza alice wrote holds it, and the peer receives nothing."""
    since = alice.mark()
    peer_since = peer.mark()
    alice.send(peer.bare, text)
    notice = wait_not_sent(alice, peer.bare, text, since, timeout=timeout)
    alice.sync()
    assert not alice.find("conv", since=since, flags="send", plain=text), \
        "the refused message shows as sent"
    assert_never_on_wire(alice, text, since=since)
    assert not [x for x, el in messages_out(alice, peer.bare, since)
                if el.find("body") is not None], "a message with a body went to %s" % peer.bare
    peer.sync()
    got = peer.find("message", since=peer_since) if isinstance(peer, Peer) \
        else peer.find("conv", since=peer_since, flags="recv")
    assert not got, "%s received something: %s" % (peer.name, got)
    return notice


# ---- a device without a bundle -----------------------------------------------

def scenario_bundle_missing_fails_closed(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    # bob has no OMEMO software at all, but a device list naming a device
    # that never published a bundle.
    bob = ctx.peer("bob", omemo=False)
    alice.wait_signed_on()
    bob.wait_ready()
    wait_omemo_published(alice)
    peer_publish_devicelist(bob, [1234567])

    for attempt, text in enumerate(("must not leak", "must not leak either")):
        since = alice.mark()
        notice = assert_fails_closed(alice, bob, text)
        # The refusal came from the missing bundle, asked for each time.
        assert alice.xml_out(lambda el: el.tag == "iq" and any(
            i.get("node") == NODE_BUNDLES + "1234567" for i in el.iter("items")), since=since), \
            "attempt %d: no bundle request" % attempt
        assert "1234567" in " ".join(e["plain"] for e in alice.find(
            "conv", since=since, flags="system")), notice
    assert_no_criticals(alice)


# ---- the server never answers the bundle request -----------------------------

def scenario_server_never_answers_bundle(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx, befriended=False)
    alice.drop_in(NODE_BUNDLES)

    text = "must not leak while waiting"
    since = alice.mark()
    assert_fails_closed(alice, bob, text, timeout=BUNDLE_TIMEOUT + 10)
    # The plugin did ask; the answer came and was withheld from it.
    asked = alice.xml_out(lambda el: el.tag == "iq" and any(
        i.get("node") == NODE_BUNDLES + str(bob_id) for i in el.iter("items")), since=since)
    assert len(asked) == 1, asked
    assert alice.find("dropped", since=since, xml__contains=NODE_BUNDLES + str(bob_id))
    assert "did not arrive in time" in " ".join(
        e["plain"] for e in alice.find("conv", since=since, flags="system"))

    alice.drop_in_clear()
    text = "the server answers again"
    since = exchange_one(alice, [bob], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id})
    assert_no_criticals(alice)


# ---- purple-lurch 0.7 ----------------------------------------------------------

def scenario_lurch_to_plugin(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[LURCH_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    alice_id = wait_omemo_published(alice)
    befriend(alice, bob)
    # lurch learns alice's device list only from the PEP notification that
    # the presence subscription brings (it never fetches a contact's list).
    wait_devicelist_event(bob, alice.bare, lambda ids: alice_id in ids)

    # lurch encrypts on its own once it knows a device list: no command.
    text = "hello alice from lurch"
    a_since, b_since = alice.mark(), bob.mark()
    bob.send(alice.bare, text)
    got = alice.wait_for("conv", flags="recv", plain=text, since=a_since, timeout=20)
    assert got["conv"].split("/")[0] == bob.bare, got

    # What crossed the wire: lurch fetched alice's bundle and sent an
    # <encrypted> message whose key for alice has no prekey attribute,
    # although it starts a session (lurch 0.7 never sets it).
    assert bob.xml_out(lambda el: el.tag == "iq" and any(
        i.get("node") == NODE_BUNDLES + str(alice_id) for i in el.iter("items")), since=b_since)
    sent = [el for _, el in messages_out(bob, alice.bare, b_since)
            if el.find("encrypted/payload") is not None]
    assert len(sent) == 1, bob.xml_out("<message", since=b_since)
    keys = [k for k in sent[0].iter("key")]
    assert [k.get("rid") for k in keys] == [str(alice_id)], keys
    assert keys[0].get("prekey") is None, keys[0].attrib
    lurch_id = int(sent[0].find("encrypted/header").get("sid"))
    assert not bob.xml_out(text, since=b_since), "lurch put the plaintext on the wire"
    arrived = alice.xml_in(lambda el: el.tag == "message" and el.find("encrypted") is not None
                           and (el.get("from") or "").startswith(bob.bare), since=a_since)
    assert arrived and not [x for x in arrived if text in x], arrived

    # alice completes the session at once with a key transport message (an
    # <encrypted> header without payload) for lurch's device.
    kt = alice.wait_xml_out(lambda el: el.tag == "message" and el.find("encrypted") is not None
                            and el.find("encrypted/payload") is None
                            and (el.get("to") or "").startswith(bob.bare), since=a_since)
    kt_keys = [k.get("rid") for k in parse_xml(kt["xml"]).iter("key")]
    assert kt_keys == [str(lurch_id)], kt["xml"]

    # alice answers. lurch never published a device list here (see
    # README.md), but its device wrote to alice and holds a session with
    # her: the plugin encrypts the reply for that device, and lurch reads it.
    reply = "alice replies to lurch"
    a_since, b_since = alice.mark(), bob.mark()
    alice.send(bob.bare, reply)
    bob.wait_for("conv", flags="recv", plain=reply, since=b_since, timeout=20)
    assert not system_notices(alice, bob.bare, NOT_ENCRYPTED, since=a_since), \
        alice.find("conv", since=a_since)
    enc_out = [el for _, el in messages_out(alice, bob.bare, a_since)
               if el.find("encrypted/payload") is not None]
    assert len(enc_out) == 1, alice.xml_out("<message", since=a_since)
    assert [k.get("rid") for k in enc_out[0].iter("key")] == [str(lurch_id)], \
        alice.xml_out("<message", since=a_since)
    assert not alice.xml_out(reply, since=a_since), "the reply went out in plaintext"
    assert "received keytransportmsg" in bob.debug_log()
    assert_no_criticals(alice)


# ---- unloading and loading the plugin ----------------------------------------

def scenario_load_unload_ten_times(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx, befriended=False)
    for i in range(10):
        unloaded = alice.unload(OMEMO_PLUGIN)
        assert unloaded["loaded"] is False, (i, unloaded)
        loaded = alice.load(OMEMO_PLUGIN)
        assert loaded["loaded"] is True and not loaded.get("error"), (i, loaded)
    alice.sync()
    assert alice.alive()
    assert_no_criticals(alice)
    assert not alice.find("glib-log", level="error")

    # Still fully working: the command is there once, messages encrypt.
    since = alice.mark()
    assert alice.cmd(bob.bare, "/omemo status")["status"] == 0
    assert len(alice.find("conv", since=since, flags="system",
                          plain__contains="This device")) == 1
    text = "after ten reloads"
    since = exchange_one(alice, [bob], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id})
    assert_no_criticals(alice)


# ---- a contact without OMEMO -------------------------------------------------

def scenario_plaintext_when_contact_has_no_omemo(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    carol = ctx.client("carol")
    alice.wait_signed_on()
    carol.wait_signed_on()
    wait_omemo_published(alice)

    start = alice.mark()
    for text in ("hello carol, in the clear", "and a second one"):
        since, c_since = alice.mark(), carol.mark()
        alice.send(carol.bare, text)
        carol.wait_for("conv", flags="recv", plain=text, since=c_since, timeout=20)
        alice.wait_for("conv", flags="send", plain=text, since=since)
        out = [el for _, el in messages_out(alice, carol.bare, since)]
        assert len(out) == 1 and out[0].findtext("body") == text \
            and out[0].find("encrypted") is None, alice.xml_out("<message", since=since)
    alice.sync()
    notices = system_notices(alice, carol.bare, NOT_ENCRYPTED, since=start)
    assert len(notices) == 1, alice.find("conv", since=start, flags="system")
    assert_no_criticals(alice)


def scenario_omemo_on_without_devices_fails_closed(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    carol = ctx.client("carol")
    alice.wait_signed_on()
    carol.wait_signed_on()
    wait_omemo_published(alice)

    assert alice.cmd(carol.bare, "/omemo on")["status"] == 0
    alice.wait_for("conv", flags="system", plain__contains="now ON")
    for text in ("secret for carol only", "still secret for carol"):
        assert_fails_closed(alice, carol, text)

    assert alice.cmd(carol.bare, "/omemo off")["status"] == 0
    alice.wait_for("conv", flags="system", plain__contains="now OFF")
    text = "carol may read this in the clear"
    since, c_since = alice.mark(), carol.mark()
    alice.send(carol.bare, text)
    carol.wait_for("conv", flags="recv", plain=text, since=c_since, timeout=20)
    out = [el for _, el in messages_out(alice, carol.bare, since)]
    assert len(out) == 1 and out[0].findtext("body") == text \
        and out[0].find("encrypted") is None, alice.xml_out("<message", since=since)
    assert system_notices(alice, carol.bare, NOT_ENCRYPTED, since=since), \
        alice.find("conv", since=since)
    assert_no_criticals(alice)


def scenario_refused_message_leaves_no_glib_criticals(ctx):
    """Refusing a message must not trip libpurple's assertions: a stanza
    stopped by setting it to NULL in jabber-sending-xmlnode reaches the
    protocol plugin's own sender, which serialises it without a check."""
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    carol = ctx.client("carol")
    alice.wait_signed_on()
    carol.wait_signed_on()
    wait_omemo_published(alice)
    assert alice.cmd(carol.bare, "/omemo on")["status"] == 0
    assert_fails_closed(alice, carol, "refused quietly")
    assert_no_criticals(alice)
