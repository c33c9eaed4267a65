"""Hot statements run on the driver's cursor, compiled once by SQLAlchemy.

Every ACME request runs the same few statements (the nonce INSERT, the account
and the object it asks for). Through ``Connection.execute`` each costs SQLAlchemy's
per-execution machinery: an execution context, event dispatch, a result object
and row proxies. Measured inside ``kakuin serve`` that was ~100 µs for a
primary-key SELECT that SQLite answers in under 10 µs, several times per request.

``Prepared`` keeps SQLAlchemy for what it is for here (the statement, written
once in Core and rendered for the engine's dialect, and the types' own bind and
result processors, so values are exactly what ``Connection.execute`` returns) and
skips the rest: it calls the DBAPI cursor of the connection it is given. It does
not support what needs per-execution compilation (expanding ``IN`` parameters);
those statements stay on ``Connection.execute``.

Driver errors are re-raised as SQLAlchemy's ``DBAPIError`` subclasses, as
``Connection.execute`` raises them, and a connection the driver reports dead is
invalidated, so the pool replaces it instead of handing it out again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, exc, insert, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement


class Prepared:
    """One Core statement, compiled once for ``dialect``."""

    __slots__ = ("sql", "columns", "_names", "_positional", "_binds", "_procs", "_dialect", "_fixed")

    def __init__(self, stmt: ClauseElement, dialect: Dialect) -> None:
        compiled: Any = stmt.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("Prepared does not take expanding or literal-execute parameters")
        self.sql: str = compiled.string
        self._dialect = dialect
        self._positional: bool = bool(compiled.positional)
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ()) if self._positional else tuple(
            compiled.binds
        )
        self._binds: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        # Values written into the statement (``.values(status="processing")``,
        # ``status == "pending"``) are bind parameters that carry their value.
        self._fixed: dict[str, Any] = {
            name: bp.effective_value for name, bp in compiled.binds.items() if not bp.required
        }
        cols = compiled._result_columns or []
        self.columns: tuple[str, ...] = tuple(c[0] for c in cols)
        self._procs: tuple[Callable[[Any], Any] | None, ...] = tuple(
            c[3]._cached_result_processor(dialect, None) for c in cols
        )

    def _params(self, params: dict[str, Any]) -> Any:
        binds = self._binds
        if self._fixed:
            params = {**self._fixed, **params}
        if self._positional:
            return tuple(
                binds[n](params[n]) if n in binds else params[n] for n in self._names
            )
        return {n: (binds[n](params[n]) if n in binds else params[n]) for n in self._names}

    def _row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {
            name: (proc(value) if proc is not None and value is not None else value)
            for name, proc, value in zip(self.columns, self._procs, raw, strict=True)
        }

    def _run(self, conn: Connection, params: dict[str, Any], fetch: int) -> tuple[list[Any], int]:
        """(raw rows, rowcount); ``fetch``: 0 none, 1 one, -1 all."""
        dbapi_conn = conn.connection.dbapi_connection
        cursor = dbapi_conn.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, self._params(params))
            if fetch == 0:
                return [], cursor.rowcount
            if fetch == 1:
                row = cursor.fetchone()
                return ([row] if row is not None else []), cursor.rowcount
            return list(cursor.fetchall()), cursor.rowcount
        except self._dialect.loaded_dbapi.Error as e:
            gone = self._dialect.is_disconnect(e, dbapi_conn, cursor)  # type: ignore[arg-type]
            if gone:
                conn.invalidate(e)
            raise exc.DBAPIError.instance(
                self.sql, params, e, self._dialect.loaded_dbapi.Error,
                connection_invalidated=gone, dialect=self._dialect,
            ) from e
        finally:
            cursor.close()

    def first(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any] | None:
        rows, _ = self._run(conn, params, 1)
        return self._row(rows[0]) if rows else None

    def all(self, conn: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows, _ = self._run(conn, params, -1)
        return [self._row(r) for r in rows]

    def rowcount(self, conn: Connection, params: dict[str, Any]) -> int:
        return self._run(conn, params, 0)[1]


class _ByColumns:
    """``Prepared`` statements that depend on which columns a call sets, one per
    set of column names (a handful per table in practice), built on first use.
    The values' bind parameters are named ``v_<column>``: SQLAlchemy reserves the
    bare column names for its own VALUES/SET parameters."""

    def __init__(self, table: Any, dialect: Dialect) -> None:
        self._table, self._dialect = table, dialect
        self._by_columns: dict[tuple[str, ...], Prepared] = {}

    def _build(self, cols: tuple[str, ...]) -> Any:
        raise NotImplementedError

    def _prepared(self, values: dict[str, Any], **extra: Any) -> tuple[Prepared, dict[str, Any]]:
        cols = tuple(values)
        p = self._by_columns.get(cols)
        if p is None:
            p = self._by_columns[cols] = Prepared(self._build(cols), self._dialect)
        params = {"v_" + c: v for c, v in values.items()}
        params.update(extra)
        return p, params


class UpdatesById(_ByColumns):
    """``UPDATE table SET <columns> WHERE id = :_id``."""

    def _build(self, cols: tuple[str, ...]) -> Any:
        t = self._table
        return update(t).where(t.c.id == bindparam("_id")).values({c: bindparam("v_" + c) for c in cols})

    def __call__(self, conn: Connection, row_id: int, values: dict[str, Any]) -> int:
        """Run it; returns the row count."""
        p, params = self._prepared(values, _id=row_id)
        return p.rowcount(conn, params)


class UpdatesPendingById(_ByColumns):
    """``UPDATE table SET <columns> WHERE id = :_id AND status = 'pending'``: a
    row that has left "pending" (deactivated, say) is not brought back."""

    def _build(self, cols: tuple[str, ...]) -> Any:
        t = self._table
        return (update(t).where(t.c.id == bindparam("_id"), t.c.status == "pending")
                .values({c: bindparam("v_" + c) for c in cols}))

    def __call__(self, conn: Connection, row_id: int, values: dict[str, Any]) -> int:
        """Run it; returns the row count (0: the row was no longer pending)."""
        p, params = self._prepared(values, _id=row_id)
        return p.rowcount(conn, params)


class InsertsReturningId(_ByColumns):
    """``INSERT INTO table (<columns>) VALUES (…) RETURNING id``."""

    def _build(self, cols: tuple[str, ...]) -> Any:
        t = self._table
        return insert(t).values({c: bindparam("v_" + c) for c in cols}).returning(t.c.id)

    def __call__(self, conn: Connection, values: dict[str, Any]) -> int:
        """Run it; returns the new row's id."""
        p, params = self._prepared(values)
        row = p.first(conn, params)
        assert row is not None  # an INSERT … RETURNING that did not raise returns its row
        return int(row["id"])
