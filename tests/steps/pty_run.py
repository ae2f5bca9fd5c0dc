#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal (120 columns) and copies what it writes there to
stdout as it comes, unbuffered; exits with the command's status.

usage: pty_run.py COMMAND [ARGS...]

For tests of what memsched draws only on a terminal (issue 20 item 12: a step's spinner).
"""
import fcntl
import os
import pty
import struct
import sys
import termios


def main(argv):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not data:
            break
        os.write(1, data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
