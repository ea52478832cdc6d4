"""``python -m sser_lobes.tiny_ssl``: the entry point of
:mod:`sser_lobes.encoders.tiny_ssl` under its short, documented name."""

import sys

from sser_lobes.encoders.tiny_ssl import main

if __name__ == "__main__":
    sys.exit(main())
