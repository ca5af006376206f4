"""`python -m cnnlab`: the `cnnlab` command."""

from cnnlab.cli import main

raise SystemExit(main())
