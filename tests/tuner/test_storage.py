import pytest

from tuner.storage import check_study_db, check_study_name, parse_storage, study_db_url, study_name_from
from vgan.errors import BadInputError, ConfigError


def test_a_plain_path_is_local_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = parse_storage("ray_results")
    assert s.uri == str(tmp_path / "ray_results") and s.local == tmp_path / "ray_results" and not s.shared
    assert study_db_url(s) == f"sqlite:///{tmp_path}/ray_results/optuna.db"
    assert s.study("x") == f"{tmp_path}/ray_results/x"


def test_file_uri_is_stated_shared(tmp_path):
    s = parse_storage(f"file://{tmp_path}/shared/")
    assert s.shared and s.local == tmp_path / "shared"
    assert study_db_url(s) == f"sqlite:///{tmp_path}/shared/optuna.db"
    assert s.study("x") == f"file://{tmp_path}/shared/x"


def test_exists_reads_through_pyarrow(tmp_path):
    for s in (parse_storage(str(tmp_path)), parse_storage(f"file://{tmp_path}")):
        assert not s.exists("study")
    (tmp_path / "study").mkdir()
    assert parse_storage(f"file://{tmp_path}").exists("study") and parse_storage(str(tmp_path)).exists("study")


def test_a_file_of_the_studys_name_is_refused_naming_it(tmp_path):
    """The storage folder holds the study database (optuna.db) beside the studies: `--name optuna.db` was taken for
    a study and its recipe read from inside the file (a NotADirectoryError traceback)."""
    storage = parse_storage(str(tmp_path))
    (tmp_path / "optuna.db").write_bytes(b"SQLite format 3\0")
    message = f"{tmp_path}/optuna.db is a file, not a study's folder: name the study otherwise"
    with pytest.raises(ConfigError, match=f"^--name: {message}"):
        storage.exists("optuna.db")
    with pytest.raises(ConfigError, match=f"^--resume: {message}"):
        storage.kept_recipe("optuna.db", "--resume")


def test_an_object_stores_options_stay_at_the_end_of_a_studys_uri():
    """pyarrow takes an S3-compatible server (MinIO) as URI options: the study's folder goes into the path."""
    s = parse_storage("s3://vgan/ray?endpoint_override=127.0.0.1:9000&scheme=http")
    assert s.study("x") == "s3://vgan/ray/x?endpoint_override=127.0.0.1:9000&scheme=http"
    assert parse_storage("s3://vgan/").study("x") == "s3://vgan/x"


def test_object_store_needs_a_study_db():
    s = parse_storage("s3://bucket/ray")
    assert s.shared and s.local is None and s.study("x") == "s3://bucket/ray/x"
    with pytest.raises(ConfigError, match="--storage s3://bucket/ray: an object store cannot hold the Optuna"):
        study_db_url(s)
    assert study_db_url(s, "postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("text, fragment", [
    ("file://relative/path", "needs an absolute path"),
    ("postgresql://u@h/db", "the Optuna database goes to --study-db"),
])
def test_bad_storage(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_storage(text)


def test_bad_study_db(tmp_path):
    with pytest.raises(ConfigError, match="--study-db /x.db: give a SQLAlchemy URL"):
        study_db_url(parse_storage(str(tmp_path)), "/x.db")


def test_checkpoint_dirs_lists_only_checkpoints_oldest_first(tmp_path):
    import pyarrow.fs

    from tuner.storage import checkpoint_dirs

    for name in ("checkpoint_000002", "checkpoint_000000", "checkpoint_000001", "best", "checkpoint_tmp"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint_000003").write_text("a file, not a checkpoint")
    fs = pyarrow.fs.LocalFileSystem()
    assert [p.rsplit("/", 1)[1] for p in checkpoint_dirs(fs, str(tmp_path))] == [
        "checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert checkpoint_dirs(fs, str(tmp_path / "nowhere")) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "-x", "", "x" * 129, "two words", "é"])
def test_a_study_name_stays_one_folder_in_the_storage(name):
    with pytest.raises(ConfigError, match="--name .*: use letters, digits"):
        check_study_name(name)


def test_names_that_are_fine_and_the_default_one():
    assert [check_study_name(n) for n in ("smoke", "gp-2026.v2_b", "x" * 128)] == ["smoke", "gp-2026.v2_b", "x" * 128]
    # the default is made of the space file's name, kept to what a name may hold
    assert study_name_from("search_spaces/gp.yaml", "20261203-0215") == "gp-20261203-0215"
    assert study_name_from("/x/my space (v2).yaml", "t") == "my-space-v2-t"
    assert check_study_name(study_name_from("/x/-..yaml", "t")) == "study-t"


def test_a_study_db_that_cannot_be_used_is_refused_before_the_study(tmp_path):
    check_study_db(f"sqlite:///{tmp_path}/new/optuna.db")  # SQLite files are made on first use: their folder is
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match=r"--study-db sqlite:///.*/file/o.db: the database's folder .*: is a file"):
        check_study_db(f"sqlite:///{tmp_path}/file/o.db")
    # without the cluster extra the driver is missing; with it, nothing listens on port 1
    with pytest.raises(ConfigError, match=r"--study-db postgresql://nobody@127.0.0.1:1/vgan: "
                                          r"(its database driver is not installed|cannot connect)"):
        check_study_db("postgresql://nobody@127.0.0.1:1/vgan")


def test_a_database_url_is_shown_without_its_password():
    from tuner.storage import shown_url

    assert shown_url("postgresql://vgan:s3cret@db.example.org:5432/optuna") == \
        "postgresql://vgan:***@db.example.org:5432/optuna"
    assert shown_url("sqlite:////shared/optuna.db") == "sqlite:////shared/optuna.db"


def test_a_study_is_looked_for_only_where_its_optuna_study_is(tmp_path):
    """A study continued or replayed on a database that does not hold its Optuna study is refused, naming the
    one it began with; the databases looked in are read, never made or given tables."""
    import sqlite3

    import optuna

    from tuner.storage import STUDY_DB_FILE, check_optuna_study, parse_storage

    storage = parse_storage(str(tmp_path / "ray"))
    began = f"sqlite:///{tmp_path}/elsewhere.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="s", storage=began)
    check_optuna_study(began, "s", storage, "--resume")  # there: nothing to say
    default = f"sqlite:///{tmp_path}/ray/optuna.db"
    with pytest.raises(ConfigError, match=rf"--resume: the Optuna database {default} holds no study 's'; "
                                          r"give the --study-db it began with$"):
        check_optuna_study(default, "s", storage, "--resume")
    assert not (tmp_path / "ray" / "optuna.db").exists()
    storage.write_text("s", STUDY_DB_FILE, began + "\n")  # as tuner.run keeps it
    sqlite3.connect(tmp_path / "other.db").execute("create table runs (id text)")  # a database, not Optuna's
    with pytest.raises(ConfigError, match=rf"--study-db: the Optuna database .*other\.db holds no study 's'; "
                                          rf"it began with --study-db {began}$"):
        check_optuna_study(f"sqlite:///{tmp_path}/other.db", "s", storage, "--study-db")
    tables = sqlite3.connect(tmp_path / "other.db").execute("select name from sqlite_master").fetchall()
    assert tables == [("runs",)]
    with pytest.raises(ConfigError, match="holds no study 't'"):
        check_optuna_study(began, "t", storage, "--resume")
