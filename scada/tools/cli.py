"""The `scada` command: every subcommand is listed by `scada --help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from scada import __version__
from scada.core.config import PlantConfig, load_config
from scada.core.errors import ConfigError

if TYPE_CHECKING:
    from scada.auth.store import AuthStore

EXIT_CONFIG = 2


def _load(path: str | None, *, secrets: bool = True, plant: bool = True) -> PlantConfig:
    """Load and fully validate a config (driver settings included), or exit 2 with the list.
    secrets=False: tools that only need the data dir do not need the notification secrets'
    environment variables set. plant=False: a process that runs neither devices nor
    notifications (a cluster gateway) neither checks nor imports them."""
    try:
        config = load_config(path)
    except ConfigError as err:
        partial = err.partial if plant else None
        if isinstance(partial, PlantConfig):  # what else is wrong, in the same list
            err.problems += _plant_problems(partial, secrets=secrets)
        _print_problems(err)
        raise SystemExit(EXIT_CONFIG) from None
    if not plant:
        return config
    problems = _plant_problems(config, secrets=secrets)
    if problems:
        _print_problems(ConfigError(path or "<default plant.toml>", problems))
        raise SystemExit(EXIT_CONFIG)
    return config


def _plant_problems(config: PlantConfig, *, secrets: bool) -> list[tuple[str, str]]:
    """The checks beyond the config's schema: drivers, notifications, Sparkplug."""
    from drivers.registry import device_problems
    from scada.notify.settings import notification_problems
    from scada.sparkplug.edgeconfig import sparkplug_problems

    problems = device_problems(config) + notification_problems(config, environment=secrets)
    return problems + sparkplug_problems(config, environment=secrets)


