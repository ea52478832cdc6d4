"""Rules the test suite keeps (README, "Quality bar").

No test asserts a wall-clock time: on a machine shared with other jobs any
time limit fails now and then, and a red suite for a slow moment teaches
people to ignore red. Timings belong in ``bench/``, which reports them with
the load they were measured under.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {
    "time",
    "perf_counter",
    "monotonic",
    "process_time",
    "time_ns",
    "perf_counter_ns",
}


def _reads_a_clock(node):
    """Whether an expression calls ``time.<clock>()`` (or a bare clock name)."""
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else getattr(func, "id", None)
            )
            if name in CLOCKS:
                return True
    return False


def _own_nodes(scope):
    """The nodes of a function (or module), without those of nested functions."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _uses(node, names):
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def timed_asserts(source):
    """``(line, text)`` of every assert that compares a wall-clock duration.

    In each function, a plain name assigned from an expression that reads a
    clock (``start = time.perf_counter()``) or another such name (``elapsed
    = time.perf_counter() - start``) is a time; an ``assert`` that compares
    a time, or reads a clock itself, is a timed assert.

    Example
    -------
    >>> timed_asserts("import time\\nt = time.perf_counter()\\nassert t < 2.0\\n")
    [(3, 'assert t < 2.0')]
    >>> timed_asserts("n = 3\\nassert n < 4\\n")
    []
    """
    tree = ast.parse(source)
    scopes = [tree] + [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    found = []
    for scope in scopes:
        nodes = list(_own_nodes(scope))
        times = set()
        for _ in range(3):  # names assigned from names assigned from a clock
            for node in nodes:
                if isinstance(node, ast.Assign) and (
                    _reads_a_clock(node.value) or _uses(node.value, times)
                ):
                    times |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in nodes:
            if isinstance(node, ast.Assert) and any(
                _reads_a_clock(c) or _uses(c, times)
                for c in ast.walk(node.test)
                if isinstance(c, ast.Compare)
            ):
                found.append((node.lineno, ast.get_source_segment(source, node)))
    return sorted(found)


def test_no_test_asserts_a_wall_clock_time():
    offenders = [
        f"{path.name}:{line}: {text}"
        for path in sorted(TESTS.glob("*.py"))
        for line, text in timed_asserts(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "timings belong in bench/:\n" + "\n".join(offenders)
