"""A room policy compiled for fast checks, and the pure rule decisions.

``CompiledPolicy.check`` decides on an event's content alone (keywords, regexes, links,
mentions, media, new accounts). Flood control, mutes and ban lists need shared state;
their arithmetic lives here too (``flood_decision``, ``BanList``) and the module feeds
them what it read from the database or room state.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import re2

from synapse_phenom.moderation import extract as ex
from synapse_phenom.moderation import links as lk
from synapse_phenom.moderation.config import RoomPolicy
from synapse_phenom.moderation.keywords import KeywordMatcher
from synapse_phenom.moderation.mentions import Highlights, says_room
from synapse_phenom.moderation.normalize import fold, strip_invisible, visual_variant

FORBIDDEN = "M_FORBIDDEN"
# IDNA (UTS #46) label separators: clients' URL parsers read each as "."
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"

# Every message-like event type is read, whatever its type: custom types, encrypted
# events (their plaintext ``m.mentions`` notifies), calls, reactions, redactions (Element
# shows the reason). State events users see as text:
_CHECKED_STATE = frozenset(
    {"m.room.name", "m.room.topic", "m.room.tombstone", "m.room.canonical_alias"}
)
# What a muted user may still do: redact (their own events: the room's auth rules already
# stop plain users redacting others') — and leave, which is a membership event that never
# reaches the spam checker's message callback.
MUTE_ALLOWED_TYPES = frozenset({"m.room.redaction"})
# The follow-up card event of the link-preview module (``previews.msc4095.FOLLOW_UP_TYPE``).
PREVIEW_CARD_TYPE = "app.phenom.link_preview"
_PREVIEW_KEYS = ("com.beeper.linkpreviews", "m.url_previews")
# Rule id of a message whose check failed because of its own content (never accepted).
UNREADABLE = "unreadable"
# Refusals that are audited but never count towards a mute: a flood refusal (an app's
# queue flushed on reconnect must not mute its user; the refusal itself already throttles)
# and a client-made preview card (a client's doing, refused whatever the user wrote).
NON_ESCALATING_RULES = ("flood", "preview_card")


@attrs.frozen
class Violation:
    rule: str  # stable rule id for audit/metrics, e.g. "keywords:blocked words"
    message: str  # shown to the sender; never contains the matched keyword or pattern
    detail: str = ""  # for moderators (audit log, notice): what matched
    errcode: str = FORBIDDEN
    retry_after_ms: int | None = None
    muted_until_ms: int | None = None

    def error_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "app.phenom.moderation.rule": self.rule}
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
        if self.muted_until_ms is not None:
            body["app.phenom.moderation.muted_until_ms"] = self.muted_until_ms
        return body


def _blocked(what: str, rule: str, advice: str) -> str:
    return f"Your message was not sent: {what} (rule '{rule}'). {advice}"


def is_checked(event_type: str, is_state: bool) -> bool:
    """Whether the content of an event of this type is read (all non-state events)."""
    return event_type in _CHECKED_STATE if is_state else True


def is_preview_card(event_type: str, content: Mapping[str, Any]) -> bool:
    """An event that claims to be the server's preview card for a message: the follow-up
    type, or any other non-message event referencing a message with preview entries."""
    if event_type == PREVIEW_CARD_TYPE:
        return True
    if event_type == "m.room.message" or not isinstance(content, Mapping):
        return False
    relates = content.get("m.relates_to")
    return (
        isinstance(relates, Mapping)
        and relates.get("rel_type") == "m.reference"
        and any(k in content for k in _PREVIEW_KEYS)
    )


def flood_counts(event_type: str, is_state: bool, exempt_types: Iterable[str]) -> bool:
    """Whether flood control counts this event: everything a user sends into the room
    (any type, state included) except the policy's ``flood.exempt_event_types``."""
    return event_type not in exempt_types


def unreadable_violation(detail: str) -> Violation:
    return Violation(
        UNREADABLE,
        _blocked(
            "it could not be checked by the room's moderation",
            "unreadable",
            "Send it as plain text, or without unusual formatting.",
        ),
        detail,
    )


def _duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    if whole % 86400 == 0:
        return f"{whole // 86400} d"
    if whole % 3600 == 0:
        return f"{whole // 3600} h"
    if whole >= 60 and whole % 60 == 0:
        return f"{whole // 60} min"
    return f"{whole} s"


