#!/usr/bin/env python3
"""Runs a command with io_uring blocked the way a container's default seccomp profile blocks it:
no-new-privs, then a four-instruction BPF filter answering EPERM to io_uring_setup (syscall 425
on every architecture), then exec. Usage: no_uring.py COMMAND [ARG]..."""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
IO_URING_SETUP = 425
EPERM = 1

# struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
PROGRAM = b"".join(struct.pack("HBBI", *insn) for insn in [
    (0x20, 0, 0, 0),                        # ld  [0]: seccomp_data.nr
    (0x15, 0, 1, IO_URING_SETUP),           # jeq 425 ? next : skip one
    (0x06, 0, 0, 0x00050000 | EPERM),       # ret SECCOMP_RET_ERRNO | EPERM
    (0x06, 0, 0, 0x7FFF0000),               # ret SECCOMP_RET_ALLOW
])


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    prog = SockFprog(len(PROGRAM) // 8, PROGRAM)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


main()
