#!/usr/bin/python3
"""`make bench-e2e`: purple-omemo and purple-lurch 0.7 side by side, doing
the same work in the same headless libpurple client (client.c) against the
same local Prosody.

    bench_e2e.py --build build/libomemo-c [--quick] [--messages N]
                 [--sizes 1,4,16] [--no-recv] [--no-baseline] [--trace] [--keep]

For each N in --sizes, a contact whose account has N devices (N python OMEMO
peers, peer.py, started one after another so the device list holds all of
them) gets messages from three clients, each a fresh account with a fresh
store: one running purple-omemo, one running lurch, and one with no plugin
at all (plain text: what libpurple and this harness cost by themselves).
Sessions are established beforehand and not measured: warm-up messages go
out until no device still gets a prekey message. Then the clients take
turns, one message at a time, each sent only after every device decrypted
the one before: the peers never compete with a client for the CPU while it
sends, and a change in the machine's load or the disk's latency meets every
client alike. At the smallest N the contact's first device then writes to
the two plugins' clients, taking turns the same way, and their receiving is
measured.

Figures, all taken inside the client (client.c, commands bench-*):
- wall: median per message, from purple_conv_im_send to the <message>
  stanza being written (the last "jabber-sending-text" handler); receiving,
  from the stanza's arrival (before any plugin sees it) to its display;
- CPU (user + kernel; the kernel's share is shown), file opens and fsyncs
  (fsync + fdatasync) per message: the totals of the measured windows
  (from the first send to after the last message was decrypted everywhere;
  from the first arrival to the last display) divided by the messages.
  Opens and fsyncs are counted by test/e2e/iocount.c, preloaded.
The client's debug log is off while it measures, as in Pidgin or Finch with
no debug window open. --trace runs the clients under strace and lists which
files the opens and fsyncs of the windows went to (it slows them down).

Prosody loads one module of this benchmark's own
(bench_modules/mod_bench_pep_identity.lua): without it libpurple sees no
PEP on Prosody 0.12 and lurch never publishes its device list, so nobody can
write to it. Every client runs against that same server.

Prints Markdown tables for the README and the machine they ran on, and
writes every per-message figure to BUILD/bench-e2e/results.json. Exits
non-zero only when the harness fails (a program dies, a message never
arrives or is not encrypted); slow figures are reported, not failed.
"""

import argparse
import datetime
import html
import re
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402
from harness import (LURCH_PLUGIN, OMEMO_PLUGIN, Client, HarnessError, Peer,  # noqa: E402
                     befriend, escape_line, parse_xml)
from prosody import Prosody  # noqa: E402
from scenarios_devices import devicelist_event_ids  # noqa: E402

NS = "eu.siacs.conversations.axolotl"
NODE_DEVICELIST = NS + ".devicelist"
NODE_BUNDLES = NS + ".bundles:"
BENCH_MODULE = "bench_pep_identity"
BENCH_MODULE_DIR = os.path.join(HERE, "bench_modules")
IOCOUNT_SRC = os.path.join(HERE, "iocount.c")

# (label, plugin id, account prefix)
PLUGINS = [("purple-omemo", OMEMO_PLUGIN, "omemo"), ("lurch 0.7", LURCH_PLUGIN, "lurch")]
BASELINE = ("no plugin", None, "plain")
WINDOW_KEYS = ("wall_us", "cpu_us", "sys_us", "opens", "fsyncs")
WARMUP_ROUNDS = 8
# python-omemo sends an empty message after 53 received without a reply.
STALENESS_CHUNK = 50
# libpurple's delay before it writes a changed XML file, plus a margin.
LIBPURPLE_SAVE_DELAY = 6.0
# Generous: 16 python peers share two cores with everything else.
PEER_READY_TIMEOUT = 120
MESSAGE_TIMEOUT = 90
SUITE_TIMEOUT = 45 * 60


def log(text):
    sys.stderr.write("[bench-e2e %s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


# ---- set-up ------------------------------------------------------------------

def build_iocount(build):
    """The preload library, rebuilt when its source is newer."""
    out = os.path.join(build, "e2e-iocount.so")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(IOCOUNT_SRC):
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-O2", "-shared", "-fPIC",
                        IOCOUNT_SRC, "-o", out], check=True)
    return out


