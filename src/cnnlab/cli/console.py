"""The console script `cnnlab`: parse the command line, run the command, turn what goes wrong
into an exit status and one line on stderr."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from cnnlab import distributed, runtime
from cnnlab.cli.common import QUIET, Failure, UsageError, one_line
from cnnlab.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: `cnnlab COMMAND ...`; returns the exit status."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    runtime.apply_defaults()  # an entry point: the process settings cnnlab runs best with
    args.comm = distributed.Comm() if distributed.launched() else None
    if args.comm is not None:  # one of K processes on the cores: one thread each, unless told
        runtime.threads.one_per_process()
    if args.comm is not None and args.comm.rank != 0:  # rank 0 speaks for the job
        QUIET["other rank"] = True
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    try:
        status = args.run(args)
    except BaseException as error:
        status = _failed(args, error)
    if status and args.comm is not None:  # the other processes may wait in a collective: end them
        sys.stderr.flush()
        args.comm.abort(status)
    return status


def _failed(args, error: BaseException) -> int:
    """The exit status of a command that raised `error`, after saying it in one line (naming the
    process under mpiexec); what cnnlab does not know how to say is raised again."""
    rank = "" if args.comm is None else f" (rank {args.comm.rank} of {args.comm.size})"
    try:
        raise error
    except UsageError:
        print(f"{args.parser.prog}: error{rank}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab: interrupted{rank}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cnnlab predict ... | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (Failure, ValueError, OSError, FloatingPointError, MemoryError) as error:
        # DataError, ModelFileError and ShapeError are ValueErrors
        if args.debug:
            traceback.print_exc()
        print(f"cnnlab: error{rank}: {one_line(error)}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        if args.comm is not None:  # a bug: its traceback, then the whole job ends
            traceback.print_exc()
            sys.stderr.flush()
            args.comm.abort(1)
        raise
