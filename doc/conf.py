"""Sphinx configuration of the sklearn_interp documentation (no network needed)."""

import os

import sklearn_interp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

project = "sklearn_interp"
author = "sklearn_interp developers"
release = version = sklearn_interp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# Inherited scikit-learn methods cite labels of scikit-learn's own docs, which
# cannot resolve here (no network for intersphinx); document our own members.
# The set_*_request methods scikit-learn generates for routed metadata
# (signal_mask, attributions, X_calibration, kind, sample_weight) cite its
# glossary too, so autodoc skips every one of them; their one-line summaries
# stay in each class's method table.
autodoc_default_options = {"members": True}
# The annotations serve type checkers and editors; readers get the numpydoc
# types of each Parameters section, which say shapes and defaults too.
autodoc_typehints = "none"


def _skip_metadata_requests(app, what, name, obj, skip, options):
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
templates_path = []
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "reference_url": {"sklearn_interp": None},
}

# The theme scikit-learn's own documentation uses: a wide content column, so
# code blocks and figures are legible, and a page outline on the right.
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_interp {release}"
html_static_path = []
html_theme_options = {
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "show_prev_next": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
copyright = f"2026, {author}. BSD-3-Clause licence"
