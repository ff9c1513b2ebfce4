"""Mutated message bodies for moderation fuzzing, and an independent oracle.

Shared by the pure fuzz (tests/unit) and the real-server fuzz (tests/integration). Every
seed holds something the Community policy blocks (a keyword, a foreign link); mutations
break markup and structure around it. The oracle reads each body independently (html5lib's
HTML5 tree for HTML fields, raw strings otherwise): when it still sees the blocked word or
link, an accepted body is a bypass.
"""

# ruff: noqa: RUF001

from __future__ import annotations

import random
from typing import Any

import html5lib

from synapse_phenom.moderation.extract import _BLOCK_TAGS as BLOCK_TAGS
from synapse_phenom.moderation.normalize import fold

_PIECES = [
    "<",
    ">",
    "</",
    "<!",
    "<![",
    "<![ x",
    "<!--",
    "-->",
    "&",
    "&#",
    "&#x",
    ";",
    '"',
    "'",
    "=",
    "\x00",
    "\u200b",
    "\ufe0f",
    "\u202e",
    "\u2800",
    "<b>",
    "</b>",
    "<i>",
    '<a href="',
    "<p>",
    "<template>",
    "<svg>",
    "<math>",
    "<table>",
    "<td>",
    "<ruby>",
    "<rt>",
    "<![CDATA[",
    "]]>",
    "<script>",
    "<style>",
    "<textarea>",
    "\\",
    "@",
    ":",
    "/",
    "%",
    "\n",
    "\t",
    " ",
]
SEEDS = [
    "<b>badword</b>",
    "<p>free crypto</p>",
    '<a href="https://evil.com/">x</a>',
    "hi badword there",
    "see https://evil.com now",
    "<i>bad</i>word",
]


def _html(markup: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": markup,
    }


def mutate(rng: random.Random, s: str) -> str:
    chars = list(s)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randint(0, len(chars))
        if op < 0.6:
            chars[pos:pos] = list(rng.choice(_PIECES))
        elif op < 0.8 and chars:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars[pos:pos] = [chr(rng.randint(0, 0x10FFFF))]
    return "".join(chars)


def wrap(rng: random.Random, markup: str, plain: str) -> dict[str, Any]:
    shapes = [
        lambda: _html(markup, "x"),
        lambda: {"msgtype": "m.text", "body": plain},
        lambda: {"msgtype": "m.text", "body": "x", "m.new_content": _html(markup, "x")},
        lambda: {"m.text": [{"mimetype": "text/html", "body": markup}, {"body": "x"}]},
        lambda: {
            "msgtype": "m.image",
            "body": plain,
            "url": "mxc://a/b",
            "info": {"size": rng.choice([1, "x", None, True])},
        },
        lambda: {"body": rng.choice([None, 1, [], {}]), "formatted_body": markup},
        lambda: {"x": [[{"formatted_body": markup}]], "y": rng.randint(0, 10**6)},
    ]
    return rng.choice(shapes)()


_SHOWN_ATTRS = ("href", "src", "alt", "title")


def _rendered(el: Any) -> str:
    """Text as shown: inline elements join their neighbours, block elements (the same
    list as the product's: a rendering rule, not parsing) break lines."""
    tag = el.tag if isinstance(el.tag, str) else "#comment"
    block = tag in BLOCK_TAGS or tag == "#comment"
    out = ["\n" if block else ""]
    out.extend("\n" + v + "\n" for k, v in el.attrib.items() if k in _SHOWN_ATTRS)
    out.append(el.text or "")
    for child in el:
        out.append(_rendered(child))
        out.append(child.tail or "")
    out.append("\n" if block else "")
    return "".join(out)


def oracle_sees_violation(content: dict[str, Any]) -> bool:
    """Independent reading: html5lib's HTML5 tree for HTML fields, raw strings otherwise;
    True when the rendered text plainly holds a blocked keyword or an evil.com link."""
    texts: list[str] = []

    def walk(v: Any, key: str = "") -> None:
        if isinstance(v, str):
            if key == "formatted_body" or (key == "body" and is_html_block):
                texts.append(_rendered(html5lib.parse(v, namespaceHTMLElements=False)))
            else:
                texts.append(v)
        elif isinstance(v, list):
            for i in v:
                walk(i, key)
        elif isinstance(v, dict):
            nonlocal_block = v.get("mimetype") == "text/html"
            for k, i in v.items():
                walk_block(i, k, nonlocal_block)

    is_html_block = False

    def walk_block(v: Any, k: str, block: bool) -> None:
        nonlocal is_html_block
        saved, is_html_block = is_html_block, block
        walk(v, k)
        is_html_block = saved

    walk(content)
    folded = " ".join(fold(t) for t in texts)
    words = set(folded.replace("<", " ").replace(">", " ").split())
    return "badword" in words or "https://evil.com/" in " ".join(texts)


def bodies(seed: int, count: int) -> list[dict[str, Any]]:
    """``count`` mutated message contents, reproducible from ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        base = rng.choice(SEEDS)
        out.append(wrap(rng, mutate(rng, base), mutate(rng, base)))
    return out


# The false-positive corpus: ordinary messages in many scripts must stay allowed.
CORPUS = [
    "Ça va très bien, merci ! On se voit à l'école demain ?",
    "Größere Straßen führen über die Brücke; schöne Grüße aus Köln.",
    "¿Dónde está la estación? Mañana vamos al cañón.",
    "Zażółć gęślą jaźń — dziękuję bardzo, do zobaczenia!",
    "Çok güzel bir gün, İstanbul'da ılık hava var; görüşürüz.",
    "Tiếng Việt có nhiều dấu: Hà Nội, Sài Gòn, cảm ơn bạn nhiều.",
    "Привет! Как дела? Сегодня хорошая погода, пойдём гулять.",
    "Спасибо за помощь, скам-проверка не нужна",
    "Καλημέρα σας, τι κάνετε; Ευχαριστώ πολύ.",
    "Αθήνα, Θεσσαλονίκη και Πάτρα είναι πόλεις.",
    "你好，今天天气很好。我们明天见！",
    "こんにちは、元気ですか？今日はいい天気ですね。",
    "안녕하세요, 만나서 반갑습니다. 좋은 하루 되세요!",
    "مرحبا، كيف حالك؟ شكراً جزيلاً.",
    "שלום, מה שלומך? תודה רבה.",
    "नमस्ते, आप कैसे हैं? धन्यवाद।",
    "สวัสดีครับ ขอบคุณมาก",
    "Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇩🇪🇺🇦, skin tones 👍🏽👋🏿, hearts ❤️‍🔥",
    "Keycaps 1️⃣ 2️⃣ #️⃣, rainbow flag 🏳️‍🌈, text style ☺︎ and emoji ☺️",
    "The scampi was great, see you at 5pm!",
    "Bad word choice there, mate.",
    "Ceci n'est pas une escroquerie : c'est gratuit.",
    "I'll be there in 10 minutes (or 15).",
    "Price: 4.99 € — 3 for 12.50 €.",
    "ℹ️ Info: version 1.2.3 released",
    "Ünïcödé ïs fün ånd çøøl",
    "Mit freundlichen Grüßen, Jürgen Müller",
    "Łódź, Kraków i Gdańsk to piękne miasta",
    "Đà Nẵng, Huế và Hội An rất đẹp.",
    "Ελληνικά: Ωραία μέρα για βόλτα",
    "Русский текст с буквами ё и й",
    "Українська: дякую, будь ласка",
    "Emoji ZWJ: 🧑‍💻 👩🏽‍🚀 🐻‍❄️",
]
