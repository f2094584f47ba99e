"""Group chats (XEP-0045) with OMEMO: real libpurple clients running the
plugin and the independent python peer in rooms of a real Prosody MUC
service (conference.localhost)."""

import time
from xml.sax.saxutils import quoteattr

from harness import OMEMO_PLUGIN, parse_xml
from scenarios_omemo import wait_published

MUC = "conference.localhost"
NS_OWNER = "http://jabber.org/protocol/muc#owner"
NS_ADMIN = "http://jabber.org/protocol/muc#admin"


def config_form(fields):
    out = ["<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
           "<value>http://jabber.org/protocol/muc#roomconfig</value></field>"]
    for var, value in fields.items():
        out.append("<field var=%s><value>%s</value></field>" % (quoteattr(var), value))
    out.append("</x>")
    return "".join(out)


def client_iq(client, room, body, tag):
    """A raw IQ set from a plugin client to the room; waits for its answer."""
    iq_id = "%s-%d" % (tag, int(time.time() * 1000))
    since = client.mark()
    client.write("send-xml " + "<iq type='set' to='%s' id='%s'>%s</iq>" % (room, iq_id, body))
    ev = client.wait_for(lambda e: e.get("event") == "xml-in" and iq_id in e.get("xml", "")
                         and "<iq" in e["xml"], since=since, timeout=15)
    assert "type='result'" in ev["xml"] or 'type="result"' in ev["xml"], ev["xml"]
    return ev


def client_make_room(owner, room, nick, members=(), whois="anyone", membersonly=True):
    """owner (a plugin client) creates the room, makes it as asked and lets
    members in."""
    since = owner.mark()
    owner.write("join %s %s" % (room, nick))
    owner.wait_for("request", since=since, timeout=15)   # "Create New Room"
    owner.answer()                                        # accept the defaults
    owner.wait_for("chat-joined", room=room, since=since, timeout=15)
    client_iq(owner, room, "<query xmlns='%s'>%s</query>" % (NS_OWNER, config_form({
        "muc#roomconfig_whois": whois,
        "muc#roomconfig_membersonly": "1" if membersonly else "0",
        "muc#roomconfig_persistentroom": "1",
    })), "cfg")
    for jid in members:
        affiliate(owner, room, jid, "member")


def affiliate(client, room, jid, affiliation):
    client_iq(client, room, "<query xmlns='%s'><item jid='%s' affiliation='%s'/></query>"
              % (NS_ADMIN, jid, affiliation), "aff")


def groupchat_out(client, room, since=None):
    """Group messages the client sent to the room, as elements."""
    out = []
    for xml in client.xml_out("<message", since=since):
        el = parse_xml(xml)
        if el is not None and el.get("type") == "groupchat" and \
                (el.get("to") or "").lower() == room:
            out.append((xml, el))
    return out


def assert_encrypted_on_wire(client, room, secret, since=None):
    # Another client can show the message before this client's own
    # events about sending it have been read.
    client.sync()
    sent = groupchat_out(client, room, since)
    assert sent, "%s sent no group message" % client.name
    for xml, el in sent:
        assert secret not in xml, "plaintext on the wire: %s" % xml
        assert "eu.siacs.conversations.axolotl" in xml, "not OMEMO: %s" % xml


def alice_and_bob_in_room(ctx, room):
    """Two plugin clients, published; alice makes a members-only
    non-anonymous room with bob as member; both are in it."""
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    wait_published(alice)
    wait_published(bob)
    client_make_room(alice, room, "Alice", members=[bob.bare])
    bob.join(room, "Bob")
    alice.wait_for("conv", type="chat", plain__contains="Bob [bob@localhost", timeout=15)
    return alice, bob


def scenario_muc_two_plugins_read_each_other(ctx):
    room = "r1@" + MUC
    alice, bob = alice_and_bob_in_room(ctx, room)
    since_a = alice.mark()
    alice.chat_send(room, "hello room, secretly")
    bob.wait_for("conv", type="chat", who="Alice", plain="hello room, secretly", timeout=30)
    alice.wait_for("conv", type="chat", flags="send", plain="hello room, secretly", timeout=15)
    assert_encrypted_on_wire(alice, room, "hello room", since_a)
    bob.chat_send(room, "hi alice, in the room")
    alice.wait_for("conv", type="chat", who="Bob", plain="hi alice, in the room", timeout=30)
    bob.wait_for("conv", type="chat", flags="send", plain="hi alice, in the room", timeout=15)
    alice.sync()
    shown = [e for e in alice.events if e.get("event") == "conv" and
             e.get("plain") == "hello room, secretly"]
    assert len(shown) == 1, "own message shown %d times" % len(shown)
    # The room's menu offers to turn it off; doing so sends in plaintext.
    since = bob.mark()
    bob.write("chat-menu %s Disable OMEMO in this room" % room)
    assert bob.wait_for("menu", since=since)["ran"] == "Disable OMEMO in this room"
    bob.wait_for("conv", conv=room, plain__contains="now OFF for this room", since=since)
    bob.chat_send(room, "openly now")
    alice.wait_for("conv", type="chat", who="Bob", plain="openly now", timeout=15)
    alice.wait_for("conv", conv=room, plain__contains="sent WITHOUT encryption")


