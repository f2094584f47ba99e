"""OMEMO between the plugin and the independent python peer, and between
plugin clients: who starts the session, key transport, a crash and restart,
two clients of one account with message carbons, and forged carbons.

Every exchange is checked on both sides: what the other program decrypted
or showed, and what crossed the wire (the raw stanza text never holds the
plaintext; the <encrypted> element carries the keys we expect)."""

import html

from harness import OMEMO_PLUGIN, parse_xml

NS = "eu.siacs.conversations.axolotl"
NODE_DEVICELIST = NS + ".devicelist"
NODE_BUNDLES = NS + ".bundles:"
NS_HINTS = "urn:xmpp:hints"
NS_EME = "urn:xmpp:eme:0"
NS_CARBONS = "urn:xmpp:carbons:2"

# Conversation notices the plugin writes when something went wrong.
FAILURE_NOTICES = ("NOT sent", "could not be decrypted", "was not encrypted for this device",
                   "WITHOUT encryption", "NOT encrypted")


# ---- waiting for the plugin's own publishing ---------------------------------

def wait_published(client, devicelist=True, timeout=20):
    """Until the server confirmed the client's bundle (and, for a new
    device, its device list); returns the device id, read from the bundle
    node's name. A restarted device whose id is already listed publishes
    only its bundle: pass devicelist=False."""
    pending = {}        # publish iq id -> node kind
    confirmed = set()
    device = []

    def seen(e):
        el = parse_xml(e.get("xml", "")) if e.get("event") in ("xml-out", "xml-in") else None
        if el is None or el.tag != "iq":
            return False
        if e["event"] == "xml-out" and el.get("type") == "set":
            pub = el.find(".//publish")
            node = pub.get("node", "") if pub is not None else ""
            if node == NODE_DEVICELIST:
                pending[el.get("id")] = "devicelist"
            elif node.startswith(NODE_BUNDLES):
                pending[el.get("id")] = "bundle"
                device[:] = [int(node[len(NODE_BUNDLES):])]
        elif e["event"] == "xml-in" and el.get("type") == "result" and el.get("id") in pending:
            confirmed.add(pending[el.get("id")])
        return "bundle" in confirmed and (not devicelist or "devicelist" in confirmed)

    client.wait_for(seen, timeout=timeout)
    return device[0]


def wait_own_list_has(client, device_id, since=None, timeout=10):
    """Until the client saw its account's device list (PEP event or fetch
    result) with device_id in it."""
    def listed(el):
        for lst in el.iter("list"):
            if lst.get("_ns") == NS and any(d.get("id") == str(device_id) for d in lst):
                return True
        return False
    return client.wait_xml_in(listed, since=since, timeout=timeout)


# ---- the wire ------------------------------------------------------------------

def encrypted_out(client, to_bare, since=None):
    """(raw text, parsed) of every message the client sent to to_bare that
    carries an <encrypted> element, in order."""
    found = []
    for xml in client.xml_out("<message", since=since):
        el = parse_xml(xml)
        if el is None or el.tag != "message":
            continue
        if (el.get("to") or "").split("/")[0] != to_bare:
            continue
        if any(c.tag == "encrypted" and c.get("_ns") == NS for c in el):
            found.append((xml, el))
    return found


def encrypted_in(client, from_bare, since=None):
    found = []
    for xml in client.xml_in("<message", since=since):
        el = parse_xml(xml)
        if el is None or el.tag != "message":
            continue
        if (el.get("from") or "").split("/")[0] != from_bare:
            continue
        if el.find(".//encrypted") is not None:
            found.append((xml, el))
    return found


# Words that stanzas hold anyway: a text's word among them proves nothing.
STANZA_WORDS = set(("message chat active store hints encryption encrypted omemo axolotl "
                    "conversations siacs header payload prekey body client cannot decrypt "
                    "jabber localhost alice xmpp eu im see https your this and the").split())


def text_forms(text, words=True):
    """The plaintext as it could appear in raw XML: as is, escaped, and each
    word of at least 5 letters that stanzas do not hold anyway (a partial
    leak, e.g. the text with markup around a word, is a leak)."""
    forms = {text, html.escape(text, False), html.escape(text, True)}
    for word in text.split() if words else ():
        word = word.strip(".,:;!?\"'<>&")
        if len(word) >= 5 and word.isalpha() and word.lower() not in STANZA_WORDS:
            forms.add(word)
    return forms


