#!/usr/bin/env python3
"""The C client's error table (include/fjord.h's enum and src/util.c's names and retriable flags)
against proto/fjord/v1/errors.proto: every code, name and retriable flag the same. Run by `make test`.

The retriable flag comes from the proto's comment of each code ("Retriable" / "Not retriable").
"""
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", "..", ".."))
proto = open(os.path.join(root, "proto", "fjord", "v1", "errors.proto")).read()
header = open(os.path.join(here, "..", "include", "fjord.h")).read()
table = open(os.path.join(here, "..", "src", "util.c")).read()

expected = {}
comment = []
for line in proto.splitlines():
    stripped = line.strip()
    if stripped.startswith("//"):
        comment.append(stripped[2:])
        continue
    match = re.match(r"ERROR_CODE_(\w+) = (\d+);", stripped)
    if match:
        text = " ".join(comment)
        retriable = "Not retriable" not in text and "Retriable" in text
        expected[match.group(1)] = (int(match.group(2)), retriable)
    comment = []
expected.pop("NONE", None)

in_header = {name: int(code) for name, code in re.findall(r"FJORD_ERROR_(\w+) = (\d+)", header)}
in_header.pop("NONE", None)
in_table = {name: (quoted, int(flag)) for name, quoted, flag in re.findall(r'\{FJORD_ERROR_(\w+), "(\w+)", (\d)\}', table)}

problems = []
for name, (code, retriable) in sorted(expected.items(), key=lambda item: item[1][0]):
    if in_header.get(name) != code:
        problems.append("fjord.h: FJORD_ERROR_%s should be %d (is %s)" % (name, code, in_header.get(name)))
    if name not in in_table:
        problems.append("util.c: no entry for FJORD_ERROR_%s" % name)
    elif in_table[name] != (name, int(retriable)):
        problems.append("util.c: FJORD_ERROR_%s should be (\"%s\", %d), is %s" % (name, name, retriable, in_table[name]))
for name in set(in_header) - set(expected):
    problems.append("fjord.h: FJORD_ERROR_%s is not in errors.proto" % name)
if problems:
    print("error table out of date with proto/fjord/v1/errors.proto:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("error table: %d codes match proto/fjord/v1/errors.proto" % len(expected))
