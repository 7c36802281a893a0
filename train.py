#!/usr/bin/env python
"""Train FUSE: `accelerate launch train.py STAGE --config configs/tiny/vae.yaml [flags]`, STAGE one of `beats`,
`beats_tokenizer`, `vae`, `diffusion`.

A thin front for `fuse_hf.training`; `python train.py --help` lists every option.
"""

import sys

from fuse_hf.training import main

if __name__ == "__main__":
    sys.exit(main())
