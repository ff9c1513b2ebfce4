"""Revoking an AI agent in Implementation B: its ``chat.users`` row is disabled.

A disabled row reads and posts nothing (``chat.room_readers`` leaves it out, so every
permission function refuses it), and the MCP server answers its valid tokens with 401 like
an invalid one (``mcp/revocation.py``), as ``phenom-chat admin agents revoke`` does on A.
Blocking psycopg calls.
"""

from __future__ import annotations

from typing import Any

import psycopg

REVOKED_AGENTS = "SELECT username FROM chat.users WHERE is_agent AND disabled"


def agent_username(agent: str) -> str:
    """``agent-helper`` from ``agent-helper`` or ``@agent-helper:server``."""
    return agent.strip().removeprefix("@").split(":", 1)[0]


def set_agent_revoked(conn: psycopg.Connection[Any], agent: str, revoked: bool) -> bool:
    """Revoke (or re-enable) an agent; True when that changed anything. ValueError when no
    agent has that name (people are disabled through their own tools, never here)."""
    username = agent_username(agent)
    with conn.transaction():
        row = conn.execute(
            "SELECT disabled FROM chat.users WHERE is_agent AND username = %s FOR UPDATE",
            (username,),
        ).fetchone()
        if row is None:
            raise ValueError(f"no agent {username!r} in chat.users (it has never called a tool?)")
        if bool(row[0]) == revoked:
            return False
        conn.execute(
            "UPDATE chat.users SET disabled = %s WHERE is_agent AND username = %s",
            (revoked, username),
        )
    return True
