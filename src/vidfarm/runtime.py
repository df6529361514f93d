"""Wiring: settings -> database (migrated) + storage + the embedded farm, for CLI and server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.claims import Claim, Reporter
from vidfarm.config import Settings
from vidfarm.db import make_engine, make_session_factory, migrate
from vidfarm.dispatch import Dispatcher
from vidfarm.dispatch.local import LocalDispatcher, WorkerPool
from vidfarm.errors import ConfigError, DatabaseUnavailable, InvalidParameters
from vidfarm.leadership import Leadership
from vidfarm.media.profiles import load_profile
from vidfarm.scheduler import Scheduler
from vidfarm.storage import Storage, make_storage
from vidfarm.worker import run_job
from vidfarm.xapi.delivery import XapiDelivery
from vidfarm.xapi.statements import load_actor_secret

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    pool: WorkerPool | None = None
    scheduler: Scheduler | None = None
    dispatcher: Dispatcher | None = field(default=None)
    xapi: XapiDelivery | None = None
    leadership: Leadership | None = None

    def run_job(self, claim: Claim, reporter: Reporter) -> None:
        run_job(claim, reporter, settings=self.settings, storage=self.storage)

    def dispatch(self, job_ids: list[str]) -> None:
        """Hand new jobs to this process's farm now; without one, the reconciler does it."""
        if self.dispatcher is not None:
            self.dispatcher.dispatch(job_ids)

    def requeued(self, job_ids: list[str]) -> None:
        """Jobs handed back by a stopping worker are queued again: make them reachable now."""
        if self.dispatcher is not None:
            self.dispatcher.requeued(job_ids)

    def make_dispatcher(self, pool: WorkerPool | None = None) -> Dispatcher:
        """The transport chosen by settings: embedded pool, Celery queues or runner managers."""
        transport = self.settings.transport
        if transport == "celery":
            from vidfarm.dispatch.celery import CeleryDispatcher

            return CeleryDispatcher(self.sessions, self.settings)
        if transport == "runners":
            from vidfarm.dispatch.runners.dispatcher import RunnersDispatcher

            return RunnersDispatcher(self.sessions, self.settings, self.storage)
        return LocalDispatcher(self.sessions, pool)

    @property
    def leading(self) -> bool:
        """This replica runs the reconciler and delivery loops now (see leadership.py)."""
        return self.leadership is not None and self.leadership.held()

    def start_farm(self) -> None:
        """Start the transport (the embedded pool, when local and wanted) and the reconcile loop.

        The reconcile and delivery loops tick only while this replica leads.
        """
        if self.settings.transport == "local" and self.settings.embedded_pool:
            self.pool = WorkerPool(self.sessions, self.settings, self.run_job)
        self.leadership = Leadership(self.engine, self.settings.data_dir)
        leader = self.leadership.held
        self.dispatcher = self.make_dispatcher(self.pool)
        self.scheduler = Scheduler(self.sessions, self.dispatcher, self.settings, leader=leader)
        self.dispatcher.start()
        self.scheduler.start()
        if self.settings.xapi_enabled:
            secret = self.settings.xapi_actor_secret.get_secret_value()
            load_actor_secret(secret, self.settings.data_dir)  # create the key at first start
            if self.settings.xapi_lrs_url and self.settings.transport != "celery":
                # With Celery, delivery runs on the `xapi` queue (see dispatch/celery.py).
                self.xapi = XapiDelivery(self.sessions, self.settings, leader=leader)
                self.xapi.start()

    def stop_farm(self, timeout: float = 30.0) -> None:
        """Hand running jobs back to the queue and stop; nothing is lost on a clean stop."""
        if self.xapi:
            self.xapi.stop(timeout)
            self.xapi = None
        if self.scheduler:
            self.scheduler.stop(timeout)
            self.scheduler = None
        if self.dispatcher:
            self.dispatcher.stop(timeout)
        if self.leadership:
            self.leadership.release()  # another replica takes over at its next poll
            self.leadership = None

    def close(self) -> None:
        self.stop_farm()
        self.engine.dispose()


def open_runtime(settings: Settings) -> Runtime:
    """Check what can only be checked against the world, then open the database (migrated)."""
    try:
        load_profile(settings.default_profile, settings.user_profiles_dir)
    except InvalidParameters as error:
        raise ConfigError(f"invalid setting VIDFARM_DEFAULT_PROFILE: {error}") from None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"invalid setting VIDFARM_DATA_DIR: {error.strerror}") from None
    try:
        engine = make_engine(settings.resolved_database_url)
    except (ArgumentError, NoSuchModuleError) as error:
        raise ConfigError(f"invalid setting VIDFARM_DATABASE_URL: {error}") from None
    try:
        migrate(engine)
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseUnavailable(f"cannot reach the database: {reason}") from None
    storage = make_storage(settings)
    storage.prepare()
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        storage=storage,
    )
