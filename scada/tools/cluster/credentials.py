"""The local cluster's Redis users (scada.bus.acl): made once, kept across restarts.

`scada cluster` gives the ingest nodes one ACL user (`ingest`), each gateway its own (named
after its node) and the CLI one (`tools`), writes redis-server's ACL file (digests only) and
each node's URL into that node's config. The passwords of a previous run are read back from
the configs it wrote, so a restart keeps them: the ingest nodes' password is also the key
their password hashes are sealed with on Redis (scada.auth.replica.sealed).

Everything here is private to the user who runs the cluster: files 0600, directories 0700.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from scada.bus.acl import AclRole, BusUser, acl_file, new_password, with_user


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (made, or narrowed if it exists)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def narrow_tree(path: Path) -> None:
    """What an earlier, laxer run left under `path` (an AOF, SQLite files): 0600 / 0700."""
    for entry in path.rglob("*"):
        if not entry.is_symlink():
            entry.chmod(0o700 if entry.is_dir() else 0o600)


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)
    return path


def previous_password(config: Path, user: str) -> str | None:
    """The password `user` had in the Redis URL of a config a previous run wrote."""
    try:
        data = tomllib.loads(config.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    url = urlsplit(str(data.get("cluster", {}).get("redis_url", "")))
    if url.username is None or unquote(url.username) != user or not url.password:
        return None
    password = unquote(url.password)
    return password if len(password) >= 16 else None


@dataclass(frozen=True)
class ClusterUsers:
    by_node: dict[str, BusUser]
    tools: BusUser

    @property
    def all(self) -> list[BusUser]:
        unique = {u.name: u for u in [*self.by_node.values(), self.tools]}
        return list(unique.values())

    def url(self, base: str, node: str) -> str:
        return with_user(base, self.by_node[node])

    def tools_url(self, base: str) -> str:
        return with_user(base, self.tools)


def cluster_users(
    directory: Path, *, ingests: tuple[str, ...], gateways: tuple[str, ...]
) -> ClusterUsers:
    """The users of the cluster in `directory` (passwords of a previous run kept)."""

    def user(name: str, role: AclRole, configs: list[Path], node: str = "") -> BusUser:
        found = (previous_password(c, name) for c in configs)
        password = next((p for p in found if p), None) or new_password()
        return BusUser(name, role, password, node)

    ingest = user("ingest", "ingest", [directory / n / "plant.toml" for n in ingests])
    by_node = {n: ingest for n in ingests}
    for node in gateways:
        by_node[node] = user(node, "gateway", [directory / node / "plant.toml"], node)
    tools = user("tools", "tools", [directory / "tools.toml"])
    return ClusterUsers(by_node, tools)


def write_acl(path: Path, users: ClusterUsers, prefix: str) -> Path:
    """redis-server's ACL file (`--aclfile`): the default user off, digests only, 0600."""
    return write_private(path, acl_file(users.all, prefix))
