"""Hasura metadata (v3 directory) for tests: loading it, and running its permission filters.

No Hasura engine can run here, so the tests compile the metadata's boolean expressions to
SQL the way Hasura does for PostgreSQL (a relationship is an EXISTS over its column mapping;
session variables are parameters) and run them against the migrated schema with real rows.
Only the operators the metadata uses are supported; anything else fails loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
import yaml
from psycopg import sql

from synapse_phenom.lite import project

METADATA = project.hasura_dir() / "metadata"
BOOL_OPS = {"_and", "_or", "_not", "_exists"}
COMPARE = {"_eq": "=", "_neq": "<>", "_gt": ">", "_lt": "<", "_gte": ">=", "_lte": "<="}


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value.startswith("!include "):
        path = base / value.removeprefix("!include ").strip()
        return _resolve(yaml.safe_load(path.read_text()), path.parent)
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, base) for k, v in value.items()}
    return value


def load(name: str) -> Any:
    path = METADATA / name
    return _resolve(yaml.safe_load(path.read_text()), path.parent)


def tables() -> dict[tuple[str, str], dict[str, Any]]:
    (source,) = load("databases/databases.yaml")
    return {(t["table"]["schema"], t["table"]["name"]): t for t in source["tables"]}


def functions() -> list[dict[str, Any]]:
    (source,) = load("databases/databases.yaml")
    return list(source.get("functions") or [])


def permission(table: dict[str, Any], kind: str, role: str) -> dict[str, Any] | None:
    for entry in table.get(f"{kind}_permissions") or []:
        if entry["role"] == role:
            return dict(entry["permission"])
    return None


def relationships(table: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for kind in ("object", "array"):
        for rel in table.get(f"{kind}_relationships") or []:
            out[rel["name"]] = (kind, rel["using"])
    return out


@attrs.frozen
class Join:
    remote: tuple[str, str]
    mapping: dict[str, str]  # local column -> remote column


def fk_join(conn: psycopg.Connection[Any], local: tuple[str, str], kind: str, using: Any) -> Join:
    """The column mapping of a foreign-key relationship, read from the catalog."""
    if kind == "object":  # local.column -> referenced table
        (column,) = [using] if isinstance(using, str) else [using["column"]]
        rows = conn.execute(
            """
            SELECT cf.relnamespace::regnamespace::text, cf.relname, af.attname
            FROM pg_constraint c
            JOIN pg_class cl ON cl.oid = c.conrelid
            JOIN pg_class cf ON cf.oid = c.confrelid
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1
              AND cl.relnamespace::regnamespace::text = %s AND cl.relname = %s AND a.attname = %s
            """,
            (*local, column),
        ).fetchall()
        assert len(rows) == 1, (
            f"{local}.{column}: expected one single-column foreign key, got {rows}"
        )
        schema, name, remote_col = rows[0]
        return Join((schema, name), {column: remote_col})
    remote = (using["table"]["schema"], using["table"]["name"])
    column = using["column"]
    rows = conn.execute(
        """
        SELECT af.attname
        FROM pg_constraint c
        JOIN pg_class cl ON cl.oid = c.conrelid
        JOIN pg_class cf ON cf.oid = c.confrelid
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1
          AND cl.relnamespace::regnamespace::text = %s AND cl.relname = %s AND a.attname = %s
          AND cf.relnamespace::regnamespace::text = %s AND cf.relname = %s
        """,
        (*remote, column, *local),
    ).fetchall()
    assert len(rows) == 1, f"{remote}.{column} -> {local}: expected one single-column foreign key"
    return Join(remote, {rows[0][0]: column})


def join_of(
    conn: psycopg.Connection[Any], local: tuple[str, str], kind: str, using: dict[str, Any]
) -> Join:
    if "manual_configuration" in using:
        manual = using["manual_configuration"]
        remote = (manual["remote_table"]["schema"], manual["remote_table"]["name"])
        return Join(remote, dict(manual["column_mapping"]))
    return fk_join(conn, local, kind, using["foreign_key_constraint_on"])


class Compiler:
    """Boolean expression -> SQL condition on ``alias`` (a row of ``table``)."""

    def __init__(self, conn: psycopg.Connection[Any], session: dict[str, str]) -> None:
        self.conn = conn
        self.session = {k.lower(): v for k, v in session.items()}
        self.meta = tables()
        self._n = 0

    def _value(self, value: Any) -> Any:
        if isinstance(value, str) and value.lower().startswith("x-hasura-"):
            if value.lower() not in self.session:
                raise KeyError(f"session variable {value} missing")
            return self.session[value.lower()]
        return value

    def compile(self, table: tuple[str, str], expr: dict[str, Any], alias: str) -> sql.Composable:
        parts: list[sql.Composable] = []
        rels = relationships(self.meta[table])
        for key, value in expr.items():
            if key == "_and":
                parts.append(self._join([self.compile(table, e, alias) for e in value], "AND"))
            elif key == "_or":
                parts.append(self._join([self.compile(table, e, alias) for e in value], "OR"))
            elif key == "_not":
                parts.append(sql.SQL("NOT ({})").format(self.compile(table, value, alias)))
            elif key in rels:
                kind, using = rels[key]
                join = join_of(self.conn, table, kind, using)
                self._n += 1
                inner = f"r{self._n}"
                on = [
                    sql.SQL("{}.{} = {}.{}").format(
                        sql.Identifier(alias),
                        sql.Identifier(lc),
                        sql.Identifier(inner),
                        sql.Identifier(rc),
                    )
                    for lc, rc in join.mapping.items()
                ]
                cond = self.compile(join.remote, value, inner)
                parts.append(
                    sql.SQL("EXISTS (SELECT 1 FROM {}.{} AS {} WHERE {} AND ({}))").format(
                        sql.Identifier(join.remote[0]),
                        sql.Identifier(join.remote[1]),
                        sql.Identifier(inner),
                        self._join(on, "AND"),
                        cond,
                    )
                )
            elif key.startswith("_"):
                raise NotImplementedError(f"operator {key} is not supported by this test compiler")
            else:
                parts.append(self._column(alias, key, value))
        return self._join(parts, "AND") if parts else sql.SQL("true")

    def _column(self, alias: str, column: str, ops: dict[str, Any]) -> sql.Composable:
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
        conds: list[sql.Composable] = []
        for op, value in ops.items():
            if op in COMPARE:
                conds.append(
                    sql.SQL("{} {} {}").format(
                        col, sql.SQL(COMPARE[op]), sql.Literal(self._value(value))
                    )
                )
            elif op == "_is_null":
                conds.append(sql.SQL("{} IS NULL" if value else "{} IS NOT NULL").format(col))
            elif op == "_in":
                conds.append(
                    sql.SQL("{} = ANY({})").format(
                        col, sql.Literal([self._value(v) for v in value])
                    )
                )
            else:
                raise NotImplementedError(
                    f"column operator {op} is not supported by this test compiler"
                )
        return self._join(conds, "AND")

    @staticmethod
    def _join(parts: Sequence[sql.Composable], op: str) -> sql.Composable:
        if not parts:
            return sql.SQL("true") if op == "AND" else sql.SQL("false")
        return sql.SQL("(") + sql.SQL(f" {op} ").join(parts) + sql.SQL(")")


def visible(
    conn: psycopg.Connection[Any],
    table: tuple[str, str],
    role: str,
    user_id: str,
    key: str = "id",
    kind: str = "select",
    source: sql.Composable | None = None,
) -> set[Any]:
    """Values of ``key`` in the rows ``role`` (as ``user_id``) may select/update/delete;
    ``source`` replaces the table (e.g. a function call returning its rows)."""
    perm = permission(tables()[table], kind, role)
    if perm is None:
        return set()
    cond = Compiler(conn, {"x-hasura-user-id": user_id, "x-hasura-role": role}).compile(
        table, perm.get("filter") or {}, "t"
    )
    src = source if source is not None else sql.SQL("{}.{}").format(*map(sql.Identifier, table))
    query = sql.SQL("SELECT t.{} FROM {} AS t WHERE {}").format(sql.Identifier(key), src, cond)
    return {row[0] for row in conn.execute(query)}
