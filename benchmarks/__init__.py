"""Measurements of fuse-hf: quality against baselines, inference speed and memory, training throughput, the VAE gate
and the BEATs conditioner. Run the scripts from the repository root as modules::

    python -m benchmarks.bench_quality --help

`benchmarks.common` holds what the scripts share, `benchmarks.peers` the baseline enhancers,
`benchmarks.quality` the quality benchmark's evaluation set, runs and report, `benchmarks.linear_probe` the BEATs
linear probe. None of it is part of the installed `fuse_hf` package.

Importing the package sizes the OpenMP and MKL thread pools (2 threads, the timings' setting) unless the environment
already does, before any script imports numpy or torch.
"""

from .common import fix_thread_pools

fix_thread_pools()
