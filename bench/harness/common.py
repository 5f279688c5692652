"""What every part of the harness shares: where things are, the child
environment, the RESULT line and the launcher's usage file."""
import json
import os
import sys

PKG = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(PKG)          # bench/
ROOT = os.path.dirname(HERE)         # the repository


def bin_path(ctx, name):
    return os.path.join(ctx["bin_dir"], name)


def python_exe():
    # The interpreter binary itself: a wrapper script (pyenv's shim) would
    # put the preloaded allocator into a shell too.
    for cand in ("/usr/bin/python3", os.path.realpath(sys.executable)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return sys.executable


def clean_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def parse_result(stdout):
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            try:
                return json.loads(line[len("RESULT "):])
            except ValueError:
                return None
    return None


RUSAGE_KEYS = ("maxrss_kib", "user_seconds", "sys_seconds", "minflt", "majflt")


def read_rusage(path):
    """The usage bench_launch wrote: maxrss KiB, user s, sys s, minor and
    major faults (older launchers wrote the first three only)."""
    try:
        with open(path) as f:
            fields = f.read().split()
    except OSError:
        fields = []
    ru = {}
    for key, text in zip(RUSAGE_KEYS, fields):
        try:
            ru[key] = float(text) if key.endswith("seconds") else int(text)
        except ValueError:
            pass
    return ru