def assert_no_plaintext(client, text, since=None):
    """Nothing the client sent or received holds the text, and no message
    stanza holds a word of it."""
    for kind, texts in (("xml-out", client.xml_out(since=since)),
                        ("xml-in", client.xml_in(since=since))):
        for xml in texts:
            for form in text_forms(text, words="<message" in xml):
                assert form not in xml, "%s: plaintext %r in %s: %s" % (client.name, form,
                                                                      kind, xml)


def keys_of(el):
    """{rid: prekey attribute or None} of an <encrypted> message."""
    enc = next(c for c in el if c.tag == "encrypted" and c.get("_ns") == NS)
    header = enc.find("header")
    assert header is not None, "no <header>"
    return {int(k.get("rid")): k.get("prekey") for k in header.findall("key")}


def assert_omemo_message(xml, el, text, sid=None):
    """A complete legacy OMEMO chat message that does not leak text."""
    for form in text_forms(text):
        assert form not in xml, "plaintext %r on the wire: %s" % (form, xml)
    assert el.get("type") == "chat", xml
    enc = [c for c in el if c.tag == "encrypted"]
    assert len(enc) == 1 and enc[0].get("_ns") == NS, xml
    header = enc[0].find("header")
    assert header is not None and header.find("iv") is not None, xml
    if sid is not None:
        assert header.get("sid") == str(sid), (sid, xml)
    assert enc[0].find("payload") is not None and enc[0].findtext("payload"), xml
    hints = [c for c in el if c.tag == "store" and c.get("_ns") == NS_HINTS]
    assert len(hints) == 1, "no <store xmlns='urn:xmpp:hints'/>: " + xml
    eme = [c for c in el if c.tag == "encryption" and c.get("_ns") == NS_EME]
    assert len(eme) == 1 and eme[0].get("namespace") == NS, "no EME element: " + xml
    bodies = [c for c in el if c.tag == "body"]
    assert len(bodies) <= 1, xml
    if bodies:
        assert (bodies[0].text or "").strip() != text.strip(), "fallback body is the text: " + xml
    assert not [c for c in el if c.tag == "html"], "XHTML-IM beside <encrypted>: " + xml
    assert not [c for c in el if c.tag == "subject"], xml


def last_encrypted_out(client, to_bare, text, since):
    """The one OMEMO message the client sent to to_bare since `since`,
    checked for leaks of text."""
    out = encrypted_out(client, to_bare, since)
    with_payload = [(x, e) for x, e in out if e.find(".//payload") is not None]
    assert len(with_payload) == 1, "%s: expected one OMEMO message to %s, got %s" % (
        client.name, to_bare, [x for x, _ in out])
    xml, el = with_payload[0]
    assert_omemo_message(xml, el, text)
    return xml, el


# ---- what the programs showed ---------------------------------------------------

def assert_shown_once(client, text, flag):
    evs = client.find("conv", plain=text)
    assert len(evs) == 1 and flag in evs[0]["flags"], \
        "%s: %r should be shown once with %s, got %s" % (client.name, text, flag, evs)
    return evs[0]


def assert_no_failure_notice(client):
    bad = [e for e in client.find("conv", flags="system")
           if any(n in (e.get("plain") or "") for n in FAILURE_NOTICES)]
    assert not bad, "%s: unexpected notices: %s" % (client.name, bad)
    crit = client.find("glib-log", level="critical")
    assert not crit, "%s: %s" % (client.name, crit)


def assert_peer_clean(peer):
    bad = peer.find(lambda e: e.get("event") in ("decrypt-error", "error", "message-error"))
    assert not bad, "%s: %s" % (peer.name, bad)


def peer_sent(peer, to, since):
    """The peer's "sent" report for its last send command."""
    ev = peer.wait_for("sent", to=to, since=since)
    assert ev["encrypted"] is True and not ev["errors"], ev
    return ev


def start_pair(ctx):
    """alice (plugin client) and bob (python peer), both published."""
    bob = ctx.peer("bob")
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    alice_dev = wait_published(alice)
    bob_ready = bob.wait_ready()
    return alice, alice_dev, bob, bob_ready["device_id"]


# ---- scenarios ---------------------------------------------------------------------

