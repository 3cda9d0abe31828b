"""Task names and keys as DOT and Mermaid text: any name, however hostile (quotes, newlines,
`<`, `]`, `|`, `#`, control characters, lone surrogates), is one well-formed label and cannot
end the string it sits in, start markup, or make the output unwritable as UTF-8."""

from __future__ import annotations

import re

from ..dataflow.graph import DAG

# Longer labels are cut: a name of a megabyte would make a view unreadable (and a Mermaid
# diagram exceed its text limit on its own).
LABEL_LIMIT = 100

# the multiplication sign of a count: `fetch \u00d71000`
TIMES = "\u00d7"

# Control characters and lone surrogates become a space; a surrogate cannot be encoded, so
# printing the view would fail.
_BLANKS = {c: " " for c in [*range(0x20), 0x7F, *range(0xD800, 0xE000)]}

_DOT = str.maketrans({**_BLANKS, ord("\n"): "\\n", ord("\\"): "\\\\", ord('"'): '\\"'})

# Mermaid decodes `#name;` and `#decimal;` in labels; `#` itself is encoded so that a name
# holding `#quot;` shows as typed. `<`, `>` and `&` would be HTML in Mermaid's labels, a
# backtick would start a Markdown string, `|` would end an edge label.
_MERMAID = str.maketrans(
    {
        **_BLANKS,
        "#": "#35;",
        '"': "#quot;",
        "<": "#lt;",
        ">": "#gt;",
        "&": "#amp;",
        "`": "#96;",
        "|": "#124;",
    }
)
_PLAIN = re.compile(r"[\w ,.:\-]*", re.ASCII)


def cut(text: str, limit: int = LABEL_LIMIT) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dot_string(text: str) -> str:
    """A DOT quoted string showing `text` (line breaks as line breaks)."""
    return '"' + text.translate(_DOT) + '"'


def mermaid_string(text: str) -> str:
    """A Mermaid quoted label showing `text` (on one line)."""
    return '"' + text.translate(_MERMAID) + '"'


def mermaid_edge_label(text: str) -> str:
    """`text` between an edge's bars: as it is when it is plain words, else quoted."""
    return text if _PLAIN.fullmatch(text) else mermaid_string(text)


def mermaid_length(text: str) -> int:
    """The length Mermaid measures against `maxTextSize`: JavaScript's, in UTF-16 units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def edge_keys(dag: DAG, a: int, b: int) -> list[str]:
    """The data keys that flow along a -> b (empty for an explicit edge)."""
    produced = set(dag.node_outputs[a])
    return [k for k in dag.node_inputs[b] if k in produced]


def counted(label: str, count: int) -> str:
    """A collapsed node's label: the name, a multiplication sign and the count (the name
    alone for one task)."""
    return label if count == 1 else f"{label} {TIMES}{count}"
