"""The quality benchmark (`python -m benchmarks.bench_quality`) in three steps:

* `evaluation_set`: the seeded (clean, noisy) pairs, planned from the corpus manifest and rendered to audio;
* `run`: the systems (baselines and FUSE settings), enhancing and scoring every pair, timing;
* `report`: summaries, the markdown tables of ``results.md`` and the plots.
"""
