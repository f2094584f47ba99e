"""Building blocks for end-to-end scenarios.

A scenario is a function `scenario_name(ctx)` in a test/e2e/scenarios_*.py
module; run.py gives it a Scenario (ctx) with a fresh Prosody. From there:

    alice = ctx.client("alice", plugins=["core-purple-omemo"])
    bob = ctx.client("bob")
    alice.wait_for("signed-on"); bob.wait_for("signed-on")
    alice.send(bob.bare, "hello")
    bob.wait_for("conv", flags="recv", plain="hello")

Every program under test (the libpurple client test/e2e/client.c, the python
OMEMO peer test/e2e/peer.py) reads one command per line on stdin and writes
one JSON event per line on stdout; Endpoint is the shared plumbing.

wait_for(what, **fields) matches events: `what` is an event name or a
predicate; each field compares equal, except that a list-valued event field
matches when it contains the value (flags="recv"), a callable value is a
predicate, and `key__contains="x"` tests a substring.
"""

import html
import json
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
OMEMO_PLUGIN = "core-purple-omemo"
LURCH_PLUGIN = "core-riba-lurch"
DEFAULT_TIMEOUT = 10.0
# E2E_VALGRIND=1 runs every client under valgrind memcheck (an error makes
# it exit 99, which fails the scenario); waits then get this much longer.
VALGRIND = os.environ.get("E2E_VALGRIND") == "1"
TIMEOUT_SCALE = float(os.environ.get("E2E_TIMEOUT_SCALE", "8" if VALGRIND else "1"))

# Every process spawned by the harness, so that the runner's guards can
# kill whatever is left when a scenario or the suite runs out of time.
_live = set()
_live_lock = threading.Lock()


class HarnessError(AssertionError):
    """A scenario expectation the programs did not meet."""


class WaitTimeout(HarnessError):
    pass


class ProcessDied(HarnessError):
    pass


