"""`python -m fuse_hf ...` is `fuse-hf ...` (e.g. `accelerate launch -m fuse_hf enhance noisy/ -o out/`)."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
