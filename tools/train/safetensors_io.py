"""Reads and writes the safetensors format (a little-endian u64 header length, a JSON header, the raw tensors)
with no dependency beyond PyTorch and numpy, so that the checks also run where the safetensors package is absent."""
import json
import struct

import numpy as np
import torch

_READ = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[8 + n + start:8 + n + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            t = torch.from_numpy(bits.view(np.float32).copy()).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=_READ[info["dtype"]]).copy())
        out[name] = t.reshape(info["shape"])
    return out


def _bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return "BF16", t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.float32:
        return "F32", t.numpy().tobytes()
    if t.dtype == torch.int64:
        return "I64", t.numpy().tobytes()
    raise ValueError(f"unsupported dtype {t.dtype}")


def save(path, tensors, metadata=None):
    """Writes the tensors back to back with no holes (the format forbids them), wider dtypes first so that every
    tensor stays aligned to its element size; the header is padded with spaces to a multiple of 8 bytes."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors, key=lambda k: (-tensors[k].element_size(), k)):
        dtype, raw = _bytes(tensors[name])
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
