"""The `cnnlab` command (also `python -m cnnlab`): train, evaluate, predict, features, summary,
explain, zoo, report, demo, lr-find, export, convert.

Exit status: 0 success; 2 usage error (a bad flag, flag value or config key); 1 failure (a
missing or corrupt file, a data or shape error, training that diverged), reported as one line
`cnnlab: error: ...` on stderr, with the traceback only under --debug.

The top of cnnlab: its modules may import every other part (core, files, runtime, data, io, zoo,
train, viz, ...), and nothing outside cli imports them but __main__.py, through `main` here.

    common.py    UsageError, Failure, say, one_line, the flag types
    runs.py      a run directory: its file names, config.toml written and read, its recorded data
    parser.py    build_parser: one function a command, with its flags and help
    examples.py  the examples and explanations at the end of each command's --help
    console.py   main: parse, run, exit status
    train.py     cnnlab train          use.py       cnnlab evaluate, predict
    transfer.py  train's --model FILE, its head, --freeze and --body-lr-scale
    features.py  cnnlab features (--out FILE.npz, --neighbours FOLDER)
    info.py      cnnlab summary, explain, zoo        pictures.py  cnnlab report, demo
    lr_find.py   cnnlab lr-find
    export.py    cnnlab export (ONNX)
    weights.py   cnnlab convert, train --weights (pretrained torchvision/timm weights)
"""

from cnnlab.cli.console import main
from cnnlab.cli.parser import build_parser

__all__ = ["build_parser", "main"]
