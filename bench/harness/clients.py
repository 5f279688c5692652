"""Real programs driven the way their users drive them (the clients group):
client sizes, the SQL script, the expected results, and redis-server's life
(a minimal RESP client, start, phases, checks, stop)."""
import os
import re
import shutil
import subprocess
import tempfile
import time

from .common import HERE, bin_path, clean_env, read_rusage

# Real programs driven the way their users drive them, each under the
# preloaded allocator; every one prints its result and the runner checks it
# against what the scale implies (a wrong result fails the row).

CLIENT_SIZES = {
    # redis: APPEND requests of 1 KiB; mixed: requests per test per value size
    # python: MiB built twice (bytearray, join) and list items; perl: MiB;
    # lua: table items and MiB of string; sqlite: rows
    "tiny": {"redis_append": 2048, "redis_mixed": 256, "py_mib": 4, "py_list": 50000,
             "perl_mib": 4, "lua_items": 50000, "lua_mib": 4, "sqlite_rows": 5000},
    "short": {"redis_append": 16384, "redis_mixed": 1024, "py_mib": 8, "py_list": 200000,
              "perl_mib": 16, "lua_items": 100000, "lua_mib": 8, "sqlite_rows": 20000},
    "full": {"redis_append": 393216, "redis_mixed": 65536, "py_mib": 512,
             "py_list": 10000000, "perl_mib": 1024, "lua_items": 5000000, "lua_mib": 512,
             "sqlite_rows": 1000000},
}
# Repetitions of the clients group where they differ from REPS (short: the
# README's main command must stay around 2-3 minutes); --reps overrides.
CLIENT_REPS = {"short": 3}
REDIS_APPEND_VALUE = 1024          # bytes per APPEND
REDIS_PIPELINE = 32                # requests a client sends before reading replies
REDIS_MIXED_SIZES = (16, 256, 4096)  # SET/LPUSH/HSET value sizes, one pass each
REDIS_MIXED_KEYS = 10000           # -r: keys the SET/GET/HSET requests spread over
REDIS_MIXED_TESTS = "set,get,lpush,hset"
REDIS_LRANGE_SIZE = 128            # values LRANGE's own fill pushes


def csize(ctx, key):
    return CLIENT_SIZES[ctx["scale"]][key]


def prog(ctx, name):
    return ctx["prog"][name]


def clients_script(name):
    return os.path.join(HERE, "workloads", "clients", name)


def sqlite_setup(ctx):
    """Writes the SQL script: a table of rows with values of varied lengths,
    group_concat over it, then deleting a third and a VACUUM; the script
    prints one RESULT line (json_object) with counts and sums."""
    n = csize(ctx, "sqlite_rows")
    sql = """PRAGMA temp_store = MEMORY;
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
INSERT INTO t SELECT x, printf('k%08d', (x * 7919) % {n}),
    printf('%08d', x) || substr(hex(zeroblob(120)), 1, 20 + (x * 7919) % 200) FROM c;
CREATE INDEX t_k ON t(k);
CREATE TEMP TABLE r(k TEXT PRIMARY KEY, v);
INSERT INTO r SELECT 'rows', count(*) FROM t;
INSERT INTO r SELECT 'value_bytes', sum(length(v)) FROM t;
INSERT INTO r SELECT 'concat_bytes', length(g) FROM (SELECT group_concat(v, ',') AS g FROM t);
INSERT INTO r SELECT 'concat_commas', length(g) - length(replace(g, ',', ''))
    FROM (SELECT group_concat(v, ',') AS g FROM t ORDER BY k);
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
INSERT INTO r SELECT 'integrity', (SELECT integrity_check FROM pragma_integrity_check);
INSERT INTO r SELECT 'rows_after', count(*) FROM t;
INSERT INTO r SELECT 'value_bytes_after', sum(length(v)) FROM t;
INSERT INTO r SELECT 'checksum', sum(id * length(v) + unicode(substr(v, 8, 1))) % 1000000007 FROM t;
SELECT 'RESULT ' || json_group_object(k, v) FROM r;
""".format(n=n)
    ctx["sqlite_script"] = os.path.join(ctx["work_dir"], "clients-sqlite-%s.sql" % ctx["scale"])
    with open(ctx["sqlite_script"], "w") as f:
        f.write(sql)


def sqlite_expect(ctx):
    n = csize(ctx, "sqlite_rows")
    length = lambda x: 8 + 20 + (x * 7919) % 200
    total = sum(length(x) for x in range(1, n + 1))
    kept = [x for x in range(1, n + 1) if x % 3 != 0]
    return {"rows": n, "value_bytes": total, "concat_bytes": total + n - 1,
            "concat_commas": n - 1, "integrity": "ok", "rows_after": len(kept),
            "value_bytes_after": sum(length(x) for x in kept),
            "checksum": sum(x * length(x) + ord(("%08d" % x)[7]) for x in kept) % 1000000007}


