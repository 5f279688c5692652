#!/usr/bin/env python3
"""Checks of the built libremalloc.so with binutils (readelf, nm, objdump).

  check_elf.py needed LIB
      NEEDED entries are only glibc's (never libstdc++ or libgcc_s), and no
      strong undefined symbol needs the C++ runtime.
  check_elf.py exports LIB
      every malloc-family name, __libc_* alias, operator new/delete variant
      and remalloc_* function is exported; nothing else leaks out.
  check_elf.py versions LIB
      the symbol versions of preload/exports.map: every remalloc_* name in
      its node (REMALLOC_0.1, REMALLOC_0.2, REMALLOC_PRIVATE), one
      definition each; every other export (malloc, operator new, ...)
      without a version, so that it interposes on glibc's and libstdc++'s
      versioned names.
  check_elf.py refs EXE SYM=[VERSION]... [EXE SYM=[VERSION]...]...
      each EXE's undefined reference to SYM has that version (none when
      VERSION is empty: a program linked before versions existed).
  check_elf.py init-array LIB CORE_OBJS OVERRIDE_OBJS
      the core objects have no static initialisers at all; the library's
      .init_array holds only frame_dummy and start-up functions of the
      override layer. Every entry is reported. *_OBJS are ':'-separated
      lists, or @FILE naming a file that holds one.
"""
import re
import subprocess
import sys

ALLOWED_NEEDED = {"libc.so.6", "ld-linux-x86-64.so.2", "libpthread.so.0", "libdl.so.2", "librt.so.1"}
# Undefined symbols that the C library provides even though they look C++.
LIBC_CXA = {"__cxa_finalize", "__cxa_atexit", "__cxa_thread_atexit_impl"}

REQUIRED_EXPORTS = [
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
    "valloc", "pvalloc", "malloc_usable_size",
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign",
    # operator new
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    # operator delete
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    # the prefixed API (include/remalloc/remalloc.h)
    "remalloc_malloc", "remalloc_calloc", "remalloc_realloc", "remalloc_reallocarray", "remalloc_free",
    "remalloc_free_sized", "remalloc_free_aligned_sized", "remalloc_posix_memalign", "remalloc_aligned_alloc",
    "remalloc_memalign", "remalloc_valloc", "remalloc_pvalloc", "remalloc_usable_size", "remalloc_trim",
    "remalloc_owns", "remalloc_stats_print", "remalloc_stats_json", "remalloc_stats_get",
    "remalloc_option_get", "remalloc_option_set", "remalloc_inject_mover_failure", "remalloc_validate",
    "remalloc_inject_mmap_failure", "remalloc_refresh_limits", "remalloc_stats_get_sized",
    "remalloc_prof_dump",
]
# The version of each remalloc_* export (preload/exports.map). A released
# node never changes: names are only added, in a new node.
VERSIONS = {
    "REMALLOC_0.1": [
        "remalloc_malloc", "remalloc_calloc", "remalloc_realloc", "remalloc_reallocarray", "remalloc_free",
        "remalloc_free_sized", "remalloc_free_aligned_sized", "remalloc_posix_memalign", "remalloc_aligned_alloc",
        "remalloc_memalign", "remalloc_valloc", "remalloc_pvalloc", "remalloc_usable_size", "remalloc_trim",
        "remalloc_refresh_limits", "remalloc_owns", "remalloc_stats_print", "remalloc_stats_json",
        "remalloc_stats_get", "remalloc_option_get", "remalloc_option_set", "remalloc_validate",
    ],
    "REMALLOC_0.2": ["remalloc_stats_get_sized", "remalloc_prof_dump"],
    # test hooks (src/api/testing.h), no stability promise
    "REMALLOC_PRIVATE": ["remalloc_inject_mover_failure", "remalloc_inject_mmap_failure"],
}
# Each node and the one it inherits from.
VERSION_PARENTS = {"REMALLOC_0.1": None, "REMALLOC_0.2": "REMALLOC_0.1", "REMALLOC_PRIVATE": None}
ALLOWED_EXPORT_RE = re.compile(
    r"^(malloc|free|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|"
    r"malloc_usable_size|malloc_size|malloc_good_size|malloc_trim|malloc_stats|malloc_info|mallinfo2?|mallopt|"
    r"cfree|free_sized|free_aligned_sized|mlockall|__libc_\w+|__posix_memalign|_Zn[wa]m\w*|_Zd[la]Pv\w*|remalloc_\w+|"
    r"_init|_fini)$")


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def dyn_symbols_versioned(lib):
    """(name, bind, ndx, version, default) for each dynamic symbol; version
    is None for a symbol without one (readelf's Base), default is False for
    a non-default definition (name@VER rather than name@@VER)."""
    out = []
    for line in run("readelf", "--dyn-syms", "-W", lib).splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].endswith(":") and f[0][:-1].isdigit():
            # Hidden symbols are not exported (nothing outside binds to
            # them): ld lists the linker-defined bounds of a section
            # (__start_remalloc_text, prof/'s frames) in .dynsym as HIDDEN.
            if f[5] in ("HIDDEN", "INTERNAL"):
                continue
            field = f[7]
            if "@@" in field:
                name, version, default = *field.split("@@", 1), True
            elif "@" in field:
                name, version, default = *field.split("@", 1), False
            else:
                name, version, default = field, None, True
            if name:
                out.append((name, f[4], f[6], version, default))
    return out


