"""Corpus v2 builder: real speech and noise from Debian packages, measured per file, split by whole units.

Modules:
    sources   the source table (which packages, which files, language, speaker, split unit) and the reserved list
    debian    `apt-get download`, cached extraction of the needed members, licences, versions and sha256
    quality   per-file measures (level, clipping, SNR estimate, bandwidth) and the thresholds that drop bad targets
    splits    train / valid / dev_stranger by whole units
    process   one source file -> 16 kHz mono PCM16 WAV(s) + measures, cached per file
    mixtures  the fixed noisy/clean pairs of the stranger dev split

Run `scripts/corpus/build_corpus.py` (see scripts/corpus/README.md).
"""