def py_expect(ctx):
    mib = csize(ctx, "py_mib")
    return {"bytes": mib << 20, "list_items": csize(ctx, "py_list")}


def perl_expect(ctx):
    mib = csize(ctx, "perl_mib")
    return {"bytes": mib << 20, "pieces": mib * 256}


def lua_expect(ctx):
    return {"items": csize(ctx, "lua_items"), "hash_items": csize(ctx, "lua_items") // 2,
            "bytes": csize(ctx, "lua_mib") << 20}


# A minimal RESP client, enough to start, check and stop a server without
# running redis-cli once per question.

def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    pass


def resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise OSError("bad reply %r" % line[:40])


def redis_call(port, *args, timeout=10):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp_encode(args))
        with s.makefile("rb") as f:
            return resp_read(f)


def free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_append_phase(ctx, port):
    """APPEND 1 KiB to one key N times (one client, pipelined); the value
    grows to N KiB by realloc. Returns (argv list, check function)."""
    n = csize(ctx, "redis_append")
    value = "".join(chr(97 + i % 26) for i in range(REDIS_APPEND_VALUE))
    argv = [prog(ctx, "redis-benchmark"), "-h", "127.0.0.1", "-p", str(port), "-q",
            "-n", str(n), "-c", "1", "-P", str(REDIS_PIPELINE), "APPEND", "bigkey", value]

    def check(result):
        strlen = redis_call(port, "STRLEN", "bigkey")
        result["strlen"] = strlen
        if strlen != n * REDIS_APPEND_VALUE:
            return "STRLEN bigkey = %s, expected %d" % (strlen, n * REDIS_APPEND_VALUE)
        for at in (0, strlen // 2 // REDIS_APPEND_VALUE * REDIS_APPEND_VALUE,
                   strlen - REDIS_APPEND_VALUE):
            got = redis_call(port, "GETRANGE", "bigkey", at, at + REDIS_APPEND_VALUE - 1)
            if got != value.encode():
                return "GETRANGE bigkey %d: wrong bytes" % at
        return redis_fork(port, result)
    return [argv], check


def redis_info(port, section):
    text = redis_call(port, "INFO", section).decode()
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln and not ln.startswith("#"))


def redis_fork(port, result, timeout=120):
    """BGSAVE (into the session's own --dir), wait until it is done, and
    record Redis's own figure of what the fork cost: latest_fork_usec of
    INFO stats (the fork() call in the server, with the big value and all
    the allocator's mappings in the process). Returns an error or None."""
    redis_call(port, "BGSAVE")
    deadline = time.monotonic() + timeout
    while True:
        info = redis_info(port, "persistence")
        if info.get("rdb_bgsave_in_progress") == "0":
            break
        if time.monotonic() > deadline:
            return "BGSAVE still running after %d s" % timeout
        time.sleep(0.01)
    if info.get("rdb_last_bgsave_status") != "ok":
        return "BGSAVE failed: rdb_last_bgsave_status %s" % info.get("rdb_last_bgsave_status")
    usec = int(redis_info(port, "stats").get("latest_fork_usec", "-1"))
    if usec < 0:
        return "INFO stats has no latest_fork_usec"
    result["latest_fork_usec"] = usec
    result["fork_seconds"] = usec * 1e-6
    return None