def version_definitions(lib):
    """{name: parent or None} of the version nodes LIB defines (not its base)."""
    defs = {}
    current = None
    for line in run("readelf", "-V", "-W", lib).splitlines():
        m = re.search(r"Rev: \d+\s+Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", line)
        if m:
            current = None if "BASE" in m.group(1) else m.group(2)
            if current:
                defs[current] = None
            continue
        m = re.search(r"Parent \d+: (\S+)", line)
        if m and current:
            defs[current] = m.group(1)
    return defs


def dyn_symbols(lib):
    """(name, bind, ndx) for each dynamic symbol, less the symbols that
    name the library's version nodes (ABS, one per node)."""
    nodes = set(version_definitions(lib))
    return [(name, bind, ndx) for name, bind, ndx, version, default in dyn_symbols_versioned(lib)
            if not (ndx == "ABS" and name in nodes and version in (None, name))]


def check_needed(lib):
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run("readelf", "-dW", lib))
    print("NEEDED:", " ".join(needed) or "(none)")
    errors = []
    for n in needed:
        if n.startswith("libstdc++") or n.startswith("libgcc_s"):
            errors.append(f"{lib} needs {n}: the allocator must not depend on the C++ runtime")
        elif n not in ALLOWED_NEEDED:
            errors.append(f"{lib} needs {n}, which is not part of glibc")
    weak_cxx = []
    for name, bind, ndx in dyn_symbols(lib):
        if ndx != "UND":
            continue
        cxx = (name.startswith("_Z") or name.startswith("__gxx_") or name.startswith("_Unwind_")
               or (name.startswith("__cxa_") and name not in LIBC_CXA))
        if not cxx:
            continue
        if bind == "WEAK":
            weak_cxx.append(name)
        else:
            errors.append(f"strong undefined C++ runtime symbol {name}: loading into a C program fails")
    if weak_cxx:
        print("weak references to the C++ runtime (resolved only when the process has it):", " ".join(weak_cxx))
    return errors


def check_exports(lib):
    defined = {name for name, bind, ndx in dyn_symbols(lib) if ndx != "UND" and bind in ("GLOBAL", "WEAK")}
    errors = [f"{name} is not exported" for name in REQUIRED_EXPORTS if name not in defined]
    leaked = sorted(n for n in defined if not ALLOWED_EXPORT_RE.match(n))
    for n in leaked:
        errors.append(f"internal symbol {n} is exported (hidden visibility / version script)")
    extra = sorted(n for n in defined if n not in REQUIRED_EXPORTS and ALLOWED_EXPORT_RE.match(n))
    print(f"{len(defined)} exported symbols; optional ones present:", " ".join(extra) or "(none)")
    return errors


def check_versions(lib):
    errors = []
    defs = version_definitions(lib)
    print("version nodes:", " ".join(f"{v}" + (f" (inherits {p})" if p else "") for v, p in sorted(defs.items())))
    for node, parent in VERSION_PARENTS.items():
        if node not in defs:
            errors.append(f"version node {node} is not defined")
        elif defs[node] != parent:
            errors.append(f"version node {node} inherits {defs[node]}, not {parent}")
    for node in defs:
        if node not in VERSION_PARENTS:
            errors.append(f"version node {node} is not in check_elf.py's VERSION_PARENTS (a new node: add it)")
    want = {name: node for node, names in VERSIONS.items() for name in names}
    nodes = set(defs)
    seen = {}
    for name, bind, ndx, version, default in dyn_symbols_versioned(lib):
        if ndx == "UND" or bind not in ("GLOBAL", "WEAK"):
            continue
        if ndx == "ABS" and name in nodes and version in (None, name):
            continue
        seen.setdefault(name, []).append(version if default else f"{version} (non-default)")
        if name.startswith("remalloc_"):
            if name not in want:
                errors.append(f"{name} is exported as {version or 'Base (no version)'}, but has no node in "
                              "preload/exports.map and check_elf.py's VERSIONS")
            elif version != want[name] or not default:
                errors.append(f"{name} has version {version or 'none'}{'' if default else ' (non-default)'}, "
                              f"not {want[name]}")
        elif version is not None:
            errors.append(f"{name} has version {version}: a versioned definition does not interpose on "
                          "the versioned references programs have to glibc's and libstdc++'s names")
    for name, versions in sorted(seen.items()):
        if len(versions) > 1:
            errors.append(f"{name} is defined {len(versions)} times: {', '.join(map(str, versions))}")
    for name in want:
        if name not in seen:
            errors.append(f"{name} ({want[name]}) is not exported")
    unversioned = sorted(n for n, v in seen.items() if v == [None])
    print(f"{len(seen)} exports; without a version: {len(unversioned)}; versioned:",
          " ".join(f"{n}@{seen[n][0]}" for n in sorted(seen) if seen[n] != [None]))
    return errors