def machine_line():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    u = os.uname()
    return "machine: %s, %d cores, %s %s" % (model, os.cpu_count() or 0, u.sysname, u.release)


def package_version(name):
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                             text=True, timeout=10)
        return res.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def project_version():
    try:
        with open(os.path.join(ROOT, "VERSION")) as f:
            return f.read().strip()
    except OSError:
        return "?"


# ---- waiting on the programs ---------------------------------------------------

def _publish_of(node_prefix):
    def match(el):
        return (el.tag == "iq" and el.get("type") == "set"
                and any((p.get("node") or "").startswith(node_prefix) for p in el.iter("publish")))
    return match


def wait_published(client, timeout=60):
    """The client's first device list and bundle publishes were answered
    with a result: its device is there for others to find."""
    for node in (NODE_DEVICELIST, NODE_BUNDLES):
        out = parse_xml(client.wait_xml_out(_publish_of(node), timeout=timeout)["xml"])
        iq_id = out.get("id")
        answer = parse_xml(client.wait_xml_in(
            lambda el, i=iq_id: el.tag == "iq" and el.get("id") == i
            and el.get("type") in ("result", "error"), timeout=timeout)["xml"])
        if answer.get("type") != "result":
            raise HarnessError("%s: publishing %s failed: %s" % (client.name, node, answer))


def wait_knows_devices(client, contact, ids, timeout=60):
    """The client got the contact's device list with all of ids (lurch
    learns a contact's list only from these notifications)."""
    def match(el):
        got = devicelist_event_ids(el, contact)
        return got is not None and set(ids) <= got
    client.wait_xml_in(match, timeout=timeout)


def wait_all_decrypted(peers, text, marks, encrypted=True, timeout=MESSAGE_TIMEOUT):
    """Every peer decrypted the OMEMO message text (or, encrypted=False,
    got it in plain); returns their events."""
    return [p.wait_for("message", text=text, encrypted=encrypted, since=m, timeout=timeout)
            for p, m in zip(peers, marks)]


def wait_key_transports_in(client, contact, peers, timeout=MESSAGE_TIMEOUT):
    """Every key transport message the peers sent on their own (after a
    prekey message) reached the client, so no session set-up is left over
    for the measured window."""
    sent = sum(len(p.find("key-transport-sent", to=client.bare)) for p in peers)

    def arrived():
        return len(client.xml_in(lambda el: el.tag == "message"
                                 and (el.get("from") or "").split("/")[0] == contact
                                 and el.find("encrypted") is not None
                                 and el.find("encrypted/payload") is None))
    deadline = time.monotonic() + timeout
    while arrived() < sent:
        if time.monotonic() > deadline:
            raise HarnessError("%s: %d of %d key transport messages arrived"
                               % (client.name, arrived(), sent))
        time.sleep(0.05)
    client.sync()


def command(ep, line, event, timeout=30, **fields):
    since = ep.mark()
    ep.write(line)
    return ep.wait_for(event, since=since, timeout=timeout, **fields)


def median(values):
    return statistics.median(values) if values else float("nan")


# ---- --trace: where the opens and fsyncs come from --------------------------------

TRACE_CALLS = "open,openat,creat,fsync,fdatasync,access"
MARK = re.compile(r'access\("/bench-e2e-mark/(send|recv)-(begin|end)"')


class TracedClient(Client):
    """The client under strace: every open and fsync with its path, and the
    marks client.c leaves at the start and end of each measured window.
    Slows the client down: figures taken this way only say where I/O goes."""

    def __init__(self, *args, trace_path=None, **kw):
        super().__init__(*args, **kw)
        self.trace_path = trace_path

    def argv(self):
        return ["strace", "-f", "-qq", "-tt", "-y", "-e", "trace=" + TRACE_CALLS,
                "-o", self.trace_path] + super().argv()


STRACE_LINE = re.compile(r"^(?:\d+\s+)?(?:[\d:.]+\s+)?(\w+)\((.*)$")


def _call_path(line):
    """(call, path) of a successful open or of an fsync in one strace line
    ("PID HH:MM:SS.us call(args) = result", paths shown by -y)."""
    m = STRACE_LINE.match(line)
    if m is None:
        return None
    call, rest = m.groups()
    if call in ("open", "openat", "creat"):
        if " = -1 " in rest or "<unfinished" in rest:
            return None
        quoted = rest.split('"')
        return (call, quoted[1]) if len(quoted) > 1 else None
    if call in ("fsync", "fdatasync"):
        inner = rest.split("<", 1)
        path = inner[1].split(">", 1)[0] if len(inner) > 1 else "?"
        return (call, path)
    return None


