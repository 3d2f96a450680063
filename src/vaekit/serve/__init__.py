"""`vaekit serve`: a live latent-space explorer in the browser for a trained run.

`create_app(run_dir)` builds the FastAPI app (the page and its JSON API); the `vaekit serve`
command runs it with `vaekit.serve.server.serve` (uvicorn with deadlines on slow clients and a
cap on connections), bound to loopback unless asked otherwise, and with a token off loopback.
FastAPI is an optional dependency (`pip install 'vaekit[serve]'`), so nothing here is imported
by `import vaekit`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(run_dir: Any, **kwargs: Any) -> Any:
    """The explorer app for the run in `run_dir` (see `vaekit.serve.app.create_app`)."""
    from vaekit.serve.app import create_app as create

    return create(run_dir, **kwargs)