def redis_mixed_phase(ctx, port):
    """SET/GET, LPUSH and HSET from 4 clients, one pass per value size (16 B,
    256 B, 4 KiB), keys spread over REDIS_MIXED_KEYS; then LRANGE_100 (the
    100 newest list items, after its own fill of n/4 pushes of 128 B)."""
    n = csize(ctx, "redis_mixed")  # a multiple of the pipeline: the count is exact
    base = [prog(ctx, "redis-benchmark"), "-h", "127.0.0.1", "-p", str(port), "-q",
            "-c", "4", "-P", "16", "-r", str(REDIS_MIXED_KEYS)]
    argvs = [base + ["-n", str(n), "-d", str(d), "-t", REDIS_MIXED_TESTS]
             for d in REDIS_MIXED_SIZES]
    argvs.append(base + ["-n", str(n // 4), "-d", str(REDIS_LRANGE_SIZE), "-t", "lrange_100"])
    want_llen = n * len(REDIS_MIXED_SIZES) + n // 4

    def check(result):
        llen = redis_call(port, "LLEN", "mylist")
        hlen = redis_call(port, "HLEN", "myhash")
        dbsize = redis_call(port, "DBSIZE")
        result.update(llen=llen, hlen=hlen, dbsize=dbsize)
        if llen != want_llen:
            return "LLEN mylist = %s, expected %d" % (llen, want_llen)
        if not 0 < hlen <= REDIS_MIXED_KEYS or not 2 < dbsize <= REDIS_MIXED_KEYS + 2:
            return "HLEN myhash = %s, DBSIZE = %s: out of range" % (hlen, dbsize)
        cursor, seen = b"0", 0
        while True:
            cursor, keys = redis_call(port, "SCAN", cursor, "MATCH", "key:*", "COUNT", 1000)
            for k in keys[:50]:
                ln = redis_call(port, "STRLEN", k)
                if ln not in REDIS_MIXED_SIZES:
                    return "STRLEN %s = %s, not one of the value sizes" % (k, ln)
                seen += 1
            if cursor == b"0" or seen >= 200:
                break
        for at, size in ((0, REDIS_LRANGE_SIZE), (-1, REDIS_MIXED_SIZES[0])):
            item = redis_call(port, "LINDEX", "mylist", at)
            if item is None or len(item) != size:
                return "LINDEX mylist %d: length %s, expected %d" % (
                    at, None if item is None else len(item), size)
        return None
    return argvs, check


def redis_run(phase):
    def run(ctx, preload, env):
        return redis_session(ctx, preload, env, phase)
    return run


def redis_session(ctx, preload, env, phase):
    """Starts redis-server (preloaded, through bench_launch, which reports
    the server's usage when it exits) on a free port of 127.0.0.1 with no
    persistence, runs the phase's redis-benchmark commands (nothing
    preloaded) and checks the data, then stops the server by its PID
    (SIGTERM) and waits. Time is the clients' wall time; CPU, faults and
    peak RSS are the server's. The server's --dir is a folder of its own
    (a BGSAVE writes its dump there), removed afterwards."""
    import signal
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="redis-%d-" % port, dir=ctx["work_dir"])
    launch = bin_path(ctx, "bench_launch")
    ru_file = os.path.join(ctx["work_dir"], "rusage-redis-%d" % port)
    server = [prog(ctx, "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", data_dir,
              "--loglevel", "warning", "--logfile", ""]
    log = tempfile.TemporaryFile()
    t_start = time.perf_counter()
    p = subprocess.Popen([launch, ru_file, preload or "-"] + server, stdout=log,
                         stderr=subprocess.STDOUT, env=env, cwd=ctx["work_dir"],
                         start_new_session=True)
    deadline = time.monotonic() + ctx["timeout"]
    out, err, result, error = [], [], {}, None
    wall = 0.0
    server_pid = None
    try:
        while True:  # until the server answers, or is gone
            if p.poll() is not None:
                error = "redis-server exited (status %d) before answering" % p.returncode
                break
            try:
                if redis_call(port, "PING", timeout=1) == "PONG":
                    break
            except (OSError, RespError):
                pass
            if time.monotonic() > deadline:
                error = "redis-server did not answer on port %d" % port
                break
            time.sleep(0.01)
        if error is None:
            info = redis_call(port, "INFO", "server").decode()
            m = re.search(r"^process_id:(\d+)", info, re.M)
            server_pid = int(m.group(1)) if m else None
            if preload and server_pid:
                with open("/proc/%d/maps" % server_pid) as f:
                    result["preload_mapped"] = int(os.path.basename(preload) in f.read())
            argvs, check = phase(ctx, port)
            t0 = time.perf_counter()
            for argv in argvs:
                c = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=clean_env(), cwd=ctx["work_dir"],
                                   timeout=max(1, deadline - time.monotonic()))
                out.append(c.stdout.decode("utf-8", "replace"))
                err.append(c.stderr.decode("utf-8", "replace"))
                if c.returncode != 0 or "error" in (c.stdout + c.stderr).decode(
                        "utf-8", "replace").lower():
                    error = "redis-benchmark failed (status %d)" % c.returncode
                    break
            wall = time.perf_counter() - t0
            result["region_seconds"] = wall
            if error is None:
                error = check(result)
            if server_pid:
                with open("/proc/%d/status" % server_pid) as f:
                    m = re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M)
                    if m:
                        result["vmhwm_kib"] = int(m.group(1))
    except (OSError, RespError, subprocess.TimeoutExpired, ValueError) as e:
        error = error or "%s: %s" % (type(e).__name__, e)
    finally:
        # Stop the server by its PID; the launcher then writes its usage.
        try:
            if server_pid:
                os.kill(server_pid, signal.SIGTERM)
            else:
                os.kill(p.pid, signal.SIGTERM)  # the launcher passes it on
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=max(5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            error = error or "redis-server did not stop on SIGTERM"
    ru = read_rusage(ru_file)
    try:
        os.unlink(ru_file)
    except OSError:
        pass
    shutil.rmtree(data_dir, ignore_errors=True)
    log.seek(0)
    server_log = log.read().decode("utf-8", "replace")
    log.close()
    rc = p.returncode
    if error is None and rc != 0:
        error = "redis-server exited with status %d" % rc
    if ru.get("maxrss_kib") is None:
        error = error or "no resource usage from bench_launch"
    result.setdefault("region_seconds", wall)
    result["session_seconds"] = time.perf_counter() - t_start
    return {"rc": 0 if error is None else (rc or 1), "wall": result["session_seconds"], "ru": ru,
            "out": "".join(out), "err": "".join(err) + server_log[-2000:],
            "result": result, "error": error}

