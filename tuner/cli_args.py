"""Small pieces of ``tune``'s command line: argparse types beyond counts, the version, the export
line printed after a run, and the dashboard's port check."""
from __future__ import annotations

import argparse
import shlex
import socket

from serving.config.errors import ConfigError


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"a port in 0..65535 must be given, got {text!r}")
    if v > 65535:
        raise argparse.ArgumentTypeError(f"a port in 0..65535 must be given, got {v}")
    return v


def batch_pairs(text: str) -> tuple[tuple[int, int], ...]:
    """An argparse type: ``DxP[,DxP...]``, decode x prefill batch sizes >= 1 (tune calibrate --runs)."""
    try:
        pairs = tuple(tuple(int(x) for x in pair.split("x")) for pair in text.split(","))
    except ValueError:
        pairs = ()
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"decode x prefill pairs of integers >= 1 must be given, e.g. 1x1,4x2, "
                                         f"got {text!r}")
    return pairs


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("serving-tuner")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def export_hint(args) -> str:
    """The `tune export` line for the study just run: its storage, root and overrides exactly, each
    word shell-quoted (``slo={ttft_p99: 2}`` printed bare is three words to a shell)."""
    words = ["tune", "export", "--study", args.study]
    if args.storage is not None:
        words += ["--storage", args.storage]
    if args.root is not None:
        words += ["--root", str(args.root)]
    return shlex.join(words + list(args.overrides))


def check_port_free(number: int) -> None:
    """The dashboard's --port can be bound on 127.0.0.1 now (else optuna-dashboard dies at start)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", number))
        except OSError as err:
            raise ConfigError(f"a free port must be given; 127.0.0.1:{number} is taken ({err.strerror})",
                              key="--port") from None