class CompiledPolicy:
    """A ``RoomPolicy`` with its matchers built (once per policy version)."""

    def __init__(
        self,
        name: str,
        policy: RoomPolicy,
        max_scan_chars: int = 65536,
        regex_max_mem: int = 8 << 20,
    ) -> None:
        self.name = name
        self.policy = policy
        self.max_scan_chars = max_scan_chars
        self.keywords = KeywordMatcher([(r.keywords, r.allow) for r in policy.keywords])
        self._regex_set: re2.Set | None = None
        if policy.regexes:
            options = re2.Options()
            options.max_mem = regex_max_mem
            regex_set = re2.Set.SearchSet(options)
            for rule in policy.regexes:
                regex_set.Add(rule.pattern)
            regex_set.Compile()
            self._regex_set = regex_set
        self._blocked_domains: re.Pattern[str] | None = None
        if policy.links.mode == "block" and policy.links.domains:
            names = "|".join(re.escape(d) for d in policy.links.domains)
            self._blocked_domains = re.compile(rf"(?i)(?<![\w.-])(?:[\w-]+\.)*(?:{names})(?![\w-])")
        self._mimetypes = [
            re.compile(fnmatch.translate(m.lower())) for m in policy.media.allowed_mimetypes or ()
        ]

    # -- content ---------------------------------------------------------------------

    def check(
        self,
        event_type: str,
        content: Mapping[str, Any],
        *,
        is_state: bool = False,
        new_account_until_s: float | None = None,
        members: Highlights | None = None,
    ) -> Violation | None:
        """The first rule ``content`` breaks, or None. ``new_account_until_s``: when the
        sender's account stops counting as new (None: not new). ``members``: the room's
        members by name, for the body highlights Synapse's legacy push rules apply.

        Total: a failure tied to this content (it cannot happen with any known input)
        refuses the event with the ``unreadable`` rule; it never lets it through."""
        if not is_checked(event_type, is_state):
            return None
        try:
            extracted = ex.extract(event_type, content)
            return (
                self._check_media(event_type, extracted, new_account_until_s)
                or self._check_mentions(extracted, content, members)
                or self._check_text(extracted, new_account_until_s)
            )
        except Exception as err:
            return unreadable_violation(f"{type(err).__name__} while checking")

    def check_display_name(self, name: str) -> Violation | None:
        """A display name, folded like message text (also per-room names)."""
        if not self.policy.check_display_names:
            return None
        try:
            return self._check_text(ex.Extracted(texts=[name]), None, what="display name")
        except Exception as err:
            return unreadable_violation(f"{type(err).__name__} while checking a display name")

    def _check_media(
        self, event_type: str, e: ex.Extracted, new_until: float | None
    ) -> Violation | None:
        media = self.policy.media
        if media.allowed_msgtypes is not None:
            for msgtype in e.msgtypes:
                if msgtype not in media.allowed_msgtypes:
                    return Violation(
                        "media:msgtype",
                        _blocked(
                            f"messages of type {msgtype} are not allowed in this room",
                            "media",
                            f"Allowed: {', '.join(media.allowed_msgtypes)}.",
                        ),
                        msgtype,
                    )
        if event_type == "m.sticker" and not media.allow_stickers:
            return Violation(
                "media:sticker",
                _blocked("stickers are not allowed in this room", "media", "Send text instead."),
            )
        for item in e.media:
            if (
                new_until is not None
                and self.policy.new_accounts
                and self.policy.new_accounts.no_media
            ):
                return self._new_account("media", new_until)
            if self._mimetypes and not (
                item.mimetype and any(p.match(item.mimetype.lower()) for p in self._mimetypes)
            ):
                allowed = ", ".join(media.allowed_mimetypes or ())
                return Violation(
                    "media:mimetype",
                    _blocked(
                        f"files of type {item.mimetype or 'unknown'} are not allowed in this room",
                        "media",
                        f"Allowed: {allowed}.",
                    ),
                    str(item.mimetype),
                )
            if (
                media.max_size_bytes is not None
                and item.size is not None
                and item.size > media.max_size_bytes
            ):
                return Violation(
                    "media:size",
                    _blocked(
                        f"the file is larger than {media.max_size_bytes // 1024} KiB",
                        "media",
                        "Send a smaller file.",
                    ),
                    f"{item.size} bytes",
                )
        return None

    def _new_account(self, what: str, until_s: float) -> Violation:
        na = self.policy.new_accounts
        age = _duration(na.min_age_seconds) if na else "a while"
        return Violation(
            f"new_accounts:{what}",
            _blocked(
                f"new accounts cannot post {what} here during their first {age}",
                "new accounts",
                "Please send it later.",
            ),
            f"account new until {int(until_s)}",
        )

    def _check_mentions(
        self, e: ex.Extracted, content: Mapping[str, Any], members: Highlights | None
    ) -> Violation | None:
        mentions = self.policy.mentions
        if not mentions.allow_room_mention:
            body_room = not e.mentions_declared and any(says_room(t) for t in e.texts)
            if e.room_mention or body_room:
                return Violation(
                    "mentions:room",
                    _blocked(
                        "@room is reserved for moderators here",
                        "room mention",
                        "Remove @room and send again.",
                    ),
                )
        if mentions.max_user_mentions is not None:
            users = set(e.user_mentions)
            for href in e.hrefs:
                link = lk.classify(href, href=True)
                if link.kind == "user":
                    users.add(link.target)
            for text in e.texts:
                users.update(lk.find_mxids(text))
            # Synapse's legacy push rules highlight members whose localpart or display
            # name appears in the top-level body of an event without ``m.mentions``.
            body = content.get("body")
            if members is not None and not e.mentions_declared and isinstance(body, str):
                users.update(members.named_in(body[: self.max_scan_chars]))
            if len(users) > mentions.max_user_mentions:
                return Violation(
                    "mentions:users",
                    _blocked(
                        f"it mentions {len(users)} people; at most {mentions.max_user_mentions} "
                        "are allowed",
                        "mentions",
                        "Mention fewer people.",
                    ),
                    f"{len(users)} mentions",
                )
        return None

    def _links_rule_active(self, new_until: float | None) -> bool:
        lp = self.policy.links
        new_links = (
            new_until is not None
            and self.policy.new_accounts is not None
            and self.policy.new_accounts.no_links
        )
        return lp.mode != "off" or lp.block_room_links or new_links

    def _check_links(
        self, texts: list[str], hrefs: list[str], new_until: float | None, what: str
    ) -> Violation | None:
        lp = self.policy.links
        urls = [(h, True) for h in hrefs]
        for text in texts:
            if not text.isascii() and ("\u3002" in text or "\uff61" in text or "\uff0e" in text):
                text = text.translate(_IDNA_DOTS)  # "evil。com" is evil.com to IDNA
            urls.extend((u, False) for u in lk.find_urls(text))
            if self._blocked_domains is not None:
                # Blocked domains named bare, whatever their TLD, also homoglyph-spelled.
                urls.extend((u, False) for u in self._blocked_domains.findall(text))
                if not text.isascii():
                    urls.extend((u, False) for u in self._blocked_domains.findall(fold(text)))
        for url, is_href in urls:
            link = lk.classify(url, href=is_href)
            if link.kind == "user":
                continue  # a mention pill, counted by the mention rule
            if (
                new_until is not None
                and self.policy.new_accounts
                and self.policy.new_accounts.no_links
            ):
                return self._new_account("links", new_until)
            if link.kind == "room":
                if lp.block_room_links:
                    return Violation(
                        "links:room",
                        _blocked(
                            f"links to other Matrix rooms are not allowed in this {what}",
                            "room links",
                            "Remove the room link.",
                        ),
                        link.url,
                    )
                continue
            if lp.mode == "allow" and not lk.domain_matches(link.host, lp.domains):
                return Violation(
                    "links:domain",
                    lp.message
                    or _blocked(
                        f"links to {link.host or 'that site'} are not allowed in this {what}",
                        "links",
                        f"Only links to {', '.join(lp.domains) or 'no site'} are allowed.",
                    ),
                    link.url,
                )
            if lp.mode == "block" and lk.domain_matches(link.host, lp.domains, lookalikes=True):
                return Violation(
                    "links:domain",
                    lp.message
                    or _blocked(
                        f"links to {link.host} are not allowed in this {what}",
                        "links",
                        "Remove the link.",
                    ),
                    link.url,
                )
        return None

    def _check_text(
        self, e: ex.Extracted, new_until: float | None, what: str = "room"
    ) -> Violation | None:
        limit = self.max_scan_chars
        if any(len(t) > limit for t in e.texts):
            # Never check a prefix and let the rest through unread: a text too long to
            # check is refused (events are at most 64 KiB: only a lowered limit does this).
            return unreadable_violation(f"a text longer than max_scan_chars ({limit})")
        texts = [t for t in e.texts if t]
        if any(ex.SOFT_BREAK in t or ex.HIDDEN_START in t for t in texts):
            # An inline box between words (an image, an SVG...), content a client may
            # hide: every reading is checked.
            texts = [v for t in texts for v in ex.readings(t)]
        # What readers see of bidi-reordered text is checked as well as the stored order.
        texts += [v for v in map(visual_variant, texts) if v is not None]
        clean = [strip_invisible(t) for t in texts]
        if self._links_rule_active(new_until):
            found = self._check_links(clean, e.hrefs, new_until, what)
            if found:
                return found
        if self.policy.keywords and clean:
            # ``fold`` reads the texts as written (it drops what ``strip_invisible`` does):
            # NFKC first would already have split parenthesized letters ("⒝" -> "(b)").
            hit = self.keywords.find(fold("\n".join(texts)))
            if hit is not None:
                rule = self.policy.keywords[hit.rule]
                return Violation(
                    f"keywords:{rule.name}",
                    rule.message
                    or _blocked(
                        f"your {'display name' if what == 'display name' else 'message'} "
                        "contains a word or phrase that is not allowed here",
                        rule.name,
                        "Please rephrase it.",
                    ),
                    f"keyword {hit.keyword!r}",
                )
        if self._regex_set is not None and clean:
            matches = self._regex_set.Match("\n".join(clean))
            if matches:
                rule_r = self.policy.regexes[min(matches)]
                return Violation(
                    f"regex:{rule_r.name}",
                    rule_r.message
                    or _blocked(
                        "it matches a pattern that is not allowed here",
                        rule_r.name,
                        "Please rephrase it.",
                    ),
                    f"pattern {rule_r.pattern!r}",
                )
        return None


