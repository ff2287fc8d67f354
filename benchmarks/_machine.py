"""Describe the machine a benchmark ran on, so figures are never quoted without it."""

from __future__ import annotations

import os
import platform
import sys

import torch

__all__ = ["machine_description"]


def machine_description() -> str:
    """One line: CPU model, core count, torch version and threads, Python, the exact command."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    command = " ".join([os.path.basename(sys.executable)] + sys.argv)
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads), "
        f"Python {platform.python_version()}\ncommand: {command}"
    )
