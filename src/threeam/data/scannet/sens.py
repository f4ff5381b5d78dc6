"""Lazy reader (and a fixture writer) for ScanNet ``.sens`` RGB-D streams.

Binary layout, little-endian (ScanNet ``SensReader/c++/src/sensorData.h``)::

    uint32 version (= 4)
    uint64 strlen, strlen bytes sensor name
    float32[16] intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth (row-major 4x4)
    int32 color_compression   (-1 unknown, 0 raw, 1 png, 2 jpeg)
    int32 depth_compression   (-1 unknown, 0 raw_ushort, 1 zlib_ushort, 2 occi_ushort)
    uint32 color_width, color_height, depth_width, depth_height
    float32 depth_shift       (stored value = metres * depth_shift; 1000 = millimetres)
    uint64 num_frames
    per frame: float32[16] camera_to_world, uint64 timestamp_color, uint64 timestamp_depth,
               uint64 color_size, uint64 depth_size, color bytes, depth bytes
    uint64 num_imu, then IMU records (not read here)

Opening a file reads only the header and walks the per-frame headers (seeking over the payloads),
so a multi-GB stream is indexed in milliseconds and each frame is decoded on demand.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from threeam.errors import InputError
from threeam.io.atomic import atomic_path

__all__ = ["SensHeader", "SensFile", "write_sens", "SENS_VERSION", "COLOR_COMPRESSION", "DEPTH_COMPRESSION"]

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEAD = struct.Struct("<16f4Q")  # pose, ts_color, ts_depth, color_size, depth_size (96 bytes)
_TAIL = struct.Struct("<2i4If")


@dataclass(frozen=True)
class SensHeader:
    """The fixed header of a ``.sens`` file. Matrices are ``(4, 4)`` float64."""

    version: int
    sensor_name: str
    intrinsic_color: np.ndarray
    extrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    extrinsic_depth: np.ndarray
    color_compression: str
    depth_compression: str
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float
    num_frames: int


class SensFile:
    """A ``.sens`` file opened lazily.

    Attributes:
        path: the file.
        header: :class:`SensHeader`.
        poses: ``(F, 4, 4)`` float64 camera-to-world of every frame (non-finite where invalid).
        valid: ``(F,)`` bool, True where the pose is all finite.
        timestamps: ``(F, 2)`` uint64 colour/depth timestamps (microseconds; often 0).

    Frames are addressed by their raw index ``0 .. F-1`` (the numbering the SensReader export uses).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f".sens file not found: {self.path}")
        size = self.path.stat().st_size
        try:
            with self.path.open("rb") as f:
                self.header = self._read_header(f)
                n = self.header.num_frames
                poses = np.empty((n, 4, 4), dtype=np.float64)
                ts = np.empty((n, 2), dtype=np.uint64)
                offsets = np.empty((n, 3), dtype=np.int64)  # color offset, color size, depth size
                for i in range(n):
                    raw = f.read(_FRAME_HEAD.size)
                    if len(raw) < _FRAME_HEAD.size:
                        raise InputError(f"{self.path}: truncated .sens file, frame {i} of {n} is missing")
                    vals = _FRAME_HEAD.unpack(raw)
                    poses[i] = np.asarray(vals[:16], dtype=np.float64).reshape(4, 4)
                    ts[i] = vals[16:18]
                    cs, ds = vals[18], vals[19]
                    pos = f.tell()
                    if pos + cs + ds > size:
                        raise InputError(f"{self.path}: truncated .sens file, frame {i} of {n} "
                                         f"needs {cs + ds} bytes past offset {pos}")
                    offsets[i] = (pos, cs, ds)
                    f.seek(cs + ds, os.SEEK_CUR)
        except InputError:
            raise
        except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read .sens file {self.path}: {e}") from e
        self.poses = poses
        self.timestamps = ts
        self._offsets = offsets
        with np.errstate(invalid="ignore"):
            self.valid = np.isfinite(poses).all(axis=(1, 2))

    def _read_header(self, f) -> SensHeader:
        def take(n: int) -> bytes:
            b = f.read(n)
            if len(b) < n:
                raise InputError(f"{self.path}: truncated .sens header")
            return b

        (version,) = struct.unpack("<I", take(4))
        if version != SENS_VERSION:
            raise InputError(f"{self.path}: .sens version {version} is not supported (expected {SENS_VERSION})")
        (strlen,) = struct.unpack("<Q", take(8))
        if strlen > 1 << 16:
            raise InputError(f"{self.path}: implausible sensor-name length {strlen}; not a .sens file?")
        name = take(strlen).decode("utf-8", "replace")
        mats = np.frombuffer(take(4 * 64), dtype="<f4").astype(np.float64).reshape(4, 4, 4)
        cc, dc, cw, ch, dw, dh, shift = _TAIL.unpack(take(_TAIL.size))
        (num,) = struct.unpack("<Q", take(8))
        if cc not in COLOR_COMPRESSION or dc not in DEPTH_COMPRESSION:
            raise InputError(f"{self.path}: unknown compression codes colour={cc} depth={dc}")
        return SensHeader(version, name, mats[0], mats[1], mats[2], mats[3], COLOR_COMPRESSION[cc],
                          DEPTH_COMPRESSION[dc], cw, ch, dw, dh, float(shift), int(num))

    # ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.header.num_frames

    @property
    def K_color(self) -> np.ndarray:
        """``(3, 3)`` float64 colour intrinsics."""
        return self.header.intrinsic_color[:3, :3].copy()

    @property
    def K_depth(self) -> np.ndarray:
        """``(3, 3)`` float64 depth intrinsics."""
        return self.header.intrinsic_depth[:3, :3].copy()

    def valid_indices(self) -> list[int]:
        """Raw indices of the frames whose pose is finite."""
        return [int(i) for i in np.flatnonzero(self.valid)]

    def _check(self, index: int) -> int:
        n = self.header.num_frames
        if not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise InputError(f"frame index {index} out of range for {self.path.name} with {n} frames")
        return int(index)

    def _payload(self, index: int) -> tuple[bytes, bytes]:
        off, cs, ds = (int(x) for x in self._offsets[self._check(index)])
        with self.path.open("rb") as f:
            f.seek(off)
            data = f.read(cs + ds)
        return data[:cs], data[cs:]

    def color(self, index: int) -> np.ndarray:
        """Decode frame ``index``'s colour image: ``(color_height, color_width, 3)`` uint8 RGB."""
        return self._decode_color(self._payload(index)[0], index)

    def depth_raw(self, index: int) -> np.ndarray:
        """Frame ``index``'s stored depth: ``(depth_height, depth_width)`` uint16 (metres x depth_shift)."""
        return self._decode_depth(self._payload(index)[1], index)

    def depth(self, index: int) -> np.ndarray:
        """Frame ``index``'s depth in metres: ``(depth_height, depth_width)`` float32, 0 = invalid."""
        return (self.depth_raw(index).astype(np.float32) / np.float32(self.header.depth_shift)).astype(np.float32)

    def pose(self, index: int) -> np.ndarray:
        """``(4, 4)`` float64 camera-to-world of frame ``index`` (may be non-finite; see ``valid``)."""
        return self.poses[self._check(index)].copy()

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb (H, W, 3) uint8, depth (h, w) float32 metres, cam_to_world (4, 4) float64)`` in one read."""
        c, d = self._payload(index)
        rgb = self._decode_color(c, index)
        depth = self._decode_depth(d, index).astype(np.float32) / np.float32(self.header.depth_shift)
        return rgb, depth.astype(np.float32), self.poses[index].copy()

    def _decode_color(self, data: bytes, index: int) -> np.ndarray:
        h = self.header
        try:
            if h.color_compression == "raw":
                return np.frombuffer(data, dtype=np.uint8).reshape(h.color_height, h.color_width, 3).copy()
            if h.color_compression in ("jpeg", "png"):
                from PIL import Image

                with Image.open(io.BytesIO(data)) as im:
                    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
                if rgb.shape[:2] != (h.color_height, h.color_width):
                    raise InputError(f"{self.path}: frame {index} colour is {rgb.shape[1]}x{rgb.shape[0]}, "
                                     f"header says {h.color_width}x{h.color_height}")
                return rgb
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{self.path}: cannot decode colour of frame {index}: {e}") from e
        raise InputError(f"{self.path}: colour compression {h.color_compression!r} is not supported")

    def _decode_depth(self, data: bytes, index: int) -> np.ndarray:
        h = self.header
        try:
            if h.depth_compression == "zlib_ushort":
                data = zlib.decompress(data)
            elif h.depth_compression != "raw_ushort":
                raise InputError(f"{self.path}: depth compression {h.depth_compression!r} is not supported")
            return np.frombuffer(data, dtype="<u2").reshape(h.depth_height, h.depth_width).astype(np.uint16)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{self.path}: cannot decode depth of frame {index}: {e}") from e


def _mat4(K: np.ndarray, what: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (3, 3):
        M = np.eye(4)
        M[:3, :3] = K
        return M
    if K.shape != (4, 4):
        raise InputError(f"{what} must be (3, 3) or (4, 4), got {K.shape}")
    return K


def write_sens(path: str | os.PathLike, colors: Sequence[np.ndarray], depths_mm: Sequence[np.ndarray],
               poses: Sequence[np.ndarray], K_color: np.ndarray, K_depth: np.ndarray,
               depth_shift: float = 1000.0, sensor_name: str = "StructureSensor",
               jpeg_quality: int = 95, timestamps: Sequence[tuple[int, int]] | None = None) -> None:
    """Write a version-4 ``.sens`` file (JPEG colour, zlib depth, no IMU records), atomically.

    Args:
        colors: per frame ``(H, W, 3)`` uint8 RGB (all the same size).
        depths_mm: per frame ``(h, w)`` uint16 depth in units of ``1 / depth_shift`` metres.
        poses: per frame ``(4, 4)`` camera-to-world (may be non-finite, as in real invalid frames).
        K_color / K_depth: ``(3, 3)`` or ``(4, 4)`` intrinsics. Extrinsics are written as identity.
        timestamps: optional per-frame ``(color_us, depth_us)``; default 0.
    """
    from PIL import Image

    n = len(colors)
    if len(depths_mm) != n or len(poses) != n:
        raise InputError(f"write_sens: {n} colour frames but {len(depths_mm)} depth maps and {len(poses)} poses")
    if n == 0:
        raise InputError("write_sens: need at least one frame")
    ch, cw = np.asarray(colors[0]).shape[:2]
    dh, dw = np.asarray(depths_mm[0]).shape[:2]
    name = sensor_name.encode("utf-8")
    out = bytearray()
    out += struct.pack("<IQ", SENS_VERSION, len(name)) + name
    for M in (_mat4(K_color, "K_color"), np.eye(4), _mat4(K_depth, "K_depth"), np.eye(4)):
        out += np.asarray(M, dtype="<f4").tobytes()
    out += _TAIL.pack(2, 1, cw, ch, dw, dh, float(depth_shift))
    out += struct.pack("<Q", n)
    for i in range(n):
        rgb = np.ascontiguousarray(colors[i], dtype=np.uint8)
        dep = np.asarray(depths_mm[i])
        if rgb.shape != (ch, cw, 3) or dep.shape != (dh, dw):
            raise InputError(f"write_sens: frame {i} has colour {rgb.shape} / depth {dep.shape}, "
                             f"expected {(ch, cw, 3)} / {(dh, dw)}")
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=jpeg_quality)
        cbytes = buf.getvalue()
        dbytes = zlib.compress(np.ascontiguousarray(dep, dtype="<u2").tobytes())
        pose = np.asarray(poses[i], dtype="<f4").reshape(4, 4)
        tsc, tsd = timestamps[i] if timestamps is not None else (0, 0)
        out += pose.tobytes() + struct.pack("<4Q", int(tsc), int(tsd), len(cbytes), len(dbytes))
        out += cbytes + dbytes
    out += struct.pack("<Q", 0)  # no IMU records
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(out))
