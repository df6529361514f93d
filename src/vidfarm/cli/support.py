"""What every `vidfarm` sub-command shares: consoles, one-line errors, settings, runtime.

Kept apart from cli/app.py so command-group modules (xapi, transcribe) can import it
without importing the command tree that registers them.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from vidfarm.config import Settings, load_settings
from vidfarm.errors import ConfigError, VidfarmError
from vidfarm.runtime import Runtime, open_runtime

# Wide when piped, so ids and states are never cut; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"vidfarm: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(command: Callable[..., T]) -> Callable[..., T]:
    """Turn vidfarm's errors (and surprises) into one line and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except ConfigError as error:
            fail(str(error), 2)
        except VidfarmError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as error:
            if os.environ.get("VIDFARM_DEBUG"):
                raise
            fail(f"unexpected {type(error).__name__}: {error} (VIDFARM_DEBUG=1 shows more)")

    return wrapper


def settings() -> Settings:
    return load_settings()


@contextmanager
def runtime() -> Iterator[Runtime]:
    rt = open_runtime(settings())
    try:
        yield rt
    finally:
        rt.engine.dispose()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=False,
    )
