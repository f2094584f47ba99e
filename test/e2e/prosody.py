"""A throwaway Prosody for the end-to-end tests.

Each instance lives in a fresh temporary directory (config, data, logs),
listens for clients on a loopback port picked at run time, and is gone
(process and directory) when the context exits. It runs the stock Debian
modules only, so what passes here passes against a plain Prosody 0.12.
"""

import collections
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PROSODY = "prosody"
PROSODYCTL = "prosodyctl"
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"

Account = collections.namedtuple("Account", "user jid password port")

CONFIG = """\
-- Written by test/e2e/prosody.py for one test run; deleted afterwards.
run_as_root = true
daemonize = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{
	{{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }};
	{{ levels = {{ min = "error" }}, to = "file", filename = "{dir}/error.log" }};
}}

interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"

modules_enabled = {{ "roster"; "saslauth"; "disco"; "pep"; "carbons"; "mam"; "ping"{extra_modules} }}
modules_disabled = {{ "s2s" }}
{plugin_paths}
VirtualHost "{domain}"

Component "{muc}" "muc"
"""


class ProsodyError(RuntimeError):
    pass


def free_port():
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            data = f.read()[-65536:]
    except OSError:
        return "(no %s)" % os.path.basename(path)
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class Prosody:
    """with Prosody() as server: alice = server.register("alice")"""

    def __init__(self, start_timeout=10.0, keep=False, extra_modules=(), plugin_paths=(),
                 base_dir=None):
        """extra_modules: more module names to enable; plugin_paths: more
        folders to find them in (the benchmark's own module). Both empty
        by default: the stock Debian modules only. base_dir: where the
        server's folder (data, log, certificates) goes, the system's
        temporary folder by default."""
        self.start_timeout = start_timeout
        self.base_dir = base_dir
        self.keep = keep
        self.extra_modules = list(extra_modules)
        self.plugin_paths = list(plugin_paths)
        self.dir = None
        self.port = None
        self.config = None
        self.proc = None
        self.domain = DOMAIN
        self.muc_domain = MUC_DOMAIN
        self.accounts = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def log_path(self):
        return os.path.join(self.dir, "prosody.log")

    def log_tail(self, lines=30):
        return _tail(self.log_path, lines)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="e2e-prosody-", dir=self.base_dir)
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs"))
        # Another program may grab the port between our probe and
        # Prosody's bind: then try a fresh one.
        last = None
        for _ in range(3):
            try:
                self._start_once()
                return
            except ProsodyError as e:
                last = e
                self._terminate()
        self.stop()
        raise last

    def _start_once(self):
        self.port = free_port()
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=self.port, domain=self.domain,
                                  muc=self.muc_domain, extra_modules=self._extra_modules(),
                                  plugin_paths=self._plugin_paths()))
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                [PROSODY, "-F", "--config", self.config],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + self.start_timeout
        marker = "Activated service 'c2s' on [127.0.0.1]:%d" % self.port
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ProsodyError("prosody exited with status %d during start-up\n%s"
                                   % (rc, self._diagnostics()))
            # The log line proves it is our Prosody on the port, not
            # whoever else might have taken it meanwhile.
            if marker in _tail(self.log_path, 400) and self._port_open():
                return
            if "Failed to open server port" in _tail(self.log_path, 400):
                raise ProsodyError("prosody could not bind port %d\n%s"
                                   % (self.port, self._diagnostics()))
            if time.monotonic() > deadline:
                raise ProsodyError("prosody did not accept connections on port %d within %.0f s\n%s"
                                   % (self.port, self.start_timeout, self._diagnostics()))
            time.sleep(0.02)

    def _extra_modules(self):
        return "".join('; "%s"' % m for m in self.extra_modules)

    def _plugin_paths(self):
        if not self.plugin_paths:
            return ""
        return "plugin_paths = { %s }\n" % ", ".join('"%s"' % p for p in self.plugin_paths)

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _diagnostics(self):
        return ("--- prosody.log (tail) ---\n%s\n--- stdout.log (tail) ---\n%s"
                % (self.log_tail(), _tail(os.path.join(self.dir, "stdout.log"))))

    def register(self, user, password=None):
        """Creates user@localhost and returns its Account."""
        password = password or ("pw-" + user)
        res = subprocess.run(
            [PROSODYCTL, "--config", self.config, "register", user, self.domain, password],
            cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if res.returncode != 0:
            raise ProsodyError("prosodyctl register %s failed (%d): %s %s"
                               % (user, res.returncode, res.stdout.decode(errors="replace"),
                                  res.stderr.decode(errors="replace")))
        account = Account(user, "%s@%s" % (user, self.domain), password, self.port)
        self.accounts[user] = account
        return account

    def _terminate(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def save_log(self, dest):
        """Copies the server log out before the directory goes."""
        if self.dir and os.path.exists(self.log_path):
            shutil.copyfile(self.log_path, dest)

    def stop(self):
        self._terminate()
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # A quick manual check: start, register, print the port, stop.
    with Prosody() as server:
        print(server.register("alice"), server.dir)
