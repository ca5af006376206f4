"""The console script `cnnlab`: parse the command line, run the command, turn what goes wrong
into an exit status and one line on stderr."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from cnnlab import runtime
from cnnlab.cli.common import Failure, UsageError, one_line, say
from cnnlab.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: `cnnlab COMMAND ...`; returns the exit status."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    runtime.apply_defaults()  # an entry point: the process settings cnnlab runs best with
    try:
        return args.run(args)
    except UsageError as error:
        print(f"{args.parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("cnnlab: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `cnnlab predict ... | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (Failure, ValueError, OSError, FloatingPointError, MemoryError) as error:
        # DataError, ModelFileError and ShapeError are ValueErrors
        if args.debug:
            traceback.print_exc()
        say(f"cnnlab: error: {one_line(error)}")
        return 1