def kill_all_processes():
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def _tail_file(path, lines=30):
    try:
        with open(path, "rb") as f:
            data = f.read()[-262144:]
    except OSError:
        return "(no %s)" % path
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def escape_line(text):
    """The inverse of the programs' decoding: one line, \\n and \\\\ escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "")


# ---- Signal messages: their protobuf framing ----------------------------------

def protobuf_fields(data):
    """{field number: [values]} of a protobuf message (varints and
    length-delimited fields, all libsignal's messages use)."""
    fields = {}
    pos = 0
    while pos < len(data):
        tag, pos = varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            length, pos = varint(data, pos)
            value = data[pos:pos + length]
            pos += length
        else:
            raise ValueError("protobuf wire type %d" % wire)
        fields.setdefault(number, []).append(value)
    return fields


def varint(data, pos):
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


# ---- XML -------------------------------------------------------------------

def parse_xml(text):
    """Parses one stanza; tags lose their namespace, which moves to the
    attribute "_ns" (el.find(".//body"), el.find(".//encrypted").get("_ns")).
    Returns None for text that is not one element (stream headers)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        # The prpl writes stanzas with the stream's prefixes unbound.
        try:
            root = ET.fromstring(re.sub(r"<(/?)stream:", r"<\1", text))
        except ET.ParseError:
            return None
    for el in root.iter():
        if el.tag.startswith("{"):
            ns, _, local = el.tag[1:].partition("}")
            el.tag = local
            el.set("_ns", ns)
    return root


def xml_contains(text, match):
    """match: a substring, a compiled regex, or a predicate on the parsed
    element (called only when the text parses)."""
    if isinstance(match, str):
        return match in text
    if isinstance(match, re.Pattern):
        return match.search(text) is not None
    el = parse_xml(text)
    return el is not None and bool(match(el))


# ---- event matching ----------------------------------------------------------

def _field_matches(event, key, want):
    if key.endswith("__contains"):
        have = event.get(key[:-len("__contains")])
        return isinstance(have, (str, list)) and want in have
    if key not in event:
        return False
    have = event[key]
    if callable(want):
        return bool(want(have))
    if isinstance(have, list) and not isinstance(want, list):
        return want in have
    return have == want


def event_matches(event, what=None, **fields):
    if what is not None:
        if callable(what):
            if not what(event):
                return False
        elif event.get("event") != what:
            return False
    return all(_field_matches(event, k, v) for k, v in fields.items())


def _describe(what, fields):
    parts = []
    if what is not None:
        parts.append(what if isinstance(what, str) else getattr(what, "__name__", repr(what)))
    parts += ["%s=%r" % kv for kv in fields.items()]
    return " ".join(parts) or "any event"


def _short(event, width=300):
    text = json.dumps({k: v for k, v in event.items() if not k.startswith("_")},
                      ensure_ascii=False)
    return text if len(text) <= width else text[:width] + "..."


# ---- processes -------------------------------------------------------------

class Endpoint:
    """One program under test: spawn, read JSON events, send commands."""

    def __init__(self, name, state_dir):
        self.name = name
        self.state_dir = state_dir
        self.proc = None
        self.all_events = []
        self.base = 0           # index of the first event of the current process
        self.expected_exit = False
        self._cond = threading.Condition()
        self._reader = None
        os.makedirs(state_dir, exist_ok=True)

    # Subclasses: the command line, and where their own log lives.
    def argv(self):
        raise NotImplementedError

    def log_path(self):
        return os.path.join(self.state_dir, "stderr.log")

    @property
    def events(self):
        """The events of the running (or last) process."""
        with self._cond:
            return list(self.all_events[self.base:])

    def start(self):
        stderr = open(os.path.join(self.state_dir, "stderr.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                cwd=os.path.dirname(HERE), start_new_session=True, env=self.environment())
        finally:
            stderr.close()
        with _live_lock:
            _live.add(self.proc)
        with self._cond:
            self.base = len(self.all_events)
        self.expected_exit = False
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                                        name="events-" + self.name)
        self._reader.start()
        return self

    def environment(self):
        return dict(os.environ)

    def _append(self, event):
        with self._cond:
            event["_seq"] = len(self.all_events)
            event["_t"] = time.monotonic()
            self.all_events.append(event)
            self._cond.notify_all()

    def _read(self, proc):
        with open(os.path.join(self.state_dir, "events.log"), "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if not line:
                    continue
                try:
                    event = json.loads(line)
                    if not isinstance(event, dict):
                        raise ValueError
                except ValueError:
                    event = {"event": "garbage", "line": line}
                self._append(event)
        status = proc.wait()
        with _live_lock:
            _live.discard(proc)
        self._append({"event": "process-exit", "status": status})

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def write(self, line):
        if not self.alive():
            raise ProcessDied("%s: cannot send %r: the process is not running\n%s"
                              % (self.name, line[:80], self.diagnostics()))
        try:
            self.proc.stdin.write((line + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProcessDied("%s: the process closed its input\n%s"
                              % (self.name, self.diagnostics())) from None

    def mark(self):
        """A position to pass as since=, so a wait sees only newer events."""
        with self._cond:
            return len(self.all_events)

    def find(self, what=None, since=None, **fields):
        """All matching events so far (of the current process by default)."""
        start = self.base if since is None else since
        with self._cond:
            return [e for e in self.all_events[start:] if event_matches(e, what, **fields)]

    def wait_for(self, what=None, timeout=DEFAULT_TIMEOUT, since=None, **fields):
        """The first matching event at or after `since`; raises WaitTimeout,
        or ProcessDied as soon as the process is gone without a match."""
        start = self.base if since is None else since
        timeout *= TIMEOUT_SCALE
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.all_events[start:]:
                    if event_matches(e, what, **fields):
                        return e
                start = len(self.all_events)
                exited = any(e.get("event") == "process-exit"
                             for e in self.all_events[self.base:])
                if exited:
                    raise ProcessDied("%s: exited while waiting for %s\n%s"
                                      % (self.name, _describe(what, fields),
                                         self.diagnostics_locked()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout("%s: no %s within %.1f s\n%s"
                                      % (self.name, _describe(what, fields), timeout,
                                         self.diagnostics_locked()))
                self._cond.wait(left)

    def wait_gone(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the process to exit; returns its status."""
        ev = self.wait_for("process-exit", timeout=timeout)
        return ev["status"]

    def diagnostics(self):
        with self._cond:
            return self.diagnostics_locked()

    def diagnostics_locked(self):
        recent = self.all_events[-30:]
        lines = ["--- %s: last %d events ---" % (self.name, len(recent))]
        lines += ["  " + _short(e) for e in recent]
        lines.append("--- %s: %s (tail) ---" % (self.name, os.path.basename(self.log_path())))
        lines.append(_tail_file(self.log_path()))
        if self.log_path() != os.path.join(self.state_dir, "stderr.log"):
            lines.append("--- %s: stderr.log (tail) ---" % self.name)
            lines.append(_tail_file(os.path.join(self.state_dir, "stderr.log"), 15))
        return "\n".join(lines)

    def quit(self, timeout=DEFAULT_TIMEOUT):
        """Asks the program to finish and waits; returns its exit status."""
        self.expected_exit = True
        if self.alive():
            try:
                self.write("quit")
                self.proc.stdin.close()
            except (ProcessDied, OSError):
                pass
        try:
            return self.wait_gone(timeout)
        except WaitTimeout:
            self.kill()
            raise

    def kill(self):
        """SIGKILL, as a crash would: nothing is flushed or signed off."""
        self.expected_exit = True
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def restart(self):
        """A new process on the same state directory (after quit or kill)."""
        if self.alive():
            self.quit()
        elif self._reader is not None:
            self._reader.join(timeout=5)
        return self.start()

    def close(self, timeout=DEFAULT_TIMEOUT):
        """For the runner: stop the process; returns a complaint or None."""
        if self.proc is None:
            return None
        if not self.alive():
            if self._reader is not None:
                self._reader.join(timeout=5)
            status = self.proc.returncode
            if status != 0 and not self.expected_exit:
                return "%s exited with status %s during the scenario" % (self.name, status)
            return None
        try:
            status = self.quit(timeout)
        except HarnessError:
            return "%s did not quit within %.0f s (killed)" % (self.name, timeout)
        if status != 0:
            return "%s exited with status %s on quit" % (self.name, status)
        return None


class Client(Endpoint):
    """A headless libpurple client (test/e2e/client.c) with one account."""

    def __init__(self, name, build, account, state_dir, resource=None, plugins=(),
                 plugin_dir=None, extra_env=None):
        super().__init__(name, state_dir)
        self.build = build
        self.account = account
        self.resource = resource or name
        self.plugins = list(plugins)
        self.plugin_dir = plugin_dir or build
        self.extra_env = extra_env or {}

    @property
    def bare(self):
        return self.account.jid

    @property
    def jid(self):
        return "%s/%s" % (self.account.jid, self.resource)

    def argv(self):
        argv = []
        if VALGRIND:
            argv = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                    "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                    "--suppressions=" + os.path.join(os.path.dirname(HERE), "valgrind.supp"),
                    "--log-file=" + os.path.join(self.state_dir, "valgrind.%p.log")]
        argv += [os.path.join(self.build, "e2e-client"), "--user-dir", self.state_dir,
                "--jid", self.jid, "--password", self.account.password,
                "--port", str(self.account.port), "--plugin-dir", self.plugin_dir]
        for p in self.plugins:
            argv += ["--plugin", p]
        return argv

    def environment(self):
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    def log_path(self):
        return os.path.join(self.state_dir, "debug.log")

    def debug_log(self):
        with open(self.log_path(), encoding="utf-8", errors="replace") as f:
            return f.read()

    # Commands. Text is plain text unless markup=True: libpurple takes HTML,
    # so "<" must reach it as "&lt;" to be sent as "<".
    def send(self, jid, text, markup=False):
        self.write("send %s %s" % (jid, escape_line(text if markup else html.escape(text, False))))

    def cmd(self, jid, line, timeout=DEFAULT_TIMEOUT):
        """Runs a /command in the conversation with jid; returns cmd-result."""
        since = self.mark()
        self.write("cmd %s %s" % (jid, escape_line(line)))
        return self.wait_for("cmd-result", since=since, timeout=timeout)

    def add(self, jid):
        self.write("add " + jid)

    # Group chats (XEP-0045): ROOM is the room's bare JID.
    def join(self, room, nick, timeout=DEFAULT_TIMEOUT):
        """Joins and waits until libpurple has the room open."""
        since = self.mark()
        self.write("join %s %s" % (room, nick))
        return self.wait_for("chat-joined", room=room, since=since, timeout=timeout)

    def leave(self, room):
        self.write("leave " + room)

    def chat_send(self, room, text):
        self.write("chat-send %s %s" % (room, escape_line(html.escape(text, False))))

    def chat_cmd(self, room, line, timeout=DEFAULT_TIMEOUT):
        """Runs a /command in the room's conversation; returns cmd-result."""
        since = self.mark()
        self.write("chat-cmd %s %s" % (room, escape_line(line)))
        return self.wait_for("cmd-result", since=since, timeout=timeout)

    def raw(self, xml):
        self.write("raw " + escape_line(xml))

    def load(self, plugin_id, timeout=DEFAULT_TIMEOUT):
        since = self.mark()
        self.write("load " + plugin_id)
        return self.wait_for("plugin", id=plugin_id, since=since, timeout=timeout)

    def unload(self, plugin_id, timeout=DEFAULT_TIMEOUT):
        since = self.mark()
        self.write("unload " + plugin_id)
        return self.wait_for("plugin", id=plugin_id, since=since, timeout=timeout)

    def drop_in(self, substring, timeout=DEFAULT_TIMEOUT):
        """From now on, incoming stanzas whose text contains substring are
        consumed before any plugin sees them (a "dropped" event each; they
        still show as xml-in): for the test, the server never sent them."""
        since = self.mark()
        self.write("drop-in " + escape_line(substring))
        return self.wait_for("drop-in", since=since, timeout=timeout)

    def drop_in_clear(self, timeout=DEFAULT_TIMEOUT):
        """Lets every incoming stanza through again."""
        since = self.mark()
        self.write("drop-in-clear")
        return self.wait_for("drop-in", since=since, timeout=timeout)

    def answer(self, action=None):
        self.write("answer" if action is None else "answer %d" % action)

    def sync(self, timeout=DEFAULT_TIMEOUT):
        """Returns once every command written so far has been handled."""
        token = "sync-%d" % self.mark()
        since = self.mark()
        self.write("echo " + token)
        self.wait_for("echo", text=token, since=since, timeout=timeout)

    def wait_signed_on(self, timeout=DEFAULT_TIMEOUT):
        def on_or_failed(e):
            return e.get("event") in ("signed-on", "connection-error")
        ev = self.wait_for(on_or_failed, timeout=timeout)
        if ev["event"] != "signed-on":
            raise HarnessError("%s: could not sign on: %s\n%s"
                               % (self.name, ev.get("text"), self.diagnostics()))
        return ev

    # Stanzas.
    def xml_out(self, match=None, since=None):
        """Texts written to the socket that match (see xml_contains)."""
        return [e["xml"] for e in self.find("xml-out", since=since)
                if match is None or xml_contains(e["xml"], match)]

    def xml_in(self, match=None, since=None):
        return [e["xml"] for e in self.find("xml-in", since=since)
                if match is None or xml_contains(e["xml"], match)]

    def wait_xml_out(self, match, timeout=DEFAULT_TIMEOUT, since=None):
        return self.wait_for(lambda e: e.get("event") == "xml-out"
                             and xml_contains(e["xml"], match),
                             timeout=timeout, since=since)

    def wait_xml_in(self, match, timeout=DEFAULT_TIMEOUT, since=None):
        return self.wait_for(lambda e: e.get("event") == "xml-in"
                             and xml_contains(e["xml"], match),
                             timeout=timeout, since=since)


