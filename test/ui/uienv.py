"""Shared set-up for the interactive demo and the Finch and Pidgin tests.

A throwaway Prosody (test/e2e/prosody.py) with accounts whose rosters are
written straight into the server's storage before anyone logs in, so
contacts are mutual from the first second without a subscription dance;
and a libpurple configuration folder (accounts.xml, blist.xml, prefs.xml,
plugins/) that Finch or Pidgin opens with -c and signs in from at once.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from xml.sax.saxutils import escape, quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
E2E = os.path.join(TOP, "test", "e2e")
if E2E not in sys.path:
    sys.path.insert(0, E2E)

import prosody  # noqa: E402

PLUGIN_FILE = "purple-omemo.so"
PLUGIN_ID = "core-purple-omemo"

# Each libpurple UI keeps its own "enabled" flag per account and its own
# list of plugins to load at start, under its UI id and pref root.
UIS = {
    "finch": {"ui_id": "gnt-purple", "pref_root": "finch"},
    "pidgin": {"ui_id": "gtk-gaim", "pref_root": "pidgin"},
}


def write_roster(server, user, contacts):
    """Gives user@localhost a roster with mutual subscriptions to contacts
    (bare user names), in the server's own file format. Only safe while
    the user is offline: Prosody reads it at login."""
    lines = ["return {", "\t[false] = {", '\t\t["version"] = 1;', '\t\t["pending"] = {};',
             "\t};"]
    for c in contacts:
        lines += ['\t["%s@%s"] = {' % (c, server.domain),
                  '\t\t["subscription"] = "both";',
                  '\t\t["name"] = "%s";' % c,
                  '\t\t["groups"] = { ["Buddies"] = true; };',
                  "\t};"]
    lines.append("};")
    folder = os.path.join(server.dir, "data", server.domain, "roster")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, user + ".dat"), "w") as f:
        f.write("\n".join(lines) + "\n")


def start_server(users, keep=False):
    """A running Prosody with the given users (password "pw-USER"), every
    one a mutual contact of every other."""
    server = prosody.Prosody(keep=keep)
    server.start()
    try:
        for u in users:
            server.register(u)
        for u in users:
            write_roster(server, u, [o for o in users if o != u])
    except Exception:
        server.stop()
        raise
    return server


def _setting(name, kind, value):
    return "<setting name=%s type=%s>%s</setting>" % (quoteattr(name), quoteattr(kind),
                                                       escape(str(value)))


def write_profile(folder, ui, accounts, plugin_so, buddies=None, prefs=None):
    """A configuration folder for `ui` ("finch" or "pidgin") with the given
    prosody.Account entries enabled and signing in at start, the plugin
    copied into its plugins/ and loaded at start. buddies maps an account's
    user name to the bare JIDs on its buddy list. prefs: extra
    {path: (type, value)} entries, e.g. {"/pidgin/debug/enabled": ("bool", 1)}."""
    spec = UIS[ui]
    buddies = buddies or {}
    os.makedirs(os.path.join(folder, "plugins"), exist_ok=True)
    # A copy, not a link: a rebuild while the program runs must not swap
    # the library under it.
    target = os.path.join(folder, "plugins", PLUGIN_FILE)
    shutil.copyfile(plugin_so, target)

    out = ["<?xml version='1.0' encoding='UTF-8' ?>", "<account version='1.0'>"]
    for a in accounts:
        out += ["<account>", "<protocol>prpl-jabber</protocol>",
                "<name>%s</name>" % escape("%s/%s" % (a.jid, ui)),
                "<password>%s</password>" % escape(a.password),
                "<settings>",
                _setting("connect_server", "string", "127.0.0.1"),
                _setting("port", "int", a.port),
                _setting("connection_security", "string", "opportunistic_tls"),
                _setting("auth_plain_in_clear", "bool", 1),
                "</settings>",
                "<settings ui=%s>" % quoteattr(spec["ui_id"]),
                _setting("auto-login", "bool", 1),
                "</settings>",
                "</account>"]
    out.append("</account>")
    _write(folder, "accounts.xml", out)

    out = ["<?xml version='1.0' encoding='UTF-8' ?>", "<purple version='1.0'>", "<blist>",
           "<group name='Buddies'>", _setting("collapsed", "bool", 0)]
    for a in accounts:
        for jid in buddies.get(a.user, []):
            out += ["<contact>",
                    "<buddy account=%s proto='prpl-jabber'>" % quoteattr("%s/%s" % (a.jid, ui)),
                    "<name>%s</name>" % escape(jid),
                    "<alias>%s</alias>" % escape(jid.split("@")[0]),
                    "</buddy>", "</contact>"]
    out += ["</group>", "</blist>", "</purple>"]
    _write(folder, "blist.xml", out)

    tree = {}
    loaded = "/%s/plugins/loaded" % spec["pref_root"]
    entries = dict(prefs or {})
    entries[loaded] = ("pathlist", [target])
    for path, value in entries.items():
        node = tree
        for part in path.strip("/").split("/"):
            node = node.setdefault(part, {})
        node[None] = value
    out = ["<?xml version='1.0' encoding='UTF-8' ?>", "<pref version='1' name='/'>"]
    out += _pref_lines(tree)
    out.append("</pref>")
    _write(folder, "prefs.xml", out)
    return target


def _pref_lines(tree):
    lines = []
    for name, node in tree.items():
        if name is None:
            continue
        value = node.get(None)
        if value is None:
            lines += ["<pref name=%s>" % quoteattr(name)] + _pref_lines(node) + ["</pref>"]
        elif value[0] in ("pathlist", "stringlist"):
            lines.append("<pref name=%s type=%s>" % (quoteattr(name), quoteattr(value[0])))
            lines += ["<item value=%s/>" % quoteattr(v) for v in value[1]]
            lines.append("</pref>")
        else:
            lines.append("<pref name=%s type=%s value=%s/>"
                         % (quoteattr(name), quoteattr(value[0]), quoteattr(str(value[1]))))
    return lines


def _write(folder, name, lines):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def wait_until(predicate, timeout, interval=0.2):
    """predicate()'s first true value, or None after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class Tmux:
    """One detached tmux session on a private server socket, so nothing of
    the user's own tmux is touched and ending it ends only ours."""

    def __init__(self, session, socket_name=None, width=160, height=48):
        self.session = session
        self.socket = socket_name
        self.width = width
        self.height = height

    def _cmd(self, *args):
        argv = ["tmux"]
        if self.socket:
            argv += ["-L", self.socket]
        return argv + list(args)

    def run(self, *args, check=True):
        return subprocess.run(self._cmd(*args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=check)

    def start(self, shell_command, env=None):
        argv = ["new-session", "-d", "-s", self.session, "-x", str(self.width),
                "-y", str(self.height)]
        for k, v in (env or {}).items():
            argv += ["-e", "%s=%s" % (k, v)]
        # Keep the pane after the program ends, so its exit status and a
        # crash stay readable; set in the same call, before it can end.
        self.run(*(argv + [shell_command, ";", "set-option", "-w", "-t", self.session,
                           "remain-on-exit", "on"]))

    def keys(self, *keys):
        self.run("send-keys", "-t", self.session, *keys)

    def text(self, text):
        """Types text literally (no key-name lookup)."""
        self.run("send-keys", "-t", self.session, "-l", text)

    def screen(self):
        res = self.run("capture-pane", "-p", "-t", self.session, check=False)
        return res.stdout if res.returncode == 0 else ""

    def wait_text(self, needle, timeout=10.0):
        """The screen once it shows needle (a string or a predicate on the
        screen text), or None."""
        def probe():
            s = self.screen()
            hit = needle(s) if callable(needle) else needle in s
            return s if hit else None
        return wait_until(probe, timeout)

    def kill(self):
        self.run("kill-session", "-t", self.session, check=False)
        if self.socket:
            self.run("kill-server", check=False)


# ---- reading a Finch screen ----------------------------------------------------

_DECOR = re.compile(r"[\s\u2190-\u21ff\u2500-\u259f]")


def squash(text):
    """text without whitespace, box drawing or arrows: Finch wraps lines
    anywhere, so compare what was written with what is shown this way."""
    return _DECOR.sub("", text)


def window_text(screen, title):
    """The inside of the Finch window whose title bar contains title, as
    lines (empty if there is no such window on screen)."""
    lines = screen.split("\n")
    for top, line in enumerate(lines):
        at = line.find("\u2524" + title)
        if at < 0:
            continue
        left = line.rfind("\u250c", 0, at)
        right = line.find("\u2510", at)
        if left < 0 or right < 0:
            continue
        body = []
        for row in lines[top + 1:]:
            cell = row[left:right + 1]
            if cell.startswith("\u2514"):
                break
            body.append(cell[1:-1])
        return body
    return []


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def highlighted(screen_with_escapes, dropdown=False):
    """Text runs drawn as GNT draws a selection: on a blue background for
    the selected row of a focused list or menu and for the focused button,
    or, with dropdown=True, in bold cyan for the selected entry of an open
    combo box list. Window titles share the blue, so runs inside a title
    bar and on the task bar (the last line) are left out."""
    runs = []
    lines = screen_with_escapes.rstrip("\n").split("\n")
    for line in lines[:-1]:
        attrs = {"bold": False, "fg": None, "bg": None}
        seen = []       # the visible text of the line so far
        run = None      # [text, char before it]
        pos = 0
        for m in list(_SGR.finditer(line)) + [None]:
            chunk = line[pos:m.start()] if m else line[pos:]
            if chunk:
                if dropdown:
                    marked = attrs["bold"] and attrs["fg"] == "36"
                else:
                    marked = attrs["bg"] == "44"
                if marked:
                    if run is None:
                        run = ["", seen[-1] if seen else ""]
                    run[0] += chunk
                elif run is not None:
                    runs.append(run)
                    run = None
                seen.append(chunk[-1])
            if m is None:
                break
            pos = m.end()
            for code in (m.group(1) or "0").split(";"):
                if code in ("0", ""):
                    attrs = {"bold": False, "fg": None, "bg": None}
                elif code == "1":
                    attrs["bold"] = True
                elif len(code) == 2 and code[0] == "3":
                    attrs["fg"] = code
                elif len(code) == 2 and code[0] == "4":
                    attrs["bg"] = code
        if run is not None:
            runs.append(run)
    return [text.strip() for text, before in runs
            if text.strip() and before != "\u2524"]


# ---- a sequence of dependent checks ---------------------------------------------

class Steps:
    """Runs named checks in order and prints PASS/FAIL for each. A step is
    a function that raises AssertionError (or anything) to fail; once a
    step that later ones need has failed, those are counted as failed
    without running, so the total always covers every check."""

    def __init__(self, on_failure=None):
        self.passed = 0
        self.failed = 0
        self.blocker = None
        self.passed_names = set()
        self.on_failure = on_failure

    def run(self, name, func, needed=True, requires=None, cleanup=None):
        """requires: the name of an earlier step this one builds on;
        cleanup: called after a failure, to leave the program usable for
        the steps that follow."""
        blocker = self.blocker
        if blocker is None and requires is not None and requires not in self.passed_names:
            blocker = requires
        if blocker is not None:
            self.failed += 1
            print("FAIL %s: not run (%s failed)" % (name, blocker), flush=True)
            return None
        started = time.monotonic()
        try:
            value = func()
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            self.failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print("FAIL %s: %s" % (name, detail.strip().replace("\n", "\n    ")), flush=True)
            if self.on_failure:
                self.on_failure(name)
            if cleanup:
                try:
                    cleanup()
                except Exception:  # noqa: BLE001 - best effort
                    pass
            if needed:
                self.blocker = name
            return None
        self.passed += 1
        self.passed_names.add(name)
        print("PASS %s (%.1f s)" % (name, time.monotonic() - started), flush=True)
        return value

    def summary(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 0 if self.failed == 0 else 1
