"""The report's pages without runs: formulas as MathML (aalp.report.maths)."""
import html

import pytest

from aalp.report import maths


def test_a_formula_becomes_mathml():
    out = maths.mathml(r"\lambda\,\frac{1}{B}", display=True)
    assert out.startswith("<math") and 'display="block"' in out and "λ" in html.unescape(out) and "<mfrac>" in out


def test_tex_the_converter_leaves_as_text_is_an_error():
    """latex2mathml passes `\\big\\Vert` through as text: that must stop the page, not reach the reader."""
    with pytest.raises(maths.TexError, match=r"\\Vert"):
        maths.mathml(r"a \,\big\Vert\, b")
    with pytest.raises(maths.TexError):
        maths.mathml(r"\frac{1}{")


def test_markdown_does_not_mangle_maths():
    """`_` is no emphasis, `\\,` stays a thin space, and a `+ \\lambda` line of a displayed formula is no
    list item."""
    out = maths.markdown_html("Term $a_i b_j$ and `x_1`:\n\n$$\\mathcal{L} = a\\,b\n+ \\lambda c$$\n")
    assert "<em>" not in out and "<li>" not in out and "$" not in out and "\\" not in out
    assert out.count("<math") == 2 and "<code>x_1</code>" in out and 'width="0.167em"' in out


def test_maths_in_html_converts_text_and_leaves_code():
    body = '<p>Contribution $c_j$ of &lt;h&gt;</p><pre>cost $5 $HOME</pre><code>$x$</code><p>$$a &amp; b$$</p>'
    out = maths.maths_in_html(body)
    assert out.count("<math") == 2 and "<pre>cost $5 $HOME</pre><code>$x$</code>" in out
    assert "<p>Contribution <math" in out and "of &lt;h&gt;</p>" in out
