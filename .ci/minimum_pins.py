"""Print `name==X` for every `>=X` lower bound in pyproject.toml (used by .ci/minimum-versions).

Covers [project].dependencies and the `test` extra (except ruff, which the tests
do not use). The optional extras that the test extra pulls in (`fastbp[dask,onnx]`)
are not pinned here: their lower bounds are the versions the main CI job installs
and tests, and the minimum-versions tests do not import them. A runtime dependency
without a `>=` lower bound is an error: every one must declare the version it is
tested at.
"""

from __future__ import annotations

import re
import sys

import tomllib  # Python >= 3.11, as on CI

# Not pinned: ruff (.ci/run lints with the newest), matplotlib and dask-ml (no
# minimum-versions test plots or uses dask-ml).
SKIP = {"ruff", "matplotlib", "dask-ml"}


def pins(path: str) -> list[str]:
    with open(path, "rb") as f:
        project = tomllib.load(f)["project"]
    out, errors = [], []
    for kind, reqs in (
        ("dependency", project["dependencies"]),
        ("test extra", project["optional-dependencies"]["test"]),
    ):
        for req in reqs:
            name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
            if name.lower() in SKIP or name.lower() == project["name"]:
                continue
            low = re.search(r">=\s*([0-9][^,;\s]*)", req)
            if low is None:
                errors.append(f"{kind} {req!r} has no >= lower bound")
            else:
                out.append(f"{name}=={low.group(1)}")
    if errors:
        sys.exit("\n".join(errors))
    return out


if __name__ == "__main__":
    print("\n".join(pins(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