# -- flood control --------------------------------------------------------------------


@attrs.frozen
class FloodDecision:
    allowed: bool
    retry_after_ms: int = 0


def flood_bucket(now_ms: int, window_ms: int) -> int:
    return now_ms // window_ms


def flood_decision(
    previous: int, current: int, now_ms: int, window_ms: int, limit: int
) -> FloodDecision:
    """Sliding-window estimate from two fixed buckets (the current one already counts
    this message): ``previous`` weighted by how much of it still lies in the window."""
    elapsed = now_ms % window_ms
    weight = 1.0 - elapsed / window_ms
    if previous * weight + current <= limit:
        return FloodDecision(True)
    if current > limit:
        # Wait for this bucket to end and the next window to slide past enough of it.
        retry = window_ms - elapsed + int(window_ms * (1 - (limit - 1) / max(current - 1, 1)))
    else:
        # previous * w + current <= limit  <=>  w <= (limit - current) / previous
        target = (limit - current) / previous if previous else 1.0
        retry = int(window_ms * (1 - target)) - elapsed
    return FloodDecision(False, max(retry, 1))


def flood_violation(decision: FloodDecision, messages: int, per_seconds: float) -> Violation:
    wait = max(1, math.ceil(decision.retry_after_ms / 1000))
    return Violation(
        "flood",
        _blocked(
            f"you are sending messages too fast (at most {messages} per {_duration(per_seconds)} "
            "here)",
            "flood",
            f"Wait {wait} s and send again.",
        ),
        errcode=LIMIT_EXCEEDED,
        retry_after_ms=decision.retry_after_ms,
    )


