#!/usr/bin/env python
"""Packs the training corpus into Ogg/Opus so that it travels to a GPU machine (~40 MB instead of 250 MB).

    python scripts/pack_corpus.py ~/.cache/fuse-corpus .corpus_pack            # pack (train + valid, no narrowband)
    python scripts/pack_corpus.py --unpack .corpus_pack /tmp/corpus             # decode back to 16 kHz PCM WAV

Opus at ~40-60 kbit/s is transparent enough for training targets; the band-limited Dutch speech (no energy above
4 kHz) gets the lower rate. The manifest is rewritten with the new paths, so wideband weighting still works.
The narrowband French prompts are left out: the quality benchmark uses them as out-of-domain speech.
"""

import argparse
import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf


def _pack(job):
    source, target, level = job
    audio, rate = sf.read(source, dtype="float32")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, format="OGG", subtype="OPUS", compression_level=level)


def _unpack(job):
    source, target = job
    audio, rate = sf.read(source, dtype="float32")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, subtype="PCM_16")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--unpack", action="store_true", help="decode a packed corpus back to WAV")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    source, target = Path(args.source).expanduser(), Path(args.target)
    with open(source / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    new_ext = ".wav" if args.unpack else ".opus"
    jobs, kept = [], []
    for row in rows:
        if not args.unpack and row["path"].startswith("speech_narrowband/"):
            continue
        out = str(Path(row["path"]).with_suffix(new_ext))
        if args.unpack:
            jobs.append((str(source / row["path"]), str(target / out)))
        else:
            wideband = float(row.get("hf4k_db") or -99) > -30 or row["path"].startswith("noise/")
            jobs.append((str(source / row["path"]), str(target / out), 0.8 if wideband else 0.88))
        kept.append({**row, "path": out})
    with ProcessPoolExecutor(args.jobs) as pool:
        list(pool.map(_unpack if args.unpack else _pack, jobs, chunksize=16))
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    print(f"{'unpacked' if args.unpack else 'packed'} {len(jobs)} files into {target}")


if __name__ == "__main__":
    main()
