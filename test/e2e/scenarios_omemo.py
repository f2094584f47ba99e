"""One-to-one OMEMO between real libpurple clients running the plugin and
the independent python peer, over a real Prosody."""

from harness import OMEMO_PLUGIN, parse_xml

NS = "eu.siacs.conversations.axolotl"


def wait_published(client, timeout=20):
    """Until the client's device list and bundle are on the server."""
    client.wait_for(lambda e: e.get("event") == "xml-in" and "type='result'" in e["xml"]
                    or e.get("event") == "xml-in" and 'type="result"' in e["xml"],
                    timeout=timeout)
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = client.debug_log()
        if ("published " + NS + ".devicelist") in log and ("published " + NS + ".bundles:") in log:
            return
        time.sleep(0.1)
    raise AssertionError("%s never published its device list and bundle\n%s"
                         % (client.name, client.debug_log()[-3000:]))


def encrypted_messages_out(client, to_bare):
    out = []
    for xml in client.xml_out("<message"):
        el = parse_xml(xml)
        if el is None or el.tag != "message" or not (el.get("to") or "").startswith(to_bare):
            continue
        out.append(el)
    return out


def scenario_plugin_to_plugin_both_ways(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN])
    bob = ctx.client("bob", plugins=[OMEMO_PLUGIN])
    alice.wait_signed_on()
    bob.wait_signed_on()
    wait_published(alice)
    wait_published(bob)

    alice.send(bob.bare, "hello bob, secretly")
    bob.wait_for("conv", flags="recv", plain="hello bob, secretly", timeout=30)
    alice.wait_for("conv", flags="send", plain="hello bob, secretly")
    for el in encrypted_messages_out(alice, bob.bare):
        assert "hello bob" not in parse_xml_text(el), "plaintext on the wire"
    bob.send(alice.bare, "hi alice")
    alice.wait_for("conv", flags="recv", plain="hi alice", timeout=30)


def parse_xml_text(el):
    import xml.etree.ElementTree as ET
    return ET.tostring(el, encoding="unicode")
