"""The code examples of docs/extending.md, run by the tests (so the page cannot drift from the library).

`docs_example(section)` executes the first ```python block under the `## <section>` heading once per process
and returns its namespace (examples register classes by name, which a second run would refuse).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

EXTENDING = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
_namespaces: dict[str, dict[str, Any]] = {}


def docs_example_source(section: str) -> str:
    text = EXTENDING.read_text(encoding="utf-8")
    start = text.find(f"\n## {section}\n")
    if start < 0:
        raise LookupError(f"docs/extending.md has no section '## {section}'.")
    end = text.find("\n## ", start + 1)
    match = re.search(r"```python\n(.*?)```", text[start : end if end > 0 else len(text)], re.S)
    if match is None:
        raise LookupError(f"Section '## {section}' of docs/extending.md has no ```python block.")
    return match.group(1)


def docs_example(section: str) -> dict[str, Any]:
    if section not in _namespaces:
        module = "docs_extending_" + re.sub(r"\W+", "_", section.lower()).strip("_")
        namespace: dict[str, Any] = {"__name__": module}
        exec(compile(docs_example_source(section), f"docs/extending.md ({section})", "exec"), namespace)
        _namespaces[section] = namespace
    return _namespaces[section]
