"""The checked-in sparkplug_b_pb2.py is generated from drivers/sparkplug/sparkplug_b.proto.

The .proto is read here by a small parser of the proto2 subset it uses (enums, nested
messages, optional/repeated fields, oneofs, extension ranges) and compared with the descriptor
the generated module registers: every message, field (name, number, label, type), oneof and
enum value. An edit of either file alone fails this test; `make sparkplug-proto` regenerates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from drivers.sparkplug import sparkplug_b_pb2
from tests.conftest import ROOT

PROTO = ROOT / "drivers" / "sparkplug" / "sparkplug_b.proto"
FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": FDP.TYPE_DOUBLE,
    "float": FDP.TYPE_FLOAT,
    "uint64": FDP.TYPE_UINT64,
    "uint32": FDP.TYPE_UINT32,
    "bool": FDP.TYPE_BOOL,
    "string": FDP.TYPE_STRING,
    "bytes": FDP.TYPE_BYTES,
}
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|\d+|[{};=]")


def _tokens(text: str) -> list[str]:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"[^"]*"', "STR", text)
    return TOKEN.findall(text)


def _parse(tokens: list[str]) -> tuple[str, dict[str, object]]:
    """(package, {full name: ('enum', {value: number}) | ('message', [fields], [ranges])})."""
    out: dict[str, object] = {}
    pos = 0

    def block(scope: str) -> None:
        nonlocal pos
        fields: list[tuple[str, int, int, str, str | None]] = []
        ranges: list[int] = []
        oneof: str | None = None
        while tokens[pos] != "}":
            tok = tokens[pos]
            if tok == "message":
                name = tokens[pos + 1]
                pos += 3
                block(f"{scope}.{name}")
            elif tok == "enum":
                name, values = tokens[pos + 1], {}
                pos += 3
                while tokens[pos] != "}":
                    values[tokens[pos]] = int(tokens[pos + 2])
                    pos += 4
                pos += 1
                out[f"{scope}.{name}"] = ("enum", values)
            elif tok == "oneof":
                oneof = tokens[pos + 1]
                pos += 3
            elif tok == "extensions":
                ranges.append(int(tokens[pos + 1]))
                pos += 5
            elif tok in ("optional", "repeated") or oneof is not None:
                label = FDP.LABEL_REPEATED if tok == "repeated" else FDP.LABEL_OPTIONAL
                if tok in ("optional", "repeated"):
                    pos += 1
                typ, name, number = tokens[pos], tokens[pos + 1], int(tokens[pos + 3])
                fields.append((name, number, label, typ, oneof))
                pos += 5
            else:
                raise AssertionError(f"unexpected token {tok!r} in {scope}")
            while oneof is not None and tokens[pos] == "}":
                oneof = None
                pos += 1
        pos += 1
        out[scope] = ("message", fields, ranges)

    # The file is `syntax = "..."; package NAME;` then top-level definitions: read those as
    # the body of one block scoped by the package.
    assert tokens[:4] == ["syntax", "=", "STR", ";"] and tokens[4] == "package", tokens[:6]
    package = tokens[5]
    tokens[:] = [*tokens[7:], "}"]
    block(f".{package}")
    out.pop(f".{package}")
    return package, out


def _from_descriptor() -> tuple[str, dict[str, object]]:
    fdp = descriptor_pb2.FileDescriptorProto()
    sparkplug_b_pb2.DESCRIPTOR.CopyToProto(fdp)
    out: dict[str, object] = {}

    def walk(scope: str, msg: descriptor_pb2.DescriptorProto) -> None:
        name = f"{scope}.{msg.name}"
        fields = []
        for f in msg.field:
            typ = (
                f.type_name.rsplit(".", 1)[-1]
                if f.type_name
                else next(k for k, v in SCALARS.items() if v == f.type)
            )
            oneof = msg.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
            fields.append((f.name, f.number, f.label, typ, oneof))
        out[name] = ("message", fields, [r.start for r in msg.extension_range])
        for nested in msg.nested_type:
            walk(name, nested)
        for enum in msg.enum_type:
            out[f"{name}.{enum.name}"] = ("enum", {v.name: v.number for v in enum.value})

    for msg in fdp.message_type:
        walk(f".{fdp.package}", msg)
    for enum in fdp.enum_type:
        out[f".{fdp.package}.{enum.name}"] = ("enum", {v.name: v.number for v in enum.value})
    return fdp.package, out


def _normalised(defs: dict[str, object]) -> dict[str, object]:
    """Type names reduced to their last part on both sides (the parser sees them unqualified)."""
    norm: dict[str, object] = {}
    for name, d in defs.items():
        item: Any = d
        if item[0] == "message":
            _, fields, ranges = item
            fields = sorted((n, num, lab, t.rsplit(".", 1)[-1], o) for n, num, lab, t, o in fields)
            norm[name] = ("message", fields, sorted(ranges))
        else:
            norm[name] = d
    return norm


def test_generated_module_matches_the_proto() -> None:
    package, parsed = _parse(_tokens(PROTO.read_text("utf-8")))
    gen_package, generated = _from_descriptor()
    assert package == gen_package == "org.eclipse.tahu.protobuf"
    assert _normalised(parsed) == _normalised(generated)


def test_the_parser_sees_what_matters() -> None:
    """The comparison above is only as good as the parser: it must find the fields a change
    would touch (a renumbered field differs)."""
    _, parsed = _parse(_tokens(PROTO.read_text("utf-8")))
    metric = parsed[".org.eclipse.tahu.protobuf.Payload.Metric"]
    assert ("is_null", 7, FDP.LABEL_OPTIONAL, "bool", None) in metric[1]  # type: ignore[index]
    assert ("double_value", 13, FDP.LABEL_OPTIONAL, "double", "value") in metric[1]  # type: ignore[index]
    data_type = parsed[".org.eclipse.tahu.protobuf.DataType"]
    assert data_type[1]["DateTimeArray"] == 34  # type: ignore[index]
    edited = PROTO.read_text("utf-8").replace("is_null = 7", "is_null = 70")
    _, changed = _parse(_tokens(edited))
    assert _normalised(changed) != _normalised(_from_descriptor()[1])


def test_proto_is_beside_the_generated_module() -> None:
    assert Path(sparkplug_b_pb2.__file__).parent == PROTO.parent