def keys_for(xml):
    """The rid of every <key> in an <encrypted> message."""
    el = parse_xml(xml)
    out = set()
    for key in el.iter("key"):
        out.add(int(key.get("rid")))
    return out


def device_id_of(client):
    """The device id the plugin logged at sign-on."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for line in client.debug_log().splitlines():
            if "omemo: %s: device " % client.bare in line:
                return int(line.rsplit(" ", 1)[1])
        time.sleep(0.1)
    raise AssertionError("%s logged no device id" % client.name)


def notices(client, room, since=None, contains=""):
    return [e["plain"] for e in client.find("conv", since=since, conv=room)
            if "system" in e.get("flags", []) and contains in e.get("plain", "")]


def scenario_muc_semianonymous_room_refuses_omemo(ctx):
    room = "semi@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    client_make_room(alice, room, "Alice", whois="moderators", membersonly=False)
    since = alice.mark()
    bob.join(room, "Bob")
    alice.wait_for("conv", type="chat", plain__contains="entered the room", since=since,
                   timeout=15)
    # Bob, a participant, cannot see real JIDs: "/omemo on" explains why not.
    bob.sync()
    time.sleep(0.5)   # the room's disco#info answer
    res = bob.chat_cmd(room, "/omemo on")
    assert res["status"] == 0, res
    bob.wait_for("conv", conv=room, plain__contains="OMEMO cannot be turned on here")
    bob.wait_for("conv", conv=room, plain__contains="non-anonymous room")
    # The room's menu explains it the same way.
    since = bob.mark()
    bob.write("chat-menu %s Enable OMEMO in this room" % room)
    ev = bob.wait_for("menu", since=since)
    assert ev["ran"] == "Enable OMEMO in this room", ev
    bob.wait_for("conv", conv=room, plain__contains="OMEMO cannot be turned on here",
                 since=since)
    bob.chat_cmd(room, "/omemo status")
    bob.wait_for("conv", conv=room, plain__contains="is NOT non-anonymous")
    # Automatic mode: the room is not private, so messages go in plaintext,
    # and the user is told so.
    bob.chat_send(room, "plain hello")
    alice.wait_for("conv", type="chat", who="Bob", plain="plain hello", timeout=15)
    bob.wait_for("conv", conv=room, flags="system", plain__contains="NOT encrypted")


def scenario_muc_room_turning_anonymous_stops_sending(ctx):
    room = "turns@" + MUC
    alice, bob = alice_and_bob_in_room(ctx, room)
    bob.chat_send(room, "first, encrypted")
    alice.wait_for("conv", type="chat", who="Bob", plain="first, encrypted", timeout=30)
    # The owner makes the room semi-anonymous: Bob's plugin must stop.
    since = bob.mark()
    client_iq(alice, room, "<query xmlns='%s'>%s</query>" % (NS_OWNER, config_form({
        "muc#roomconfig_whois": "moderators"})), "cfg2")
    bob.wait_for("xml-in", xml__contains="173", since=since, timeout=15)
    bob.wait_for("conv", conv=room, plain__contains="OMEMO cannot be used in this room",
                 since=since, timeout=15)
    since = bob.mark()
    since_a = alice.mark()
    bob.chat_send(room, "second, must not leak")
    bob.wait_for("conv", conv=room, plain__contains='It was: "second, must not leak"',
                 since=since, timeout=15)
    bob.sync()
    for xml in bob.xml_out("<message", since=since):
        assert "must not leak" not in xml, "plaintext left: %s" % xml
    assert not alice.find("conv", since=since_a, plain__contains="must not leak")


def scenario_muc_join_and_leave_change_recipients(ctx):
    room = "open@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    dave = ctx.client("dave", plugins=[OMEMO_PLUGIN])
    for c in (alice, bob, dave):
        c.wait_signed_on()
    for c in (alice, bob, dave):
        wait_published(c)
    # Non-anonymous but open: dave is no member, only an occupant while
    # he is in the room.
    client_make_room(alice, room, "Alice", members=[bob.bare], membersonly=False)
    res = alice.chat_cmd(room, "/omemo on")
    assert res["status"] == 0
    alice.wait_for("conv", conv=room, plain__contains="not members-only")
    bob.join(room, "Bob")
    bob.chat_cmd(room, "/omemo on")
    alice.wait_for("conv", type="chat", plain__contains="Bob [bob@localhost", timeout=15)
    alice.chat_send(room, "before dave")
    bob.wait_for("conv", type="chat", who="Alice", plain="before dave", timeout=30)
    dave_id = device_id_of(dave)
    dave.join(room, "Dave")
    alice.wait_for("conv", type="chat", plain__contains="Dave [dave@localhost", timeout=15)
    since = alice.mark()
    alice.chat_send(room, "hello dave")
    dave.wait_for("conv", type="chat", who="Alice", plain="hello dave", timeout=30)
    bob.wait_for("conv", type="chat", who="Alice", plain="hello dave", timeout=30)
    sent = groupchat_out(alice, room, since)
    assert any(dave_id in keys_for(xml) for xml, _ in sent), "no key for dave's device"
    dave.leave(room)
    alice.wait_for("conv", type="chat", plain__contains="Dave left", timeout=15)
    since = alice.mark()
    alice.chat_send(room, "after dave left")
    bob.wait_for("conv", type="chat", who="Alice", plain="after dave left", timeout=30)
    alice.sync()
    sent = groupchat_out(alice, room, since)
    assert sent and all(dave_id not in keys_for(xml) for xml, _ in sent), \
        "dave still encrypted to after leaving"


def scenario_muc_member_without_omemo_is_named_and_setting_decides(ctx):
    room = "mixed@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    carol = ctx.client("carol")   # no OMEMO plugin at all
    for c in (alice, bob, carol):
        c.wait_signed_on()
    wait_published(alice)
    wait_published(bob)
    client_make_room(alice, room, "Alice", members=[bob.bare, carol.bare])
    bob.join(room, "Bob")
    carol.join(room, "Carol")
    alice.wait_for("conv", type="chat", plain__contains="Carol [carol@localhost", timeout=15)
    alice.wait_for("conv", type="chat", plain__contains="Bob [bob@localhost", timeout=15)
    since = alice.mark()
    alice.chat_send(room, "to those who can read")
    bob.wait_for("conv", type="chat", who="Alice", plain="to those who can read", timeout=30)
    alice.wait_for("conv", conv=room, plain__contains="did NOT reach", since=since, timeout=15)
    left = notices(alice, room, since, "did NOT reach")
    assert "carol@localhost" in left[0] and "no OMEMO device" in left[0], left
    assert "bob@localhost" not in left[0], left
    # Carol's client shows only the fallback body.
    carol.wait_for("conv", type="chat", who="Alice", plain__contains="OMEMO encrypted",
                   timeout=15)
    # Status names who is reached and who not.
    alice.chat_cmd(room, "/omemo status")
    st = alice.wait_for("conv", conv=room, plain__contains="The next message reaches")
    assert "bob@localhost (1 device)" in st["plain"], st["plain"]
    assert "carol@localhost: no OMEMO device" in st["plain"], st["plain"]
    # Held when the room is set so.
    alice.chat_cmd(room, "/omemo incomplete hold")
    since = alice.mark()
    since_b = bob.mark()
    alice.chat_send(room, "held back")
    alice.wait_for("conv", conv=room, plain__contains='It was: "held back"', since=since,
                   timeout=15)
    n = notices(alice, room, since, "NOT sent")
    assert "carol@localhost" in n[0], n
    alice.sync()
    assert not groupchat_out(alice, room, since), "a held message left"
    alice.chat_cmd(room, "/omemo incomplete send")
    alice.chat_send(room, "sent again")
    bob.wait_for("conv", type="chat", who="Alice", plain="sent again", since=since_b,
                 timeout=30)


def scenario_muc_three_participants_with_independent_peer(ctx):
    room = "three@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    carol = ctx.peer("carol")
    alice.wait_signed_on()
    bob.wait_signed_on()
    carol.wait_ready()
    wait_published(alice)
    wait_published(bob)
    client_make_room(alice, room, "Alice", members=[bob.bare, carol.bare])
    bob.join(room, "Bob")
    carol.join(room, "Carol")
    alice.wait_for("conv", type="chat", plain__contains="Carol [carol@localhost", timeout=15)
    bob.wait_for("conv", type="chat", plain__contains="Carol [carol@localhost", timeout=15)

    since = alice.mark()
    alice.chat_send(room, "from alice to all")
    bob.wait_for("conv", type="chat", who="Alice", plain="from alice to all", timeout=30)
    ev = carol.wait_for("groupmessage", room=room, text="from alice to all", timeout=30)
    assert ev["encrypted"] and ev["jid"] == alice.bare and not ev["own"], ev
    assert_encrypted_on_wire(alice, room, "from alice to all", since)

    carol.gsend(room, "from carol to all")
    sent = carol.wait_for("gsent", room=room, timeout=30)
    assert sent["encrypted"] and alice.bare in sent["recipients"] and \
        bob.bare in sent["recipients"], sent
    alice.wait_for("conv", type="chat", who="Carol", plain="from carol to all", timeout=30)
    bob.wait_for("conv", type="chat", who="Carol", plain="from carol to all", timeout=30)
    carol.wait_for("groupmessage", room=room, own=True, text="from carol to all", timeout=15)

    since = bob.mark()
    bob.chat_send(room, "from bob to all")
    alice.wait_for("conv", type="chat", who="Bob", plain="from bob to all", timeout=30)
    ev = carol.wait_for("groupmessage", room=room, text="from bob to all", timeout=30)
    assert ev["encrypted"] and ev["jid"] == bob.bare, ev
    assert_encrypted_on_wire(bob, room, "from bob to all", since)
    bob.wait_for("conv", type="chat", flags="send", plain="from bob to all")
    for c, text in ((alice, "from alice to all"), (bob, "from bob to all")):
        c.sync()
        shown = [e for e in c.events if e.get("event") == "conv" and e.get("plain") == text]
        assert len(shown) == 1 and "send" in shown[0]["flags"], \
            "%s: own message shown %r" % (c.name, shown)
    # No notice of an undecryptable message anywhere.
    for c in (alice, bob):
        assert not notices(c, room, contains="could not be decrypted"), notices(c, room)
        assert not notices(c, room, contains="cannot be shown"), notices(c, room)


def scenario_muc_offline_member_reads_history(ctx):
    room = "history@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    wait_published(alice)
    wait_published(bob)
    client_make_room(alice, room, "Alice", members=[bob.bare])
    # Bob is a member but not in the room: the message is encrypted for
    # him too, and the room's history brings it when he joins.
    alice.chat_send(room, "while you were away")
    alice.wait_for("conv", type="chat", flags="send", plain="while you were away", timeout=30)
    bob.join(room, "Bob")
    ev = bob.wait_for("conv", type="chat", who="Alice", plain="while you were away", timeout=30)
    assert "delayed" in ev["flags"], ev
    # Alice's own history line, on a second device of hers, would be
    # readable too; here: the room reflects it once, and it stays once.
    alice.sync()
    shown = [e for e in alice.events if e.get("event") == "conv" and
             e.get("plain") == "while you were away"]
    assert len(shown) == 1, shown


def scenario_muc_own_other_device_reads_room(ctx):
    """Our other device in the same room reads what this one sent, and this
    device shows it once as ours; a second device that is not in the room
    gets it through the room's history later."""
    room = "devices@" + MUC
    home = ctx.client("alice", plugins=[OMEMO_PLUGIN], resource="home", name="alice-home")
    home.wait_signed_on()
    wait_published(home)
    work = ctx.client("alice", plugins=[OMEMO_PLUGIN], resource="work", name="alice-work")
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    work.wait_signed_on()
    bob.wait_signed_on()
    wait_published(work)
    wait_published(bob)
    home_id = device_id_of(home)
    work_id = device_id_of(work)
    # Each device knows the other from the account's device list.
    deadline = time.time() + 15
    while str(work_id) not in home.debug_log() and time.time() < deadline:
        time.sleep(0.1)
    client_make_room(home, room, "Alice", members=[bob.bare])
    bob.join(room, "Bob")
    home.wait_for("conv", type="chat", plain__contains="Bob [bob@localhost", timeout=15)
    since = home.mark()
    home.chat_send(room, "from my home device")
    bob.wait_for("conv", type="chat", who="Alice", plain="from my home device", timeout=30)
    sent = groupchat_out(home, room, since)
    assert sent and work_id in keys_for(sent[0][0]), "not encrypted for our other device"
    assert home_id not in keys_for(sent[0][0]), "encrypted for the sending device itself"
    # The other device joins later (same account, another nick) and reads
    # the message from the room's history.
    work.join(room, "Alice-work")
    ev = work.wait_for("conv", type="chat", who="Alice", plain="from my home device",
                       timeout=30)
    assert "delayed" in ev["flags"], ev
    # And what it sends, the home device reads under its nick.
    work.chat_send(room, "from my work device")
    home.wait_for("conv", type="chat", who="Alice-work", plain="from my work device",
                  timeout=30)
    bob.wait_for("conv", type="chat", who="Alice-work", plain="from my work device",
                 timeout=30)
