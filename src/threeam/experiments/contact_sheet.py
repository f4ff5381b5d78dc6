"""A contact sheet of generated scenes (docs/evidence.md): rows = scenes, columns = evenly spaced
frames; one look-alike family per scene is outlined (the original green, its exact copies red).

    python -m threeam.experiments.contact_sheet --set lookalike --scenes 4 --frames 8 --out sheet.jpg
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
from scipy import ndimage


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=1)


def contact_sheet(scenes: Sequence, n_frames: int = 8, scale: int = 2) -> np.ndarray:
    """(rows * H * scale, cols * W * scale, 3) uint8."""
    rows = []
    for scene in scenes:
        fam = None
        for o in scene.meta.get("objects", []):
            if o.get("distractor_of") is not None:
                orig = int(o["distractor_of"])
                fam = (orig, [int(x["id"]) for x in scene.meta["objects"] if x.get("distractor_of") == orig])
                break
        idx = np.linspace(0, len(scene) - 1, n_frames).round().astype(int)
        tiles = []
        for t in idx:
            f = scene.frame(int(t))
            img = f.rgb.copy()
            if fam is not None:
                img[_outline(f.instance_ids == fam[0])] = (0, 255, 0)
                for c in fam[1]:
                    img[_outline(f.instance_ids == c)] = (255, 0, 0)
            img = np.repeat(np.repeat(img, scale, 0), scale, 1)
            img[:, -1] = 255
            img[-1, :] = 255
            tiles.append(img)
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)


def main(argv: Sequence[str] | None = None) -> int:
    from PIL import Image

    from threeam.data.eval_scenes import make_eval_scenes

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="lookalike")
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--cache", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    sheet = contact_sheet(make_eval_scenes(a.set, a.scenes, cache_dir=a.cache), a.frames)
    Image.fromarray(sheet).save(a.out, quality=85)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
