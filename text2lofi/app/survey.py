"""User-survey store: every generation that was heard, and the ratings given to it.

SQLAlchemy 2 over an embedded SQLite file by default (WAL, busy timeout, synchronous=FULL so a killed
process never loses a committed rating); the same code runs on PostgreSQL given a postgresql:// URL.
The URL comes from `TEXT2LOFI_DB_URL` when a store is created (never at import time).

    store = SurveyStore()                                   # or SurveyStore("sqlite:///x.db")
    gid = store.record_generation("rainy night", conditions_dict, seed=7)
    store.rate(gid, rater_id="r-1", clarity=4, quality=5, match=3, comment="nice")
    store.summary()                                          # public: counts, means, distributions
    store.export_csv(password); store.comments(password)    # admin: TEXT2LOFI_ADMIN_PASSWORD
"""
from __future__ import annotations

import csv
import hmac
import io
import math
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import (JSON, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event, func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SCHEMA_VERSION = 2                                # 2: clips, pairs and votes of the blind paired comparisons
QUESTIONS = ("clarity", "quality", "match")       # each rated 1..5
CHOICES = ("A", "B", "same")                      # a paired vote's answer to each of PAIR_QUESTIONS
PAIR_QUESTIONS = ("quality", "match")
SCORE_RANGE = (1, 5)
MAX_COMMENT_CHARS = 2000
MAX_RATER_ID_CHARS = 64
DB_URL_ENV = "TEXT2LOFI_DB_URL"
ADMIN_PASSWORD_ENV = "TEXT2LOFI_ADMIN_PASSWORD"
SQLITE_BUSY_TIMEOUT_MS = 30_000                  # writers queue behind each other instead of failing


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    # SQLite hands back naive datetimes; everything stored is UTC, so say so on every backend.
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat()


class _Base(DeclarativeBase):
    pass


class _SchemaVersion(_Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Generation(_Base):
    __tablename__ = "generations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)            # uuid4 text
    prompt: Mapped[str] = mapped_column(Text)
    conditions: Mapped[dict] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_versions: Mapped[dict] = mapped_column(JSON)
    files: Mapped[dict] = mapped_column(JSON)                                # kind -> path
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Rating(_Base):
    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("generation_id", "rater_id", name="one_rating_per_rater"),
        CheckConstraint("clarity BETWEEN 1 AND 5", name="clarity_1_5"),
        CheckConstraint("quality BETWEEN 1 AND 5", name="quality_1_5"),
        # "match" is an SQL keyword (SQLite's MATCH operator), so the column is named text_match.
        CheckConstraint("text_match BETWEEN 1 AND 5", name="match_1_5"),
        CheckConstraint(f"length(comment) <= {MAX_COMMENT_CHARS}", name="comment_length"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[str] = mapped_column(String(36), ForeignKey("generations.id"), index=True)
    rater_id: Mapped[str] = mapped_column(String(MAX_RATER_ID_CHARS))
    clarity: Mapped[int] = mapped_column(Integer)
    quality: Mapped[int] = mapped_column(Integer)
    match: Mapped[int] = mapped_column("text_match", Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Clip(_Base):
    """One pre-rendered clip of the comparison pool. The system name never leaves the server before a vote."""
    __tablename__ = "clips"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Pair(_Base):
    """A pair shown to a rater: clip_a played as A, clip_b as B (the order drawn at random and kept here)."""
    __tablename__ = "pairs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rater_id: Mapped[str] = mapped_column(String(MAX_RATER_ID_CHARS), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    clip_a: Mapped[str] = mapped_column(String(36), ForeignKey("clips.id"))
    clip_b: Mapped[str] = mapped_column(String(36), ForeignKey("clips.id"))
    repeat_of: Mapped[str | None] = mapped_column(String(36), nullable=True)     # an earlier pair, shown again
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Vote(_Base):
    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("quality IN ('A', 'B', 'same')", name="quality_choice"),
        CheckConstraint("text_match IN ('A', 'B', 'same')", name="match_choice"),
        CheckConstraint(f"length(comment) <= {MAX_COMMENT_CHARS}", name="vote_comment_length"),
    )
    pair_id: Mapped[str] = mapped_column(String(36), ForeignKey("pairs.id"), primary_key=True)  # one per pair
    quality: Mapped[str] = mapped_column(String(4))
    match: Mapped[str] = mapped_column("text_match", String(4))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def default_db_url() -> str:
    """`TEXT2LOFI_DB_URL`, else a SQLite file under the user's data directory."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    if url:
        return url
    folder = Path(platformdirs.user_data_dir("text2lofi"))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'survey.sqlite3'}"


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        # Take over transaction control from the sqlite3 module so "begin" below decides how they start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")        # readers never block the writer; crash-safe
        cur.execute("PRAGMA synchronous=FULL")        # a committed rating is on disk before rate() returns
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        # Take the write lock up front: a deferred read-then-write transaction that loses a race gets
        # SQLITE_BUSY at once (the busy timeout does not apply), which would drop concurrent ratings.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def check_score(name: str, value: Any) -> int:
    # Sliders and JSON deliver 4.0 for 4; anything not a whole number in 1..5 is refused.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ValueError(f"{name} must be a whole number from 1 to 5, got {value!r}")
    score = int(value)
    if not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
        raise ValueError(f"{name} must be from 1 to 5, got {score}")
    return score


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")    # what a spreadsheet reads as the start of a formula


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a leading ' in front of anything it would run as a formula
    (OWASP's CSV-injection rule). A comment '=HYPERLINK(...)' stays readable and inert."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _csv(fields: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def check_choices(quality: Any, match: Any) -> None:
    """A paired vote's answers: each one of CHOICES; ValueError names the field."""
    for name, value in zip(PAIR_QUESTIONS, (quality, match)):
        if value not in CHOICES:
            raise ValueError(f"{name} must be one of {', '.join(CHOICES)}, got {value!r}")


class SurveyStore:
    """Generations and ratings in one database; safe to share between threads."""

    def __init__(self, url: str | None = None, admin_password: str | None = None):
        self.url = url or default_db_url()
        password = admin_password if admin_password is not None else os.environ.get(ADMIN_PASSWORD_ENV)
        self._admin_password = password if password and password.strip() else None    # blank: admin is off
        self.engine = _make_engine(self.url)
        self._create_schema()

    # ---- schema --------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        _Base.metadata.create_all(self.engine)
        with Session(self.engine) as s, s.begin():
            stored = s.scalar(select(func.max(_SchemaVersion.version)))
            if stored is None or stored < SCHEMA_VERSION:      # create_all above added the newer tables
                s.add(_SchemaVersion(version=SCHEMA_VERSION))
            elif stored > SCHEMA_VERSION:
                raise RuntimeError(f"survey database {self.url} has schema version {stored}; this text2lofi "
                                   f"knows up to {SCHEMA_VERSION}: upgrade text2lofi")

    @property
    def schema_version(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.max(_SchemaVersion.version))))

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes --------------------------------------------------------------------------------
    def record_generation(self, prompt: str, conditions: dict, seed: int | None = None,
                          model_versions: dict | None = None, files: dict | None = None) -> str:
        """Store one generation; returns its id (uuid4 text) for rating it later."""
        gid = str(uuid.uuid4())
        with Session(self.engine) as s, s.begin():
            s.add(_Generation(id=gid, prompt=str(prompt), conditions=dict(conditions), seed=seed,
                              model_versions=dict(model_versions or {}),
                              files={k: str(v) for k, v in (files or {}).items()}))
        return gid

    def rate(self, generation_id: str, rater_id: str, clarity: Any, quality: Any, match: Any,
             comment: str = "") -> dict:
        """Rate a generation 1..5 on each question; the same rater rating again updates the rating.

        Raises ValueError (and stores nothing) for an unknown generation or out-of-range values.
        """
        scores = {q: check_score(q, v) for q, v in zip(QUESTIONS, (clarity, quality, match))}
        comment = "" if comment is None else comment
        if not isinstance(comment, str):
            raise ValueError(f"comment must be text, got {type(comment).__name__}")
        if len(comment) > MAX_COMMENT_CHARS:
            raise ValueError(f"comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}")
        if not isinstance(rater_id, str) or not rater_id.strip() or len(rater_id) > MAX_RATER_ID_CHARS:
            raise ValueError(f"rater_id must be 1..{MAX_RATER_ID_CHARS} characters of text")
        if not isinstance(generation_id, str) or not generation_id.strip():
            raise ValueError("generation_id is empty: generate a track first, then rate it")
        now = _now()
        values = dict(generation_id=generation_id, rater_id=rater_id, clarity=scores["clarity"],
                      quality=scores["quality"], text_match=scores["match"], comment=comment,
                      created_at=now, updated_at=now)
        with Session(self.engine) as s, s.begin():
            if s.get(_Generation, generation_id) is None:
                raise ValueError(f"unknown generation_id {generation_id!r}")
            existed = s.scalar(select(_Rating.id).where(_Rating.generation_id == generation_id,
                                                        _Rating.rater_id == rater_id)) is not None
            # One upsert statement: on PostgreSQL two first ratings racing each other still end as one row.
            dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
            stmt = dialect_insert(_Rating).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["generation_id", "rater_id"],
                set_={name: stmt.excluded[name] for name in ("clarity", "quality", "text_match", "comment",
                                                              "updated_at")})
            s.execute(stmt)
        return {"generation_id": generation_id, "rater_id": rater_id, **scores, "comment": comment,
                "updated": existed}

    # ---- blind paired comparisons -------------------------------------------------------------------
    def add_clip(self, system: str, prompt: str, seed: int, path: str | Path) -> str:
        cid = str(uuid.uuid4())
        with Session(self.engine) as s, s.begin():
            s.add(_Clip(id=cid, system=system, prompt=prompt, seed=int(seed), path=str(path)))
        return cid

    def clips(self) -> list[dict]:
        with Session(self.engine) as s:
            return [{"id": c.id, "system": c.system, "prompt": c.prompt, "seed": c.seed, "path": c.path}
                    for c in s.scalars(select(_Clip).order_by(_Clip.created_at, _Clip.id))]

    def record_pair(self, rater_id: str, prompt: str, clip_a: str, clip_b: str,
                    repeat_of: str | None = None) -> str:
        pid = str(uuid.uuid4())
        with Session(self.engine) as s, s.begin():
            s.add(_Pair(id=pid, rater_id=rater_id, prompt=prompt, clip_a=clip_a, clip_b=clip_b,
                        repeat_of=repeat_of))
        return pid

    def pair(self, pair_id: str) -> dict | None:
        """A shown pair with both clips' systems (server side only) and its vote, if any."""
        with Session(self.engine) as s:
            p = s.get(_Pair, pair_id)
            if p is None:
                return None
            a, b, v = s.get(_Clip, p.clip_a), s.get(_Clip, p.clip_b), s.get(_Vote, pair_id)
            return {"id": p.id, "rater_id": p.rater_id, "prompt": p.prompt, "clip_a": a.id, "clip_b": b.id,
                    "system_a": a.system, "system_b": b.system, "repeat_of": p.repeat_of,
                    "shown_at": p.shown_at if p.shown_at.tzinfo else p.shown_at.replace(tzinfo=timezone.utc),
                    "vote": None if v is None else {"quality": v.quality, "match": v.match, "comment": v.comment}}

    def vote(self, pair_id: str, quality: str, match: str, comment: str = "") -> dict:
        """Store the vote on a pair (voting again on the same pair replaces it). ValueError names the field."""
        check_choices(quality, match)
        comment = "" if comment is None else comment
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
            raise ValueError(f"comment must be text of at most {MAX_COMMENT_CHARS} characters")
        with Session(self.engine) as s, s.begin():
            if s.get(_Pair, pair_id) is None:
                raise ValueError(f"unknown pair_id {pair_id!r}")
            dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
            stmt = dialect_insert(_Vote).values(pair_id=pair_id, quality=quality, text_match=match,
                                                comment=comment, created_at=_now())
            s.execute(stmt.on_conflict_do_update(index_elements=["pair_id"], set_={
                k: stmt.excluded[k] for k in ("quality", "text_match", "comment", "created_at")}))
        return {"pair_id": pair_id, "quality": quality, "match": match, "comment": comment}

    def pair_rows(self) -> list[dict]:
        """Every shown pair with its clips, their systems (in A/B order) and its vote (None if not voted), oldest
        first."""
        with Session(self.engine) as s:
            a, b = _Clip.__table__.alias("a"), _Clip.__table__.alias("b")
            q = (select(_Pair.id, _Pair.rater_id, _Pair.prompt, _Pair.repeat_of, _Pair.shown_at, a.c.system,
                        b.c.system, _Vote.quality, _Vote.match, _Vote.comment, _Vote.created_at, _Pair.clip_a,
                        _Pair.clip_b)
                 .join(a, a.c.id == _Pair.clip_a).join(b, b.c.id == _Pair.clip_b)
                 .outerjoin(_Vote, _Vote.pair_id == _Pair.id).order_by(_Pair.shown_at, _Pair.id))
            return [{"pair_id": r[0], "rater_id": r[1], "prompt": r[2], "repeat_of": r[3],
                     "shown_at": _iso(r[4]), "system_a": r[5], "system_b": r[6], "quality": r[7], "match": r[8],
                     "comment": r[9], "voted_at": None if r[10] is None else _iso(r[10]), "clip_a": r[11],
                     "clip_b": r[12]} for r in s.execute(q)]

    def export_pairs_csv(self, password: str | None) -> str:
        """Admin: every shown pair with both systems, which one played as A, and the vote."""
        self.check_admin(password)
        rows = self.pair_rows()
        return _csv(list(rows[0]) if rows else ["pair_id"], rows)

    # ---- reads ---------------------------------------------------------------------------------
    def generation(self, generation_id: str) -> dict | None:
        with Session(self.engine) as s:
            g = s.get(_Generation, generation_id)
            if g is None:
                return None
            return {"id": g.id, "prompt": g.prompt, "conditions": g.conditions, "seed": g.seed,
                    "model_versions": g.model_versions, "files": g.files, "created_at": _iso(g.created_at)}

    def summary(self) -> dict:
        """Public survey table: counts, and per question the mean and the 1..5 distribution."""
        with Session(self.engine) as s:
            out: dict[str, Any] = {
                "generations": s.scalar(select(func.count()).select_from(_Generation)),
                "ratings": s.scalar(select(func.count()).select_from(_Rating)),
                "raters": s.scalar(select(func.count(func.distinct(_Rating.rater_id)))),
                "rated_generations": s.scalar(select(func.count(func.distinct(_Rating.generation_id)))),
                "questions": {},
            }
            for q in QUESTIONS:
                col = getattr(_Rating, q)
                counts = {score: 0 for score in range(SCORE_RANGE[0], SCORE_RANGE[1] + 1)}
                for score, n in s.execute(select(col, func.count()).group_by(col)):
                    counts[int(score)] = int(n)
                n = sum(counts.values())
                mean = sum(k * v for k, v in counts.items()) / n if n else None
                out["questions"][q] = {"n": n, "mean": mean, "counts": counts}
        return out

    # ---- admin ---------------------------------------------------------------------------------
    def check_admin(self, password: str | None) -> None:
        """Raise PermissionError unless `password` is the admin password (TEXT2LOFI_ADMIN_PASSWORD)."""
        if not self._admin_password:
            raise PermissionError(f"admin access is off: set {ADMIN_PASSWORD_ENV} when starting the app")
        if not password or not hmac.compare_digest(str(password).encode(), self._admin_password.encode()):
            raise PermissionError("wrong admin password")

    def _rating_rows(self) -> list[dict]:
        with Session(self.engine) as s:
            rows = s.execute(select(_Rating, _Generation.prompt).join(_Generation)
                             .order_by(_Rating.created_at, _Rating.id)).all()
            return [{"generation_id": r.generation_id, "prompt": prompt, "rater_id": r.rater_id,
                     "clarity": r.clarity, "quality": r.quality, "match": r.match, "comment": r.comment,
                     "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}
                    for r, prompt in rows]

    def ratings(self) -> list[dict]:
        """Every rating's scores ({question: 1..5}), for the survey's statistics."""
        return [{q: row[q] for q in QUESTIONS} for row in self._rating_rows()]

    def comments(self, password: str | None) -> list[dict]:
        """Admin: every non-empty comment with its prompt and scores."""
        self.check_admin(password)
        return [row for row in self._rating_rows() if row["comment"]]

    def export_csv(self, password: str | None) -> str:
        """Admin: all ratings joined with their prompts, as CSV text (header row first)."""
        self.check_admin(password)
        fields = ["generation_id", "prompt", "rater_id", *QUESTIONS, "comment", "created_at", "updated_at"]
        return _csv(fields, self._rating_rows())
