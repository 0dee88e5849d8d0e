"""Where a study lives: an Optuna storage URL, checked before anything is written, then opened once per process.

Anything with a scheme other than `journal://` (`sqlite:///...`, `postgresql://...`) is an Optuna RDB URL;
`journal:///abs/path/optuna.journal`, or a bare file path, is a journal file that several processes on one host
can share (Optuna's own CLI reads the same bare path: `optuna trials --storage optuna.journal`).
"""

from __future__ import annotations

import functools
import os
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_study.checks import ConfigError, check_writable_parent, require
from mnist_study.errors import first_line
from mnist_study.paths import STORAGE_VARIABLE
from mnist_study.secrets import redact

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

JOURNAL_SCHEME = "journal://"
KEY = "hydra.sweeper.storage"
ALLOWED = "sqlite:////abs/optuna.db, postgresql://user:password@host/db, or a journal file path"
# How long to wait for a database server before calling it unreachable.
STORAGE_TIMEOUT_SECONDS = 10


def journal_path(url: str) -> str | None:
    """The file of a journal storage URL (`journal:///path` or a bare path); None for a database URL."""
    if url.startswith(JOURNAL_SCHEME) or "://" not in url:
        return url.removeprefix(JOURNAL_SCHEME)
    return None


# Storage URLs whose password a job override hides, by their hidden form (see `shareable`).
_HIDDEN: dict[str, str] = {}


def shareable(url: str) -> str:
    """The URL with its password hidden, for a job's overrides (Hydra writes those to disk); the job gets the real
    one back through `real_url`, from this process or from the environment."""
    shown = redact(url)
    _HIDDEN[shown] = url
    return shown


def real_url(shown: str) -> str:
    """The storage URL a `shareable` form stands for."""
    if "***" not in shown:
        return shown
    if shown in _HIDDEN:
        return _HIDDEN[shown]
    from_environment = os.environ.get(STORAGE_VARIABLE)
    if from_environment and redact(from_environment) == shown:
        return from_environment
    raise ConfigError(
        f"trial.storage={shown}: its password is hidden; give the job {STORAGE_VARIABLE} (the storage URL) in its "
        "environment"
    )


def open_storage(url: str, heartbeat: tuple[int, int] | None = None) -> BaseStorage:
    """One storage object per URL per process, shared by the sweeper and the jobs it runs in-process.

    `heartbeat` (interval, grace period in seconds) turns on Optuna's own trial heartbeat on an RDB storage.
    """
    return _open(real_url(url), heartbeat)


@functools.cache
def _open(url: str, heartbeat: tuple[int, int] | None) -> BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not url:
        raise ValueError(f"an Optuna storage URL is required ({ALLOWED})")
    path = journal_path(url)
    if path is None:
        return _open_rdb(url, heartbeat)
    if not path:
        raise ValueError(f"storage {url!r}: a journal storage needs a file path")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


def _open_rdb(url: str, heartbeat: tuple[int, int] | None, attempts: int = 5) -> RDBStorage:
    """An RDB storage; workers starting together on a brand-new database race to create Optuna's tables (on
    PostgreSQL the losers hit a unique violation in the catalog, on SQLite a table that "already exists"), and
    succeed once the winner is done. Other errors (a refused connection, a wrong password) are raised at once."""
    import warnings

    import sqlalchemy
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    interval, grace = heartbeat or (None, None)
    # A database server that restarted leaves dead connections in the pool: test each before use (SQLite has none).
    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}

    def create() -> RDBStorage:
        with warnings.catch_warnings():
            # The heartbeat arguments are marked experimental.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=interval, grace_period=grace)

    for attempt in range(1, attempts):
        try:
            return create()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.5 * attempt)
        except sqlalchemy.exc.OperationalError as error:
            if "already exists" not in str(error.orig):
                raise
            time.sleep(0.5 * attempt)
    return create()


def check_storage(url: Any) -> None:
    """The storage must be a URL Optuna can open and, for a database server, answer within a bounded wait.

    Nothing is created here: a SQLite file appears only when the study is created, and a server is only pinged.
    """
    require(isinstance(url, str) and url.strip() != "", KEY, url, ALLOWED)
    path = journal_path(url)
    if path is not None:
        require(path != "", KEY, url, "journal:///abs/path.journal (a file path)")
        check_writable_parent(path, KEY, url)
        return
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    shown = redact(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except exc.NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        raise ConfigError(f"{KEY}={shown}: unsupported scheme {scheme!r}; use {ALLOWED}") from None
    except (exc.ArgumentError, ValueError) as error:
        raise ConfigError(f"{KEY}={shown}: not a database URL ({hide(error, url)}); use {ALLOWED}") from None
    if dialect.name == "sqlite":
        check_sqlite_path(parsed.database, shown)
    else:
        check_server(url, dialect.name, shown)


def check_server(url: str, dialect: str, shown: str) -> None:
    """A database server must accept a connection within `STORAGE_TIMEOUT_SECONDS`."""
    from sqlalchemy import create_engine

    # libpq and the MySQL drivers honour connect_timeout; without it an unroutable host hangs for minutes.
    connect_args = {"connect_timeout": STORAGE_TIMEOUT_SECONDS} if dialect in ("postgresql", "mysql") else {}
    try:
        engine = create_engine(url, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except ImportError as error:
        raise ConfigError(f"{KEY}={shown}: its database driver is not installed ({hide(error, url)})") from None
    except Exception as error:  # Every driver has its own exception types; all mean "cannot use this storage".
        reason = hide(getattr(error, "orig", None) or error, url)
        raise ConfigError(
            f"{KEY}={shown}: cannot connect within {STORAGE_TIMEOUT_SECONDS} s ({reason}); is the server up "
            "(make services)?"
        ) from None


def check_sqlite_path(database: str | None, shown: str) -> None:
    """A SQLite storage is a file in an existing, writable folder (SQLite creates the file, never the folder)."""
    if not database or database == ":memory:":
        raise ConfigError(f"{KEY}={shown}: must name a database file, e.g. sqlite:////abs/path/optuna.db")
    folder = Path(database).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"{KEY}={shown}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{KEY}={shown}: the folder {folder} is not writable")


def hide(error: BaseException, url: str) -> str:
    """The first line of an error message, with the URL's password removed wherever it appears."""
    text = redact(first_line(error))
    password = urllib.parse.urlsplit(url).password
    return text.replace(password, "***") if password else text