def mute_violation(until_ms: int, now_ms: int) -> Violation:
    left = max(1, math.ceil((until_ms - now_ms) / 1000))
    return Violation(
        "mute",
        f"You are muted in this room for another {_duration(left)} after repeated rule violations.",
        errcode=FORBIDDEN,
        retry_after_ms=max(1, until_ms - now_ms),
        muted_until_ms=until_ms,
    )


# -- ban lists --------------------------------------------------------------------------

BAN_RULE_TYPES = ("m.policy.rule.user", "org.matrix.mjolnir.rule.user")


def _glob_to_re2(glob: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)


@attrs.frozen
class BanRule:
    entity: str
    reason: str
    source: str  # policy room


class BanList:
    """``m.ban`` user rules of policy rooms, with glob entities, in one RE2 set."""

    def __init__(self, rules: Iterable[BanRule]) -> None:
        self.rules = [r for r in rules if r.entity]
        self._set: re2.Set | None = None
        if self.rules:
            s = re2.Set.FullMatchSet()
            for r in self.rules:
                s.Add(_glob_to_re2(r.entity))
            s.Compile()
            self._set = s

    @classmethod
    def from_state(
        cls, source: str, events: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> list[BanRule]:
        """Ban rules from (event type, content) pairs of a policy room's state."""
        out = []
        for event_type, content in events:
            if event_type not in BAN_RULE_TYPES:
                continue
            entity = content.get("entity")
            rec = content.get("recommendation")
            if isinstance(entity, str) and rec in ("m.ban", "org.matrix.mjolnir.ban"):
                reason = content.get("reason")
                out.append(BanRule(entity, reason if isinstance(reason, str) else "", source))
        return out

    def match(self, user_id: str) -> BanRule | None:
        if self._set is None:
            return None
        hits = self._set.Match(user_id)
        return self.rules[min(hits)] if hits else None


def ban_message(rule: BanRule) -> str:
    reason = f" Reason: {rule.reason}." if rule.reason else ""
    return (
        f"You are banned by the moderation policy list {rule.source}.{reason} "
        "Contact the moderators if this is a mistake."
    )