def scenario_plugin_to_peer_plugin_starts(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)

    first = "first words from alice, under OMEMO"
    t0 = alice.mark()
    alice.send(bob.bare, first)
    got = bob.wait_for("message", text=first, timeout=15)
    assert got["encrypted"] is True and got["prekey"] is True, got
    assert got["from"] == alice.bare and got["sender_device"] == alice_dev, got
    xml, el = last_encrypted_out(alice, bob.bare, first, t0)
    assert_omemo_message(xml, el, first, sid=alice_dev)
    assert keys_of(el) == {bob_dev: "true"}, xml
    assert_shown_once(alice, first, "send")

    reply = "bob answers, also encrypted"
    t1 = alice.mark()
    b1 = bob.mark()
    bob.send(alice.bare, reply)
    peer_sent(bob, alice.bare, b1)
    alice.wait_for("conv", flags="recv", plain=reply, since=t1)
    assert encrypted_in(alice, bob.bare, t1), "the reply did not arrive encrypted"

    # The plugin learnt from bob's answer that the session is complete.
    second = "second message: no prekey any more"
    t2 = alice.mark()
    b2 = bob.mark()
    alice.send(bob.bare, second)
    got = bob.wait_for("message", text=second, since=b2)
    assert got["encrypted"] is True and got["prekey"] is False, got
    xml, el = last_encrypted_out(alice, bob.bare, second, t2)
    assert keys_of(el) == {bob_dev: None}, xml

    for text in (first, reply, second):
        assert_no_plaintext(alice, text)
    assert_no_failure_notice(alice)
    assert_peer_clean(bob)


def scenario_peer_to_plugin_peer_starts(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)

    first = "bob opens the session"
    t0 = alice.mark()
    b0 = bob.mark()
    bob.send(alice.bare, first)
    sent = peer_sent(bob, alice.bare, b0)
    assert sent["devices"] == [alice_dev] and sent["prekey_devices"] == [alice_dev], sent
    alice.wait_for("conv", flags="recv", plain=first, since=t0, timeout=15)
    xml, el = encrypted_in(alice, bob.bare, t0)[0]
    assert keys_of(el).get(alice_dev) in ("true", "1"), xml

    # The plugin answers the prekey message by itself: key transport, an
    # <encrypted> header without payload, for bob's device.
    kt = bob.wait_for("key-transport", since=b0)
    assert kt["from"] == alice.bare and kt["for_us"] is True, kt
    assert kt["sender_device"] == alice_dev and kt["prekey"] is False, kt
    transports = [(x, e) for x, e in encrypted_out(alice, bob.bare, t0)
                  if e.find(".//payload") is None]
    assert len(transports) == 1, [x for x, _ in encrypted_out(alice, bob.bare, t0)]
    assert keys_of(transports[0][1]) == {bob_dev: None}, transports[0][0]
    assert not [c for c in transports[0][1] if c.tag == "body"], transports[0][0]
    # Nothing shown for it.
    assert len(alice.find("conv", since=t0)) == 1, alice.find("conv", since=t0)

    second = "bob again, session complete"
    t1 = alice.mark()
    b1 = bob.mark()
    bob.send(alice.bare, second)
    sent = peer_sent(bob, alice.bare, b1)
    assert sent["prekey_devices"] == [], sent
    alice.wait_for("conv", flags="recv", plain=second, since=t1)
    xml, el = encrypted_in(alice, bob.bare, t1)[0]
    assert keys_of(el) == {alice_dev: None}, xml

    reply = "alice replies to bob"
    t2 = alice.mark()
    b2 = bob.mark()
    alice.send(bob.bare, reply)
    got = bob.wait_for("message", text=reply, since=b2)
    assert got["encrypted"] is True and got["prekey"] is False, got
    xml, el = last_encrypted_out(alice, bob.bare, reply, t2)
    assert keys_of(el) == {bob_dev: None}, xml

    for text in (first, second, reply):
        assert_shown_once(alice, text, "recv" if text != reply else "send")
        assert_no_plaintext(alice, text)
    assert_no_failure_notice(alice)
    assert_peer_clean(bob)


