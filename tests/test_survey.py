"""Survey store: ratings land as rows, bad ratings store nothing, concurrency and SIGKILL lose nothing."""
from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy

from text2lofi.app.survey import MAX_COMMENT_CHARS, SCHEMA_VERSION, SurveyStore

CONDITIONS = {"tempo_bpm": 78.0, "key": "A", "mode": "minor", "duration_s": 10.0, "textures": ["rain"]}


def _find_pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL cluster on a Unix socket (Debian's postgresql binaries)."""
    pytest.importorskip("psycopg", reason="PostgreSQL driver is the optional extra text2lofi[postgres]")
    pg_bin = _find_pg_bin()
    if pg_bin is None:
        pytest.skip(reason="no PostgreSQL server binaries (Debian package postgresql) on this machine")
    root = Path(tempfile.mkdtemp(prefix="t2l-pg-"))
    # PostgreSQL refuses to run as root; drop to nobody for the server when we are root.
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "nobody")
    data, port = root / "data", 54000 + os.getpid() % 1000
    subprocess.run([*as_user, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
                    "-o", f"-p {port} -k {root} -c listen_addresses=''"], check=True, capture_output=True)
    yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"
    subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])   # a server process
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SurveyStore(f"sqlite:///{tmp_path / 'survey.sqlite3'}", admin_password="s3cret")
    else:
        # Each test gets its own empty database in the shared cluster.
        server = request.getfixturevalue("postgres_url")
        name = f"t2l_{uuid.uuid4().hex[:12]}"
        admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        s = SurveyStore(server.replace("/postgres?", f"/{name}?"), admin_password="s3cret")
    yield s
    s.close()


def test_rating_is_stored_and_second_rating_by_same_rater_updates_it(store):
    gid = store.record_generation("rainy night study beats", CONDITIONS, seed=7,
                                  model_versions={"piano": "p1"}, files={"wav": "/tmp/x.wav"})
    assert store.generation(gid)["conditions"]["key"] == "A"
    first = store.rate(gid, "rater-a", 4, 5, 3, "cozy")
    assert first["updated"] is False
    again = store.rate(gid, "rater-a", 2, 5, 3.0, "on a second listen: muddy")
    assert again["updated"] is True
    store.rate(gid, "rater-b", 5, 4, 4, "")
    summary = store.summary()
    assert (summary["generations"], summary["ratings"], summary["raters"]) == (1, 2, 2)
    clarity = summary["questions"]["clarity"]
    assert clarity["counts"] == {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}      # rater-a's 4 was replaced by 2
    assert clarity["mean"] == pytest.approx(3.5)
    assert summary["questions"]["match"]["mean"] == pytest.approx(3.5)
    rows = list(csv.DictReader(io.StringIO(store.export_csv("s3cret"))))
    assert [(r["rater_id"], r["clarity"], r["comment"]) for r in rows] == [
        ("rater-a", "2", "on a second listen: muddy"), ("rater-b", "5", "")]
    assert [c["comment"] for c in store.comments("s3cret")] == ["on a second listen: muddy"]


@pytest.mark.parametrize("bad, message", [
    (dict(clarity=0), "clarity must be from 1 to 5"),
    (dict(quality=9), "quality must be from 1 to 5"),
    (dict(match=2.5), "match must be a whole number"),
    (dict(match=float("nan")), "match must be a whole number"),
    (dict(comment="x" * 100_000), f"limit is {MAX_COMMENT_CHARS}"),
    (dict(generation_id="no-such-generation"), "unknown generation_id"),
    (dict(generation_id=""), "generation_id is empty"),
    (dict(rater_id=""), "rater_id must be"),
])
def test_invalid_rating_raises_clear_error_and_stores_nothing(store, bad, message):
    gid = store.record_generation("lofi", CONDITIONS)
    args = dict(generation_id=gid, rater_id="r", clarity=3, quality=3, match=3, comment="ok") | bad
    with pytest.raises(ValueError, match=message):
        store.rate(**args)
    assert store.summary()["ratings"] == 0


def test_admin_views_need_the_password(store, tmp_path):
    gid = store.record_generation("lofi", CONDITIONS)
    store.rate(gid, "r", 3, 3, 3, "secret opinion")
    for wrong in (None, "", "s3cre", "s3cret "):
        with pytest.raises(PermissionError):
            store.export_csv(wrong)
        with pytest.raises(PermissionError):
            store.comments(wrong)
    no_admin = SurveyStore(store.url, admin_password="")
    with pytest.raises(PermissionError, match="TEXT2LOFI_ADMIN_PASSWORD"):
        no_admin.export_csv("")
    no_admin.close()


def test_200_concurrent_ratings_give_200_rows(store):
    gids = [store.record_generation(f"prompt {i}", CONDITIONS) for i in range(4)]
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def rate_many(worker: int) -> None:
        try:
            barrier.wait()
            for j in range(4):                      # 50 raters x 4 generations = 200 distinct ratings
                store.rate(gids[j], f"rater-{worker}", 1 + worker % 5, 1 + j, 5, f"w{worker}")
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=rate_many, args=(w,)) for w in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    summary = store.summary()
    assert summary["ratings"] == 200
    assert summary["raters"] == 50
    assert summary["questions"]["quality"]["counts"] == {1: 50, 2: 50, 3: 50, 4: 50, 5: 0}


def test_db_url_comes_from_env_when_store_is_created(tmp_path, monkeypatch):
    path = tmp_path / "from-env.sqlite3"
    monkeypatch.setenv("TEXT2LOFI_DB_URL", f"sqlite:///{path}")
    store = SurveyStore()
    store.record_generation("lofi", CONDITIONS)
    store.close()
    assert path.exists()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT count(*) FROM generations").fetchone()[0] == 1


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    SurveyStore(url).close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, '2030-01-01')",
                   (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="schema version"):
        SurveyStore(url)


_WRITER = """
import sys
from text2lofi.app.survey import SurveyStore
store = SurveyStore(sys.argv[1])
gid = store.record_generation("killed mid-write", {"duration_s": 5.0})
print("generation", gid, flush=True)
i = 0
while True:
    store.rate(gid, f"rater-{i}", 1 + i % 5, 3, 4, "x" * (i % 300))
    print("committed", i, flush=True)
    i += 1
"""


@pytest.mark.e2e
def test_sigkill_mid_write_loop_leaves_consistent_database_with_every_committed_row(tmp_path):
    path = tmp_path / "killed.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, f"sqlite:///{path}"], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    committed: list[int] = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("committed"):
            committed.append(int(line.split()[1]))
        if len(committed) >= 60 or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)              # mid-loop: the next write is in flight
    proc.wait()
    proc.stdout.close()
    assert len(committed) >= 60
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raters = {r for (r,) in db.execute("SELECT rater_id FROM ratings")}
    assert {f"rater-{i}" for i in committed} <= raters
    with sqlite3.connect(path) as db:
        (gid,) = db.execute("SELECT id FROM generations").fetchone()
    reopened = SurveyStore(f"sqlite:///{path}")      # the app can start on it again and keep writing
    assert reopened.summary()["ratings"] == len(raters)
    reopened.rate(gid, "after-restart", 5, 5, 5)
    assert reopened.summary()["ratings"] == len(raters) + 1
    reopened.close()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_DATA_HOME picks the data folder on Linux only")
def test_default_database_is_sqlite_under_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TEXT2LOFI_DB_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))     # platformdirs' user_data_dir on Linux
    store = SurveyStore()
    store.record_generation("lofi", CONDITIONS)
    store.close()
    assert (tmp_path / "data" / "text2lofi" / "survey.sqlite3").exists()