def trace_windows(path, state_root):
    """{"send"|"recv": {(call, path): count}} over the measured windows."""
    totals, kind = {}, None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = MARK.search(line)
                if m:
                    kind = m.group(1) if m.group(2) == "begin" else None
                    if kind:
                        totals.setdefault(kind, {})
                elif kind is not None:
                    cp = _call_path(line)
                    if cp is not None:
                        call, p = cp[0], cp[1].replace(state_root, "<state>")
                        totals[kind][(call, p)] = totals[kind].get((call, p), 0) + 1
    except OSError:
        pass
    return totals


# ---- one run -------------------------------------------------------------------

class Subject:
    """One client under measurement: its label, plugin and account."""

    def __init__(self, label, plugin, prefix, client):
        self.label = label
        self.plugin = plugin
        self.prefix = prefix
        self.client = client
        self.encrypted = plugin is not None


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out_dir = os.path.join(self.build, "bench-e2e")
        os.makedirs(self.out_dir, exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix="run-", dir=self.out_dir)
        # The python peers write and fsync their whole state after every
        # message they decrypt, just when the next message is being sent,
        # and Prosody archives and logs every message: on the disk under
        # the clients' stores, those writes would sit in front of the
        # measured client's own fsyncs. They are the harness, not what is
        # measured: their files live in memory (tmpfs).
        shm = "/dev/shm"
        self.peer_dir = (tempfile.mkdtemp(prefix="purple-omemo-bench-peers-", dir=shm)
                         if os.path.isdir(shm) and os.access(shm, os.W_OK) else self.workdir)
        self.iocount = build_iocount(self.build)
        self.server = None
        self.endpoints = []
        self.tag = secrets.token_hex(3)
        self.results = {"send": {}, "recv": {}, "notes": []}

    # Programs ---------------------------------------------------------------

    def _state(self, name):
        return os.path.join(self.workdir, name)

    def account(self, user):
        if user not in self.server.accounts:
            self.server.register(user)
        return self.server.accounts[user]

    def client(self, user, plugin):
        """A client for user loading plugin (None: no plugin at all)."""
        plugins = [plugin] if plugin else []
        kw = dict(plugins=plugins, extra_env={"LD_PRELOAD": self.iocount})
        if self.args.trace:
            c = TracedClient(user, self.build, self.account(user), self._state(user),
                             trace_path=os.path.join(self.workdir, user + ".strace"), **kw)
        else:
            c = Client(user, self.build, self.account(user), self._state(user), **kw)
        self.endpoints.append(c)
        c.start()
        if plugin:
            loaded = c.wait_for("plugin", id=plugin, timeout=30)
            if not loaded.get("loaded"):
                raise HarnessError("%s: plugin %s did not load: %s" % (user, plugin, loaded))
        c.wait_signed_on(timeout=60)
        return c

    def peers(self, user, n):
        """n devices of one account, started one after another: each adds
        itself to the device list the one before published."""
        account = self.account(user)
        peers, ids = [], []
        for k in range(n):
            p = Peer("%s-d%d" % (user, k), account,
                     os.path.join(self.peer_dir, "%s-d%d" % (user, k)))
            self.endpoints.append(p)
            p.start()
            ready = p.wait_ready(timeout=PEER_READY_TIMEOUT)
            peers.append(p)
            ids.append(ready["device_id"])
        listed = set(peers[-1].find("ready")[0].get("devices") or [])
        if not set(ids) <= listed:
            raise HarnessError("%s: device list %s lacks some of %s" % (user, sorted(listed), ids))
        return peers, ids

    def stop(self, ep):
        problem = ep.close(timeout=30)
        if problem:
            raise HarnessError(problem)
        self.endpoints.remove(ep)

    def close_all(self):
        problems = []
        for ep in list(self.endpoints):
            problem = ep.close(timeout=30)
            if problem:
                problems.append(problem)
        self.endpoints = []
        return problems

    def collect_trace(self, client, key):
        """With --trace: the client's opens and fsyncs per window, saved
        under key (after the client has quit and strace has written all)."""
        if not self.args.trace:
            return
        wins = trace_windows(client.trace_path, client.state_dir)
        self.results.setdefault("trace", {})[key] = {
            kind: sorted(([c, p, n] for (c, p), n in w.items()), key=lambda x: -x[2])
            for kind, w in wins.items()}

    # Set-up -------------------------------------------------------------------

    def set_up(self, subject, contact, peers, ids):
        """Sessions with every device, established and answered; nothing
        of the set-up left to happen in the measured window."""
        client = subject.client
        if not subject.encrypted:
            text = "warm-up plain %s" % self.tag
            marks = [p.mark() for p in peers]
            client.send(contact, text)
            wait_all_decrypted(peers, text, marks, encrypted=False)
            return 1
        wait_published(client)
        befriend(client, peers[0], timeout=60)
        wait_knows_devices(client, contact, ids)
        return self.warm_up(client, contact, peers)

    def warm_up(self, client, contact, peers):
        """Messages until no device gets a prekey message any more: every
        session exists and has been answered."""
        for r in range(WARMUP_ROUNDS):
            text = "warm-up %s %d" % (self.tag, r)
            marks = [p.mark() for p in peers]
            client.send(contact, text)
            got = wait_all_decrypted(peers, text, marks)
            wait_key_transports_in(client, contact, peers)
            if r >= 1 and not any(e.get("prekey") for e in got):
                return r + 1
        self.results["notes"].append(
            "%s: after %d warm-up messages some devices still got prekey messages"
            % (client.name, WARMUP_ROUNDS))
        return WARMUP_ROUNDS

    @staticmethod
    def settle(clients, since):
        """libpurple writes its XML files (accounts, prefs, status, caps)
        5 s after a change, on a timer no event announces; what sign-on
        and befriending changed is written before the window opens."""
        left = since + LIBPURPLE_SAVE_DELAY - time.monotonic()
        if left > 0:
            time.sleep(left)
        for c in clients:
            c.sync()

    def answer_from_peers(self, client, peers):
        """Each device writes one message to the client (not measured)."""
        for k, p in enumerate(peers):
            text = "reply %s %d from device %d" % (self.tag, len(p.find("sent")), k)
            since = client.mark()
            p.send(client.bare, text)
            client.wait_for("conv", flags="recv", plain=text, since=since,
                            timeout=MESSAGE_TIMEOUT)
        client.sync()

    # Sending ----------------------------------------------------------------

    def measure_send(self, subjects, contact, peers, n):
        """count messages from each subject, one at a time and taking
        turns (so a change in the machine's load or the disk's latency
        meets every subject alike), in windows of at most STALENESS_CHUNK:
        between two windows every device writes back, as a contact in a
        conversation does, so that no device sends the empty "heartbeat"
        python-omemo sends after 53 messages without a reply (it would land
        in the window). Returns {label: figures}."""
        count = self.args.messages
        state = {s.label: {"sent": [], "windows": [], "prekeys": 0, "heartbeats": 0}
                 for s in subjects}
        for first in range(0, count, STALENESS_CHUNK):
            last = min(count, first + STALENESS_CHUNK)
            kt_marks = {}
            for s in subjects:
                if first > 0 and s.encrypted:
                    self.answer_from_peers(s.client, peers)
            for s in subjects:
                kt_marks[s.label] = [p.mark() for p in peers]
                command(s.client, "debug-log off", "debug-log")
                begin = command(s.client, "bench-begin", "bench-begin")
                if not begin.get("iocount"):
                    raise HarnessError("the client does not see %s (LD_PRELOAD)" % self.iocount)
            for i in range(first, last):
                for s in subjects:
                    st = state[s.label]
                    text = "bench %s n%d %s %d" % (self.tag, n, s.prefix, i)
                    marks = [p.mark() for p in peers]
                    ev = command(s.client, "bench-send %s %s"
                                 % (contact, escape_line(html.escape(text, False))),
                                 "bench-sent", timeout=MESSAGE_TIMEOUT)
                    st["sent"].append(ev)
                    got = wait_all_decrypted(peers, text, marks, encrypted=s.encrypted)
                    st["prekeys"] += sum(1 for e in got if e.get("prekey"))
            for s in subjects:
                st = state[s.label]
                s.client.sync()
                st["windows"].append(command(s.client, "bench-end", "bench-window"))
                command(s.client, "debug-log on", "debug-log")
                st["heartbeats"] += sum(
                    len(p.find("key-transport-sent", to=s.client.bare, since=m))
                    for p, m in zip(peers, kt_marks[s.label]))
        out = {}
        for s in subjects:
            st = state[s.label]
            client = s.client
            # What crossed the wire: every message encrypted, none in plain.
            leaked = client.xml_out("bench %s n%d %s " % (self.tag, n, s.prefix))
            if leaked and s.encrypted:
                raise HarnessError("%s: a benchmark text went on the wire in plain: %s"
                                   % (client.name, leaked[0][:300]))
            errors = client.find("error")
            if errors:
                raise HarnessError("%s: %s" % (client.name, errors[:3]))
            window = {k: sum(w[k] for w in st["windows"]) for k in WINDOW_KEYS}
            fig = self.figures(st["sent"], window, count, prekeys=st["prekeys"])
            fig["windows"] = len(st["windows"])
            fig["contact_key_transports_in_window"] = st["heartbeats"]
            if st["heartbeats"]:
                self.results["notes"].append(
                    "%s: the contact's devices sent %d key transport message(s) inside the "
                    "window; their handling is in the figures" % (client.name, st["heartbeats"]))
            out[s.label] = fig
        return out

    @staticmethod
    def figures(per_msg, window, count, prekeys=0):
        walls = sorted(e["wall_us"] for e in per_msg)
        calls = [e["call_us"] for e in per_msg if "call_us" in e]
        return {
            "messages": count,
            "wall_median_ms": median(walls) / 1000.0,
            "call_median_ms": median(calls) / 1000.0 if calls else float("nan"),
            "wall_p90_ms": walls[int(0.9 * (len(walls) - 1))] / 1000.0,
            "cpu_median_ms": median([e["cpu_us"] for e in per_msg]) / 1000.0,
            "cpu_per_msg_ms": window["cpu_us"] / 1000.0 / count,
            "sys_per_msg_ms": window["sys_us"] / 1000.0 / count,
            "opens_per_msg": window["opens"] / count,
            "fsyncs_per_msg": window["fsyncs"] / count,
            "fsyncs_max_in_one": max((e["fsyncs"] for e in per_msg), default=0),
            "queued": sum(1 for e in per_msg if e.get("queued")),
            "prekey_keys": prekeys,
            "window": {k: window[k] for k in WINDOW_KEYS},
            "per_message": [{k: e[k] for k in WINDOW_KEYS + ("call_us",) if k in e}
                            for e in per_msg],
        }

    # Receiving ----------------------------------------------------------------

    def measure_recv(self, subjects, peer):
        """count messages from the contact's device to each subject, taking
        turns. A subject whose client cannot receive at all is reported in
        the notes and left out. Returns {label: figures}."""
        count = self.args.messages
        ready = []
        for s in subjects:
            # The device holds a session from the client's messages; its
            # first messages start a new chain on the client's side.
            try:
                for r in range(2):
                    text = "warm-up back %s %d" % (self.tag, r)
                    since = s.client.mark()
                    peer.send(s.client.bare, text)
                    s.client.wait_for("conv", flags="recv", plain=text, since=since,
                                      timeout=MESSAGE_TIMEOUT)
            except HarnessError as e:
                if not s.client.alive():
                    raise
                self.recv_failure(s.label, e)
                continue
            ready.append(s)
        prefixes = {}
        for s in ready:
            prefixes[s.label] = "back %s %s " % (self.tag, s.prefix)
            command(s.client, "bench-recv %s %s" % (peer.bare, escape_line(prefixes[s.label])),
                    "bench-recv-armed")
            command(s.client, "debug-log off", "debug-log")
        got = {s.label: [] for s in ready}
        for i in range(count):
            for s in ready:
                text = prefixes[s.label] + str(i)
                since = s.client.mark()
                peer.send(s.client.bare, text)
                got[s.label].append(s.client.wait_for("bench-recv", text=text, since=since,
                                                      timeout=MESSAGE_TIMEOUT))
        out = {}
        for s in ready:
            window = command(s.client, "bench-recv-end", "bench-recv-window")
            command(s.client, "debug-log on", "debug-log")
            if window["messages"] != count or window["unmatched_arrivals"]:
                raise HarnessError("%s: receive window %s" % (s.client.name, window))
            out[s.label] = self.figures(got[s.label], window, count)
        return out

    def recv_failure(self, label, exc):
        first = (str(exc) or type(exc).__name__).split("\n")[0]
        note = "%s: receiving could not be measured: %s" % (label, first)
        self.results["notes"].append(note)
        log(note)

    # The whole run ----------------------------------------------------------

    def run(self):
        sizes = self.args.sizes
        kinds = ([] if self.args.no_baseline else [BASELINE]) + \
            (PLUGINS[:1] if self.args.no_lurch else PLUGINS)
        self.results["disk"] = {"start": disk_sync_ms(self.workdir)}
        self.server = Prosody(extra_modules=[BENCH_MODULE], plugin_paths=[BENCH_MODULE_DIR],
                              base_dir=None if self.peer_dir == self.workdir else self.peer_dir)
        self.server.start()
        try:
            for n in sizes:
                log("N=%d: starting %d peer device(s)" % (n, n))
                t = time.monotonic()
                peers, ids = self.peers("contact%d" % n, n)
                log("N=%d: peers ready in %.0f s" % (n, time.monotonic() - t))
                contact = peers[0].bare
                subjects = [Subject(label, plugin, prefix,
                                    self.client("%s%d" % (prefix, n), plugin))
                            for label, plugin, prefix in kinds]
                for s in subjects:
                    rounds = self.set_up(s, contact, peers, ids)
                    log("N=%d: %s set up (%d warm-up message(s))" % (n, s.label, rounds))
                self.settle([s.client for s in subjects], time.monotonic())
                figs = self.measure_send(subjects, contact, peers, n)
                self.results["send"][str(n)] = figs
                for label, fig in figs.items():
                    log("N=%d: %s: wall %.3f ms, CPU %.3f ms, opens %.2f, fsyncs %.2f per message"
                        % (n, label, fig["wall_median_ms"], fig["cpu_per_msg_ms"],
                           fig["opens_per_msg"], fig["fsyncs_per_msg"]))
                if n == min(sizes) and not self.args.no_recv:
                    figs = self.measure_recv([s for s in subjects if s.encrypted], peers[0])
                    self.results["recv"] = figs
                    for label, fig in figs.items():
                        log("receive: %s: wall %.3f ms, CPU %.3f ms per message"
                            % (label, fig["wall_median_ms"], fig["cpu_per_msg_ms"]))
                for s in subjects:
                    self.stop(s.client)
                    self.collect_trace(s.client, "%s N=%d" % (s.label, n))
                for p in peers:
                    self.stop(p)
            self.results["disk"]["end"] = disk_sync_ms(self.workdir)
        finally:
            problems = self.close_all()
            if self.server is not None:
                self.server.save_log(os.path.join(self.workdir, "prosody.log"))
                self.server.stop()
        if problems:
            raise HarnessError("; ".join(problems))


