"""Katib's v1beta1 gRPC API (earlystop/proto/katib_api.proto), compiled when first imported.

`pb2` holds the messages, `services` the EarlyStopping/DBManager servicers and stubs.

The stubs are generated from the checked-in .proto by grpcio-tools' bundled protoc in memory
(`grpc.protos_and_services`, ~0.1 s), not at build time into files: nothing generated is committed
or packaged, the stubs can never be stale against the .proto, and the generated code always
matches the protobuf runtime that is installed (a protoc run at build time stamps its own
protobuf version into *_pb2.py and refuses older runtimes). The price is grpcio-tools at run
time, pinned in pyproject.toml. Import this module once per process: the messages are
registered in protobuf's default pool under `api.v1.beta1`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

PROTO = "earlystop/proto/katib_api.proto"
# grpc_tools resolves PROTO against sys.path entries; an editable install reaches earlystop/
# through an import hook, not a sys.path entry, so make sure its parent is searched (last).
_ROOT = str(Path(__file__).resolve().parents[1])
if not any(Path(p or ".").resolve() == Path(_ROOT) for p in sys.path):
    sys.path.append(_ROOT)

pb2, services = grpc.protos_and_services(PROTO)
