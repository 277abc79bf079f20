"""The hub's storage: per-project contributions, tokens, quarantine and audit (SQLAlchemy Core).

One row per (signature, project, strategy) holds what that project pushed,
joined with `merge.merge_contribution`, so a project only ever writes its own
rows and a re-push changes nothing. Every change to a signature takes the next
number from a single counter row; the counter's row lock serialises writers,
so sequence order is commit order and an incremental pull (`seq > cursor`)
never skips a change. A plain path is a SQLite file; `postgresql://` uses
psycopg 3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.pattern_record import COUNTS, RECORD_FIELDS, PatternRecord
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.federation import merge
from taskorch_nb.federation.screening import clean, screen_prompt

if TYPE_CHECKING:
    import sqlalchemy as sa

PROJECT_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
ADMIN = "admin"
_INT32_MAX = 2**31 - 1


def database_url(db: str) -> str:
    """A SQLAlchemy URL for `--db`: a plain path is SQLite, `postgresql://` uses psycopg 3."""
    if db == ":memory:":
        return "sqlite://"
    for prefix in ("postgresql://", "postgres://"):
        if db.startswith(prefix):
            return "postgresql+psycopg://" + db[len(prefix):]
    if "://" in db:
        return db
    return "sqlite:///" + str(Path(db).expanduser().resolve())


def _shown(db: str) -> str:
    """`--db` as an error may show it: a URL's password hidden."""
    if "://" not in db:
        return db
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(db).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return db.split("://", 1)[0] + "://..."