# ---- output --------------------------------------------------------------------

def fmt_ms(v):
    if v != v:  # nan
        return "n/a"
    return "%.2f ms" % v if v >= 1 else "%.3f ms" % v


def fmt_count(v):
    return ("%.0f" % v) if abs(v - round(v)) < 0.005 else "%.2f" % v


def fmt_ratio(a, b):
    if not b or a != a or b != b:
        return "n/a"
    r = a / b
    return "%.0fx" % r if r >= 10 else "%.1fx" % r


def _rows(lines, key, figs):
    """Long-form rows: one per client, then lurch's ratio to purple-omemo."""
    omemo, lurch = PLUGINS[0][0], PLUGINS[1][0]
    for label in [BASELINE[0]] + [p[0] for p in PLUGINS]:
        f = figs.get(label)
        if f is None:
            continue
        call = f.get("call_median_ms", float("nan"))
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            key, label, fmt_ms(f["wall_median_ms"]), "" if call != call else fmt_ms(call),
            fmt_ms(f["cpu_per_msg_ms"]),
            fmt_ms(f["sys_per_msg_ms"]), fmt_count(f["opens_per_msg"]),
            fmt_count(f["fsyncs_per_msg"])))
    o, lu, base = figs.get(omemo), figs.get(lurch), figs.get(BASELINE[0])
    if o and lu:
        cpu = fmt_ratio(lu["cpu_per_msg_ms"], o["cpu_per_msg_ms"])
        if base:
            # What the plugins add to libpurple and the harness.
            cpu += " (%s over no plugin)" % fmt_ratio(
                lu["cpu_per_msg_ms"] - base["cpu_per_msg_ms"],
                o["cpu_per_msg_ms"] - base["cpu_per_msg_ms"])
        oc, lc = o.get("call_median_ms", float("nan")), lu.get("call_median_ms", float("nan"))
        lines.append("| %s | lurch / purple-omemo | %s | %s | %s | | | |" % (
            key, fmt_ratio(lu["wall_median_ms"], o["wall_median_ms"]),
            "" if oc != oc or lc != lc else fmt_ratio(lc, oc), cpu))


