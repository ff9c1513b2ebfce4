"""Request parsing shared by every module HTTP resource: bad input is a 4xx Matrix error.

Query parameters and JSON bodies come from anyone who can reach the homeserver. Whatever
they hold (bytes that are not UTF-8, NUL characters PostgreSQL cannot store, lone
surrogates, integers beyond 64 bits, the wrong JSON type, invalid JSON, megabytes), the
answer is a 400 (413 for an oversized body) with an ``errcode`` and an ``error`` saying what
to fix, never a 500 from deep inside the database driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest as Request
    from synapse.types import Requester

MAX_BODY_BYTES = 64 * 1024  # every module body is a few fields; Matrix events cap at 64 KiB
MAX_TEXT_CHARS = 2048
INT64_MAX = 2**63 - 1


def bad(message: str, errcode: str = Codes.INVALID_PARAM) -> SynapseError:
    return SynapseError(400, message, errcode)


def checked_text(value: str, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` if a database can store it: no NUL, no lone surrogate, bounded length."""
    if "\x00" in value:
        raise bad(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"{what} must be valid Unicode text (it has a lone surrogate)") from None
    if len(value) > max_chars:
        raise bad(f"{what} is {len(value)} characters long; at most {max_chars} are allowed")
    return value


# -- query parameters ----------------------------------------------------------------------


async def requester(
    get_user_by_req: Callable[[Request], Awaitable[Requester]], request: Request
) -> Requester:
    """The caller (``ModuleApi.get_user_by_req``), once every query parameter is clean text.

    Checked first because Synapse's own authentication reads ``?user_id=`` (application
    services) and fails with a 500 on bytes that are not UTF-8.
    """
    for name, values in (request.args or {}).items():
        try:
            key = name.decode("utf-8")
        except UnicodeDecodeError:
            raise bad("Query parameter names must be UTF-8 text") from None
        checked_text(key, "A query parameter name", 255)
        for raw in values:
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad(f"Query parameter '{key}' must be UTF-8 text (percent-encoded)") from None
            checked_text(value, f"Query parameter '{key}'", 8192)
    return await get_user_by_req(request)


def query_str(
    request: Request, name: str, *, required: bool = False, max_chars: int = MAX_TEXT_CHARS
) -> str | None:
    """The query parameter ``name`` as text (None when absent or empty, unless required)."""
    raw = (request.args or {}).get(name.encode(), [b""])[0]
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad(f"Query parameter '{name}' must be UTF-8 text (percent-encoded)") from None
    value = checked_text(value, f"Query parameter '{name}'", max_chars).strip()
    if not value:
        if required:
            raise SynapseError(400, f"Missing query parameter '{name}'", Codes.MISSING_PARAM)
        return None
    return value


def query_int(
    request: Request, name: str, *, default: int, minimum: int = 0, maximum: int = INT64_MAX
) -> int:
    """The query parameter ``name`` as an integer in ``[minimum, maximum]``."""
    text = query_str(request, name, max_chars=40)
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise bad(f"Query parameter '{name}' must be an integer, not {text!r}") from None
    if not minimum <= value <= maximum:
        raise bad(f"Query parameter '{name}' must be between {minimum} and {maximum}")
    return value


# -- JSON bodies ---------------------------------------------------------------------------


def json_object(request: Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request body as a JSON object (size-checked before it is parsed)."""
    from synapse.http.servlet import parse_json_object_from_request

    content = request.content
    if content is not None:
        content.seek(0, 2)
        size = content.tell()
        content.seek(0)
        if size > max_bytes:
            raise SynapseError(
                413,
                f"Request body is {size} bytes; at most {max_bytes} are accepted",
                Codes.TOO_LARGE,
            )
    return parse_json_object_from_request(request)


def body_str(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    default: str | None = None,
    max_chars: int = MAX_TEXT_CHARS,
    example: str = "",
) -> str | None:
    """The string field ``name`` of a JSON body."""
    if name not in body or body[name] is None:
        if required:
            raise SynapseError(
                400,
                f"Missing '{name}'{f' (e.g. {example})' if example else ''}",
                Codes.MISSING_PARAM,
            )
        return default
    value = body[name]
    if not isinstance(value, str):
        raise bad(
            f"'{name}' must be a string{f' such as {example}' if example else ''}, "
            f"not {json_type(value)}",
            Codes.BAD_JSON,
        )
    return checked_text(value, f"'{name}'", max_chars)


def body_str_list(
    body: dict[str, Any], name: str, *, max_items: int = 100, example: str = ""
) -> list[str]:
    """The list-of-strings field ``name`` of a JSON body."""
    value = body.get(name)
    hint = f" such as {example}" if example else ""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"'{name}' must be a list of strings{hint}", Codes.BAD_JSON)
    if len(value) > max_items:
        raise bad(f"'{name}' has {len(value)} entries; at most {max_items} are allowed")
    return [checked_text(v, f"An entry of '{name}'", 255) for v in value]


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"
