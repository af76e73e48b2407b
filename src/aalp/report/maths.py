"""Formulas for the report's pages, converted to MathML on the machine that builds the report: no MathJax,
no script, nothing fetched (browsers render MathML natively). Markdown is parsed with markdown-it-py and its
dollar-math plugin, so `$...$` and `$$...$$` reach the converter untouched (no `_` read as emphasis, no
`\\,` unescaped to `,`, no `+ \\lambda` line read as a list item).

A formula that latex2mathml cannot convert is an error (TexError), never raw TeX left on the page: fix the
formula's source."""
from __future__ import annotations

import html
import re

TEX_COMMAND = re.compile(r"\\[A-Za-z]+")


class TexError(ValueError):
    """A formula that does not convert to MathML."""


def mathml(tex: str, display: bool = False) -> str:
    """`tex` as one <math> element (display="block" for a displayed formula); TexError when the converter
    fails or leaves a TeX command in its output (latex2mathml passes unknown commands through as text)."""
    import latex2mathml.converter

    try:
        out = latex2mathml.converter.convert(tex.strip(), display="block" if display else "inline")
    except Exception as e:  # noqa: BLE001 - the converter raises many kinds; all mean "fix the source"
        raise TexError(f"cannot convert {tex!r} to MathML: {type(e).__name__}: {e}") from e
    left = TEX_COMMAND.findall(html.unescape(re.sub(r"<[^>]+>", " ", out)))
    if left:
        raise TexError(f"{tex!r}: the MathML still holds {', '.join(dict.fromkeys(left))} (not supported by "
                       "latex2mathml: write the formula with commands it knows)")
    return out


def _render(content: str, options: dict) -> str:
    return mathml(content, display=bool(options.get("display_mode")))


def markdown_html(text: str) -> str:
    """CommonMark with tables and dollar maths, every formula as MathML."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark").enable("table")
    md.use(dollarmath_plugin, allow_labels=False, allow_space=True, allow_digits=False, renderer=_render)
    return md.render(text)


_SKIP = re.compile(r"(<(code|pre|script|style|math|textarea)\b.*?</\2\s*>|<[^>]*>)", re.S | re.I)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?=\S)([^$]*?\S)\$(?!\$)")


def _text_maths(text: str) -> str:
    """One run of HTML text (entities escaped) with its $$...$$ and $...$ as MathML."""
    def conv(display):
        return lambda m: mathml(html.unescape(m[1]), display=display)

    return _INLINE.sub(conv(False), _DISPLAY.sub(conv(True), text))


def maths_in_html(body: str) -> str:
    """HTML (nbconvert's body of a notebook: its Markdown outputs keep their `$...$` for MathJax) with the
    formulas in its text converted to MathML; text inside code, pre, script, style and math is left as is."""
    out, pos = [], 0
    for m in _SKIP.finditer(body):
        out += [_text_maths(body[pos:m.start()]), m[0]]
        pos = m.end()
    out.append(_text_maths(body[pos:]))
    return "".join(out)
