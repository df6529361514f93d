"""The application of one uvicorn worker process (`vidfarm serve --workers N`).

uvicorn starts N processes that each import this factory: each opens its own runtime from the
settings (the environment), so each is a replica like a `vidfarm serve` on another machine.
"""

from __future__ import annotations

from fastapi import FastAPI

from vidfarm.api.app import create_app
from vidfarm.config import load_settings
from vidfarm.runtime import open_runtime


def app_from_settings() -> FastAPI:
    return create_app(open_runtime(load_settings()))
