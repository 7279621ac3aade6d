"""Virtualenvs of their own for peers whose pins clash with ours.

functions-framework 3.10.2 wants ``cloudevents<=1.12`` (we pin 2.x), so its rows run on an
interpreter of a virtualenv built from a requirements file committed in ``bench/``. The
virtualenv is built on first use and reused while it was built from the same requirements,
pip options and base Python (a stamp file inside it records them); otherwise it is rebuilt.
It has no pip of its own: this environment's pip installs into it (``pip --python``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._report import progress
from bench._servers import REPO_ROOT

__all__ = ["FF_REQUIREMENTS", "VENVS_DIR", "VenvUnavailable", "ensure_venv", "venv_python"]

VENVS_DIR = REPO_ROOT / "bench" / ".venvs"
FF_REQUIREMENTS = REPO_ROOT / "bench" / "requirements-ff.txt"
STAMP = "bench-requirements.sha256"
# Without network pip should give up within seconds, not after its default 5 retries.
_PIP_NETWORK = ("--retries", "1", "--timeout", "15")


class VenvUnavailable(RuntimeError):
    """The virtualenv could not be built; the message says why (the rows are left out)."""


def venv_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def _fingerprint(requirements: Path, pip_args: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update("\0".join(pip_args).encode())
    # A venv's interpreter is the base one it was made from: a new Python means a new venv.
    digest.update(f"{sys.version}\0{getattr(sys, '_base_executable', sys.executable)}".encode())
    return digest.hexdigest()


def ensure_venv(
    directory: Path,
    requirements: Path,
    *,
    pip_args: Sequence[str] = (),
    report: Callable[[str], None] = progress,
) -> Path:
    """The Python of a virtualenv at ``directory`` holding exactly ``requirements``.

    Reused when its stamp matches; built (or rebuilt) otherwise, printing pip's progress.
    Raises :class:`VenvUnavailable` when it cannot be built (no network, a pin pip cannot
    satisfy); a half-built virtualenv is removed so the next run tries again.
    """
    try:
        fingerprint = _fingerprint(requirements, pip_args)
    except OSError as exc:
        raise VenvUnavailable(f"cannot read {requirements}: {exc.strerror}") from None
    python = venv_python(directory)
    stamp = directory / STAMP
    if stamp.is_file() and python.exists() and stamp.read_text().strip() == fingerprint:
        return python
    if directory.exists():
        if not (directory / "pyvenv.cfg").is_file():
            # Never delete a folder this module did not make.
            raise VenvUnavailable(f"{directory} exists and is not a virtualenv; remove it")
        report(f"--> {_shown(directory)}: built from other requirements, rebuilding")
        shutil.rmtree(directory)
    report(
        f"--> building {_shown(directory)} from {_shown(requirements)} "
        "(first use or new pins; reused afterwards)"
    )
    try:
        _run([sys.executable, "-m", "venv", "--without-pip", str(directory)], report)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                *_PIP_NETWORK,
                "--requirement",
                str(requirements),
                *pip_args,
            ],
            report,
        )
    except VenvUnavailable:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    stamp.write_text(fingerprint + "\n")
    report(f"--> {_shown(directory)} ready")
    return python


def _run(argv: list[str], report: Callable[[str], None]) -> None:
    """Run ``argv``, echoing its output indented; its last lines are the reason if it fails."""
    tail: deque[str] = deque(maxlen=3)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                report(f"    {line}")
                tail.append(line)
    if proc.returncode != 0:
        why = " / ".join(tail) or "no output"
        raise VenvUnavailable(f"{argv[2]} exited with {proc.returncode}: {why}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
