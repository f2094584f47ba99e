"""Group chats (XEP-0045) with OMEMO: real libpurple clients running the
plugin and the independent python peer in rooms of a real Prosody MUC
service (conference.localhost)."""

import time
from xml.sax.saxutils import quoteattr

from harness import OMEMO_PLUGIN, parse_xml

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
    client.raw("<iq type='set' to='%s' id='%s'>%s</iq>" % (room, iq_id, body))
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


def wait_published(client, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = client.debug_log()
        if "published eu.siacs.conversations.axolotl.devicelist" in log and \
                "published eu.siacs.conversations.axolotl.bundles:" in log:
            return
        time.sleep(0.1)
    raise AssertionError("%s never published its device list and bundle" % client.name)


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
    sent = groupchat_out(client, room, since)
    assert sent, "%s sent no group message" % client.name
    for xml, el in sent:
        assert secret not in xml, "plaintext on the wire: %s" % xml
        assert "eu.siacs.conversations.axolotl" in xml, "not OMEMO: %s" % xml


def scenario_muc_two_plugins_read_each_other(ctx):
    room = "r1@" + MUC
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    wait_published(alice)
    wait_published(bob)
    client_make_room(alice, room, "Alice", members=[bob.bare])
    bob.join(room, "Bob")
    alice.wait_for("conv", type="chat", plain__contains="Bob [bob@localhost", timeout=15)
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
