"""Print the requirements of the named optional-dependency groups of pyproject.toml, one a line.

The Makefile installs the test and bench tools into .venv from this list, so pyproject.toml stays the
only place they are named, without building the package first. Runs on Python 3.9 (no tomllib there:
pip's vendored tomli is used instead).

Usage: python .ci/extras.py runtime test bench

`runtime` names `[project] dependencies` (what the package itself needs at run time).
"""

import pathlib
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    from pip._vendor import tomli as tomllib


def main(argv: "list[str]") -> int:
    pyproject = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = dict(project["optional-dependencies"], runtime=project.get("dependencies", []))
    unknown = [name for name in argv if name not in extras]
    if unknown:
        print(f"unknown extras {unknown}; pyproject.toml has {sorted(extras)}", file=sys.stderr)
        return 2
    seen = set()
    for name in argv:
        for requirement in extras[name]:
            if requirement not in seen:
                seen.add(requirement)
                print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
