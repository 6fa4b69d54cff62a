"""An offline Shapes3D look-alike, written in the public ``3dshapes.h5`` format.

:func:`make_shapes3d` renders a small room (floor, walls) with one object in it over Shapes3D's
grid: floor hue 10 x wall hue 10 x object hue 10 x scale 8 x shape 4 (cube, cylinder, sphere,
capsule) x orientation 15 (camera azimuth -30..30 degrees) = 480,000 RGB images of 64x64, and
writes ``3dshapes/3dshapes.h5`` with ``images`` (N, 64, 64, 3) uint8 and ``labels`` (N, 6)
float64 holding the factor values in the public file's ranges (hues 0, 0.1, ..., 0.9; scale
0.75..1.25; shape 0..3; orientation -30..30), orientation fastest. It is a look-alike drawn by a
hand-written ray caster (not DeepMind's MuJoCo scenes), for tests, CI and pipelines; scores are
only comparable to dlib's on the real file.

How: the geometry does not depend on the three hues, so each of the (scale, shape, orientation)
views is ray-cast once (floor and walls analytically, the object by sphere tracing its signed
distance), giving surface masks and Lambert shading; every image is then a broadcast blend of
those with the hue colours, written in blocks of one (floor, wall) pair. The data set is stored
uncompressed and contiguous, so fastdis memory-maps it.

``small=True`` renders a CI-sized grid (4, 4, 4, 2, 4, 5: 2,560 images).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from ._base import FactorGrid
from .datasets import SHAPES3D_FILE

FULL_SIZES = (10, 10, 10, 8, 4, 15)
SMALL_SIZES = (4, 4, 4, 2, 4, 5)
_ROOM = 4.0  # walls at x, z = +-_ROOM
_CAMERA = (3.2, 1.1)  # orbit radius and height; it looks at (0, 0.5, 0)
_LIGHT = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])
_MARCH_STEPS = 48


def factor_values(sizes) -> list[np.ndarray]:
    floor, wall, obj, scales, shapes, orientations = sizes
    return [
        np.arange(floor) / floor,
        np.arange(wall) / wall,
        np.arange(obj) / obj,
        np.linspace(0.75, 1.25, scales),
        np.arange(shapes, dtype=np.float64),
        np.linspace(-30.0, 30.0, orientations),
    ]


def _object_distance(points: np.ndarray, shape: int, size: float) -> np.ndarray:
    """Signed distance to shape 0 cube, 1 cylinder, 2 sphere, 3 capsule resting on the floor."""
    p = points - np.array([0.0, size, 0.0])  # centre: the object stands on y = 0
    if shape == 0:
        q = np.abs(p) - size * 0.85
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)
    if shape == 1:
        radial = np.hypot(p[..., 0], p[..., 2]) - size * 0.8
        height = np.abs(p[..., 1]) - size
        return np.hypot(np.maximum(radial, 0), np.maximum(height, 0)) + np.minimum(
            np.maximum(radial, height), 0)
    if shape == 2:
        return np.linalg.norm(p, axis=-1) - size
    half = size * 0.45  # capsule: a vertical segment swept by a sphere
    axial = np.clip(p[..., 1], -half, half)
    return np.linalg.norm(p - np.stack([0 * axial, axial, 0 * axial], -1), axis=-1) - size * 0.55


def _camera_rays(azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (64, 64, 3) of a 40-degree pinhole camera."""
    radius, height = _CAMERA
    angle = np.deg2rad(azimuth_deg)
    origin = np.array([radius * np.sin(angle), height, radius * np.cos(angle)])
    forward = np.array([0.0, 0.5, 0.0]) - origin
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pixels = (np.arange(64) + 0.5) / 32 - 1  # -1..1 across the image
    half_width = np.tan(np.deg2rad(20))
    directions = (forward + half_width * (pixels[None, :, None] * right
                                          - pixels[:, None, None] * up))
    return origin, directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def _background(origin, directions) -> tuple[np.ndarray, np.ndarray]:
    """Floor mask and shading (64, 64) of the room seen along the rays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        floor_t = np.where(directions[..., 1] < 0, -origin[1] / directions[..., 1], np.inf)
        wall_t = np.min([np.where(directions[..., a] * sign > 0,
                                  (sign * _ROOM - origin[a]) / directions[..., a], np.inf)
                         for a in (0, 2) for sign in (-1, 1)], axis=0)
    is_floor = floor_t < wall_t
    hit = origin + np.minimum(floor_t, wall_t)[..., None] * directions
    wall_normal = np.where(np.abs(hit[..., :1]) > np.abs(hit[..., 2:]),
                           [[-1.0, 0, 0]], [[0, 0, -1.0]]) * np.sign(hit[..., [0, 0, 2]])
    wall_shade = 0.55 + 0.35 * np.abs(wall_normal @ _LIGHT)
    floor_shade = 0.8 + 0.15 * np.exp(-np.hypot(hit[..., 0], hit[..., 2]) / 3)
    return is_floor, np.where(is_floor, floor_shade, wall_shade)


def _object_view(origin, directions, far, shape, size) -> tuple[np.ndarray, np.ndarray]:
    """Object mask and Lambert shading (64, 64) by sphere tracing up to the room (``far``)."""
    t = np.zeros(directions.shape[:2])
    for _ in range(_MARCH_STEPS):
        t += _object_distance(origin + t[..., None] * directions, shape, size)
    points = origin + t[..., None] * directions
    hit = (np.abs(_object_distance(points, shape, size)) < 1e-3) & (t < far)
    eps = 1e-4
    normal = np.stack([
        _object_distance(points + offset, shape, size) - _object_distance(points - offset, shape,
                                                                          size)
        for offset in np.eye(3) * eps], axis=-1)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    return hit, 0.35 + 0.65 * np.clip(normal @ _LIGHT, 0, 1)


def _hue_colours(hues: np.ndarray) -> np.ndarray:
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 1.0) for h in hues])


def _render_parts(sizes):
    """Room colour per (floor, wall, orientation), object colour and mask per view."""
    values = factor_values(sizes)
    n_floor, n_wall, n_obj, n_scale, n_shape, n_orient = sizes
    room = np.empty((n_floor, n_wall, n_orient, 64, 64, 3), dtype=np.uint8)
    objects = np.empty((n_obj, n_scale, n_shape, n_orient, 64, 64, 3), dtype=np.uint8)
    masks = np.empty((n_scale, n_shape, n_orient, 64, 64, 1), dtype=bool)
    floor_rgb, wall_rgb, obj_rgb = (_hue_colours(values[j]) for j in range(3))
    for o, azimuth in enumerate(values[5]):
        origin, directions = _camera_rays(azimuth)
        is_floor, shade = _background(origin, directions)
        colour = np.where(is_floor[None, None, ..., None], floor_rgb[:, None, None, None],
                          wall_rgb[None, :, None, None]) * shade[..., None]
        room[:, :, o] = np.rint(255 * colour)
        far = np.linalg.norm(origin) + _ROOM * 2
        for s, scale in enumerate(values[3]):
            for k in range(n_shape):
                hit, light = _object_view(origin, directions, far, k, 0.55 * scale)
                masks[s, k, o, ..., 0] = hit
                objects[:, s, k, o] = np.rint(255 * obj_rgb[:, None, None] * light[..., None])
    return room, objects, masks


def make_shapes3d(out_dir, small: bool = False) -> Path:
    """Render the Shapes3D look-alike into ``out_dir/3dshapes/3dshapes.h5``; return its path."""
    import h5py

    sizes = SMALL_SIZES if small else FULL_SIZES
    path = Path(out_dir) / SHAPES3D_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    values = factor_values(sizes)
    classes = FactorGrid(sizes).factors_at(np.arange(int(np.prod(sizes))))
    labels = np.column_stack([values[j][classes[:, j]] for j in range(6)])
    room, objects, masks = _render_parts(sizes)
    block = int(np.prod(sizes[2:]))  # images per (floor, wall) pair
    tmp = path.with_suffix(".h5.partial")
    with h5py.File(tmp, "w") as handle:
        images = handle.create_dataset("images", shape=(labels.shape[0], 64, 64, 3),
                                       dtype=np.uint8)
        handle.create_dataset("labels", data=labels)
        for pair in range(sizes[0] * sizes[1]):
            floor, wall = divmod(pair, sizes[1])
            images[pair * block:(pair + 1) * block] = np.where(
                masks, objects, room[floor, wall][None, None, None]).reshape(-1, 64, 64, 3)
    tmp.replace(path)
    return path
