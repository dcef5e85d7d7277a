"""Regenerate the Pub/Sub stubs from ``pubsub.proto`` (``make proto``).

``python -m worker.salesforce.events.generate`` writes them beside the ``.proto``.

The generated modules are committed (a deployment needs no compiler), so they must be exactly
what this command produces from the committed ``.proto`` with the pinned grpcio-tools; the
test suite regenerates them into a temporary directory and compares byte for byte.

The ``.proto`` is compiled with the repository root as include path, so the generated gRPC
module imports its messages as ``worker.salesforce.events.pubsub_pb2`` (a bare
``import pubsub_pb2`` would only work with this folder on ``sys.path``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTO = HERE / "pubsub.proto"
GENERATED = ("pubsub_pb2.py", "pubsub_pb2.pyi", "pubsub_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compile ``pubsub.proto`` into ``out_dir`` (which mirrors the repository root)."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    relative = PROTO.relative_to(ROOT)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(relative),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    return [out_dir / relative.parent / name for name in GENERATED]


def main() -> int:
    written = generate(ROOT)
    for path in written:
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
