"""Serving the dashboard with uvicorn inside the running event loop (beside the client and, in
process, the worker)."""

from __future__ import annotations

import logging

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger("infinitic.dashboard")


async def serve(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``app`` until the task is cancelled or the process is interrupted."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    logger.info("infinitic dashboard on http://%s:%s/", host, port)
    await server.serve()
