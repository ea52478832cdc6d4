"""``python -m sser_lobes.timeline_eval REF PRED``: the entry point of
:mod:`sser_lobes.evaluation.timeline_eval` under its short name."""

import sys

from sser_lobes.evaluation.timeline_eval import main

if __name__ == "__main__":
    sys.exit(main())