def check_refs(args):
    """args: EXE SYM=[VER]... repeated."""
    errors = []
    exe = None
    refs = {}
    for a in args:
        if "=" not in a:
            exe = a
            refs = {(n, b, x): (v, d) for n, b, x, v, d in dyn_symbols_versioned(exe)}
            refs = {n: v for (n, b, x), (v, d) in refs.items() if x == "UND"}
            continue
        if exe is None:
            errors.append(f"{a}: no executable named before it")
            continue
        sym, want = a.split("=", 1)
        want = want or None
        if sym not in refs:
            errors.append(f"{exe}: no undefined reference to {sym}")
            continue
        got = refs[sym]
        print(f"{exe}: {sym}" + (f"@{got}" if got else " (no version)"))
        if got != want:
            errors.append(f"{exe}: the reference to {sym} has version {got or 'none'}, not {want or 'none'}")
    return errors


def section(obj, name):
    """(address, size) of a section, or None."""
    for line in run("readelf", "-SW", obj).splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and m.group(1) == name:
            return int(m.group(2), 16), int(m.group(3), 16)
    return None


def symbols_by_address(obj):
    out = {}
    for line in run("nm", "--defined-only", obj).splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tTwWiI":
            out.setdefault(int(f[0], 16), []).append(f[2])
    return out


def defined_functions(objs):
    names = set()
    for o in objs:
        for line in run("nm", "--defined-only", o).splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "tTwW":
                names.add(f[2])
    return names


def check_init_array(lib, core_objs, override_objs):
    errors = []
    for o in core_objs:
        for sec in (".init_array", ".ctors", ".preinit_array"):
            if section(o, sec):
                errors.append(f"core object {o} has a {sec} section (a static initialiser)")
        for name in defined_functions([o]):
            if name.startswith("_GLOBAL__sub_I"):
                errors.append(f"core object {o} defines static initialiser {name}")
    override_fns = defined_functions(override_objs)

    sec = section(lib, ".init_array")
    entries = []
    if sec:
        start, size = sec
        for line in run("readelf", "-rW", lib).splitlines():
            f = line.split()
            if len(f) >= 4 and re.fullmatch(r"[0-9a-f]+", f[0]) and "RELATIVE" in f[2]:
                off = int(f[0], 16)
                if start <= off < start + size:
                    entries.append((off, int(f[-1], 16)))
        # Entries filled in by the static linker (absolute, no relocation).
        if not entries and size:
            print(".init_array has no relocations; contents:", run("objdump", "-s", "-j", ".init_array", lib))
    by_addr = symbols_by_address(lib)
    print(f".init_array: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    for off, target in sorted(entries):
        names = by_addr.get(target, [f"<unknown {target:#x}>"])
        origin = ("toolchain" if "frame_dummy" in names else
                  "override layer" if any(n in override_fns for n in names) else "core or unknown")
        print(f"  {target:#x} {' '.join(names)} ({origin})")
        if "frame_dummy" in names:
            continue
        if any(n.startswith("_GLOBAL__sub_I") for n in names):
            errors.append(f"static initialiser {' '.join(names)} in .init_array")
        elif origin != "override layer":
            errors.append(f".init_array entry {' '.join(names)} is not a start-up function of the override layer")
    return errors


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    cmd, lib = argv[1], argv[2]
    if cmd == "needed":
        errors = check_needed(lib)
    elif cmd == "exports":
        errors = check_exports(lib)
    elif cmd == "versions":
        errors = check_versions(lib)
    elif cmd == "refs":
        errors = check_refs(argv[2:])
    elif cmd == "init-array":
        def split(arg):  # "a:b:c", or "@file" holding that
            if arg.startswith("@"):
                with open(arg[1:]) as f:
                    arg = f.read().strip()
            return [x for x in arg.split(":") if x]
        errors = check_init_array(lib, split(argv[3]), split(argv[4]))
    else:
        print(__doc__)
        return 2
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print("ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
