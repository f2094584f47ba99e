#!/usr/bin/python3
"""Runs the end-to-end scenarios: every function scenario_* in
test/e2e/scenarios_*.py, in file order, each against its own fresh Prosody.

    run.py --build build/libomemo-c [-k substring] [--keep] [-j N]

With -j N (or E2E_JOBS=N), N scenarios run at once, each in its own process
with its own Prosody; a scenario's report is printed whole when it ends.
Prints "PASS name (1.2 s)" or "FAIL name: reason" per scenario and ends with
one line "N passed, N failed"; exits non-zero on any failure. A failing
scenario's programs' state (debug logs, events, prosody.log) stays in
BUILD/e2e-runs/NAME-XXXX.
"""

import argparse
import contextlib
import glob
import importlib
import inspect
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402
from prosody import Prosody  # noqa: E402


def discover(pattern):
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, "scenarios_*.py"))):
        module = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        funcs = [f for n, f in vars(module).items()
                 if n.startswith("scenario_") and inspect.isfunction(f)
                 and f.__module__ == module.__name__]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        # A comma separates alternatives: "plugin_to_plugin,muc_three".
        wanted = None if pattern is None else [p for p in pattern.split(",") if p]
        found += [f for f in funcs if wanted is None or any(p in f.__name__ for p in wanted)]
    return found


def reason_of(exc):
    if isinstance(exc, AssertionError):
        text = str(exc) or "assertion failed"
    else:
        text = "%s: %s" % (type(exc).__name__, exc)
    first, _, rest = text.partition("\n")
    return first, rest


def run_one(func, build, runs_dir, scenario_timeout, keep):
    name = func.__name__[len("scenario_"):]
    # Unique, so two runs on one build directory never share state.
    workdir = tempfile.mkdtemp(prefix=name + "-", dir=runs_dir)
    started = time.monotonic()
    failure = None
    details = ""
    timed_out = threading.Event()

    def on_timeout():
        # Unblocks the scenario: its waits see the processes die.
        timed_out.set()
        harness.kill_all_processes()

    guard = threading.Timer(scenario_timeout, on_timeout)
    guard.daemon = True
    guard.start()
    server = None
    ctx = None
    try:
        server = Prosody()
        server.start()
        ctx = harness.Scenario(name, build, workdir, server)
        func(ctx)
    except Exception as exc:  # noqa: BLE001 - any error fails the scenario
        failure, details = reason_of(exc)
        if not isinstance(exc, AssertionError):
            details = traceback.format_exc() + details
        elif not isinstance(exc, harness.HarnessError):
            # A bare assert: show where, and what the programs were doing.
            details = "".join(traceback.format_tb(exc.__traceback__)[-2:]) + details
            if ctx is not None:
                details += "\n" + ctx.diagnostics()
    finally:
        problems = ctx.close() if ctx is not None else []
        guard.cancel()
        if server is not None:
            if failure or problems or keep:
                server.save_log(os.path.join(workdir, "prosody.log"))
            server.stop()
    if timed_out.is_set():
        failure = "scenario exceeded %d s" % scenario_timeout
    if failure is None and problems:
        failure = problems[0]
        details = "\n".join(problems[1:])
    elapsed = time.monotonic() - started
    if failure is None:
        print("PASS %s (%.1f s)" % (name, elapsed), flush=True)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return True
    print("FAIL %s: %s" % (name, failure), flush=True)
    if details.strip():
        print("    " + details.strip().replace("\n", "\n    "), flush=True)
    print("    (state kept in %s)" % workdir, flush=True)
    return False


def _run_captured(name, build, runs_dir, scenario_timeout, keep):
    """In a worker process: one scenario, its report as text."""
    func = {f.__name__: f for f in discover(None)}[name]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = run_one(func, build, runs_dir, scenario_timeout, keep)
    return ok, out.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="directory with purple-omemo.so and e2e-client")
    ap.add_argument("-k", dest="pattern",
                    help="run only scenarios whose name contains this (A,B: either)")
    ap.add_argument("--keep", action="store_true", help="keep every scenario's state directory")
    ap.add_argument("--scenario-timeout", type=int, default=120)
    ap.add_argument("--suite-timeout", type=int, default=1200)
    ap.add_argument("-j", dest="jobs", type=int, default=int(os.environ.get("E2E_JOBS", "1")),
                    help="scenarios run at once, each in its own process")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    missing = [p for p in ("e2e-client", "purple-omemo.so")
               if not os.path.exists(os.path.join(build, p))]
    if missing:
        print("FAIL setup: missing in %s: %s" % (build, ", ".join(missing)))
        print("0 passed, 1 failed")
        return 1

    try:
        scenarios = discover(args.pattern)
    except Exception:  # noqa: BLE001 - a broken scenario module is a failure
        print("FAIL discovery: could not import the scenarios")
        print("    " + traceback.format_exc().strip().replace("\n", "\n    "))
        print("0 passed, 1 failed")
        return 1
    if not scenarios:
        print("FAIL discovery: no scenario matches")
        print("0 passed, 1 failed")
        return 1

    counts = {"passed": 0, "failed": 0}
    lock = threading.Lock()

    def on_suite_timeout():
        with lock:
            print("FAIL suite: exceeded %d s; stopping" % args.suite_timeout, flush=True)
            harness.kill_all_processes()
            print("%d passed, %d failed" % (counts["passed"], counts["failed"] + 1), flush=True)
            os._exit(1)

    guard = threading.Timer(args.suite_timeout, on_suite_timeout)
    guard.daemon = True
    guard.start()

    runs_dir = os.path.join(build, "e2e-runs")
    os.makedirs(runs_dir, exist_ok=True)
    if args.jobs <= 1:
        for func in scenarios:
            ok = run_one(func, build, runs_dir, args.scenario_timeout, args.keep)
            with lock:
                counts["passed" if ok else "failed"] += 1
    else:
        # Fresh processes (fork): each has its own harness state, so one
        # scenario's timeout kills only its own programs.
        pool = multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=1)
        pending = [pool.apply_async(_run_captured, (f.__name__, build, runs_dir,
                                                    args.scenario_timeout, args.keep))
                   for f in scenarios]
        for res in pending:
            ok, text = res.get()
            with lock:
                sys.stdout.write(text)
                sys.stdout.flush()
                counts["passed" if ok else "failed"] += 1
        pool.close()
        pool.join()
    guard.cancel()
    with lock:
        print("%d passed, %d failed" % (counts["passed"], counts["failed"]), flush=True)
        return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
