"""Checks that the defaults a README's usage block states are the flags' defaults: for each
`[--name VALUE]` in the indented usage lines of README, VALUE (or, for `a|b|c`, its first
alternative) must equal the default `BINARY --helpfull` prints, and every named flag must exist.
Placeholders (PATH, PEM, F, HOST:PORT, DIR|none, ...: a value with a capital letter) are skipped.
A negative control first: a made-up default must be caught.

    python3 tests/docs/check_readme_flags.py README BINARY [README BINARY ...]"""

import re
import subprocess
import sys


def flag_defaults(binary):
    r = subprocess.run([binary, "--helpfull"], capture_output=True, text=True)
    text = " ".join((r.stdout + r.stderr).split())
    out = {}
    for m in re.finditer(r"--([a-z0-9_]+) \(.*?\); default: (\"[^\"]*\"|[^;]*);", text):
        out[m.group(1)] = m.group(2).strip('"')
    return out


def stated(readme):
    """(flag, value) pairs from the usage block: the indented lines before the first blank line
    after the line naming the binary."""
    pairs = []
    with open(readme) as f:
        lines = f.read().split("\n")
    block = []
    for i, line in enumerate(lines):
        if line.startswith("    build/") and "[--" in line:
            j = i
            while j < len(lines) and lines[j].startswith("    "):
                block.append(lines[j])
                j += 1
            break
    for m in re.finditer(r"--([a-z0-9_]+) ([^\s\[\]]+)", " ".join(block)):
        pairs.append((m.group(1), m.group(2)))
    return pairs


def errors_for(pairs, defaults):
    errors = []
    for name, value in pairs:
        if name not in defaults:
            errors.append(f"--{name}: no such flag")
            continue
        if re.search(r"[A-Z]", value) or value.startswith("--"):
            continue  # a placeholder, or the next flag
        want = value.split("|")[0]
        if defaults[name] != want:
            errors.append(f"--{name}: the README says {want!r}, the flag's default is "
                          f"{defaults[name]!r}")
    return errors


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        print(__doc__)
        sys.exit(2)
    failed = False
    for readme, binary in zip(args[::2], args[1::2]):
        defaults = flag_defaults(binary)
        pairs = stated(readme)
        if not defaults or not pairs:
            print(f"FAILED: no flags read from {binary} or no usage block in {readme}")
            sys.exit(1)
        name, _ = next(p for p in pairs if p[0] in defaults)
        if not errors_for([(name, "made-up-default")], defaults):
            print("FAILED negative control: a wrong default passed")
            sys.exit(1)
        errors = errors_for(pairs, defaults)
        checked = sum(1 for n, v in pairs if not re.search(r"[A-Z]", v) and not v.startswith("--"))
        print(f"{readme}: {len(pairs)} flags named, {checked} defaults checked against {binary}: "
              f"{'ok' if not errors else 'ERRORS'}")
        for e in errors:
            print("  ERROR", e)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
