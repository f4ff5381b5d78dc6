"""ScanNet class tables and the ``scannetv2-labels.combined.tsv`` reader.

Two label spaces exist on ScanNet meshes:

* ``"nyu40"`` - the ScanNet v2 benchmark: a segGroup's raw category maps to the TSV's ``nyu40id``
  column (0-40). Instance classes: :data:`SCANNET18_IDS` (the 20 semantic classes minus wall, floor).
* ``"scannet200"`` - ScanNet200: the raw category maps to the TSV's ``id`` column, and any id
  outside :data:`SCANNET200_IDS` becomes 0. Instance classes: :data:`SCANNET198_IDS` (minus wall
  and floor; ceiling stays).

Tables: ScanNet ``BenchmarkScripts/ScanNet200/scannet200_constants.py`` (``VALID_CLASS_IDS_20``,
``CLASS_LABELS_20``, ``VALID_CLASS_IDS_200``, ``CLASS_LABELS_200``), same order.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from threeam.errors import InputError

__all__ = ["LABEL_SPACES", "SCANNET20_IDS", "SCANNET20_NAMES", "SCANNET18_IDS", "SCANNET18_NAMES",
           "SCANNET200_IDS", "SCANNET200_NAMES", "SCANNET198_IDS", "SCANNET198_NAMES",
           "LabelTable", "read_label_table", "write_label_table", "check_label_space", "LABEL_TABLE_NAME"]

LABEL_SPACES = ("scannet200", "nyu40")
LABEL_TABLE_NAME = "scannetv2-labels.combined.tsv"

SCANNET20_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET20_NAMES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
                   "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator",
                   "shower curtain", "toilet", "sink", "bathtub", "otherfurniture")
#: ScanNet v2 instance-benchmark classes (nyu40 ids): the 20 semantic classes without wall and floor.
SCANNET18_IDS = SCANNET20_IDS[2:]
SCANNET18_NAMES = SCANNET20_NAMES[2:]

SCANNET200_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29,
    31, 32, 33, 34, 35, 36, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52, 54, 55, 56, 57,
    58, 59, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 82, 84, 86,
    87, 88, 89, 90, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 110, 112, 115,
    116, 118, 120, 121, 122, 125, 128, 130, 131, 132, 134, 136, 138, 139, 140, 141, 145, 148, 154,
    155, 156, 157, 159, 161, 163, 165, 166, 168, 169, 170, 177, 180, 185, 188, 191, 193, 195, 202,
    208, 213, 214, 221, 229, 230, 232, 233, 242, 250, 261, 264, 276, 283, 286, 300, 304, 312, 323,
    325, 331, 342, 356, 370, 392, 395, 399, 408, 417, 488, 540, 562, 570, 572, 581, 609, 748, 776,
    1156, 1163, 1164, 1165, 1166, 1167, 1168, 1169, 1170, 1171, 1172, 1173, 1174, 1175, 1176, 1178,
    1179, 1180, 1181, 1182, 1183, 1184, 1185, 1186, 1187, 1188, 1189, 1190, 1191,
)

SCANNET200_NAMES = (
    'wall', 'chair', 'floor', 'table', 'door', 'couch', 'cabinet', 'shelf', 'desk', 'office chair',
    'bed', 'pillow', 'sink', 'picture', 'window', 'toilet', 'bookshelf', 'monitor', 'curtain',
    'book', 'armchair', 'coffee table', 'box', 'refrigerator', 'lamp', 'kitchen cabinet', 'towel',
    'clothes', 'tv', 'nightstand', 'counter', 'dresser', 'stool', 'cushion', 'plant', 'ceiling',
    'bathtub', 'end table', 'dining table', 'keyboard', 'bag', 'backpack', 'toilet paper',
    'printer', 'tv stand', 'whiteboard', 'blanket', 'shower curtain', 'trash can', 'closet',
    'stairs', 'microwave', 'stove', 'shoe', 'computer tower', 'bottle', 'bin', 'ottoman', 'bench',
    'board', 'washing machine', 'mirror', 'copier', 'basket', 'sofa chair', 'file cabinet', 'fan',
    'laptop', 'shower', 'paper', 'person', 'paper towel dispenser', 'oven', 'blinds', 'rack',
    'plate', 'blackboard', 'piano', 'suitcase', 'rail', 'radiator', 'recycling bin', 'container',
    'wardrobe', 'soap dispenser', 'telephone', 'bucket', 'clock', 'stand', 'light',
    'laundry basket', 'pipe', 'clothes dryer', 'guitar', 'toilet paper holder', 'seat', 'speaker',
    'column', 'bicycle', 'ladder', 'bathroom stall', 'shower wall', 'cup', 'jacket', 'storage bin',
    'coffee maker', 'dishwasher', 'paper towel roll', 'machine', 'mat', 'windowsill', 'bar',
    'toaster', 'bulletin board', 'ironing board', 'fireplace', 'soap dish', 'kitchen counter',
    'doorframe', 'toilet paper dispenser', 'mini fridge', 'fire extinguisher', 'ball', 'hat',
    'shower curtain rod', 'water cooler', 'paper cutter', 'tray', 'shower door', 'pillar', 'ledge',
    'toaster oven', 'mouse', 'toilet seat cover dispenser', 'furniture', 'cart',
    'storage container', 'scale', 'tissue box', 'light switch', 'crate', 'power outlet',
    'decoration', 'sign', 'projector', 'closet door', 'vacuum cleaner', 'candle', 'plunger',
    'stuffed animal', 'headphones', 'dish rack', 'broom', 'guitar case', 'range hood', 'dustpan',
    'hair dryer', 'water bottle', 'handicap bar', 'purse', 'vent', 'shower floor', 'water pitcher',
    'mailbox', 'bowl', 'paper bag', 'alarm clock', 'music stand', 'projector screen', 'divider',
    'laundry detergent', 'bathroom counter', 'object', 'bathroom vanity', 'closet wall',
    'laundry hamper', 'bathroom stall door', 'ceiling light', 'trash bin', 'dumbbell', 'stair rail',
    'tube', 'bathroom cabinet', 'cd case', 'closet rod', 'coffee kettle', 'structure',
    'shower head', 'keyboard piano', 'case of water bottles', 'coat rack', 'storage organizer',
    'folded chair', 'fire alarm', 'power strip', 'calendar', 'poster', 'potted plant', 'luggage',
    'mattress',
)

_STUFF_200 = (1, 3)  # wall, floor
#: ScanNet200 instance classes: the 200 without wall (1) and floor (3).
SCANNET198_IDS = tuple(i for i in SCANNET200_IDS if i not in _STUFF_200)
SCANNET198_NAMES = tuple(n for i, n in zip(SCANNET200_IDS, SCANNET200_NAMES) if i not in _STUFF_200)


def check_label_space(space: str) -> str:
    """Return ``space`` if it is one of :data:`LABEL_SPACES`, else raise InputError."""
    if space not in LABEL_SPACES:
        raise InputError(f"label space {space!r} is not one of {', '.join(LABEL_SPACES)}")
    return space


def _int_or_zero(value: str | None) -> int:
    try:
        return int(float(value)) if value not in (None, "") else 0
    except ValueError:
        return 0


@dataclass
class LabelTable:
    """The raw-category mapping of ``scannetv2-labels.combined.tsv``.

    Attributes:
        raw_to_id: raw_category -> ScanNet200 ``id`` column.
        raw_to_nyu40: raw_category -> ``nyu40id`` column (0 when blank).
        raw_to_category: raw_category -> ``category`` column.
        path: where it was read from (for messages).
    """

    raw_to_id: dict[str, int]
    raw_to_nyu40: dict[str, int]
    raw_to_category: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def label_id(self, raw_category: str, space: str = "scannet200") -> int:
        """The class id of a segGroup label in ``space``; 0 = not a class of that space.

        ``scannet200``: the TSV ``id`` if it is one of the 200 classes, else 0 (as ScanNet200's
        preprocessing does). ``nyu40``: the TSV ``nyu40id`` (kept as is; the evaluator decides which
        ids count). A raw category missing from the table gives 0.
        """
        check_label_space(space)
        if space == "scannet200":
            i = self.raw_to_id.get(raw_category, 0)
            return i if i in _VALID_200 else 0
        return self.raw_to_nyu40.get(raw_category, 0)


_VALID_200 = frozenset(SCANNET200_IDS)


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Read ``scannetv2-labels.combined.tsv`` (tab-separated, header row with ``raw_category``,
    ``id``, ``nyu40id``; other columns are ignored). A raw category listed twice keeps its first row.

    Raises:
        InputError: missing file or missing columns (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ScanNet label table not found: {path} (expected {LABEL_TABLE_NAME})")
    raw_to_id: dict[str, int] = {}
    raw_to_nyu: dict[str, int] = {}
    raw_to_cat: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        cols = reader.fieldnames or []
        missing = [c for c in ("raw_category", "id", "nyu40id") if c not in cols]
        if missing:
            raise InputError(f"{path}: label table lacks column(s) {', '.join(missing)}; "
                             f"header is {cols[:6]}")
        for row in reader:
            raw = row.get("raw_category")
            if raw is None or raw in raw_to_id:
                continue
            raw_to_id[raw] = _int_or_zero(row.get("id"))
            raw_to_nyu[raw] = _int_or_zero(row.get("nyu40id"))
            raw_to_cat[raw] = row.get("category") or ""
    return LabelTable(raw_to_id, raw_to_nyu, raw_to_cat, str(path))


_TSV_COLUMNS = ("id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
                "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
                "wnsynsetkey", "mpcat40", "mpcat40index")


def write_label_table(path: str | os.PathLike, entries: dict[str, tuple[int, int]]) -> None:
    """Write a label table with ScanNet's 17 columns (for synthetic scenes and tests), atomically.

    Args:
        entries: ``{raw_category: (scannet200 id, nyu40id)}``; ``category`` repeats the raw
            category, the other columns are left empty (``count`` 1).
    """
    from threeam.io.atomic import atomic_write_text

    lines = ["\t".join(_TSV_COLUMNS)]
    for raw, (i, nyu) in entries.items():
        if "\t" in raw or "\n" in raw:
            raise InputError(f"raw category {raw!r} must not contain tabs or newlines")
        row = {"id": str(int(i)), "raw_category": raw, "category": raw, "count": "1", "nyu40id": str(int(nyu))}
        lines.append("\t".join(row.get(c, "") for c in _TSV_COLUMNS))
    atomic_write_text(path, "\n".join(lines) + "\n")
