"""The Hasura metadata against the migrated schema: what a Hasura engine would refuse to load
(or load with holes) fails here first."""

from __future__ import annotations

from typing import Any

import graphql
import hasura_metadata as hm
import psycopg
import pytest
import yaml

from synapse_phenom.lite import project

ROLES = {"user", "moderator", "agent"}
KINDS = ("select", "insert", "update", "delete")


def columns_of(conn: psycopg.Connection[Any], table: tuple[str, str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        table,
    ).fetchall()
    return dict(rows)


def bool_exp_refs(expr: Any) -> list[str]:
    """Every session variable a boolean expression compares with."""
    if isinstance(expr, dict):
        return [v for value in expr.values() for v in bool_exp_refs(value)]
    if isinstance(expr, list):
        return [v for value in expr for v in bool_exp_refs(value)]
    return [expr] if isinstance(expr, str) and expr.lower().startswith("x-hasura-") else []


def test_project_files_are_hasura_v3() -> None:
    root = project.hasura_dir()
    assert yaml.safe_load((root / "config.yaml").read_text())["version"] == 3
    assert hm.load("version.yaml") == {"version": 3}
    (source,) = hm.load("databases/databases.yaml")
    assert source["name"] == "default" and source["kind"] == "postgres"
    assert source["configuration"]["connection_info"]["database_url"] == {
        "from_env": "HASURA_GRAPHQL_DATABASE_URL"
    }


def test_every_tracked_table_column_and_relationship_exists(
    lite_conn: psycopg.Connection[Any],
) -> None:
    tables = hm.tables()
    assert {name for _, name in tables} >= {
        "users",
        "rooms",
        "memberships",
        "messages",
        "reactions",
    }
    for key, table in tables.items():
        cols = columns_of(lite_conn, key)
        assert cols, f"tracked table {key} does not exist"
        for rel_name, (kind, using) in hm.relationships(table).items():
            assert rel_name not in cols, f"{key}: relationship {rel_name} shadows a column"
            join = hm.join_of(lite_conn, key, kind, using)  # FK relationships: exactly one FK
            remote_cols = columns_of(lite_conn, join.remote)
            assert remote_cols, f"{key}.{rel_name}: remote table {join.remote} missing"
            for local_col, remote_col in join.mapping.items():
                assert local_col in cols, f"{key}.{rel_name}: column {local_col} missing"
                assert remote_col in remote_cols, (
                    f"{key}.{rel_name}: {join.remote}.{remote_col} missing"
                )
                assert cols[local_col] == remote_cols[remote_col], (
                    f"{key}.{rel_name}: {local_col} ({cols[local_col]}) "
                    f"vs {remote_col} ({remote_cols[remote_col]})"
                )
        for kind in KINDS:
            for entry in table.get(f"{kind}_permissions") or []:
                perm = entry["permission"]
                assert entry["role"] in ROLES, f"{key}: unknown role {entry['role']}"
                for column in list(perm.get("columns") or []) + list(
                    (perm.get("set") or {}).keys()
                ):
                    assert column in cols, f"{key} {kind} {entry['role']}: column {column} missing"


@pytest.mark.parametrize("kind", ["select", "update", "delete"])
def test_every_filter_compiles_and_runs_against_the_schema(
    lite_conn: psycopg.Connection[Any], kind: str
) -> None:
    """Each permission's filter (and update check), compiled like Hasura compiles it, runs:
    every column, relationship and session variable in it exists."""
    ran = 0
    for key, table in hm.tables().items():
        for entry in table.get(f"{kind}_permissions") or []:
            perm = entry["permission"]
            if kind == "select":
                assert perm.get("filter"), f"{key}: select for {entry['role']} has no row filter"
                assert bool_exp_refs(perm["filter"]), (
                    f"{key}: {entry['role']} filter ignores the caller"
                )
            cols = columns_of(lite_conn, key)
            hm.visible(lite_conn, key, entry["role"], "nobody", next(iter(cols)), kind)
            if perm.get("check"):
                hm.Compiler(lite_conn, {"x-hasura-user-id": "nobody"}).compile(
                    key, perm["check"], "t"
                )
            for refs in (bool_exp_refs(perm.get("filter")), list((perm.get("set") or {}).values())):
                assert {r.lower() for r in refs} <= {"x-hasura-user-id"}, refs
            ran += 1
    assert ran > 0


def test_nobody_inserts_messages_and_app_writes_are_narrow() -> None:
    tables = hm.tables()
    assert not tables[("chat", "messages")].get("insert_permissions"), (
        "sending must go through sendMessage"
    )
    inserts = [
        (key, e["role"]) for key, t in tables.items() for e in t.get("insert_permissions") or []
    ]
    assert inserts == [], "no table takes direct inserts: messages and reactions are moderated"
    updates = {
        (key, e["role"]): sorted(e["permission"]["columns"])
        for key, t in tables.items()
        for e in t.get("update_permissions") or []
    }
    assert updates == {
        (("chat", "messages"), "user"): ["delete_reason", "deleted_at"],
        (("chat", "messages"), "moderator"): ["delete_reason", "deleted_at"],
    }
    user_cols = hm.permission(tables[("chat", "users")], "select", "user")
    assert user_cols is not None and not {"email", "groups"} & set(user_cols["columns"])
    for role in ROLES:
        assert hm.permission(tables[("chat", "link_previews")], "select", role) is None
        assert (
            hm.permission(tables[("chat", "moderation_audit")], "select", role) is None
            or role == "moderator"
        )


def test_tracked_functions_exist_and_return_a_tracked_table(
    lite_conn: psycopg.Connection[Any],
) -> None:
    tracked = set(hm.tables())
    functions = hm.functions()
    assert functions
    for fn in functions:
        schema, name = fn["function"]["schema"], fn["function"]["name"]
        row = lite_conn.execute(
            """
            SELECT p.proretset, t.typrelid::regclass::text, p.provolatile
            FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype
            WHERE p.pronamespace = %s::regnamespace AND p.proname = %s
            """,
            (schema, name),
        ).fetchone()
        assert row is not None, f"function {schema}.{name} missing"
        returns_set, returned, volatility = row
        assert returns_set and returned is not None, f"{name} must return SETOF a table"
        assert tuple(returned.split(".")) in tracked, f"{name} returns untracked {returned}"
        assert volatility == "s", f"{name} must be STABLE to be a query field"
        assert {p["role"] for p in fn.get("permissions") or []} <= ROLES


def test_actions_match_their_graphql_and_the_schema(lite_conn: psycopg.Connection[Any]) -> None:
    actions = hm.load("actions.yaml")
    sdl = (hm.METADATA / "actions.graphql").read_text()
    # Hasura's Postgres scalars, declared so graphql-core can build the schema.
    schema = graphql.build_schema(
        "scalar uuid\nscalar bigint\nscalar timestamptz\ntype Query { _unused: Boolean }\n" + sdl
    )
    mutation = schema.mutation_type
    assert mutation is not None
    for action in actions["actions"]:
        field = mutation.fields.get(action["name"])
        assert field is not None, f"action {action['name']} has no Mutation field"
        definition = action["definition"]
        assert definition["handler"].startswith("{{PHENOM_ACTION_BASE_URL}}/")
        assert definition["forward_client_headers"] is False
        assert {
            "name": "X-Phenom-Action-Secret",
            "value_from_env": "PHENOM_ACTION_SECRET",
        } in definition["headers"]
        assert {p["role"] for p in action["permissions"]} == ROLES
    send = mutation.fields["sendMessage"]
    assert set(send.args) >= {"room_id", "body", "idempotency_key", "reply_to_id", "thread_root_id"}
    for obj in actions["custom_types"]["objects"]:
        gql_type = schema.get_type(obj["name"])
        assert isinstance(gql_type, graphql.GraphQLObjectType), obj["name"]
        for rel in obj.get("relationships") or []:
            remote = (rel["remote_table"]["schema"], rel["remote_table"]["name"])
            remote_cols = columns_of(lite_conn, remote)
            for field_name, column in rel["field_mapping"].items():
                assert field_name in gql_type.fields and column in remote_cols
