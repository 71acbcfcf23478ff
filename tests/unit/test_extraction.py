"""Dataset extraction from a project's sources: docstrings and markdown sections become question/answer pairs,
tests, virtualenvs and hidden directories are skipped, and the result is capped and free of duplicates."""

from __future__ import annotations

import pytest

from forge_rpc.domain.datasets import check_example
from forge_rpc.domain.extraction import extract, markdown_examples, python_examples, wanted

MODULE = '''"""Billing: invoices and their totals."""

import math


class Invoice:
    """An invoice: lines and a currency."""

    def total(self, tax: float = 0.2) -> float:
        """The sum of the lines, tax included."""
        return 0.0

    def _undocumented(self) -> None:
        pass

    class Line:
        """One billed item."""


async def send(invoice: Invoice, *, to: str) -> None:
    """Emails the invoice to `to`."""

    def helper() -> None:
        """Nested in a function: an implementation detail."""


def bare():
    return 1
'''


def test_python_docstrings_become_pairs_named_by_module_and_signature() -> None:
    pairs = python_examples("billing/invoices.py", MODULE)
    assert pairs == [
        {"prompt": "What is the module `billing.invoices` for?", "completion": "Billing: invoices and their totals."},
        {
            "prompt": "What is the class `billing.invoices.Invoice` for?",
            "completion": "An invoice: lines and a currency.",
        },
        {
            "prompt": "What does the method `billing.invoices.Invoice.total(self, tax: float=0.2)` do?",
            "completion": "The sum of the lines, tax included.",
        },
        {"prompt": "What is the class `billing.invoices.Invoice.Line` for?", "completion": "One billed item."},
        {
            "prompt": "What does the function `billing.invoices.send(invoice: Invoice, *, to: str)` do?",
            "completion": "Emails the invoice to `to`.",
        },
    ]
    assert all(check_example(p, 10_000) is None for p in pairs)


def test_a_package_init_is_named_by_its_package_and_broken_python_yields_nothing() -> None:
    assert python_examples("billing/__init__.py", '"""The billing package."""')[0]["prompt"] == (
        "What is the module `billing` for?"
    )
    assert python_examples("old.py", "print 'python 2'\n") == []


def test_markdown_sections_become_pairs_and_fenced_headings_are_code() -> None:
    text = """# Project

Short.

## Install

Run `pip install project` and then configure it.

```sh
# not a heading
make install
```

## Empty

### Usage ###
Call `project.run()` with a config file path.
"""
    pairs = markdown_examples("docs/guide.md", text)
    assert [p["prompt"] for p in pairs] == [
        "What does docs/guide.md say about Install?",
        "What does docs/guide.md say about Usage?",
    ]  # "Project" and "Empty" have too little text to teach anything
    assert "# not a heading\nmake install" in pairs[0]["completion"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pkg/mod.py", True),
        ("README.md", True),
        ("docs/guide.markdown", True),
        ("pkg/data.json", False),
        ("tests/test_mod.py", False),
        ("pkg/tests/helpers.py", False),
        ("pkg/test_mod.py", False),
        ("pkg/mod_test.py", False),
        ("conftest.py", False),
        (".venv/lib/site.py", False),
        ("venv/lib/x.py", False),
        ("pkg/.hidden/x.py", False),
        ("node_modules/x/README.md", False),
        ("build/lib/pkg/mod.py", False),
        ("pkg/__pycache__/x.py", False),
    ],
)
def test_which_files_are_extracted_from(path: str, expected: bool) -> None:
    assert wanted(path) is expected


def test_extract_drops_duplicates_and_overlong_pairs_and_stops_at_the_cap() -> None:
    long_doc = '"""' + "word " * 400 + '"""'
    files = [
        ("a.py", '"""Module a."""'),
        ("copy/a.py", '"""Module a."""'),  # another module name, so a different question
        ("b.py", '"""Module a."""\n'),
        ("long.py", long_doc),
    ]
    found = extract(files, max_chars=500)
    assert [p["prompt"] for p in found] == [
        "What is the module `a` for?",
        "What is the module `copy.a` for?",
        "What is the module `b` for?",
    ]
    many = [(f"m{i}.py", f'"""Module {i}."""') for i in range(50)]
    assert len(extract(many, max_chars=500, limit=7)) == 7
