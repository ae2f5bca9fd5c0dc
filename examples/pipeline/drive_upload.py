#!/usr/bin/env python3
"""Reference upload step: copy one file into drive/, a local folder standing in for a
synced cloud drive (swap in `rclone copyto {path} gdrive:{remote}` for a real one).

Usage: drive_upload.py PATH REMOTE
"""
import json
import os
import shutil
import sys


def main(path, remote):
    with open("paths.json") as f:
        drive = json.load(f).get("drive_dir", "drive")
    dest = os.path.join(drive, remote)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    tmp = dest + ".part"
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    print(f"uploaded {path} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