def scenario_plugin_to_plugin(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    alice_dev = wait_published(alice)
    bob_dev = wait_published(bob)

    # (sender, receiver, text typed, markup?, text the receiver shows)
    rounds = [
        (alice, bob, 'meet <at> the "old" mill & bring ünïcödé', False,
         'meet <at> the "old" mill & bring ünïcödé'),
        (bob, alice, "acknowledged, see you there", False, "acknowledged, see you there"),
        (alice, bob, "<b>bold</b> plans for tomorrow", True, "bold plans for tomorrow"),
        (bob, alice, "second reply\nwith two lines", False, "second reply\nwith two lines"),
        (alice, bob, "third from alice", False, "third from alice"),
    ]
    devs = {alice.name: alice_dev, bob.name: bob_dev}
    for sender, receiver, typed, markup, text in rounds:
        ts, tr = sender.mark(), receiver.mark()
        sender.send(receiver.bare, typed, markup=markup)
        receiver.wait_for("conv", flags="recv", plain=text, since=tr, timeout=15)
        sender.wait_for("conv", flags="send", since=ts,
                        plain=lambda p: p.replace("\n", " ").strip() == text.replace("\n", " "))
        xml, el = last_encrypted_out(sender, receiver.bare, text, ts)
        assert_omemo_message(xml, el, text, sid=devs[sender.name])
        assert devs[receiver.name] in keys_of(el), xml
        got = [x for x, _ in encrypted_in(receiver, sender.bare, tr)
               if "<payload" in x]
        assert len(got) == 1, got
        for form in text_forms(text):
            assert form not in got[0], got[0]

    for _, receiver, _, _, text in rounds:
        assert_shown_once(receiver, text, "recv")
    for client in (alice, bob):
        for _, _, _, _, text in rounds:
            assert_no_plaintext(client, text)
        assert_no_failure_notice(client)


def scenario_restart_keeps_sessions(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)

    def alice_to_bob(text, prekey):
        t, b = alice.mark(), bob.mark()
        alice.send(bob.bare, text)
        got = bob.wait_for("message", text=text, since=b, timeout=15)
        assert got["encrypted"] is True and got["prekey"] is prekey, got
        assert got["sender_device"] == alice_dev, got
        last_encrypted_out(alice, bob.bare, text, t)

    def bob_to_alice(text):
        t, b = alice.mark(), bob.mark()
        bob.send(alice.bare, text)
        # bob answered alice's prekey message: his side never needs one.
        assert peer_sent(bob, alice.bare, b)["prekey_devices"] == [], text
        alice.wait_for("conv", flags="recv", plain=text, since=t, timeout=15)
        assert encrypted_in(alice, bob.bare, t), "not encrypted: " + text

    def crash_and_restart():
        alice.kill()
        alice.restart()
        alice.wait_signed_on()
        # Same device: no new identity, the list already holds it.
        assert wait_published(alice, devicelist=False) == alice_dev

    alice_to_bob("before the crash, one", True)
    bob_to_alice("before the crash, two")
    alice_to_bob("before the crash, three", False)

    # Killed as soon as bob had alice's last message: her sending chain
    # must be on disk, or she would reuse a message key bob has used up.
    crash_and_restart()
    alice_to_bob("after the first crash, alice", False)
    bob_to_alice("after the first crash, bob")

    # Killed as soon as alice showed bob's message, before his next one:
    # her receiving chain must be on disk too.
    crash_and_restart()
    bob_to_alice("after the second crash, bob")
    alice_to_bob("after the second crash, alice", False)

    assert_no_failure_notice(alice)
    assert_peer_clean(bob)
    # Only the very first message started a session.
    assert len(bob.find("message", prekey=True)) == 1, bob.find("message")


def scenario_carbons_two_instances(ctx):
    bob = ctx.peer("bob")
    home = ctx.client("alice", plugins=[OMEMO_PLUGIN], resource="home")
    home.wait_signed_on()
    home_dev = wait_published(home)
    mark = home.mark()
    work = ctx.client("alice", plugins=[OMEMO_PLUGIN], resource="work", name="alice-work")
    work.wait_signed_on()
    work_dev = wait_published(work)
    assert work_dev != home_dev
    # home hears of its new sibling (PEP event to the own account).
    wait_own_list_has(home, work_dev, since=mark)
    bob_dev = bob.wait_ready()["device_id"]

    # home writes to bob: bob decrypts, work shows it on our side.
    text = "from alice at home"
    th, tw, b = home.mark(), work.mark(), bob.mark()
    home.send(bob.bare, text)
    got = bob.wait_for("message", text=text, since=b, timeout=15)
    assert got["encrypted"] is True and got["sender_device"] == home_dev, got
    xml, el = last_encrypted_out(home, bob.bare, text, th)
    assert set(keys_of(el)) == {bob_dev, work_dev}, xml
    ev = work.wait_for("conv", flags="send", plain=text, since=tw)
    assert "remote-send" in ev["flags"], ev
    assert ev["conv"].split("/")[0] == bob.bare, ev
    carbons = [x for x in work.xml_in(since=tw) if NS_CARBONS in x and "<sent" in x]
    assert carbons, "work got no sent carbon"

    # bob answers the bare JID: each instance decrypts its own key.
    reply = "bob replies to both of alice's clients"
    th, tw, b = home.mark(), work.mark(), bob.mark()
    bob.send(home.bare, reply)
    sent = peer_sent(bob, home.bare, b)
    assert sorted(sent["devices"]) == sorted([home_dev, work_dev]), sent
    home.wait_for("conv", flags="recv", plain=reply, since=th, timeout=15)
    work.wait_for("conv", flags="recv", plain=reply, since=tw, timeout=15)

    # work writes to bob: bob decrypts, home shows it on our side.
    text2 = "from alice at work"
    th, tw, b = home.mark(), work.mark(), bob.mark()
    work.send(bob.bare, text2)
    got = bob.wait_for("message", text=text2, since=b, timeout=15)
    assert got["encrypted"] is True and got["sender_device"] == work_dev, got
    xml, el = last_encrypted_out(work, bob.bare, text2, tw)
    assert set(keys_of(el)) == {bob_dev, home_dev}, xml
    ev = home.wait_for("conv", flags="send", plain=text2, since=th)
    assert "remote-send" in ev["flags"], ev

    # One more round trip so any late duplicate has had time to arrive.
    last = "bob's last word"
    th, tw = home.mark(), work.mark()
    bob.send(home.bare, last)
    home.wait_for("conv", flags="recv", plain=last, since=th)
    work.wait_for("conv", flags="recv", plain=last, since=tw)
    home.sync()
    work.sync()

    assert_shown_once(home, text, "send")
    assert_shown_once(work, text, "send")
    assert_shown_once(home, reply, "recv")
    assert_shown_once(work, reply, "recv")
    assert_shown_once(home, text2, "send")
    assert_shown_once(work, text2, "send")
    for client in (home, work):
        assert_shown_once(client, last, "recv")
        for t in (text, reply, text2, last):
            assert_no_plaintext(client, t)
        assert_no_failure_notice(client)
    assert_peer_clean(bob)


def scenario_forged_carbon_dropped(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)

    forgeries = [
        # A "received" copy as the brief of XEP-0280 shows it, inner
        # message in the client namespace.
        "<message to='{a}' type='chat' id='forge-1'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' from='mallory@localhost/x' to='{a}' type='chat'>"
        "<body>forged received one</body></message></forwarded></received></message>",
        # The same with the inner message left in the forward namespace.
        "<message to='{a}' type='chat' id='forge-2'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message from='mallory@localhost/x' to='{a}' type='chat'>"
        "<body>forged received two</body></message></forwarded></received></message>",
        # A "sent" copy: would put words in alice's own mouth.
        "<message to='{a}' type='chat' id='forge-3'>"
        "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' from='{a}/x' to='mallory@localhost' type='chat'>"
        "<body>forged sent three</body></message></forwarded></sent></message>",
    ]
    t0 = alice.mark()
    for raw in forgeries:
        bob.send_raw(raw.format(a=alice.bare))
    genuine = "a genuine message after the forgeries"
    bob.send(alice.bare, genuine)
    alice.wait_for("conv", flags="recv", plain=genuine, since=t0, timeout=15)

    # The forgeries did reach alice, stamped with bob's address.
    arrived = alice.xml_in(lambda el: el.tag == "message"
                           and (el.get("id") or "").startswith("forge-"), since=t0)
    assert len(arrived) == len(forgeries), arrived
    for xml in arrived:
        assert parse_xml(xml).get("from").split("/")[0] == bob.bare, xml

    leaked = [e for e in alice.events
              if e.get("event") in ("conv", "request")
              and "forged" in ((e.get("text") or "") + (e.get("plain") or "")
                               + (e.get("primary") or "") + (e.get("secondary") or ""))]
    assert not leaked, leaked
    assert not [e for e in alice.find("conv") if "mallory" in (e.get("conv") or "")
                + (e.get("who") or "")], alice.find("conv")
    assert_shown_once(alice, genuine, "recv")
    assert_no_failure_notice(alice)
    assert_peer_clean(bob)
