"""Minimal GGUF v3 reader (spec model.md section 2.0), independent of the C++ code.

Usage:
    g = GGUFFile("model.gguf")
    g.metadata["deepseek4.block_count"]
    t = g.tensors["blk.0.attn_norm.weight"]   # TensorInfo
    raw = g.raw(name)                          # numpy uint8 view (memmap) of its bytes
    w = g.dequant(name)                        # float32 array, math shape (ne reversed)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

import quants

GGUF_MAGIC = 0x46554747

# metadata value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_SCALAR = {
    T_U8: ("<B", 1), T_I8: ("<b", 1), T_U16: ("<H", 2), T_I16: ("<h", 2),
    T_U32: ("<I", 4), T_I32: ("<i", 4), T_F32: ("<f", 4), T_BOOL: ("<?", 1),
    T_U64: ("<Q", 8), T_I64: ("<q", 8), T_F64: ("<d", 8),
}
_NP_SCALAR = {
    T_U8: "<u1", T_I8: "<i1", T_U16: "<u2", T_I16: "<i2", T_U32: "<u4", T_I32: "<i4",
    T_F32: "<f4", T_BOOL: "<u1", T_U64: "<u8", T_I64: "<i8", T_F64: "<f8",
}


@dataclass
class TensorInfo:
    name: str
    ne: tuple          # GGUF order, ne[0] fastest
    type: int
    offset: int        # absolute file offset
    nbytes: int

    @property
    def shape(self):
        """Math/NumPy (row-major) shape: ne reversed."""
        return tuple(reversed(self.ne))


class GGUFFile:
    def __init__(self, path: str):
        self.path = path
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        self._pos = 0
        magic, version = struct.unpack_from("<II", self.mm, 0)
        if magic != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        if version != 3:
            raise ValueError(f"{path}: GGUF version {version}, only 3 supported")
        n_tensors, n_kv = struct.unpack_from("<QQ", self.mm, 8)
        self._pos = 24
        self.metadata = {}
        self.metadata_types = {}      # key -> (type, array element type or None), for writers
        for _ in range(n_kv):
            key = self._str()
            vtype = self._u32()
            etype = struct.unpack_from("<I", self.mm, self._pos)[0] if vtype == T_ARR else None
            self.metadata_types[key] = (vtype, etype)
            self.metadata[key] = self._value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u32()
            if not 1 <= n_dims <= 8:
                raise ValueError(f"tensor {name}: bad n_dims {n_dims}")
            ne = struct.unpack_from("<" + "Q" * n_dims, self.mm, self._pos)
            self._pos += 8 * n_dims
            ttype = self._u32()
            off = struct.unpack_from("<Q", self.mm, self._pos)[0]
            self._pos += 8
            infos.append((name, tuple(int(x) for x in ne), ttype, off))
        align = int(self.metadata.get("general.alignment", 32))
        data_start = (self._pos + align - 1) // align * align
        self.data_offset = data_start
        self.tensors = {}
        for name, ne, ttype, off in infos:
            n = int(np.prod(ne))
            blk, bb = quants.block_info(ttype)
            nbytes = (n + blk - 1) // blk * bb
            self.tensors[name] = TensorInfo(name, ne, ttype, data_start + off, nbytes)
            if data_start + off + nbytes > len(self.mm):
                raise ValueError(f"tensor {name} extends past end of file")

    # -- low level readers -------------------------------------------------
    def _u32(self):
        v = struct.unpack_from("<I", self.mm, self._pos)[0]
        self._pos += 4
        return v

    def _u64(self):
        v = struct.unpack_from("<Q", self.mm, self._pos)[0]
        self._pos += 8
        return v

    def _str(self):
        n = self._u64()
        s = bytes(self.mm[self._pos:self._pos + n]).decode("utf-8", errors="replace")
        self._pos += n
        return s

    def _value(self, vtype):
        if vtype in _SCALAR:
            fmt, sz = _SCALAR[vtype]
            v = struct.unpack_from(fmt, self.mm, self._pos)[0]
            self._pos += sz
            return v
        if vtype == T_STR:
            return self._str()
        if vtype == T_ARR:
            etype = self._u32()
            count = self._u64()
            if etype in _NP_SCALAR:
                dt = np.dtype(_NP_SCALAR[etype])
                arr = np.frombuffer(self.mm, dtype=dt, count=count, offset=self._pos).copy()
                self._pos += count * dt.itemsize
                return arr
            return [self._value(etype) for _ in range(count)]
        raise ValueError(f"unknown GGUF metadata type {vtype}")

    # -- tensor access -----------------------------------------------------
    def raw(self, name) -> np.ndarray:
        t = self.tensors[name]
        return self.mm[t.offset:t.offset + t.nbytes]

    def dequant(self, name, dtype=np.float32) -> np.ndarray:
        """Dequantize the whole tensor to float, math shape (ne reversed)."""
        t = self.tensors[name]
        flat = quants.dequantize(self.raw(name), t.type, int(np.prod(t.ne)))
        return flat.reshape(t.shape).astype(dtype, copy=False)

    def get(self, name, default=None):
        return self.tensors.get(name, default)

    def __contains__(self, name):
        return name in self.tensors


if __name__ == "__main__":
    import sys
    g = GGUFFile(sys.argv[1])
    for k, v in g.metadata.items():
        if isinstance(v, (list, np.ndarray)) and len(v) > 16:
            print(f"{k}: array[{len(v)}] {list(v[:8])}...")
        else:
            print(f"{k}: {v}")
    for t in g.tensors.values():
        print(f"{t.name:48s} type={quants.TYPE_NAMES.get(t.type, t.type):8s} ne={list(t.ne)}")
