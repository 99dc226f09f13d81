"""nginx/cluster.conf rendered for a cluster on this host: loopback listen ports, the
gateways' and ingest nodes' ports in the two upstreams, a certificate and a log directory.

`scada cluster` and the tests render the shipped file itself, so what they run is what a
deployment copies.
"""

from __future__ import annotations

import re
from pathlib import Path

from scada.core.errors import ScadaError

TEMPLATE = Path(__file__).resolve().parents[3] / "nginx" / "cluster.conf"
# The local cluster's nginx talks to the nodes from this loopback address of its own, so the
# nodes can trust it alone: a local client that skips nginx comes from 127.0.0.1 and its
# X-Forwarded-For is not believed (the audit log and the per-address login limit stay true).
NGINX_SOURCE = "127.0.0.2"


class TemplateError(ScadaError):
    pass


def template_text() -> str:
    try:
        return TEMPLATE.read_text()
    except OSError as err:
        raise TemplateError(
            f"{TEMPLATE} is missing ({err.strerror}): run from a checkout of the project"
        ) from err


def _sub(pattern: str, replacement: str, text: str, expected: int | None = None) -> str:
    out, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if (expected is not None and n != expected) or n == 0:
        raise TemplateError(f"nginx/cluster.conf: {n} match(es) of {pattern!r}")
    return out


SERVER_LINE = re.compile(r"^([ \t]*)server[ \t]+\S+((?:[ \t]+[^;\s]+)*);\n", re.MULTILINE)


def _servers(text: str, upstream: str, ports: list[int]) -> str:
    """The upstream's `server` lines replaced by one per port, with the first line's options,
    where the first line was."""
    block = re.search(rf"^upstream {upstream} \{{\n.*?^\}}", text, flags=re.MULTILINE | re.DOTALL)
    if block is None:
        raise TemplateError(f"nginx/cluster.conf: no upstream {upstream}")
    first = SERVER_LINE.search(block[0])
    if first is None or not ports:
        raise TemplateError(f"nginx/cluster.conf: upstream {upstream} needs server lines")
    indent, options = first.groups()
    new = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in ports)
    before, after = block[0][: first.start()], SERVER_LINE.sub("", block[0][first.start() :])
    return text.replace(block[0], before + new + after)


def render_cluster_conf(
    *,
    gateways: list[int],
    ingests: list[int],
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    log_dir: Path,
    text: str | None = None,
) -> str:
    """nginx/cluster.conf for loopback: IPv4 listens on the given ports, the upstreams' servers
    on 127.0.0.1 with the given ports, certificate and key paths, logs in `log_dir`."""
    text = _common(template_text() if text is None else text, gateways, ingests, log_dir)
    text = _sub(r"^(\s*listen\s+)80\b", rf"\g<1>127.0.0.1:{http_port}", text, expected=1)
    text = _sub(r"^(\s*listen\s+)443\b", rf"\g<1>127.0.0.1:{https_port}", text, expected=1)
    text = _sub(r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", text, expected=1)
    text = _sub(r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", text, expected=1)
    return _no_system_paths(text)


def render_plain_conf(
    *, gateways: list[int], ingests: list[int], port: int, log_dir: Path, text: str | None = None
) -> str:
    """The same, served over plain http on `port` only (no TLS, no redirect server): for
    `scada bench --cluster`, whose clients speak ws://, so TLS is not what it measures."""
    text = _common(template_text() if text is None else text, gateways, ingests, log_dir)
    text = _sub(r"(?s)^server \{\n    listen 80;.*?^\}\n", "", text, expected=1)
    text = _sub(r"^(\s*listen\s+)443 ssl http2;", rf"\g<1>127.0.0.1:{port};", text, expected=1)
    text = _sub(r"^\s*ssl_\w+ .*;\n", "", text)
    return _no_system_paths(text)


def _common(text: str, gateways: list[int], ingests: list[int], log_dir: Path) -> str:
    text = _sub(r"^\s*listen\s+\[::\]:\d+[^;]*;\n", "", text, expected=2)
    text = _servers(text, "scada_gateways", gateways)
    text = _servers(text, "scada_ingest", ingests)
    text = _sub(r"/var/log/nginx/", f"{log_dir}/", text)
    text = _sub(
        r"^(\s*)proxy_http_version 1\.1;\n",
        rf"\g<0>\g<1>proxy_bind {NGINX_SOURCE};\n",
        text,
        expected=1,
    )
    return re.sub(r"/var/www/letsencrypt", f"{log_dir}/acme", text)


def _no_system_paths(text: str) -> str:
    live = re.sub(r"#.*", "", text)
    if "/var/" in live or "/etc/" in live:
        raise TemplateError("nginx/cluster.conf: a system path is left in the rendered config")
    return text


MAIN_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/main.error.log {level};
events {{ worker_connections {connections}; }}
http {{
    access_log {d}/logs/main.access.log;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/{include};
}}
"""


def main_conf(
    directory: Path, include: str, *, connections: int = 4096, level: str = "warn"
) -> str:
    """A main nginx.conf whose every file (pid, logs, temp) is under `directory`, including
    the site config `directory/include`."""
    return MAIN_CONF.format(d=directory, include=include, connections=connections, level=level)
