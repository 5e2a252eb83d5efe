#!/usr/bin/env python3
"""The layer check of proxy/: every file includes only headers of its own layer or of the layers
below it, and no two modules (a .c and its .h) include each other, directly or through others.

The layers, lowest first, are the folders of proxy/ in the order of LAYERS; README.md's
architecture section draws them. Exit 1 with one line per problem, 0 when the tree is clean.

tests/layers_pending.txt lists problems known while the layering is being finished: they are
printed but do not fail the check, and one that no longer occurs must leave the file (so it
only shrinks). An empty or missing file means every problem fails."""
import os
import re
import sys

LAYERS = ["util", "proto", "config", "token", "upstream", "submit", "mailbox", "front",
          "daemon"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def scan(root):
    """{module: (layer, path, set of included module names)} over proxy/<layer>/*.[ch]."""
    mods = {}
    for rank, layer in enumerate(LAYERS):
        d = os.path.join(root, layer)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            mod = name[:-2]
            path = os.path.join(d, name)
            with open(path, encoding="utf-8") as f:
                incs = {os.path.basename(i)[:-2] for i in INCLUDE.findall(f.read())
                        if i.endswith(".h")}
            entry = mods.setdefault(mod, [layer, [], set()])
            if entry[0] != layer:
                print(f"{path}: module {mod} is in two layers ({entry[0]}, {layer})")
                entry[2].add(None)
            entry[1].append(path)
            entry[2] |= incs - {mod}
    return mods


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "proxy")
    stray = [n for n in os.listdir(root) if n.endswith((".c", ".h"))]
    problems = [f"proxy/{n}: outside every layer folder" for n in sorted(stray)]
    mods = scan(root)
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    for mod, (layer, paths, incs) in sorted(mods.items()):
        for inc in sorted(i for i in incs if i is not None):
            if inc not in mods:
                problems.append(f"{mod}: includes {inc}.h, which is in no layer")
            elif rank[mods[inc][0]] > rank[layer]:
                problems.append(f"{layer}/{mod}: includes {mods[inc][0]}/{inc}.h, a higher layer")
    # Cycles between modules: depth-first search, reporting each back edge's cycle once.
    state, stack, seen_cycles = {}, [], set()

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(i for i in mods[m][2] if i in mods):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):]
                key = frozenset(cyc)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    problems.append("include cycle: " + " -> ".join(cyc + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m)
    pending_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers_pending.txt")
    pending = set()
    if os.path.exists(pending_path):
        with open(pending_path, encoding="utf-8") as f:
            pending = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    failing = [p for p in problems if p not in pending]
    for p in problems:
        print(("pending: " if p in pending else "") + p)
    for p in sorted(pending - set(problems)):
        failing.append(p)
        print(f"fixed but still in tests/layers_pending.txt (remove it): {p}")
    print(f"layer check: {len(mods)} modules in {len(LAYERS)} layers, {len(problems)} problems "
          f"({sum(1 for p in problems if p in pending)} pending), "
          f"{len(failing)} failing")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
