"""Executing a report notebook with papermill and turning it into an HTML page (code hidden)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from .. import config as C
from ..artifacts import atomic_path
from ..layout import TITLES
from .maths import maths_in_html
from .pages import item_files, item_nav, page

log = logging.getLogger(__name__)


def kernel_manager_class():
    """A Jupyter kernel manager whose kernel is always this interpreter (sys.executable -m ipykernel_launcher),
    whatever kernelspecs JUPYTER_PATH, the user's folder or the environment hold: a user-level `python3`
    kernelspec must not run the report in another environment."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisInterpreter(KernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python ({sys.executable})", language="python", name=self.kernel_name)
            return self._kernel_spec

    return ThisInterpreter


@contextlib.contextmanager
def _kernel_pythonpath():
    """Let the notebooks' kernel import this checkout's aalp (figures.py) first."""
    src = C.REPO_ROOT / "src"
    old = os.environ.get("PYTHONPATH")
    if (src / "aalp").is_dir():
        os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def execute(src: Path, dst: Path, parameters: dict) -> None:
    """Run notebook `src` with papermill, `parameters` injected, into `dst`, in the current working directory,
    on this interpreter's kernel (kernel_manager_class) with this checkout's aalp first on its path."""
    import papermill as pm

    with _kernel_pythonpath():
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                            kernel_manager_class=kernel_manager_class(), cwd=str(Path.cwd()), progress_bar=False,
                            log_output=False)


def notebook_page(title: str, nb, item: str | None = None, files: list[dict] | None = None) -> str:
    """An executed notebook as a report page: its outputs (code hidden), the formulas of its Markdown
    outputs as MathML (nbconvert leaves them as `$...$` for MathJax, which a self-contained page lacks);
    for a report item, links to the item pages before and after it and to `files` (pages.item_files)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="basic", exclude_input=True).from_notebook_node(nb)
    return page(title, maths_in_html(body), nav=item_nav(item) if item else None, files=files)


def render(notebook: str, out_dir: Path, parameters: dict) -> None:
    """Execute notebooks/<notebook>.ipynb (execute) into out_dir/notebooks/ and convert it to
    out_dir/<notebook>.html (code hidden)."""
    import nbformat

    src = C.REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    out_dir = Path(out_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "notebooks" / f"{notebook}.ipynb") as tmp_nb:
        execute(src, tmp_nb, parameters)
        nb = nbformat.read(tmp_nb, as_version=4)
        with atomic_path(out_dir / f"{notebook}.html") as tmp_html:
            files = item_files(notebook, out_dir, drawn=not parameters.get("needs"),
                               written=(f"notebooks/{notebook}.ipynb",))
            tmp_html.write_text(notebook_page(TITLES[notebook], nb, notebook, files))
    log.info("rendered %s", out_dir / f"{notebook}.html")
