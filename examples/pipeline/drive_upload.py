#!/usr/bin/env python3
"""Reference upload step: copy one file into drive/, a local folder standing in for a
synced cloud drive (swap in `rclone copyto {path} gdrive:{remote}` for a real one).

Usage: drive_upload.py PATH REMOTE
       drive_upload.py --remove REMOTE   (delete it from drive/: its source is gone;
                                          a file already gone counts as removed)

REMOTE comes from upload_log.json, which any script of the pipeline can write: it must
name a file inside drive/ (a relative path without '..', backslashes or control
characters), else the upload is refused (exit 2) and nothing is written.
"""
import json
import os
import shutil
import sys


def inside(drive, remote):
    """The destination of REMOTE inside DRIVE, or None when it would leave it."""
    if (not remote or os.path.isabs(remote) or "\\" in remote
            or any(ord(c) < 32 or ord(c) == 127 for c in remote)
            or ".." in remote.split("/")):
        return None
    root = os.path.realpath(drive)
    dest = os.path.realpath(os.path.join(root, remote))
    # realpath also follows a link inside drive/ that points elsewhere.
    return dest if dest.startswith(root + os.sep) else None


def drive_dir():
    with open("paths.json") as f:
        return json.load(f).get("drive_dir", "drive")


def refuse(drive, remote):
    print(f"refused: the remote {remote!r} leaves {drive}/ (absolute, '..', "
          "backslash or control character)", file=sys.stderr)
    return 2


def remove(remote):
    drive = drive_dir()
    dest = inside(drive, remote)
    if dest is None:
        return refuse(drive, remote)
    try:
        os.remove(dest)
        print(f"removed {dest}")
    except FileNotFoundError:
        # Idempotent, so a removal retried after a crash succeeds.
        print(f"already gone: {dest}")
    return 0


def main(path, remote):
    drive = drive_dir()
    dest = inside(drive, remote)
    if dest is None:
        return refuse(drive, remote)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    print(f"uploaded {path} -> {dest}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--remove":
        sys.exit(remove(sys.argv[2]))
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