class Peer(Endpoint):
    """The independent python OMEMO peer (test/e2e/peer.py, written
    separately), same protocol style: commands on stdin, JSON events out.
    Its commands take a bare JID and the rest of the line as text, with no
    escapes, so text must stay on one line. See peer.py for its events
    (ready, message, sent, devices, decrypt-error, pong, ...)."""

    def __init__(self, name, account, state_dir, script=None, device_id=None, omemo=True,
                 manual_trust=False, resource=None, debug=False, extra_args=()):
        super().__init__(name, state_dir)
        self.account = account
        self.script = script or os.path.join(HERE, "peer.py")
        self.options = []
        if device_id is not None:
            self.options += ["--device-id", str(device_id)]
        if not omemo:
            self.options.append("--no-omemo")
        if manual_trust:
            self.options.append("--manual-trust")
        if resource is not None:
            self.options += ["--resource", resource]
        if debug:
            self.options.append("--debug")
        self.options += list(extra_args)

    @property
    def bare(self):
        return self.account.jid

    jid = bare

    def argv(self):
        return [PYTHON, self.script, "--jid", self.account.jid,
                "--password", self.account.password, "--host", "127.0.0.1",
                "--port", str(self.account.port), "--state", self.state_dir] + self.options

    def command(self, line):
        if "\n" in line or "\r" in line:
            raise ValueError("peer commands are one line: %r" % line)
        self.write(line)

    def send(self, jid, text):
        """An OMEMO message to every device of jid (and our own others)."""
        self.command("send %s %s" % (jid, text))

    def send_plain(self, jid, text):
        self.command("send-plain %s %s" % (jid, text))

    def send_raw(self, xml):
        self.command("send-raw " + xml)

    raw = send_raw

    def refresh(self, jid):
        self.command("refresh " + jid)

    def trust(self, jid, device_id):
        self.command("trust %s %d" % (jid, device_id))

    def distrust(self, jid, device_id):
        self.command("distrust %s %d" % (jid, device_id))

    def subscribe(self, jid):
        self.command("subscribe " + jid)

    # Group chats; see peer.py for the events.
    def join(self, room, nick, timeout=30):
        since = self.mark()
        self.command("join %s %s" % (room, nick))
        return self.wait_for("joined", room=room, since=since, timeout=timeout)

    def configure(self, room, timeout=30, **fields):
        since = self.mark()
        self.command("configure %s %s" % (room, " ".join(
            "%s=%s" % (k.replace("__", "#"), v) for k, v in fields.items())))
        return self.wait_for(lambda e: e.get("event") in ("configured", "error"),
                             since=since, timeout=timeout)

    def affiliate(self, room, jid, affiliation, timeout=30):
        since = self.mark()
        self.command("affiliate %s %s %s" % (room, jid, affiliation))
        return self.wait_for(lambda e: e.get("event") in ("affiliated", "error"),
                             since=since, timeout=timeout)

    def gsend(self, room, text):
        self.command("gsend %s %s" % (room, text))

    def gsend_plain(self, room, text):
        self.command("gsend-plain %s %s" % (room, text))

    def leave(self, room):
        self.command("leave " + room)

    add = subscribe

    def wait_ready(self, timeout=30):
        return self.wait_for("ready", timeout=timeout)

    wait_signed_on = wait_ready

    def sync(self, timeout=DEFAULT_TIMEOUT):
        since = self.mark()
        self.write("ping")
        self.wait_for("pong", since=since, timeout=timeout)


