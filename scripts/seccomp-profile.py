#!/usr/bin/env python3
"""Writes deploy/seccomp/ringway-io_uring.json: the container runtime's default seccomp profile
(deploy/seccomp/docker-default.json) with io_uring_setup, io_uring_enter and io_uring_register
allowed, and nothing else changed. Generated rather than edited by hand so that refreshing the
default profile is: replace docker-default.json, run this, commit both.

    python3 scripts/seccomp-profile.py          # rewrite the derived profile
    python3 scripts/seccomp-profile.py --check  # exit 1 if the committed one is out of date
"""
import copy
import json
import pathlib
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]
HERE = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "seccomp"
DEFAULT = HERE / "docker-default.json"
DERIVED = HERE / "ringway-io_uring.json"


def unconditional_allow(rule):
    """The plain allow list: no argument filters, no capability or architecture conditions."""
    conditions = ("args", "includes", "excludes")
    return rule.get("action") == "SCMP_ACT_ALLOW" and not any(rule.get(k) for k in conditions)


def derive(default):
    profile = copy.deepcopy(default)
    allow = next(r for r in profile["syscalls"] if unconditional_allow(r))
    names = allow["names"]
    if any(n in names for n in IO_URING):
        sys.exit("seccomp-profile: the default profile already allows io_uring; nothing to derive")
    # Where Docker listed them before version 25 (after io_submit), so a diff of the two files
    # shows three added lines.
    at = names.index("io_submit") + 1 if "io_submit" in names else len(names)
    names[at:at] = IO_URING
    return profile


def render(profile):
    return json.dumps(profile, indent="\t") + "\n"


def main():
    text = render(derive(json.loads(DEFAULT.read_text())))
    if sys.argv[1:] == ["--check"]:
        if DERIVED.read_text() != text:
            sys.exit(f"seccomp-profile: {DERIVED} is out of date; run scripts/seccomp-profile.py")
        return
    DERIVED.write_text(text)
    print(f"seccomp-profile: wrote {DERIVED}")


if __name__ == "__main__":
    main()
