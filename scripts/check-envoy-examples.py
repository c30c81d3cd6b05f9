#!/usr/bin/env python3
"""Checks the Envoy configurations in docs/forward-auth/envoy.md against Envoy's own protos.

Envoy is not packaged for Debian, so the examples cannot be run here. This is the next best
check: every ```yaml block of the page is parsed as an `envoy.config.bootstrap.v3.Bootstrap`
with protobuf's JSON mapping, typed_config (`Any`) included, from the protos the envoy-types
crate ships (the same protos the gRPC door is compiled from). An unknown field, a wrong type or
an unknown `@type` fails. Envoy's validation rules (protoc-gen-validate) are not enforced by
protobuf, so the few that matter here are checked by hand below.

Needs `grpcio-tools` (protoc and protobuf for Python) and PyYAML, from PyPI
(scripts/install-test-deps.sh installs them), and the envoy-types crate in Cargo's registry
(`cargo fetch`).

Usage: python3 scripts/check-envoy-examples.py [docs/forward-auth/envoy.md]
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "forward-auth", "envoy.md")

# The files whose messages the examples use; their imports come along.
PROTOS = [
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
]


def envoy_types_protos():
    """The proto directory of the envoy-types crate the workspace locks."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for package in json.loads(out)["packages"]:
        if package["name"] == "envoy-types":
            return os.path.join(os.path.dirname(package["manifest_path"]), "proto")
    sys.exit("envoy-types is not in the workspace's dependencies")


def pool_from_protos(proto_dir):
    roots = [os.path.join(proto_dir, d) for d in sorted(os.listdir(proto_dir))]
    roots.append(os.path.join(os.path.dirname(protoc.__file__), "_proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "envoy.pb")
        args = ["protoc", "--include_imports", f"--descriptor_set_out={out}"]
        args += [f"-I{root}" for root in roots] + PROTOS
        if protoc.main(args) != 0:
            sys.exit("protoc failed on Envoy's protos")
        files = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def yaml_blocks(page):
    with open(page, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)


def walk(node):
    """Every mapping in a parsed YAML tree."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def check_by_hand(config, index):
    """The validation rules protobuf does not enforce, where the examples depend on them."""
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    problems = []
    for node in walk(config):
        for key in ("cluster", "cluster_name"):
            name = node.get(key)
            if isinstance(name, str) and name not in clusters:
                problems.append(f"{key} {name!r} names no cluster")
        if node.get("@type", "").endswith("ext_authz.v3.ExtAuthz"):
            if node.get("failure_mode_allow", False):
                problems.append("ext_authz must fail closed (failure_mode_allow: false)")
            if ("grpc_service" in node) == ("http_service" in node):
                problems.append("ext_authz needs exactly one of grpc_service and http_service")
            if "grpc_service" in node and "allowed_headers" in node:
                problems.append(
                    "gRPC ext_authz must send every header (no allowed_headers): "
                    "trustgate removes only the client identity headers it sees"
                )
    for problem in problems:
        print(f"block {index}: {problem}")
    return not problems


def main():
    page = sys.argv[1] if len(sys.argv) > 1 else PAGE
    pool = pool_from_protos(envoy_types_protos())
    bootstrap = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("envoy.config.bootstrap.v3.Bootstrap")
    )
    blocks = yaml_blocks(page)
    if not blocks:
        sys.exit(f"no ```yaml blocks in {page}")
    ok = True
    for index, block in enumerate(blocks, 1):
        config = yaml.safe_load(block)
        try:
            json_format.ParseDict(config, bootstrap(), descriptor_pool=pool)
        except json_format.ParseError as err:
            print(f"block {index}: not an Envoy v3 Bootstrap: {err}")
            ok = False
            continue
        ok = check_by_hand(config, index) and ok
    if not ok:
        sys.exit(1)
    print(f"{len(blocks)} Envoy configurations in {os.path.relpath(page, ROOT)} parse as Bootstrap")


if __name__ == "__main__":
    main()