TABLE_HEAD = ["| %s | client | wall (median) | whole call (median) | CPU/msg | of it in the kernel "
              "| file opens/msg | fsyncs/msg |", "|---|---|---|---|---|---|---|---|"]


def report(bench, started, elapsed):
    res = bench.results
    omemo, lurch = PLUGINS[0][0], PLUGINS[1][0]
    lines = []
    today = datetime.date.today().isoformat()
    lines.append("purple-omemo %s end-to-end benchmark (make bench-e2e), %s"
                 % (project_version(), today))
    lines.append("%s; Prosody %s on loopback, libpurple %s, purple-lurch %s"
                 % (machine_line(), package_version("prosody"), package_version("libpurple0"),
                    package_version("purple-lurch")))
    lines.append("%d messages per figure; sessions established beforehand; the clients take "
                 "turns message by message; debug log off while measuring; run took %.0f s"
                 % (bench.args.messages, elapsed))
    disk = res.get("disk")
    if disk and "end" in disk:
        lines.append("the disk under the stores: a 4 KiB write and fdatasync took %s (median, "
                     "p90 %s) at the start of the run, %s (p90 %s) at its end; wall times "
                     "move with it" % (fmt_ms(disk["start"][0]), fmt_ms(disk["start"][1]),
                                       fmt_ms(disk["end"][0]), fmt_ms(disk["end"][1])))
    lines.append("")
    lines.append("Sending to a contact with N devices. wall: median from purple_conv_im_send "
                 "to the stanza leaving; whole call: median from purple_conv_im_send to its "
                 "return (what a plugin does after the stanza left, such as purple-omemo's "
                 "commit, included); CPU (user + kernel), file opens, fsyncs (fsync + "
                 "fdatasync): totals of the measured windows per message. \"no plugin\" sends "
                 "the same messages in plain: libpurple and this harness alone, included in "
                 "every other row.")
    lines.append("")
    lines.append(TABLE_HEAD[0] % "N")
    lines.append(TABLE_HEAD[1])
    for n in bench.args.sizes:
        _rows(lines, str(n), res["send"].get(str(n), {}))
    lines.append("")
    if res["recv"] or not bench.args.no_recv:
        n = min(bench.args.sizes)
        lines.append("Receiving from the contact's device (N = %d). wall: median from the "
                     "stanza's arrival (before any plugin sees it) to its display; the rest: "
                     "first arrival to last display, per message." % n)
        lines.append("")
        lines.append(TABLE_HEAD[0] % "")
        lines.append(TABLE_HEAD[1])
        _rows(lines, "receive", res["recv"])
        for label, _, _ in PLUGINS:
            if label not in res["recv"]:
                lines.append("| receive | %s | not measured (see the notes) | | | | | |" % label)
        lines.append("")
    # The targets, stated, not enforced.
    big = str(max(bench.args.sizes))
    row = res["send"].get(big, {})
    if omemo in row and lurch in row:
        o, lu = row[omemo], row[lurch]
        ratio = lu["wall_median_ms"] / o["wall_median_ms"] if o["wall_median_ms"] else 0
        lines.append("Target at N = %s: purple-omemo at least 50x faster per message: %.0fx "
                     "(wall), %s (CPU): %s." % (big, ratio, fmt_ratio(lu["cpu_per_msg_ms"],
                                                                     o["cpu_per_msg_ms"]),
                                                "met" if ratio >= 50 else "NOT met"))
    sends = [r[omemo] for r in res["send"].values() if omemo in r]
    if sends:
        worst = max(f["fsyncs_per_msg"] for f in sends)
        worst_one = max(f["fsyncs_max_in_one"] for f in sends)
        lines.append("Target: at most one fsync per message sent by purple-omemo: %s per "
                     "message, at most %d while one message was sent: %s."
                     % (fmt_count(worst), worst_one,
                        "met" if worst <= 1.0 and worst_one <= 1 else "NOT met"))
    queued = {"%s N=%s" % (label, n): r[label]["queued"]
              for n, r in res["send"].items() for label in r if r[label]["queued"]}
    if queued:
        lines.append("Messages a plugin held back in the window (timed until they left): %s"
                     % queued)
    for note in res["notes"]:
        lines.append("Note: " + note)
    if res.get("trace"):
        lines.append("")
        lines.append("Where the opens and fsyncs go (strace, --trace; in-window calls per "
                     "message, <state> is the client's libpurple folder):")
        for key, windows in res["trace"].items():
            for kind, window in sorted(windows.items(), reverse=True):
                name = "sending" if kind == "send" else "receiving"
                lines.append("- %s, %s: %s" % (key, name, ", ".join(
                    "%s %s %s" % (fmt_count(count / bench.args.messages), call, path)
                    for call, path, count in window[:8]) or "none"))
    return "\n".join(lines)