# ---- scenarios -----------------------------------------------------------------

class Scenario:
    """What a scenario function receives: the server and factories for the
    programs, all of which are stopped (and checked) when it ends."""

    def __init__(self, name, build, workdir, server):
        self.name = name
        self.build = os.path.abspath(build)
        self.workdir = workdir
        self.server = server
        self.endpoints = []
        self._dirs = {}

    def account(self, user, password=None):
        """user@localhost, registered on first use."""
        if user not in self.server.accounts:
            self.server.register(user, password)
        return self.server.accounts[user]

    def _state_dir(self, name):
        n = self._dirs.get(name, 0)
        self._dirs[name] = n + 1
        return os.path.join(self.workdir, name if n == 0 else "%s-%d" % (name, n))

    def client(self, user, plugins=(), resource=None, name=None, start=True, **kw):
        """A libpurple client for user (registered if new). plugins: ids to
        load before signing on, e.g. [OMEMO_PLUGIN] or [LURCH_PLUGIN]."""
        account = user if hasattr(user, "jid") else self.account(user)
        name = name or account.user
        c = Client(name, self.build, account, self._state_dir(name), resource=resource,
                   plugins=plugins, **kw)
        self.endpoints.append(c)
        return c.start() if start else c

    def peer(self, user, name=None, start=True, **kw):
        account = user if hasattr(user, "jid") else self.account(user)
        name = name or account.user + "-peer"
        p = Peer(name, account, self._state_dir(name), **kw)
        self.endpoints.append(p)
        return p.start() if start else p

    def close(self):
        """Stops every program; returns complaints (crashes, hangs)."""
        problems = []
        for ep in self.endpoints:
            problem = ep.close()
            if problem:
                problems.append(problem)
        return problems

    def diagnostics(self):
        return "\n".join(ep.diagnostics() for ep in self.endpoints if ep.proc is not None)