def _print_problems(err: ConfigError) -> None:
    print(f"error: invalid configuration {err.source}", file=sys.stderr)
    for path, reason in err.problems:
        print(f"  {path}: {reason}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
    devices = ", ".join(f"{d.name} ({d.driver})" for d in config.devices)
    tags = sum(len(line.tags) for line in config.lines)
    print(f"{args.file}: ok — {len(config.lines)} lines, {tags} tags, devices: {devices}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from scada.server.serve import serve

    config = _load(args.config, plant=args.role != "gateway")
    if args.scenario:
        from simulators.scenario import load_scenario

        try:
            load_scenario(args.scenario, [line.id for line in config.lines])
        except ConfigError as err:
            _print_problems(err)
            return EXIT_CONFIG
    from scada.core.errors import ScadaError
    from scada.roles.factory import app_factory

    if args.role != "all" and (args.node or args.redis_url):
        update = {k: v for k, v in (("node", args.node), ("redis_url", args.redis_url)) if v}
        try:
            cluster = type(config.cluster).model_validate({**config.cluster.model_dump(), **update})
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_CONFIG
        config = config.model_copy(update={"cluster": cluster})
    try:
        serve(
            config,
            role=args.role,
            create_app=app_factory(args.role),
            host=args.host,
            port=args.port,
            scenario=args.scenario,
            config_path=args.config,
            compression=args.ws_compression,
        )
    except ScadaError as err:  # e.g. the data dir is in use by another server
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from scada.tools.cluster.local import run_cluster

    if args.config:
        _load(args.config)  # exit 2 with the problems before starting anything
    return run_cluster(args)


def cmd_watch(args: argparse.Namespace) -> int:
    from scada.tools.watch import watch, ws_url

    try:
        url = ws_url(args.url)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(url, lines=args.lines, token=args.token))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = _load(args.config)
    token = ""
    if args.control_port is not None:
        import os

        from simulators.control import TOKEN_ENV

        if args.protocol != "modbus":
            print("error: --control-port is for the modbus simulator", file=sys.stderr)
            return EXIT_CONFIG
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            print(f"error: --control-port needs a token in ${TOKEN_ENV}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        if args.protocol == "sparkplug":
            return _simulate_sparkplug(args, config)
        if args.protocol == "modbus":
            from simulators.modbus_server import serve_modbus

            asyncio.run(
                serve_modbus(
                    config,
                    host=args.host,
                    port=args.port or 5020,
                    scenario=args.scenario,
                    control_port=args.control_port,
                    control_token=token,
                )
            )
        else:
            from simulators.opcua_server import serve_opcua

            users = {}
            for item in args.user or []:
                name, sep, password = item.partition(":")
                if not sep or not name or not password:
                    print("error: --user takes NAME:PASSWORD", file=sys.stderr)
                    return EXIT_CONFIG
                users[name] = password
            asyncio.run(
                serve_opcua(
                    config,
                    host=args.host,
                    port=args.port or 4840,
                    scenario=args.scenario,
                    security=tuple(
                        args.security
                        or ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")
                    ),
                    users=users or None,
                    allow_anonymous=True if args.allow_anonymous else None,
                    cert_dir=args.cert_dir,
                )
            )
    except KeyboardInterrupt:
        pass
    return 0


def _simulate_sparkplug(args: argparse.Namespace, config: PlantConfig) -> int:
    from pydantic import ValidationError

    from drivers.sparkplug.broker import BrokerSettings
    from drivers.sparkplug.topics import id_problem
    from simulators.sparkplug_edge import serve_sparkplug

    try:
        broker = BrokerSettings(
            url=args.broker,
            username=args.username,
            password_env=args.password_env,
            ca_file=args.ca_file,
        )
    except ValidationError as err:
        print(f"error: {err.errors()[0]['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    problems = [f"{k}: {m}" for k, m in broker.problems()]
    for name in ("group", "edge_node", "primary_host"):
        value = getattr(args, name)
        why = id_problem(value) if value is not None else None
        if why is not None:
            problems.append(f"--{name.replace('_', '-')}: {why}")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(
        serve_sparkplug(
            config,
            broker,
            group=args.group,
            edge_node=args.edge_node,
            primary_host=args.primary_host,
            scenario=args.scenario,
        )
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scada.tools.backup import BackupError, take_backup

    config = _load(args.config, secrets=False)
    try:
        manifest = take_backup(
            config,
            Path(args.file),
            config_path=Path(args.config) if args.config else None,
            progress=None if args.quiet else lambda line: print(line, file=sys.stderr),
        )
    except BackupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    total = sum(d["bytes"] for d in manifest["databases"].values())
    print(
        f"{args.file}: {len(manifest['databases'])} database(s), {total:,} bytes, "
        f"integrity ok (from {manifest['data_dir']}"
        + (", server running)" if manifest["server_running"] else ", no server running)")
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scada.tools.backup import BackupError
    from scada.tools.restore import RESTORED_CONFIG, restore

    data_dir = Path(args.data_dir)
    try:
        manifest = restore(Path(args.file), data_dir, force=args.force)
    except BackupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    names = ", ".join(manifest["databases"])
    print(f"restored {names} into {data_dir}: integrity ok before and after")
    if manifest.get("config"):
        print(
            f"the config it was taken with is {data_dir / RESTORED_CONFIG}; point its "
            f"[server] data_dir at {data_dir.resolve()} (docs/operations.md)"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from scada.tools.bench.args import run

    return run(args)


def _auth_store(args: argparse.Namespace) -> AuthStore:
    from scada.roles.allinone import open_auth_store

    return open_auth_store(_load(args.config, secrets=False))


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("error: the passwords differ")
    return first


def _run_auth_command(args: argparse.Namespace, action: Callable[[AuthStore], str]) -> int:
    """Open the config's auth store, run one user/token action, audit it as the CLI."""
    from scada.auth.authdb import AuthError

    store = _auth_store(args)
    try:
        print(action(store))
    except AuthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _audit_cli(store: AuthStore, action: str, target: str, detail: str = "") -> None:
    from scada.auth.auditlog import AuditRecord

    store.audit(AuditRecord("cli", "admin", "local", action, target, "ok", detail))


def cmd_users(args: argparse.Namespace) -> int:
    def act(store: AuthStore) -> str:
        if args.action == "list":
            return "\n".join(
                f"{u['name']:<20} {u['role']:<9} {'disabled' if u['disabled'] else 'active'}"
                for u in store.list_users()
            )
        if args.action == "add":
            store.add_user(args.name, args.role, _read_password(args))
            _audit_cli(store, "user_add", args.name, f"role {args.role}")
            return f"added {args.name} ({args.role})"
        if args.action == "disable":
            store.set_disabled(args.name, True)
            _audit_cli(store, "user_disable", args.name)
            return f"disabled {args.name}; their sessions are ended"
        store.set_password(args.name, _read_password(args))
        _audit_cli(store, "user_passwd", args.name)
        return f"password of {args.name} changed"

    return _run_auth_command(args, act)


def cmd_tokens(args: argparse.Namespace) -> int:
    def act(store: AuthStore) -> str:
        if args.action == "create":
            token_id, secret = store.create_token(args.name, args.role, "cli")
            _audit_cli(store, "token_create", f"{token_id} {args.name}", f"role {args.role}")
            return f"token {token_id} ({args.name}, {args.role}); shown only now:\n{secret}"
        if args.action == "list":
            return "\n".join(
                f"{t['id']:>4} {t['name']:<20} {t['role']:<9} "
                f"{'revoked' if t['revoked'] else 'active'}"
                for t in store.list_tokens()
            )
        store.revoke_token(args.id)
        _audit_cli(store, "token_revoke", str(args.id))
        return f"revoked token {args.id}"

    return _run_auth_command(args, act)


# `scada bench`'s modes (the flag that picks each; scada.tools.bench.args runs them).
BENCH_MODES = [
    ("(default)", "fan-out: frames per second and CPU against reference servers"),
    ("--compression", "fan-out with permessage-deflate off, per-client and shared"),
    ("--cluster", "bus latency and gateway CPU per frame against the all-in-one"),
    ("--ingest", "the per-tick pipeline at plant sizes 8..500 lines"),
    ("--history", "historian queries, bytes per value and writer CPU"),
    ("--history-out", "only build a history file a server opens (DATA_DIR/history.sqlite)"),
    ("--idle-memory", "memory per idle connection"),
    ("--churn", "memory over rounds of connecting and disconnecting clients"),
    ("--stall", "whether heavy reads stall the plant view"),
    ("--readers", "heavy readers (anonymous and tokens) against the tick; --cluster: the lease"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """`command`: the subcommand about to run, if known (others' heavy arguments are skipped)."""
    parser = argparse.ArgumentParser(prog="scada", description=__doc__)
    parser.add_argument("--version", action="version", version=f"scada {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the plant and the dashboard")
    p.add_argument("--config", help="plant config TOML (default: the built-in 8-line plant)")
    p.add_argument("--host", default=None, help="bind address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default from config: 8000)")
    p.add_argument("--scenario", help="simulator scenario TOML: faults scheduled over time")
    p.add_argument(
        "--ws-compression",
        choices=["off", "per-client", "shared"],
        default=None,
        help="permessage-deflate for clients that offer it (default: shared; see docs/performance.md)",
    )
    p.add_argument(
        "--role",
        choices=["all", "ingest", "gateway"],
        default="all",
        help="all: the whole plant in one process (default); ingest or gateway: one part of a "
        "cluster on Redis (docs/cluster.md)",
    )
    p.add_argument("--node", help="this process's name in the cluster (default from [cluster])")
    p.add_argument("--redis-url", help="Redis of the cluster (default from [cluster] redis_url)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "cluster", help="run a local cluster (Redis, 2 ingest, 2 gateways, nginx) to try it"
    )
    p.add_argument("--dir", default="scada-cluster", help="data and logs (default ./scada-cluster)")
    p.add_argument("--port", type=int, default=8443, help="nginx https port (default 8443)")
    p.add_argument("--config", help="plant config for every node (default: the built-in plant)")
    p.add_argument("--redis-server", help="redis-server executable (default: found on PATH)")
    p.add_argument("--nginx", help="nginx executable (default: found on PATH or in /usr/sbin)")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 listing problems")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("watch", help="print the live plant in the terminal")
    p.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8000/ws",
        help="the server: ws(s)://HOST:PORT/ws or its page http(s)://HOST:PORT/",
    )
    p.add_argument("--lines", nargs="*", help="only these line ids")
    p.add_argument("--token", help="API token (or set SCADA_TOKEN)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "simulate", help="serve the simulated plant over Modbus TCP or OPC UA, or Sparkplug B"
    )
    p.add_argument("protocol", choices=["modbus", "opcua", "sparkplug"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 5020 (modbus), 4840 (opcua)")
    p.add_argument("--config", help="plant config whose lines to simulate")
    p.add_argument("--scenario", help="scenario TOML of faults over time")
    p.add_argument(
        "--security",
        action="append",
        choices=["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"],
        help="OPC UA security policies offered (repeat; default all three)",
    )
    p.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help="OPC UA user (repeat); anonymous login is then off",
    )
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="OPC UA: keep anonymous login on even with --user",
    )
    p.add_argument("--cert-dir", help="OPC UA server certificate directory")
    p.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        help="Sparkplug: MQTT broker mqtt(s)://host:port",
    )
    p.add_argument("--username", help="Sparkplug: MQTT user")
    p.add_argument("--password-env", help="Sparkplug: environment variable holding the password")
    p.add_argument("--ca-file", help="Sparkplug: CA to trust for mqtts://")
    p.add_argument("--group", default="plant", help="Sparkplug group id (default plant)")
    p.add_argument("--edge-node", default="simulator", help="edge node id (default simulator)")
    p.add_argument("--primary-host", help="Sparkplug: wait for this host's STATE online")
    p.add_argument(
        "--control-port",
        type=int,
        default=None,
        help="modbus: also serve the plant's faults over HTTP on this port (bearer token from "
        "$SCADA_SIMULATOR_TOKEN; an ingest node's [simulator] control_url forwards to it)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "bench",
        help="benchmarks: " + ", ".join(mode for mode, _ in BENCH_MODES),
        description="Benchmarks, one mode per run:\n"
        + "\n".join(f"  {mode:<14} {what}" for mode, what in BENCH_MODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command in (None, "bench"):  # its arguments import what it measures: only when asked
        from scada.tools.bench.args import add_arguments

        add_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "backup", help="one consistent archive of the data directory, also while serving"
    )
    p.add_argument("file", help="the archive to write (.tar; .tar.gz compresses)")
    p.add_argument("--config", help="the config the server runs with (default: built-in)")
    p.add_argument("--quiet", action="store_true", help="no line per database")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into a data directory no server uses")
    p.add_argument("file", help="an archive written by `scada backup`")
    p.add_argument("--data-dir", required=True, help="the data directory to restore into")
    p.add_argument(
        "--force",
        action="store_true",
        help="the directory holds databases: move them to replaced-<time>/ first",
    )
    p.set_defaults(func=cmd_restore)

    roles = ["viewer", "operator", "engineer", "admin"]
    p = sub.add_parser("users", help="manage users (stored under the config's data dir)")
    p.add_argument("--config", help="plant config (for the data dir)")
    users = p.add_subparsers(dest="action", required=True)
    u = users.add_parser("add")
    u.add_argument("name")
    u.add_argument("--role", choices=roles, default="operator")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users.add_parser("list")
    u = users.add_parser("disable")
    u.add_argument("name")
    u = users.add_parser("passwd")
    u.add_argument("name")
    u.add_argument("--password-stdin", action="store_true")
    for action in users.choices.values():
        _config_after_action(action)
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("tokens", help="long-lived API tokens for kiosks and programs")
    p.add_argument("--config", help="plant config (for the data dir)")
    tokens = p.add_subparsers(dest="action", required=True)
    t = tokens.add_parser("create")
    t.add_argument("--name", required=True)
    t.add_argument("--role", choices=roles, default="viewer")
    tokens.add_parser("list")
    t = tokens.add_parser("revoke")
    t.add_argument("id", type=int)
    for action in tokens.choices.values():
        _config_after_action(action)
    p.set_defaults(func=cmd_tokens)
    parser.description = "The scada command: " + ", ".join(sub.choices) + " (each has --help)."
    return parser


def _config_after_action(parser: argparse.ArgumentParser) -> None:
    """`scada tokens create --config F` works like `scada tokens --config F create`."""
    parser.add_argument("--config", default=argparse.SUPPRESS, help="plant config (data dir)")


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
