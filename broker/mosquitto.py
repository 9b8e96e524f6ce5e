"""Render `broker/mosquitto.conf` for one site: port, data folder and auth.

The shipped file is the production configuration; tests and local runs start the
real Mosquitto from it with only the `[site]` directives rewritten, so what is
tested is what is deployed.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_PATH = Path(__file__).with_name("mosquitto.conf")
_SITE_KEYS = {"listener", "allow_anonymous", "password_file", "acl_file", "persistence_location", "log_dest", "include_dir"}


def render_config(
    port: int,
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    password_file: Path | None = None,
    acl_file: Path | None = None,
    log_file: Path | None = None,
    include_dir: Path | None = None,
) -> str:
    """The production config with the site directives replaced (anonymous when no password file);
    `include_dir`: a folder of further config, read last (a site's bridge: broker/bridge.sh)."""
    kept = [
        line for line in CONFIG_PATH.read_text().splitlines()
        if not line.strip() or line.lstrip().startswith("#") or line.split()[0] not in _SITE_KEYS
    ]
    site = [
        f"listener {port} {host}",
        f"persistence_location {str(data_dir).rstrip('/')}/",
        f"log_dest file {log_file}" if log_file else "log_dest stderr",
    ]
    if password_file is None:
        site.append("allow_anonymous true")
    else:
        site += ["allow_anonymous false", f"password_file {password_file}"]
    if acl_file is not None:
        site.append(f"acl_file {acl_file}")
    if include_dir is not None:
        site.append(f"include_dir {include_dir}")  # last: what follows a bridge's `connection` belongs to it
    # `listener` must come before the per-listener options that follow it in the file.
    return "\n".join(site[:1] + kept + site[1:]) + "\n"
