#!/usr/bin/python3
"""scripts/gotestfmt.py: print `go test -json` like plain `go test`, and forbid skipped tests.

Reads `go test -json` events on stdin. Prints build output, the output of every failing test and
failing package, and one summary line per package ("ok", "FAIL", "?" like go test), then a total.
Exits 1 if any test failed or was skipped (the project forbids t.Skip: a missing tool is installed by
scripts/deps.sh, not skipped), 0 otherwise. Lines that are not JSON are printed as they are.
"""

import json
import sys


def main():
    out = sys.stdout
    test_buf = {}  # (package, test) -> [output lines]; dropped when the test passes
    pkg_buf = {}  # package -> [package-level output lines]
    failed, skipped = [], []
    n_pass = 0
    pkg_fail = 0

    for raw in sys.stdin:
        try:
            ev = json.loads(raw)
        except ValueError:
            out.write(raw)
            out.flush()
            continue
        if not isinstance(ev, dict):
            out.write(raw)
            continue
        action = ev.get("Action", "")
        pkg = ev.get("Package") or ev.get("ImportPath", "")
        test = ev.get("Test")
        text = ev.get("Output")

        if action == "build-output":
            out.write(text or "")
            continue
        if action == "build-fail":
            continue
        if action == "output":
            if test:
                test_buf.setdefault((pkg, test), []).append(text)
            else:
                pkg_buf.setdefault(pkg, []).append(text)
            continue
        if test:
            if action == "pass":
                n_pass += 1
                test_buf.pop((pkg, test), None)
            elif action == "fail":
                failed.append(f"{pkg}.{test}")
                out.write("".join(test_buf.pop((pkg, test), [])))
            elif action == "skip":
                skipped.append(f"{pkg}.{test}")
                out.write("".join(test_buf.pop((pkg, test), [])))
            continue
        # Package-level end events: print go test's own summary line (the last output line).
        if action in ("pass", "fail", "skip"):
            lines = pkg_buf.pop(pkg, [])
            if action == "fail":
                pkg_fail += 1
                out.write("".join(lines))
            else:
                summary = [l for l in lines if l.startswith(("ok ", "ok\t", "?", "---"))]
                out.write("".join(summary) if summary else f"ok  \t{pkg}\n")
            out.flush()

    out.write(f"tests: {n_pass} passed, {len(failed)} failed, {len(skipped)} skipped; "
              f"{pkg_fail} package(s) failed\n")
    for name in failed:
        out.write(f"FAILED  {name}\n")
    for name in skipped:
        out.write(f"SKIPPED {name}  (skips are not allowed: install the tool in scripts/deps.sh)\n")
    return 1 if failed or skipped or pkg_fail else 0


if __name__ == "__main__":
    sys.exit(main())
