"""Per-row problem reporting shared by the data preparations.

A preparation reads a corpus row by row (a label line, a CSV row, an audio
file). A bad row is skipped, never fatal: :class:`RowReport` counts it under
a reason, keeps its first messages (each names the file and the line) and,
at the end, gives the ``skipped`` block of the preparation summary and logs
one warning per reason. :func:`problem_list` formats problems for an error
that lists them all at once (when a preparation must stop instead).

Authors
 * sser authors 2026
"""

import logging
from collections import Counter, defaultdict

logger = logging.getLogger(__name__)

#: Messages kept per reason in the summary file.
MAX_EXAMPLES = 20
#: Messages shown per reason in the log.
MAX_LOGGED = 10


class RowReport:
    """Skipped rows, counted by reason, with their first messages.

    Arguments
    ---------
    reasons : dict
        Reason key -> description (e.g. ``"missing_audio": "audio file
        missing"``); the summary lists the reasons in this order and a reason
        outside it is a programming error.
    max_examples : int
        Messages kept per reason.

    Example
    -------
    >>> report = RowReport({"missing_audio": "audio file missing"})
    >>> report.skip("missing_audio", "corpus.csv, line 3: a.wav not found")
    >>> report.skip("missing_audio", "corpus.csv, line 7: b.wav not found")
    >>> report.total, report.counts["missing_audio"]
    (2, 2)
    >>> report.summary()["missing_audio"]["examples"][0]
    'corpus.csv, line 3: a.wav not found'
    """

    def __init__(self, reasons, max_examples=MAX_EXAMPLES):
        self.reasons = dict(reasons)
        self.max_examples = max_examples
        self.counts = Counter()
        self.examples = defaultdict(list)
        #: Facts about the kept rows a reader adds for the summary (e.g. the
        #: speaker spellings it merged).
        self.notes = {}

    def skip(self, reason, message):
        """Count a skipped row under ``reason``; keep its message if among the first."""
        if reason not in self.reasons:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.counts[reason] += 1
        if len(self.examples[reason]) < self.max_examples:
            self.examples[reason].append(message)
        logger.debug("skipped: %s", message)

    def extend(self, problems):
        """Record ``(reason, message)`` pairs, e.g. those of a label-file parser."""
        for reason, message in problems:
            self.skip(reason, message)

    @property
    def total(self):
        """Number of skipped rows over all reasons."""
        return sum(self.counts.values())

    def summary(self):
        """``{reason: {"count", "description", "examples"}}`` of the reasons seen."""
        return {
            reason: {
                "count": self.counts[reason],
                "description": description,
                "examples": list(self.examples[reason]),
            }
            for reason, description in self.reasons.items()
            if self.counts[reason]
        }

    def log(self, summary_file=None, log=None):
        """One warning per reason: count, description and the first messages.

        Arguments
        ---------
        summary_file : str, optional
            Named in the warning when more messages exist than are shown.
        log : logging.Logger, optional
            Where to log (default: this module's logger).
        """
        log_summary(self.summary(), summary_file, log)


def log_summary(skipped, summary_file=None, log=None):
    """Log the ``skipped`` block of a summary (as :meth:`RowReport.summary` gives).

    Example
    -------
    >>> import logging, sys
    >>> log = logging.getLogger("doctest_row_report")
    >>> log.addHandler(logging.StreamHandler(sys.stdout))
    >>> skipped = {"bad_audio": {"count": 1, "description": "audio file unusable",
    ...            "examples": ["x.csv, line 2: a.wav: empty"]}}
    >>> log_summary(skipped, log=log)
    1 skipped (audio file unusable):
      - x.csv, line 2: a.wav: empty
    """
    log = log or logger
    for info in skipped.values():
        shown = info["examples"][:MAX_LOGGED]
        more = info["count"] - len(shown)
        tail = ""
        if more > 0:
            where = f" (see {summary_file})" if summary_file else ""
            tail = f"\n  ... and {more} more{where}"
        log.warning(
            "%d skipped (%s):\n%s%s",
            info["count"],
            info["description"],
            "\n".join(f"  - {m}" for m in shown),
            tail,
        )


def problem_list(problems, limit=MAX_LOGGED):
    """Indented list of the first ``limit`` problems and how many more there are.

    Example
    -------
    >>> print(problem_list(["a.wav: empty", "b.wav: stereo", "c.wav: 8 kHz"], limit=2))
      - a.wav: empty
      - b.wav: stereo
      ... and 1 more
    """
    listed = "\n".join(f"  - {p}" for p in problems[:limit])
    more = len(problems) - limit
    return listed + (f"\n  ... and {more} more" if more > 0 else "")
