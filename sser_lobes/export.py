"""``python -m sser_lobes.export``: the entry point of
:mod:`sser_lobes.inference.export` under its short, documented name."""

import sys

from sser_lobes.inference.export import main

if __name__ == "__main__":
    sys.exit(main())
