"""``python -m authmw.cli``: the ``authmw`` console script."""

from __future__ import annotations

from . import main

raise SystemExit(main())
