"""Render Dockerfile.template the way balena does, and keep `Dockerfile` in step with it.

balena replaces `%%BALENA_MACHINE_NAME%%` and `%%BALENA_ARCH%%` in a Dockerfile.template with the
fleet's device type and architecture before it builds. Plain Docker does not, so the repository
also carries `Dockerfile`: the template rendered for the `generic` stage. Edit the template, then

    python deploy/render_dockerfile.py           # rewrite Dockerfile
    python deploy/render_dockerfile.py --check   # exit 1 when Dockerfile is stale (the tests do this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "Dockerfile.template"
PLAIN = ROOT / "Dockerfile"
GENERIC_MACHINE = "generic"
HEADER = (
    "# GENERATED from Dockerfile.template for a generic machine (plain Docker / docker compose);\n"
    "# edit the template and run `python deploy/render_dockerfile.py`. balena builds the template.\n"
)


def render(template: str, machine: str, arch: str = "amd64") -> str:
    """The template as balena's builder hands it to Docker for one device type."""
    return template.replace("%%BALENA_MACHINE_NAME%%", machine).replace("%%BALENA_ARCH%%", arch)


def plain_dockerfile() -> str:
    return HEADER + render(TEMPLATE.read_text(), GENERIC_MACHINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if Dockerfile differs from the rendered template")
    args = parser.parse_args(argv)
    wanted = plain_dockerfile()
    if args.check:
        if not PLAIN.exists() or PLAIN.read_text() != wanted:
            print("Dockerfile is stale: run `python deploy/render_dockerfile.py`", file=sys.stderr)
            return 1
        return 0
    PLAIN.write_text(wanted)
    print(f"wrote {PLAIN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
