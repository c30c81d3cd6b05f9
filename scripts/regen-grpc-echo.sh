#!/usr/bin/env bash
# Regenerates examples/grpc-echo/src/pb/trustgate.echo.v1.rs from examples/grpc-echo/proto/echo.proto.
#
# The generated file is committed, so building the example (and CI) needs no protoc and no
# build.rs. Run this after editing the proto; it needs protoc (apt-get install protobuf-compiler)
# and builds tonic-prost-build 0.14 in a throwaway project outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

command -v protoc >/dev/null || {
    echo "protoc not found: apt-get install -y protobuf-compiler" >&2
    exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "regen-grpc-echo"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tonic-prost-build = "0.14"

[workspace]
TOML
cat >"$work/src/main.rs" <<'RUST'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (proto, include, out) = match (args.next(), args.next(), args.next()) {
        (Some(p), Some(i), Some(o)) => (p, i, o),
        _ => return Err("usage: regen-grpc-echo PROTO INCLUDE_DIR OUT_DIR".into()),
    };
    tonic_prost_build::configure()
        // Payloads as `bytes::Bytes`: a streamed reply shares one buffer instead of copying it.
        .bytes(".")
        .out_dir(out)
        .compile_protos(&[proto], &[include])?;
    Ok(())
}
RUST
proto_dir="$repo/examples/grpc-echo/proto"
out_dir="$repo/examples/grpc-echo/src/pb"
mkdir -p "$out_dir"
CARGO_TARGET_DIR="${REGEN_TARGET_DIR:-$work/target}" \
    cargo run --quiet --manifest-path "$work/Cargo.toml" -- \
    "$proto_dir/echo.proto" "$proto_dir" "$out_dir"
echo "wrote $out_dir/trustgate.echo.v1.rs"
