"""The Dockerfile builds the HTTP service from this package (parsed here:
docker does not run in the test suite)."""

import json
import re
from pathlib import Path

from sser_lobes.inference import server

ROOT = Path(__file__).resolve().parents[1]


def instructions():
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines
    joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def pins():
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("==") for line in lines if "==" in line)


def test_the_image_installs_the_package_and_serves_it():
    rows = instructions()
    keywords = [keyword for keyword, _ in rows]
    assert keywords[0] == "FROM" and rows[0][1].startswith("python:3.11")
    runs = " ".join(rest for keyword, rest in rows if keyword == "RUN")
    copies = [rest.split() for keyword, rest in rows if keyword == "COPY"]
    # the package, its setup and pins are copied, then installed with the
    # serving extra under requirements.txt's versions
    copied = {source for parts in copies for source in parts[:-1]}
    assert {"setup.py", "README.md", "requirements.txt", "sser_lobes"} <= copied
    assert '--constraint requirements.txt ".[serve]"' in runs
    versions = pins()
    for package in ("torch", "torchaudio"):
        assert f"{package}=={versions[package]}" in runs
    assert keywords.index("COPY") < keywords.index("EXPOSE")
    # the entry point is the console script, on the exposed port
    (entry,) = [rest for keyword, rest in rows if keyword == "ENTRYPOINT"]
    command = json.loads(entry)
    assert command[0] == "sser-serve"
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert '"sser-serve=sser_lobes.inference.server:main"' in setup
    args = server.build_parser().parse_args(command[1:])
    (exposed,) = [rest for keyword, rest in rows if keyword == "EXPOSE"]
    assert int(exposed) == args.port and args.host == "0.0.0.0"
    (health,) = [rest for keyword, rest in rows if keyword == "HEALTHCHECK"]
    assert f"127.0.0.1:{args.port}/healthz" in health
    assert "USER" in keywords  # not root


def test_the_build_context_is_the_package_only():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignored[ignored.index("*") + 1 :][:4] == [
        "!setup.py",
        "!README.md",
        "!requirements.txt",
        "!sser_lobes",
    ]