def _wait_subscribed_to(ep, other, timeout):
    """ep holds an approved subscription to other's presence."""
    if isinstance(ep, Client):
        ep.wait_for("presence", who=other.bare, online=True, timeout=timeout)
    else:
        ep.wait_for("subscription", jid=other.bare, type="subscribed", timeout=timeout)


def befriend(a, b, timeout=DEFAULT_TIMEOUT):
    """Makes two signed-on endpoints (clients or peers) mutual contacts:
    a asks, b accepts and asks back (both programs do that on their own),
    a accepts. Returns once each holds the other's subscription."""
    a.add(b.bare)
    _wait_subscribed_to(a, b, timeout)
    _wait_subscribed_to(b, a, timeout)


# ---- faults: the server goes away and comes back ------------------------------

def server_stop(server, timeout=10.0):
    """Stops the scenario's Prosody (SIGTERM, so it closes every stream),
    keeping its configuration, accounts and data for server_start. The
    runner's own stop at the end copes with a server already stopped."""
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_start(server, timeout=10.0):
    """Starts the scenario's Prosody again after server_stop: the same
    configuration file, so the same port, accounts and stored data. Returns
    once it accepts clients on that port again."""
    import socket

    from prosody import PROSODY

    if server.proc is not None and server.proc.poll() is None:
        return
    try:
        offset = os.path.getsize(server.log_path)
    except OSError:
        offset = 0
    out = open(os.path.join(server.dir, "stdout.log"), "ab")
    try:
        server.proc = subprocess.Popen(
            [PROSODY, "-F", "--config", server.config], cwd=server.dir,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    finally:
        out.close()
    marker = "Activated service 'c2s' on [127.0.0.1]:%d" % server.port
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        if server.proc.poll() is not None:
            raise HarnessError("prosody exited with status %s on restart\n%s"
                               % (server.proc.returncode, server.log_tail()))
        try:
            with open(server.log_path, "rb") as f:
                f.seek(offset)
                fresh = f.read().decode("utf-8", "replace")
        except OSError:
            fresh = ""
        if marker in fresh:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                    return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise HarnessError("prosody did not accept clients on port %d again within %.0f s\n%s"
                               % (server.port, timeout, server.log_tail()))
        time.sleep(0.02)
