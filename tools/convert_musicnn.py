"""Convert the published MusiCNN TensorFlow 1.x checkpoints to safetensors, without TensorFlow.

The checkpoints ship inside the PyPI wheel ``musicnn==0.1.0`` (ISC licence, Music
Technology Group, Universitat Pompeu Fabra). Get it with::

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn
    python tools/convert_musicnn.py /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl

A TF2 "tensor bundle" checkpoint is two files: ``.index``, a LevelDB-format sorted
table mapping each variable name to a ``BundleEntryProto`` (dtype, shape, offset and
size in the data file), and ``.data-00000-of-00001``, the raw little-endian tensors.
This script parses both, keeps the inference variables (drops Adam slots), renames
them to the PyTorch module's state-dict keys and writes
``src/soundalike/models/weights/<name>.safetensors``.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

TABLE_MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}  # TF DataType enum
REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "soundalike" / "models" / "weights"
MODELS = {"MSD_musicnn": "msd-musicnn", "MTT_musicnn": "mtt-musicnn"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _block_entries(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one uncompressed SSTable block (prefix-compressed keys)."""
    block = table[offset : offset + size]
    if table[offset + size] != 0:
        raise ValueError("compressed SSTable blocks are not supported")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + vlen]))
        pos += vlen
    return entries


def read_table(table: bytes) -> dict[bytes, bytes]:
    """All entries of a LevelDB-format table file."""
    if struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
        raise ValueError("not a TensorFlow checkpoint index (bad table magic)")
    footer = len(table) - 48
    _, pos = _varint(table, footer)  # metaindex offset
    _, pos = _varint(table, pos)  # metaindex size
    index_offset, pos = _varint(table, pos)
    index_size, pos = _varint(table, pos)
    result = {}
    for _, handle in _block_entries(table, index_offset, index_size):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        result.update(_block_entries(table, offset, size))
    return result


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message, varint and bytes only."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def read_checkpoint(index: bytes, data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a single-shard TF tensor bundle."""
    tensors = {}
    for key, entry in read_table(index).items():
        if not key:  # the empty key holds the BundleHeaderProto
            continue
        dtype, shape, offset, size = None, [], 0, 0
        for field, _, value in _proto_fields(entry):
            if field == 1:
                dtype = DTYPES[value]
            elif field == 2:  # TensorShapeProto: repeated Dim {int64 size = 1}
                for dim_field, _, dim in _proto_fields(value):
                    if dim_field == 2:
                        shape.append(next(v for f, _, v in _proto_fields(dim) if f == 1))
            elif field == 4:
                offset = value
            elif field == 5:
                size = value
        array = np.frombuffer(data[offset : offset + size], dtype=dtype).reshape(shape)
        tensors[key.decode()] = array.copy()
    return tensors


def _tf_name(kind: str, ordinal: int) -> str:
    return kind if ordinal == 0 else f"{kind}_{ordinal}"


# PyTorch module path of each TF layer, in the order build_musicnn creates them.
CONV_LAYERS = ["frontend.timbral.0", "frontend.timbral.1", "frontend.temporal.0",
               "frontend.temporal.1", "frontend.temporal.2",
               "midend.layers.0", "midend.layers.1", "midend.layers.2"]
BN_LAYERS = ["frontend.input_bn", *(f"{m}.bn" for m in CONV_LAYERS), "backend.pool_bn",
             "backend.dense_bn"]
DENSE_LAYERS = ["backend.dense", "backend.output"]


def to_state_dict(tf_vars: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and transpose TF variables to soundalike's MusiCNN state dict."""
    state = {}
    for i, module in enumerate(CONV_LAYERS):
        kernel = tf_vars[f"{_tf_name('conv2d', i)}/kernel"]  # (kh, kw, in, out)
        if module.startswith("midend"):
            # (7, C, 1, out) over (time, channel): a 1-D conv (out, C, 7)
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            weight = kernel.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
        state[f"{module}.conv.weight"] = weight
        state[f"{module}.conv.bias"] = tf_vars[f"{_tf_name('conv2d', i)}/bias"]
    for i, module in enumerate(BN_LAYERS):
        name = _tf_name("batch_normalization", i)
        state[f"{module}.weight"] = tf_vars[f"{name}/gamma"]
        state[f"{module}.bias"] = tf_vars[f"{name}/beta"]
        state[f"{module}.running_mean"] = tf_vars[f"{name}/moving_mean"]
        state[f"{module}.running_var"] = tf_vars[f"{name}/moving_variance"]
    for i, module in enumerate(DENSE_LAYERS):
        name = _tf_name("dense", i)
        state[f"{module}.weight"] = tf_vars[f"{name}/kernel"].T
        state[f"{module}.bias"] = tf_vars[f"{name}/bias"]
    used = {f"{_tf_name('conv2d', i)}/{p}" for i in range(len(CONV_LAYERS)) for p in ("kernel", "bias")}
    used |= {f"{_tf_name('batch_normalization', i)}/{p}" for i in range(len(BN_LAYERS))
             for p in ("gamma", "beta", "moving_mean", "moving_variance")}
    used |= {f"{_tf_name('dense', i)}/{p}" for i in range(len(DENSE_LAYERS)) for p in ("kernel", "bias")}
    unused = {k for k in tf_vars if "Adam" not in k and "power" not in k} - used
    if unused:
        raise ValueError(f"checkpoint variables not mapped: {sorted(unused)}")
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    for module in BN_LAYERS:  # PyTorch's batch-norm counter, unused in eval mode
        state[f"{module}.num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="musicnn-0.1.0-py3-none-any.whl")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as wheel:
        for tf_model, name in MODELS.items():
            index = wheel.read(f"musicnn/{tf_model}/.index")
            data = wheel.read(f"musicnn/{tf_model}/.data-00000-of-00001")
            state = to_state_dict(read_checkpoint(index, data))
            out = args.out_dir / f"{name}.safetensors"
            save_file(state, str(out), metadata={"source": f"musicnn==0.1.0 {tf_model}",
                                                 "license": "ISC"})
            print(f"{out}: {len(state)} tensors, {sum(v.size for v in state.values())} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