def token_digest(token: str) -> str:
    """Tokens are stored as their sha256 only; a leaked database leaks no token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _sql_type(name: str, spec: Mapping[str, Any]) -> sa.types.TypeEngine[Any]:
    """The column type of one record field, from its JSON schema (its type and limits)."""
    import sqlalchemy as sa

    kind = spec.get("type")
    if kind == "string":
        return sa.String(spec["maxLength"]) if "maxLength" in spec else sa.Text()
    if kind == "integer":
        return sa.Integer() if spec.get("maximum", math.inf) <= _INT32_MAX else sa.BigInteger()
    if kind == "number":
        return sa.Double()
    raise TypeError(f"record field {name!r} of JSON type {kind!r} has no column type")


def record_columns(*, primary_key: tuple[str, ...] = ()) -> list[sa.Column[Any]]:
    """A column per `PatternRecord` field, typed, sized and nullable as the schema says."""
    import sqlalchemy as sa

    properties = PatternRecord.model_json_schema()["properties"]
    columns = []
    for name in RECORD_FIELDS:
        options = properties[name].get("anyOf", [properties[name]])
        nullable = any(option.get("type") == "null" for option in options)
        (spec,) = [option for option in options if option.get("type") != "null"]
        columns.append(sa.Column(name, _sql_type(name, spec), primary_key=name in primary_key,
                                 nullable=nullable))
    return columns


@dataclass(frozen=True, slots=True)
class _Tables:
    counter: sa.Table
    tokens: sa.Table
    contributions: sa.Table
    signatures: sa.Table
    quarantine: sa.Table
    audit: sa.Table


def _define_tables(metadata: sa.MetaData) -> _Tables:
    import sqlalchemy as sa

    def text(n: int | None = None) -> sa.types.TypeEngine[str]:
        return sa.String(n) if n else sa.Text()

    return _Tables(
        counter=sa.Table("hub_counter", metadata,
                         sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("value", sa.BigInteger, nullable=False)),
        tokens=sa.Table("hub_tokens", metadata,
                        sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("project", text(100), nullable=False, index=True),
                        sa.Column("digest", text(64), nullable=False, unique=True),
                        sa.Column("created_at", sa.Double, nullable=False),
                        sa.Column("revoked_at", sa.Double, nullable=True)),
        contributions=sa.Table(
            "hub_contributions", metadata,
            *record_columns(primary_key=("signature",)),
            sa.Column("project", text(100), primary_key=True),
            sa.Column("skey", text(32), primary_key=True),
            sa.Column("prompt_sha", text(64), nullable=True),
            sa.Column("updated_at", sa.Double, nullable=False)),
        signatures=sa.Table("hub_signatures", metadata,
                            sa.Column("signature", text(64), primary_key=True),
                            sa.Column("seq", sa.BigInteger, nullable=False, unique=True)),
        quarantine=sa.Table(
            "hub_quarantine", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("signature", text(64), nullable=False),
            sa.Column("prompt_sha", text(64), nullable=False),
            sa.Column("prompt", text(), nullable=False),
            sa.Column("reasons", text(), nullable=False),
            sa.Column("status", text(16), nullable=False),
            sa.Column("project", text(100), nullable=False),
            sa.Column("created_at", sa.Double, nullable=False),
            sa.Column("decided_at", sa.Double, nullable=True),
            sa.Column("decided_by", text(100), nullable=True),
            sa.UniqueConstraint("signature", "prompt_sha")),
        audit=sa.Table("hub_audit", metadata,
                       sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("at", sa.Double, nullable=False),
                       sa.Column("actor", text(100), nullable=False),
                       sa.Column("action", text(20), nullable=False),
                       sa.Column("signature", text(64), nullable=True, index=True),
                       sa.Column("detail", text(), nullable=False)),
    )


class HubStore:
    """Durable hub state behind one SQLAlchemy engine; thread-safe, sync (FastAPI runs it in
    its thread pool)."""

    def __init__(self, db: str, *, confirm_threshold: int = 2, clock: Clock | None = None) -> None:
        import sqlalchemy as sa

        if confirm_threshold < 1:
            raise ConfigurationError("confirm_threshold must be at least 1")
        self.url = database_url(db)
        self.confirm_threshold = confirm_threshold
        self.clock: Clock = clock or RealClock()
        self._sqlite = self.url.startswith("sqlite")
        # SQLite has one writer; a process lock avoids busy errors between our own threads.
        self._write_lock = threading.RLock() if self._sqlite else None
        # In memory there is one shared connection: readers queue behind writers too.
        self._read_lock = self._write_lock if self.url == "sqlite://" else None
        kwargs: dict[str, Any] = {}
        if self._sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if self.url == "sqlite://":
                kwargs["poolclass"] = sa.pool.StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        shown = _shown(db)
        if self._sqlite and self.url != "sqlite://" and Path(self.url[len("sqlite:///"):]).is_dir():
            raise ConfigurationError(f"hub database {shown} is a directory, not a SQLite file")
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(f"hub database {shown} needs {exc.name}: "
                                     "pip install 'taskorch_nb[hub]'") from None
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"hub database {shown}: {exc}") from None
        if self._sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = sa.MetaData()
        self.t = _define_tables(self.metadata)
        try:
            self.metadata.create_all(self.engine)
            with self._write() as conn:
                if conn.execute(sa.select(self.t.counter.c.value)).first() is None:
                    conn.execute(sa.insert(self.t.counter).values(id=1, value=0))
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise ConfigurationError(
                f"cannot open the hub database {shown}: {' '.join(str(reason).split())}"
            ) from None

    @property
    def in_memory(self) -> bool:
        """`:memory:`: the data lives in one connection and dies with `close()`."""
        return self.url == "sqlite://"

    def close(self) -> None:
        """Release the connections (a file or server database can be reopened later)."""
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        import sqlalchemy as sa

        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.begin() as conn:
            # Lock the counter row first: writers queue here, so seq order is commit order.
            conn.execute(sa.update(self.t.counter).values(value=self.t.counter.c.value))
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        lock = self._read_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn:
            yield conn

    def _next_seqs(self, conn: sa.Connection, n: int) -> list[int]:
        import sqlalchemy as sa

        c = self.t.counter
        top = conn.execute(
            sa.update(c).values(value=c.c.value + n).returning(c.c.value)
        ).scalar_one()
        return list(range(top - n + 1, top + 1))

    def _bump(self, conn: sa.Connection, signatures: Sequence[str]) -> None:
        """Give each changed signature a fresh sequence number (an incremental pull sees it)."""
        import sqlalchemy as sa

        if not signatures:
            return
        s = self.t.signatures
        ordered = sorted(set(signatures))
        seqs = dict(zip(ordered, self._next_seqs(conn, len(ordered)), strict=True))
        known = set(conn.execute(
            sa.select(s.c.signature).where(s.c.signature.in_(ordered))).scalars())
        if known:
            conn.execute(
                sa.update(s).where(s.c.signature == sa.bindparam("b_sig"))
                .values(seq=sa.bindparam("b_seq")),
                [{"b_sig": sig, "b_seq": seqs[sig]} for sig in ordered if sig in known])
        fresh = [{"signature": sig, "seq": seqs[sig]} for sig in ordered if sig not in known]
        if fresh:
            conn.execute(sa.insert(s), fresh)

    def _audit(self, conn: sa.Connection, actor: str, action: str,
               entries: Sequence[tuple[str | None, Mapping[str, Any]]]) -> None:
        import sqlalchemy as sa

        if not entries:
            return
        at = self.clock.wall()
        conn.execute(sa.insert(self.t.audit), [
            {"at": at, "actor": actor, "action": action, "signature": sig,
             "detail": json.dumps(detail, sort_keys=True)}
            for sig, detail in entries])

    # -- tokens -----------------------------------------------------------------------
    def issue_token(self, project: str) -> str:
        """A new bearer token for `project` (only its sha256 is kept)."""
        import sqlalchemy as sa

        if not PROJECT_RE.match(project):
            raise ConfigurationError(f"project name {project!r}: use 1-100 of [A-Za-z0-9_.-]")
        token = "tnb_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(sa.insert(self.t.tokens).values(
                project=project, digest=token_digest(token), created_at=self.clock.wall()))
            self._audit(conn, ADMIN, "token", [(None, {"project": project})])
        return token

    def revoke(self, project: str) -> int:
        """Revoke every live token of `project`; returns how many."""
        import sqlalchemy as sa

        t = self.t.tokens
        with self._write() as conn:
            n = conn.execute(sa.update(t).where(t.c.project == project, t.c.revoked_at.is_(None))
                             .values(revoked_at=self.clock.wall())).rowcount
            self._audit(conn, ADMIN, "revoke", [(None, {"project": project, "tokens": n})])
        return n

    def authenticate(self, token: str) -> str | None:
        """The project a live token belongs to, or None."""
        import sqlalchemy as sa

        t = self.t.tokens
        with self._read() as conn:
            return conn.execute(sa.select(t.c.project).where(
                t.c.digest == token_digest(token), t.c.revoked_at.is_(None))).scalar()

    # -- push -------------------------------------------------------------------------
    def push(self, project: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Join a project's records into its own rows; returns accepted/changed/quarantined.

        Texts are kept only normalised (`screening.clean`); a prompt is screened as sent,
        so what the normalisation removed (invisible or tag characters) still flags it.
        """
        import sqlalchemy as sa

        c = self.t.contributions
        records, verdicts = _normalised(records)
        joined = merge.merge_records(records)
        sigs = sorted({r["signature"] for r in joined})
        now = self.clock.wall()
        with self._write() as conn:
            existing = {
                (row.signature, row.skey): row._asdict()
                for row in conn.execute(sa.select(c).where(
                    c.c.project == project, c.c.signature.in_(sigs)))
            } if sigs else {}
            inserts, updates, changed, audit = [], [], set(), []
            for rec in joined:
                skey = merge.strategy_key(rec.get("fallback"), rec.get("corrective_prompt"))
                old = existing.get((rec["signature"], skey))
                old_wire = {k: old[k] for k in RECORD_FIELDS} if old else None
                new = merge.merge_contribution(old_wire, rec)
                is_changed = new != old_wire
                audit.append((rec["signature"], {
                    "strategy": skey, "changed": is_changed,
                    **{k: rec.get(k) for k in ("fallback", *COUNTS)}}))
                if not is_changed:
                    continue
                changed.add(rec["signature"])
                prompt = new.get("corrective_prompt")
                row = {**new, "project": project, "skey": skey, "updated_at": now,
                       "prompt_sha": merge.prompt_key(prompt) if prompt else None}
                (updates if old else inserts).append(row)
            if inserts:
                conn.execute(sa.insert(c), inserts)
            if updates:
                settable = (*(f for f in RECORD_FIELDS if f != "signature"), "updated_at")
                conn.execute(
                    sa.update(c).where(c.c.signature == sa.bindparam("b_sig"),
                                       c.c.project == sa.bindparam("b_project"),
                                       c.c.skey == sa.bindparam("b_skey"))
                    .values({k: sa.bindparam(k) for k in settable}),
                    [{**{k: row[k] for k in settable},
                      "b_sig": row["signature"], "b_project": project, "b_skey": row["skey"]}
                     for row in updates])
            self._screen(conn, project, inserts, verdicts)
            self._bump(conn, sorted(changed))
            self._audit(conn, project, "push", audit)
            held = self._held(conn, project, joined)
        return {"accepted": len(records), "changed": len(changed), "quarantined": held}

    def _screen(self, conn: sa.Connection, project: str, rows: Sequence[Mapping[str, Any]],
                verdicts: Mapping[tuple[str, str], tuple[str, ...]]) -> None:
        """Put every new suspicious prompt into quarantine (once per signature and text)."""
        import sqlalchemy as sa

        q = self.t.quarantine
        seen: set[tuple[str, str]] = set()
        for row in rows:
            prompt = row.get("corrective_prompt")
            if not prompt or (row["signature"], row["prompt_sha"]) in seen:
                continue
            seen.add((row["signature"], row["prompt_sha"]))
            reasons = verdicts.get((row["signature"], row["prompt_sha"]), ())
            if not reasons:
                continue
            found = conn.execute(sa.select(q.c.id).where(
                q.c.signature == row["signature"], q.c.prompt_sha == row["prompt_sha"])).first()
            if found is None:
                conn.execute(sa.insert(q).values(
                    signature=row["signature"], prompt_sha=row["prompt_sha"], prompt=prompt,
                    reasons=json.dumps(list(reasons)), status="quarantined",
                    project=project, created_at=self.clock.wall()))

    def _held(self, conn: sa.Connection, project: str,
              records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Signatures whose prompt, as pushed by `project`, is not served (yet)."""
        with_prompt = [r for r in records if r.get("corrective_prompt")]
        if not with_prompt:
            return []
        trust_of = self._trust_function(conn, [r["signature"] for r in with_prompt])
        return sorted({r["signature"] for r in with_prompt
                       if trust_of(r["signature"], r.get("fallback"),
                                   r["corrective_prompt"]) == "quarantined"})

    # -- trust ------------------------------------------------------------------------
    def _trust_function(self, conn: sa.Connection, signatures: Sequence[str],
                        rows: Sequence[Mapping[str, Any]] | None = None) -> merge.TrustOf:
        import sqlalchemy as sa

        q, c = self.t.quarantine, self.t.contributions
        held = {(r.signature, r.prompt_sha): r.status for r in conn.execute(
            sa.select(q.c.signature, q.c.prompt_sha, q.c.status)
            .where(q.c.signature.in_(signatures)))}
        backers: dict[tuple[str, str], set[str]] = {}
        if rows is None:
            rows = [r._asdict() for r in conn.execute(
                sa.select(c.c.signature, c.c.project, c.c.prompt_sha)
                .where(c.c.signature.in_(signatures)))]
        for row in rows:
            if row.get("prompt_sha"):
                backers.setdefault((row["signature"], row["prompt_sha"]), set()).add(
                    row["project"])

        def trust_of(signature: str, fallback: str | None, prompt: str | None) -> str:
            if prompt is None:
                return "approved"
            key = (signature, merge.prompt_key(prompt))
            if held.get(key, "approved") != "approved":
                # Only the hub's admin releases a held text: projects pushing the same
                # words prove nothing (one actor can hold several tokens).
                return "quarantined"
            if len(backers.get(key, ())) >= self.confirm_threshold:
                return "confirmed"
            return "approved"

        return trust_of

    def approve(self, quarantine_id: int, *, actor: str = ADMIN) -> dict[str, Any] | None:
        """Release a quarantined prompt; None when there is no such id."""
        import sqlalchemy as sa

        q = self.t.quarantine
        with self._write() as conn:
            row = conn.execute(sa.select(q).where(q.c.id == quarantine_id)).first()
            if row is None:
                return None
            conn.execute(sa.update(q).where(q.c.id == quarantine_id).values(
                status="approved", decided_at=self.clock.wall(), decided_by=actor))
            self._bump(conn, [row.signature])
            self._audit(conn, actor, "approve", [(row.signature, {"quarantine_id": row.id})])
        return {**row._asdict(), "status": "approved"}

    def quarantined(self) -> list[dict[str, Any]]:
        """Prompts waiting for review, oldest first, with the projects backing each."""
        import sqlalchemy as sa

        q, c = self.t.quarantine, self.t.contributions
        with self._read() as conn:
            rows = [r._asdict() for r in conn.execute(
                sa.select(q).where(q.c.status == "quarantined").order_by(q.c.id))]
            for row in rows:
                row["reasons"] = json.loads(row["reasons"])
                row["projects"] = sorted(set(conn.execute(sa.select(c.c.project).where(
                    c.c.signature == row["signature"],
                    c.c.prompt_sha == row["prompt_sha"])).scalars()))
        return rows

    # -- pull -------------------------------------------------------------------------
    def pull(self, cursor: int = 0, limit: int = 500) -> tuple[list[dict[str, Any]], int, bool]:
        """Served patterns changed after `cursor`: (patterns, next cursor, more pending)."""
        import sqlalchemy as sa

        s, c = self.t.signatures, self.t.contributions
        with self._read() as conn:
            top = conn.execute(sa.select(self.t.counter.c.value)).scalar_one()
            if cursor > top:  # a cursor from before a reset of this hub: start over
                cursor = 0
            page = list(conn.execute(sa.select(s.c.signature, s.c.seq).where(s.c.seq > cursor)
                                     .order_by(s.c.seq).limit(limit + 1)))
            more = len(page) > limit
            page = page[:limit]
            if not page:
                return [], cursor, False
            sigs = [p.signature for p in page]
            by_sig: dict[str, list[dict[str, Any]]] = {sig: [] for sig in sigs}
            for row in conn.execute(sa.select(c).where(c.c.signature.in_(sigs))):
                by_sig[row.signature].append(row._asdict())
            trust_of = self._trust_function(conn, sigs, [r for rs in by_sig.values() for r in rs])
        served = [p for sig in sigs if (p := merge.aggregate(sig, by_sig[sig], trust_of))]
        return served, page[-1].seq, more

    def snapshot(self) -> list[dict[str, Any]]:
        """Every served pattern, sorted by signature (what a fresh client would pull)."""
        out: list[dict[str, Any]] = []
        cursor, more = 0, True
        while more:
            page, cursor, more = self.pull(cursor, 1000)
            out.extend(page)
        return sorted(out, key=lambda p: p["signature"])

    def count(self) -> int:
        import sqlalchemy as sa

        with self._read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.t.signatures)
                                ).scalar_one()

    def audit_log(self, *, signature: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit entries, oldest first (who, when, what, signature)."""
        import sqlalchemy as sa

        a = self.t.audit
        query = sa.select(a).order_by(a.c.id).limit(limit)
        if signature is not None:
            query = query.where(a.c.signature == signature)
        with self._read() as conn:
            return [{**r._asdict(), "detail": json.loads(r.detail)} for r in conn.execute(query)]


def _normalised(records: Sequence[Mapping[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], tuple[str, ...]]]:
    """Records with their texts cleaned, and the screen's reasons per (signature, prompt sha)
    of the cleaned prompt (read from the prompt as sent)."""
    out: list[dict[str, Any]] = []
    verdicts: dict[tuple[str, str], tuple[str, ...]] = {}
    for record in records:
        rec = dict(record)
        if rec.get("message"):
            rec["message"] = clean(rec["message"])
        raw = rec.get("corrective_prompt")
        if raw:
            text = clean(raw) or None  # nothing but invisible characters: no text at all
            rec["corrective_prompt"] = text
            if text is not None:
                key = (rec["signature"], merge.prompt_key(text))
                reasons = screen_prompt(raw).reasons
                verdicts[key] = tuple(dict.fromkeys((*verdicts.get(key, ()), *reasons)))
        out.append(rec)
    return out, verdicts


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
