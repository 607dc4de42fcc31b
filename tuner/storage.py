"""Where a study's Ray results live, and where its Optuna database lives.

`--storage` is Ray's trial storage (experiment state, trial checkpoints):
    PATH                 a folder on this machine (one-node runs)
    file:///PATH         a folder every node mounts at the same path (NFS, a shared volume)
    s3://bucket/prefix   an object store (also gs://, abfs://, ...: what pyarrow reads)
The Optuna study is a database the driver alone writes: by default `optuna.db` in the storage
folder; an object store cannot hold one, so `--study-db` names it there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vgan.cli import writable_folder
from vgan.errors import ConfigError

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql")
# A study's name is a folder in the storage, a log file beside it, the Optuna study and the MLflow run
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
BEST_DIR = "best"  # in a trial checkpoint: the best epoch's generator, metrics, validation probabilities
GENERATOR_FILE, PROBS_FILE, METRICS_FILE = "best_generator.pt", "val_probs.npy", "metrics.json"
RECIPE_FILE = "recipe.json"  # in a study's folder: what its trials train (tuner.space.trial_recipe)
STUDY_DB_FILE = "study_db.txt"  # in a study's folder: where its Optuna study is (the URL, password hidden)
STOPPED_FILE = "stopped.json"  # in a study's folder: {trial id: epoch} of the trials its time budget stopped
# Ray's snapshots of a study (TuneController.CKPT_FILE_TMPL), the first as its fit begins:
# what Tuner.restore needs
RAY_STATE = re.compile(r"experiment_state-.+\.json")


@dataclass(frozen=True)
class Storage:
    uri: str  # what Ray is given
    local: Path | None  # the folder on this machine, for a path or file://
    shared: bool  # stated to be seen by every node (file:// or an object store)

    def study(self, name: str) -> str:
        """The study's folder as a URI; an object store's options (`?endpoint_override=...`: MinIO) stay at the end."""
        from urllib.parse import urlsplit, urlunsplit

        if "://" not in self.uri:
            return f"{self.uri.rstrip('/')}/{name}"
        parts = urlsplit(self.uri)
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))

    def folder(self, name: str):
        """(pyarrow filesystem, path) of the study's folder, whatever filesystem Ray's storage is."""
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.study(name))

    def exists(self, name: str, option: str = "--name") -> bool:
        """Whether the study's folder is there; the first look at the storage, so a scheme pyarrow does not
        know or an object store that does not answer is refused here, naming it, as is a file of the study's
        name (the storage's optuna.db: a name it takes is no study's)."""
        import pyarrow
        import pyarrow.fs

        try:
            fs, path = self.folder(name)
            found = fs.get_file_info(path).type
        except (OSError, pyarrow.ArrowException) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--storage {self.uri}: cannot be read ({reason[:300]})") from None
        if found == pyarrow.fs.FileType.File:
            raise ConfigError(f"{option}: {self.study(name)} is a file, not a study's folder: name the study "
                              "otherwise")
        return found != pyarrow.fs.FileType.NotFound

    def begun(self, name: str) -> bool:
        """Whether Ray saved the study's state: a driver stopped before that leaves its folder with our
        recipe (and perhaps trials' folders), but nothing Ray could resume."""
        import pyarrow.fs

        fs, path = self.folder(name)
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return any(i.type == pyarrow.fs.FileType.File and RAY_STATE.fullmatch(i.base_name) for i in infos)

    def kept_recipe(self, name: str, option: str) -> str:
        """The recipe of the study `name`, which must be there ('' for a study begun before recipes were kept);
        a folder that holds neither a recipe nor Ray's state is no study."""
        if not self.exists(name, option):
            raise ConfigError(f"{option}: no study '{name}' in {self.uri}")
        kept = self.read_text(name, RECIPE_FILE)
        if not kept and not self.begun(name):
            raise ConfigError(f"{option}: {self.study(name)} holds no study (neither Ray's state nor {RECIPE_FILE})")
        return kept

    def write_text(self, name: str, file: str, text: str) -> None:
        """A file of ours in the study's folder."""
        fs, path = self.folder(name)
        write_text(fs, f"{path}/{file}", text)

    def read_text(self, name: str, file: str) -> str:
        """A file of the study's folder ('' where there is none: PBT's log of a study without PBT, the
        recipe of a study begun before it was kept)."""
        fs, path = self.folder(name)
        return read_text(fs, f"{path}/{file}")


def read_text(fs, path: str) -> str:
    """A text file on a pyarrow filesystem; '' where there is none."""
    try:
        with fs.open_input_stream(path) as f:
            return f.readall().decode()
    except FileNotFoundError:
        return ""


def write_text(fs, path: str, text: str) -> None:
    """A text file on a pyarrow filesystem, its folder made if need be."""
    fs.create_dir(path.rstrip("/").rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")  # Ray's name for a trial's checkpoint folders


def checkpoint_dirs(fs, trial_path: str) -> list[str]:
    """A trial's `checkpoint_<n>` folders in Ray's storage (any pyarrow filesystem), oldest first."""
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    return sorted((i.path for i in infos
                   if i.type == pyarrow.fs.FileType.Directory and CHECKPOINT_DIR.fullmatch(i.base_name)),
                  key=checkpoint_number)


def checkpoint_number(path: str) -> int:
    return int(CHECKPOINT_DIR.fullmatch(base_name(path)).group(1))


def newest_index(counted: int, dirs: list[str]) -> int:
    """The index of a trial's newest checkpoint: Ray's count (StorageContext.current_checkpoint_index), or a
    folder past it (`dirs`: checkpoint_dirs) that a worker wrote and the driver never counted."""
    return max(counted, checkpoint_number(dirs[-1])) if dirs else counted


def base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def in_folder(path: str, trial_path: str) -> bool:
    """Whether a checkpoint is the trial's own (not another trial's, as PBT's exploit gives one)."""
    return path.rstrip("/").rsplit("/", 1)[0] == trial_path.rstrip("/")


def newest_best(fs, trial_path: str) -> str | None:
    """The `best/` folder of the trial's newest checkpoint that holds one (pyarrow path), if any."""
    import pyarrow.fs

    for path in reversed(checkpoint_dirs(fs, trial_path)):
        if fs.get_file_info(f"{path}/{BEST_DIR}/{GENERATOR_FILE}").type != pyarrow.fs.FileType.NotFound:
            return f"{path}/{BEST_DIR}"
    return None


def check_study_name(name: str) -> str:
    """A name that stays one folder inside the storage: `../x` or `a/b` would write elsewhere."""
    if not STUDY_NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 128, not starting with "
                          "'.' or '-'): it names the study's folder in the storage")
    return name


def study_name_from(space_file: str, stamp: str) -> str:
    """The default name, `<space>-<time>`, made of what a name may hold."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(space_file).stem).strip(".-") or "study"
    return f"{stem[:100]}-{stamp}"


def check_sqlite_folder(url: str, option: str) -> None:
    """A SQLite database is made on first use: its folder must take writes."""
    writable_folder(Path(url.removeprefix("sqlite:///")).parent, f"{option} {url}: the database's folder")


def check_study_db(url: str) -> None:
    """A --study-db that cannot be used is refused before Ray starts (Optuna would fail at the first trial):
    a SQLite file's folder that takes no writes, a server the driver cannot reach or has no driver for."""
    if url.startswith("sqlite:///"):
        check_sqlite_folder(url, "--study-db")
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
    except ImportError as e:
        raise ConfigError(f"--study-db {url}: its database driver is not installed ({e}); the project's "
                          "cluster extra (pip install -e '.[cluster]') brings PostgreSQL's (psycopg 3)") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise ConfigError(f"--study-db {url}: cannot connect ({reason})") from None


def parse_storage(text: str) -> Storage:
    if "://" not in text:
        return Storage(str(Path(text).expanduser().resolve()), Path(text).expanduser().resolve(), False)
    scheme = text.split("://", 1)[0]
    if scheme == "file":
        path = text[len("file://"):]
        if not path.startswith("/"):
            raise ConfigError(f"--storage {text}: a file:// URI needs an absolute path (file:///shared/ray_results)")
        return Storage(f"file://{path}", Path(path), True)
    if scheme.startswith(DATABASE_SCHEMES):
        raise ConfigError(f"--storage {text}: trial storage is a folder or an object store; "
                          "the Optuna database goes to --study-db")
    return Storage(text, None, True)


def study_db_url(storage: Storage, study_db: str | None = None) -> str:
    """The Optuna RDB: --study-db as given, else a SQLite file in the storage folder."""
    if study_db:
        if not study_db.startswith(DATABASE_SCHEMES):
            raise ConfigError(f"--study-db {study_db}: give a SQLAlchemy URL (sqlite:///PATH, postgresql://...)")
        return study_db
    if storage.local is None:
        raise ConfigError(f"--storage {storage.uri}: an object store cannot hold the Optuna database; "
                          "give --study-db sqlite:///PATH (on the driver) or postgresql://...")
    return f"sqlite:///{storage.local / 'optuna.db'}"


def shown_url(url: str) -> str:
    """A database URL as it may be printed or stored: its password hidden."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def check_optuna_study(url: str, name: str, storage: Storage, option: str) -> None:
    """A study continued or replayed finds its Optuna study in `url`; refused before anything starts
    where that database holds none of this name (a --study-db given when the study began, not again:
    the end of the study would fail on it, after the trials)."""
    import optuna
    import sqlalchemy

    names: set[str] = set()
    if not url.startswith("sqlite:///"):
        check_study_db(url)
    if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).is_file():
        try:  # read only: no tables made in a database that has none
            db = optuna.storages.RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
            names = {s.study_name for s in db.get_all_studies()}
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            pass  # no Optuna tables there
    if name in names:
        return
    began = storage.read_text(name, STUDY_DB_FILE).strip()
    hint = f"it began with --study-db {began}" if began else "give the --study-db it began with"
    raise ConfigError(f"{option}: the Optuna database {shown_url(url)} holds no study '{name}'; {hint}")
