"""Two third-party log lines that say nothing about IFCSR, dropped at their loggers.
Imports the standard library (logging) only; `import ifcsr` installs the filters.

peft and diffusers import bitsandbytes when it is installed (pyiqa requires it). On a CPU with
AVX512-BF16, bitsandbytes then asks the `kernels` package for a 4-bit GEMM kernel from the
Hugging Face hub (`bitsandbytes/backends/cpu/ops.py`). With ``HF_HUB_OFFLINE=1`` that logs two
warnings on stderr at every import, from two loggers:

- ``kernels._internals.hf_hub``: "Skipping publisher trust check for
  'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in offline mode."
- ``bitsandbytes.backends.cpu.ops``: "Failed to load CPU gemm_4bit_forward from
  kernels-community: ..." (also without ``HF_HUB_OFFLINE`` when the hub cannot be reached).

IFCSR never quantises, so that kernel is irrelevant here. Each filter drops exactly one message
(matched by its start, the repository named) at its own logger; every other message of those
loggers, e.g. a trust-check skip for another kernel, still shows. tests/test_cli_fast.py runs a
command that imports peft with ``HF_HUB_OFFLINE=1`` and asserts an empty stderr.
"""

from __future__ import annotations

import logging

# logger name -> the start of the one message dropped there
DROPPED = {
    "kernels._internals.hf_hub":
        "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
    "bitsandbytes.backends.cpu.ops":
        "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class DropMessage(logging.Filter):
    """A logging filter that drops records whose message starts with `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_third_party() -> None:
    """Install the filters of `DROPPED` (idempotent). Logger filters see only the records logged
    on that logger itself, so nothing else is touched."""
    for name, prefix in DROPPED.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.prefix == prefix for f in log.filters):
            log.addFilter(DropMessage(prefix))
