"""The ``tidelog`` command of the Python package (``[project.scripts]``, and ``python -m tidelog``).

It runs the Rust command-line tool (crate ``tidelog-cli``) in this process: the same commands,
options, output and exit codes (0 fine, 1 problem found, 2 error) as the ``tidelog`` binary built
with Cargo. The tool writes to file descriptors 1 and 2 itself, not through ``sys.stdout``.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

from ._tidelog import _cli_main


def main() -> NoReturn:
    # Signals as the Rust binary has them. Ctrl-C ends the process: Python's own SIGINT handler
    # only sets a flag that nobody looks at while the tool runs (`tail -f` would never stop).
    # SIGPIPE stays ignored, as Python and Rust programs both set it: a closed stdout (`| head`)
    # is an EPIPE error, which the tool turns into a quiet exit 0.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # argv[0] is the name in usage lines; `demo` starts its writer processes as
    # `python -m tidelog` (this interpreter, this package), since the executable is Python.
    code = _cli_main(["tidelog", *sys.argv[1:]], [sys.executable, "-m", "tidelog"])
    sys.exit(code)
