"""Scenarios that prove the harness itself: real Prosody, real libpurple
clients, no OMEMO involved."""

from harness import LURCH_PLUGIN, OMEMO_PLUGIN, befriend, parse_xml


def scenario_two_clients_exchange_plain_messages(ctx):
    alice = ctx.client("alice")
    bob = ctx.client("bob")
    alice.wait_signed_on()
    bob.wait_signed_on()

    text = 'plain <hello> & "quotes", ünïcödé'
    alice.send(bob.bare, text)

    got = bob.wait_for("conv", flags="recv", plain=text)
    assert got["conv"].split("/")[0] == alice.bare, got
    alice.wait_for("conv", flags="send", plain=text)

    sent = alice.xml_out(lambda el: el.tag == "message"
                         and el.findtext("body") == text)
    assert len(sent) == 1, alice.xml_out("<message")
    assert parse_xml(sent[0]).get("to").startswith(bob.bare)
    # The receiving side saw the same body arrive as a stanza.
    assert bob.xml_in(lambda el: el.tag == "message" and el.findtext("body") == text)


def scenario_clients_become_mutual_contacts(ctx):
    alice = ctx.client("alice")
    bob = ctx.client("bob")
    alice.wait_signed_on()
    bob.wait_signed_on()
    befriend(alice, bob)
    # bob accepted alice's request and asked back; alice accepted that.
    bob.wait_for("authorized", who=alice.bare)
    alice.wait_for("authorized", who=bob.bare)


def scenario_plugin_loads_in_client(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    loaded = alice.wait_for("plugin", id=OMEMO_PLUGIN)
    assert loaded["loaded"] is True, loaded
    assert loaded["path"].startswith(ctx.build), loaded
    alice.wait_signed_on()
    alice.sync()
    assert not alice.find("glib-log", level="critical"), alice.find("glib-log")

    unloaded = alice.unload(OMEMO_PLUGIN)
    assert unloaded["loaded"] is False, unloaded
    assert alice.load(OMEMO_PLUGIN)["loaded"] is True


def scenario_lurch_loads_in_client(ctx):
    alice = ctx.client("alice", plugins=[LURCH_PLUGIN])
    loaded = alice.wait_for("plugin", id=LURCH_PLUGIN)
    assert loaded["loaded"] is True, loaded
    alice.wait_signed_on()
    # Once signed on, lurch asks for its own device list. (Its publish goes
    # through libpurple's PEP code, which stays silent on Prosody 0.12: see
    # README.md.)
    alice.wait_xml_out(lambda el: el.tag == "iq" and el.get("type") == "get"
                       and el.find(".//items") is not None
                       and el.find(".//items").get("node")
                       == "eu.siacs.conversations.axolotl.devicelist")


def scenario_forged_stanza_raises_request_that_test_answers(ctx):
    alice = ctx.client("alice")
    bob = ctx.client("bob")
    alice.wait_signed_on()
    bob.wait_signed_on()

    # A file offer sent raw: libpurple asks alice's user with an action
    # request, which stays pending until the test answers it.
    offer = ("<iq type='set' to='%s' id='offer1'>"
             "<si xmlns='http://jabber.org/protocol/si' id='s1' "
             "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
             "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
             "name='a.txt' size='10'/>"
             "<feature xmlns='http://jabber.org/protocol/feature-neg'>"
             "<x xmlns='jabber:x:data' type='form'>"
             "<field var='stream-method' type='list-single'><option>"
             "<value>http://jabber.org/protocol/bytestreams</value>"
             "</option></field></x></feature></si></iq>") % alice.jid
    bob.raw(offer)
    bob.wait_for("raw-sent")
    request = alice.wait_for("request", kind="action", primary__contains="a.txt")
    assert len(request["actions"]) == 2, request
    alice.sync()
    assert not alice.find("request-closed"), "closed before anyone answered"

    alice.answer(1)  # the second button: decline
    alice.wait_for("request-closed", id=request["id"])
    declined = bob.wait_xml_in(lambda el: el.get("id") == "offer1")
    assert parse_xml(declined["xml"]).get("type") == "error", declined

    # Multi-line text and characters JSON must escape survive the trip.
    text = 'two\nlines, a tab\t, "quotes" and a \\ backslash'
    bob.send(alice.bare, text)
    got = alice.wait_for("conv", flags="recv", plain__contains="backslash")
    assert got["plain"].replace("\t", " ") == text.replace("\t", " "), got


def scenario_client_restarts_on_same_state(ctx):
    alice = ctx.client("alice")
    alice.wait_signed_on()
    alice.kill()
    alice.restart()
    alice.wait_signed_on()
    assert alice.quit() == 0


def scenario_slash_command_runs_in_conversation(ctx):
    alice = ctx.client("alice")
    alice.wait_signed_on()
    # The XMPP protocol plugin's own /ping: status 0 and a ping on the wire.
    since = alice.mark()
    result = alice.cmd(alice.bare, "ping " + alice.jid)
    assert result["status"] == 0, result
    alice.wait_xml_out("urn:xmpp:ping", since=since)
    # A command nobody registered.
    assert alice.cmd(alice.bare, "no-such-command")["status"] == 2