def disk_sync_ms(folder, rounds=30):
    """Median and p90 of one 4 KiB write plus fdatasync in folder, in ms."""
    path = os.path.join(folder, "disk-probe")
    times = []
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        block = b"\1" * 4096
        for i in range(rounds):
            os.pwrite(fd, block, (i % 8) * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return [statistics.median(times), times[int(0.9 * (len(times) - 1))]]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "libomemo-c"))
    ap.add_argument("--quick", action="store_true", help="20 messages per figure")
    ap.add_argument("--messages", type=int, default=None, help="messages per figure (100)")
    ap.add_argument("--sizes", default="1,4,16", help="device counts, comma separated")
    ap.add_argument("--no-recv", action="store_true", help="skip the receiving figures")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the client without any plugin")
    ap.add_argument("--no-lurch", action="store_true",
                    help="only purple-omemo (and the baseline): for profiling it")
    ap.add_argument("--trace", action="store_true",
                    help="clients under strace: list where opens and fsyncs go "
                    "(slows them down; the timings are then not comparable)")
    ap.add_argument("--keep", action="store_true", help="keep the programs' logs")
    args = ap.parse_args(argv)
    if args.messages is None:
        args.messages = 20 if args.quick else 100
    args.sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    if args.messages < 1 or not args.sizes or min(args.sizes) < 1:
        ap.error("need at least one message and device counts of 1 or more")
    return args


def main(argv):
    args = parse_args(argv)
    for name in ("e2e-client", "purple-omemo.so"):
        if not os.path.exists(os.path.join(args.build, name)):
            print("bench-e2e: %s/%s is missing: build it first (make BUILD=%s all %s/e2e-client)"
                  % (args.build, name, args.build, args.build), file=sys.stderr)
            return 2
    bench = Bench(args)
    started = time.monotonic()
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        harness.kill_all_processes()
    guard = threading.Timer(SUITE_TIMEOUT, on_timeout)
    guard.daemon = True
    guard.start()
    failed = None
    try:
        bench.run()
    except Exception as exc:  # noqa: BLE001 - any failure of the harness
        failed = exc
    finally:
        guard.cancel()
    elapsed = time.monotonic() - started
    with open(os.path.join(bench.out_dir, "results.json"), "w") as f:
        json.dump(bench.results, f, indent=1)
    if failed is not None:
        print("bench-e2e: the harness failed%s: %s" % (
            " (out of time)" if timed_out.is_set() else "",
            str(failed) if isinstance(failed, AssertionError)
            else "".join(traceback.format_exception(type(failed), failed, failed.__traceback__))),
            file=sys.stderr)
        print("bench-e2e: logs kept in %s (the peers' in %s)" % (bench.workdir, bench.peer_dir),
              file=sys.stderr)
        return 1
    print(report(bench, started, elapsed))
    if bench.peer_dir != bench.workdir:
        shutil.rmtree(bench.peer_dir, ignore_errors=True)
    if args.keep:
        print("\nlogs: %s" % bench.workdir)
    else:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
