"""ScanNet 3D instance-segmentation AP, computed the way the benchmark script does
(ScanNet ``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py``), plus the
class-agnostic variants used by ESAM (default) and SAI3D. See docs/scannet.md.

Per vertex of ``_vh_clean_2.ply``: GT ids ``label * 1000 + instance`` (0 = unannotated);
predictions are boolean vertex masks with a class label and a confidence.

Rules (all reproduced; ``t`` is an IoU threshold):

* thresholds ``arange(0.5, 0.95, 0.05)`` (nine values, 0.50 ... 0.90) and 0.25; AP averages the
  nine, AP50 / AP25 use 0.5 / 0.25;
* GT instances: nonzero ids whose class (``id // 1000``) is evaluated; only those with >= 100
  vertices are matched; vertices of other classes or unannotated are *void*;
* predictions with a label outside the evaluated classes, or with < 100 vertices, are dropped;
  a prediction's vertex count includes its void vertices, so spilling onto void costs IoU;
* matching per class and threshold, pooled over scenes: each GT, in id order, walks the
  predictions that overlap it, in submission order, skipping those already used as a true
  positive at this threshold; ``IoU > t`` (strict) makes the first one a TP, any further one an
  FP carrying the lower of the two confidences (the GT keeps the higher); an unmatched GT is a
  hard false negative;
* a prediction with no GT of IoU > t is an FP only when ``(void vertices + overlap with GTs of
  < 100 vertices) / its vertex count <= t``; otherwise it is ignored;
* AP: sort by confidence; at each distinct confidence (first index i) TP, FP, FN give P and R;
  append the point (P=1, R=0) and take ``sum_k P_k (R_{k-1} - R_{k+1}) / 2`` with
  ``R_{-1} = R_0`` and ``R_n = 0`` (no precision envelope); NaN for a class without GT, 0 for a
  class with GT but no predictions (or none left after the ignore rule).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from threeam.data.scannet.labels import SCANNET18_IDS, SCANNET18_NAMES, SCANNET198_IDS, SCANNET198_NAMES
from threeam.errors import InputError
from threeam.io.atomic import atomic_write_bytes, atomic_write_text
from threeam.presets import preset_functions

__all__ = ["OVERLAPS", "MIN_REGION_SIZE", "Benchmark", "BENCHMARKS", "APConfig", "AP_PRESETS", "get_ap_config",
           "ap_presets", "ScenePrediction",
           "APResult", "InstanceAPEvaluator", "evaluate_instances", "evaluate_submission",
           "average_precision", "gt_instances", "write_submission", "read_submission", "read_scene_prediction",
           "Submission", "read_gt_file", "write_gt_file", "read_gt_folder", "MASK_SUBDIR"]

#: ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``: the nine AP thresholds then 0.25.
OVERLAPS: tuple[float, ...] = tuple(float(x) for x in np.append(np.arange(0.5, 0.95, 0.05), 0.25))
MIN_REGION_SIZE = 100
MASK_SUBDIR = "pred_mask"
#: result files the benchmark scripts write into the prediction folder; never read as scenes
_RESULT_FILES = ("semantic_instance_evaluation.txt", "class_agnostic_instance_evaluation.txt")
_SCENE_NAME = re.compile(r"^[^\s/\\]+$")


@dataclass(frozen=True)
class Benchmark:
    """Which GT classes count and how predictions are labelled.

    Attributes:
        name: preset name.
        label_space: the GT label space it expects (``ScanNetScene.gt_ids(label_space)``).
        class_ids: GT class ids that form instances; every other class (and 0) is void.
        class_names: names of ``class_ids``.
        agnostic: collapse all ``class_ids`` to one class ``"object"`` and ignore predicted labels.
    """

    name: str
    label_space: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    agnostic: bool

    @property
    def eval_names(self) -> tuple[str, ...]:
        """Names of the evaluated classes (``("object",)`` when class-agnostic)."""
        return ("object",) if self.agnostic else self.class_names


#: ``esam``: ScanNet200 class-agnostic (198 thing classes collapsed; wall, floor, unannotated void)
#: as ESAM's table (the default). ``sai3d``: ScanNet v2 class-agnostic over the 18 nyu40 instance
#: classes. ``scannet`` / ``scannet200``: the per-class benchmarks (18 / 198 classes).
BENCHMARKS: dict[str, Benchmark] = {
    "esam": Benchmark("esam", "scannet200", SCANNET198_IDS, SCANNET198_NAMES, True),
    "sai3d": Benchmark("sai3d", "nyu40", SCANNET18_IDS, SCANNET18_NAMES, True),
    "scannet": Benchmark("scannet", "nyu40", SCANNET18_IDS, SCANNET18_NAMES, False),
    "scannet200": Benchmark("scannet200", "scannet200", SCANNET198_IDS, SCANNET198_NAMES, False),
}


def _benchmark(b: str | Benchmark) -> Benchmark:
    if isinstance(b, Benchmark):
        return b
    if b not in BENCHMARKS:
        raise InputError(f"benchmark {b!r} is not one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[b]


@dataclass(frozen=True)
class APConfig:
    """Evaluation constants (defaults = the benchmark's).

    Attributes:
        overlaps: IoU thresholds; AP averages all but 0.25, AP50 / AP25 pick 0.5 / 0.25.
        min_region_size: minimum vertices of a GT instance to be matched and of a prediction to count.
    """

    overlaps: tuple[float, ...] = OVERLAPS
    min_region_size: int = MIN_REGION_SIZE


AP_PRESETS: dict[str, APConfig] = {
    "benchmark": APConfig(),  # the benchmark's constants
    "no_min_size": APConfig(min_region_size=1),  # keep every region (for debugging)
}


get_ap_config, ap_presets = preset_functions(AP_PRESETS, "ap", "AP", default="benchmark")


@dataclass
class ScenePrediction:
    """Predicted instances of one scene.

    Attributes:
        masks: ``(K, N)`` bool, one row per instance over the ``N`` mesh vertices.
        labels: ``(K,)`` int class ids (ignored by the class-agnostic benchmarks).
        scores: ``(K,)`` float confidences (higher = more confident).
    """

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.masks)
        if m.ndim == 1 and m.size == 0:
            m = m.reshape(0, 0)
        if m.ndim != 2:
            raise InputError(f"prediction masks must be (K, N), got shape {m.shape}")
        self.masks = m.astype(bool, copy=False)
        self.labels = np.asarray(self.labels).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        k = self.masks.shape[0]
        if len(self.labels) != k or len(self.scores) != k:
            raise InputError(f"{k} prediction masks but {len(self.labels)} labels and {len(self.scores)} scores")
        if k and not np.all(np.isfinite(self.scores)):
            raise InputError("prediction scores must be finite")
        if k and not np.issubdtype(self.labels.dtype, np.integer):
            lab = self.labels.astype(np.float64)
            if not np.all(lab == np.round(lab)):
                raise InputError("prediction labels must be integers")
        self.labels = self.labels.astype(np.int64)

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def _as_prediction(p) -> ScenePrediction:
    if isinstance(p, ScenePrediction):
        return p
    if isinstance(p, Mapping):
        return ScenePrediction(p["masks"], p["labels"], p["scores"])
    masks, labels, scores = p
    return ScenePrediction(masks, labels, scores)


# ------------------------------------------------------------------------------------- matching
@dataclass
class _GT:
    gid: int  # the GT id (label * 1000 + instance)
    count: int
    matched: list[tuple[int, int]] = field(default_factory=list)  # (prediction key, intersection)


@dataclass
class _Pred:
    key: int
    conf: float
    count: int
    void: int
    matched: list[tuple[int, int]]  # (index into the class's GT list, intersection)


@dataclass
class _SceneMatches:
    gts: list[list[_GT]]
    preds: list[list[_Pred]]


def gt_instances(gt_ids: np.ndarray, benchmark: str | Benchmark = "esam") -> list[dict]:
    """The GT instances of one scene as the benchmark sees them.

    Returns:
        one dict per instance, in id order: ``{"id", "label", "class", "vertices"}`` where
        ``class`` is the evaluated class name (``"object"`` when class-agnostic) and
        ``vertices`` the vertex count (instances below the minimum size are listed too).
    """
    b = _benchmark(benchmark)
    gt_ids = np.asarray(gt_ids, dtype=np.int64).reshape(-1)
    uniq, counts = np.unique(gt_ids, return_counts=True)
    lab = uniq // 1000
    keep = (uniq != 0) & np.isin(lab, b.class_ids)
    pos = {c: i for i, c in enumerate(b.class_ids)}
    out = []
    for u, n, k in zip(uniq, counts, keep):
        if k:
            name = "object" if b.agnostic else b.class_names[pos[int(u // 1000)]]
            out.append({"id": int(u), "label": int(u // 1000), "class": name, "vertices": int(n)})
    return out


class InstanceAPEvaluator:
    """Accumulates scenes one at a time (masks are reduced to overlap counts and dropped), then
    computes AP. ``evaluate_instances`` and ``evaluate_submission`` are built on it.

    Args:
        benchmark: a key of :data:`BENCHMARKS` (default ``"esam"``) or a :class:`Benchmark`.
        config: :class:`APConfig`.
    """

    def __init__(self, benchmark: str | Benchmark = "esam", config: APConfig | None = None) -> None:
        self.benchmark = _benchmark(benchmark)
        self.config = config or APConfig()
        if self.config.min_region_size < 1:
            raise InputError(f"min_region_size must be >= 1, got {self.config.min_region_size}")
        self._class_pos = {c: i for i, c in enumerate(self.benchmark.class_ids)}
        self._scenes: dict[str, _SceneMatches] = {}
        self._next_key = 0

    @property
    def scene_ids(self) -> list[str]:
        return list(self._scenes)

    def _class_of(self, label: int) -> int:
        if self.benchmark.agnostic:
            return 0
        return self._class_pos.get(int(label), -1)

    def add_scene(self, scene_id: str, gt_ids: np.ndarray, prediction) -> None:
        """Add one scene.

        Args:
            scene_id: unique name (for messages).
            gt_ids: ``(N,)`` int GT ids per vertex in the benchmark's label space.
            prediction: :class:`ScenePrediction` or ``(masks (K, N), labels (K,), scores (K,))``.
        """
        if scene_id in self._scenes:
            raise InputError(f"scene {scene_id!r} was already added")
        pred = _as_prediction(prediction)
        gt_ids = np.asarray(gt_ids).reshape(-1)
        if not np.issubdtype(gt_ids.dtype, np.integer):
            raise InputError(f"scene {scene_id}: GT ids must be integers, got {gt_ids.dtype}")
        gt_ids = gt_ids.astype(np.int64)
        n = len(gt_ids)
        if len(pred) and pred.masks.shape[1] != n:
            raise InputError(f"scene {scene_id}: prediction masks have {pred.masks.shape[1]} vertices "
                             f"but the GT has {n}")
        ncls = len(self.benchmark.eval_names)
        min_size = self.config.min_region_size
        b = self.benchmark
        uniq, inverse, counts = np.unique(gt_ids, return_inverse=True, return_counts=True)
        labels = uniq // 1000
        is_gt = (uniq != 0) & np.isin(labels, b.class_ids)
        gts: list[list[_GT]] = [[] for _ in range(ncls)]
        # compact GT index per unique id -> (class, position in that class's list)
        gt_cls = np.full(len(uniq), -1, dtype=np.int64)
        gt_pos = np.full(len(uniq), -1, dtype=np.int64)
        for u in np.flatnonzero(is_gt):
            c = 0 if b.agnostic else self._class_pos[int(labels[u])]
            gt_cls[u] = c
            gt_pos[u] = len(gts[c])
            gts[c].append(_GT(int(uniq[u]), int(counts[u])))
        # the benchmark's void: class (id // 1000) not evaluated; id 0 has class 0, never evaluated
        void = ~np.isin(gt_ids // 1000, b.class_ids)
        preds: list[list[_Pred]] = [[] for _ in range(ncls)]
        for k in range(len(pred)):
            c = self._class_of(int(pred.labels[k]))
            if c < 0:
                continue
            m = pred.masks[k]
            num = int(np.count_nonzero(m))
            if num < min_size:
                continue
            key = self._next_key
            self._next_key += 1
            inter = np.bincount(inverse[m], minlength=len(uniq))
            hit = np.flatnonzero((inter > 0) & (gt_cls == c))
            matched = []
            for u in hit:
                gi = int(gt_pos[u])
                matched.append((gi, int(inter[u])))
                gts[c][gi].matched.append((key, int(inter[u])))
            preds[c].append(_Pred(key, float(pred.scores[k]), num, int(np.count_nonzero(m & void)), matched))
        self._scenes[scene_id] = _SceneMatches(gts, preds)

    # ---------------------------------------------------------------------------------------
    def _curve(self, ci: int, t: float, visited: set[int]) -> tuple[np.ndarray, np.ndarray, int, bool, bool]:
        """y_true, y_score, hard false negatives, has_gt, has_pred for class ``ci`` at threshold ``t``."""
        min_size = self.config.min_region_size
        y_true: list[float] = []
        y_score: list[float] = []
        hard_fn = 0
        has_gt = has_pred = False
        for sm in self._scenes.values():
            all_gts = sm.gts[ci]
            preds = sm.preds[ci]
            by_key = {p.key: p for p in preds}
            gts = [g for g in all_gts if g.count >= min_size]
            has_gt |= bool(gts)
            has_pred |= bool(preds)
            cur_true = [1.0] * len(gts)
            cur_score = [-math.inf] * len(gts)
            cur_match = [False] * len(gts)
            for gi, g in enumerate(gts):
                found = False
                for key, inter in g.matched:
                    if key in visited:
                        continue
                    p = by_key[key]
                    if inter / (g.count + p.count - inter) > t:
                        if cur_match[gi]:
                            hi, lo = max(cur_score[gi], p.conf), min(cur_score[gi], p.conf)
                            cur_score[gi] = hi
                            cur_true.append(0.0)
                            cur_score.append(lo)
                            cur_match.append(True)
                        else:
                            found = True
                            cur_match[gi] = True
                            cur_score[gi] = p.conf
                            visited.add(key)
                if not found:
                    hard_fn += 1
            y_true += [v for v, ok in zip(cur_true, cur_match) if ok]
            y_score += [v for v, ok in zip(cur_score, cur_match) if ok]
            for p in preds:
                if any(inter / (all_gts[gi].count + p.count - inter) > t for gi, inter in p.matched):
                    continue
                ignore = p.void + sum(inter for gi, inter in p.matched if all_gts[gi].count < min_size)
                if ignore / p.count <= t:
                    y_true.append(0.0)
                    y_score.append(p.conf)
        return np.asarray(y_true), np.asarray(y_score), hard_fn, has_gt, has_pred

    def ap_table(self) -> np.ndarray:
        """``(C, T)`` AP per evaluated class and threshold of ``config.overlaps``."""
        ov = self.config.overlaps
        ncls = len(self.benchmark.eval_names)
        table = np.zeros((ncls, len(ov)), dtype=np.float64)
        for oi, t in enumerate(ov):
            visited: set[int] = set()  # shared by the classes at one threshold, as in the script
            for ci in range(ncls):
                y_true, y_score, hard_fn, has_gt, has_pred = self._curve(ci, float(t), visited)
                if has_gt and has_pred:
                    table[ci, oi] = average_precision(y_true, y_score, hard_fn)
                elif has_gt:
                    table[ci, oi] = 0.0
                else:
                    table[ci, oi] = math.nan
        return table

    def result(self) -> "APResult":
        """Compute AP / AP50 / AP25 and per-class values over the scenes added so far."""
        if not self._scenes:
            raise InputError("no scenes to evaluate")
        table = self.ap_table()
        ov = np.asarray(self.config.overlaps, dtype=np.float64)
        main = ~np.isclose(ov, 0.25)
        i50 = np.flatnonzero(np.isclose(ov, 0.5))
        i25 = np.flatnonzero(np.isclose(ov, 0.25))
        names = self.benchmark.eval_names
        per_class = {}
        for ci, name in enumerate(names):
            per_class[name] = {"ap": _mean(table[ci, main], nan=False), "ap50": _mean(table[ci, i50], nan=False),
                               "ap25": _mean(table[ci, i25], nan=False)}
        return APResult(ap=_mean(table[:, main]), ap50=_mean(table[:, i50]), ap25=_mean(table[:, i25]),
                        per_class=per_class, table=table, overlaps=tuple(float(x) for x in ov),
                        class_names=names, benchmark=self.benchmark.name, num_scenes=len(self._scenes))


def _mean(x: np.ndarray, nan: bool = True) -> float:
    """nanmean (``nan=True``, as the overall averages) or plain mean (per class); NaN when empty."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return math.nan
    if not nan:
        return float(np.mean(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(x))


def average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int = 0) -> float:
    """The benchmark's AP of one class at one threshold.

    Args:
        y_true: ``(M,)`` 1 for a true positive, 0 for a false positive.
        y_score: ``(M,)`` their confidences.
        hard_false_negatives: GT instances with no match.
    Returns:
        ``sum_k P_k (R_{k-1} - R_{k+1}) / 2`` over the PR points at each distinct confidence plus
        the sentinel (P=1, R=0). 0 when there are no entries.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise InputError(f"y_true {y_true.shape} and y_score {y_score.shape} differ")
    order = np.argsort(y_score, kind="stable")
    s = y_score[order]
    cum = np.concatenate([[0.0], np.cumsum(y_true[order])])  # cum[i] = positives before index i
    total_tp = cum[-1]
    _, first = np.unique(s, return_index=True)
    n = len(s)
    precision = np.ones(len(first) + 1)
    recall = np.zeros(len(first) + 1)
    for j, i in enumerate(first):
        tp = total_tp - cum[i]
        fp = n - i - tp
        fn = cum[i] + hard_false_negatives
        precision[j] = tp / (tp + fp)
        recall[j] = tp / (tp + fn) if tp + fn > 0 else 0.0
    r_prev = np.concatenate([[recall[0]], recall[:-1]])
    r_next = np.concatenate([recall[1:], [0.0]])
    return float(np.dot(precision, (r_prev - r_next) / 2.0))


@dataclass
class APResult:
    """AP results.

    Attributes:
        ap / ap50 / ap25: the overall values (nanmean over classes; ``ap`` also over the
            thresholds except 0.25).
        per_class: ``{class name: {"ap", "ap50", "ap25"}}`` (NaN for a class without GT).
        table: ``(C, T)`` AP per class and threshold; ``overlaps``: the ``T`` thresholds.
        class_names: the ``C`` evaluated classes; ``benchmark``: the preset; ``num_scenes``.
    """

    ap: float
    ap50: float
    ap25: float
    per_class: dict[str, dict[str, float]]
    table: np.ndarray
    overlaps: tuple[float, ...]
    class_names: tuple[str, ...]
    benchmark: str
    num_scenes: int

    def to_dict(self) -> dict:
        """JSON-friendly (NaN -> None)."""
        def f(x: float):
            return None if x is None or math.isnan(x) else float(x)
        return {"benchmark": self.benchmark, "num_scenes": self.num_scenes, "ap": f(self.ap), "ap50": f(self.ap50),
                "ap25": f(self.ap25), "overlaps": list(self.overlaps),
                "per_class": {k: {kk: f(vv) for kk, vv in v.items()} for k, v in self.per_class.items()}}

    def summary(self) -> str:
        """One line: ``AP 0.123 | AP50 0.456 | AP25 0.789 (esam, 12 scenes)``."""
        return (f"AP {self.ap:.3f} | AP50 {self.ap50:.3f} | AP25 {self.ap25:.3f} "
                f"({self.benchmark}, {self.num_scenes} scenes)")


def evaluate_instances(gt: Mapping[str, np.ndarray], predictions: Mapping[str, object],
                       benchmark: str | Benchmark = "esam", config: APConfig | None = None,
                       missing: str = "error") -> APResult:
    """Evaluate predictions against per-vertex GT, scene by scene.

    Args:
        gt: ``{scene id: (N,) int GT ids}`` in the benchmark's label space
            (``BENCHMARKS[b].label_space``). May be lazy (e.g. :func:`read_gt_folder`).
        predictions: ``{scene id: ScenePrediction | (masks, labels, scores)}``; may be lazy
            (e.g. :func:`read_submission`), each scene is read once and dropped.
        missing: what to do with a GT scene that has no prediction: ``"error"``, ``"empty"``
            (its GT count as missed) or ``"skip"`` (evaluate only predicted scenes, as the
            benchmark script does). A predicted scene without GT is always an error.
    """
    if missing not in ("error", "empty", "skip"):
        raise InputError(f"missing must be 'error', 'empty' or 'skip', got {missing!r}")
    extra = [s for s in predictions if s not in gt]
    if extra:
        raise InputError(f"{len(extra)} predicted scene(s) have no ground truth, e.g. {extra[0]!r}")
    lacking = [s for s in gt if s not in predictions]
    if lacking and missing == "error":
        raise InputError(f"{len(lacking)} scene(s) have ground truth but no prediction, e.g. {lacking[0]!r} "
                         f"(pass missing='empty' or 'skip')")
    ev = InstanceAPEvaluator(benchmark, config)
    for s in gt:
        if s in predictions:
            ev.add_scene(s, gt[s], predictions[s])
        elif missing == "empty":
            ids = gt[s]
            ev.add_scene(s, ids, ScenePrediction(np.zeros((0, len(ids)), bool), np.zeros(0, int), np.zeros(0)))
    return ev.result()


def evaluate_submission(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike | Mapping[str, np.ndarray],
                        benchmark: str | Benchmark = "esam", config: APConfig | None = None,
                        missing: str = "skip") -> APResult:
    """Evaluate a submission folder against a GT folder of ``<scene>.txt`` (or a GT mapping).
    Default ``missing="skip"``: like the benchmark script, only scenes with a prediction file count."""
    gt = read_gt_folder(gt_dir) if not isinstance(gt_dir, Mapping) else gt_dir
    return evaluate_instances(gt, read_submission(pred_dir), benchmark, config, missing)


# ---------------------------------------------------------------------------- file formats
def _ids_text(values: np.ndarray) -> bytes:
    return ("\n".join(str(int(v)) for v in values) + "\n").encode("ascii") if len(values) else b""


def _read_ints(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return np.array(path.read_bytes().split(), dtype=np.int64)
    except ValueError as e:
        raise InputError(f"{path}: {what} must hold one integer per line ({e})") from e


def read_gt_file(path: str | os.PathLike) -> np.ndarray:
    """A benchmark GT ``<scene>.txt``: ``(N,)`` int64, one ``label * 1000 + instance`` per vertex."""
    return _read_ints(Path(path), "GT file")


def write_gt_file(path: str | os.PathLike, gt_ids: np.ndarray) -> None:
    """Write per-vertex GT ids as the benchmark's ``<scene>.txt`` (one integer per line), atomically."""
    atomic_write_bytes(path, _ids_text(np.asarray(gt_ids, dtype=np.int64).reshape(-1)))


class _LazyFolder(Mapping):
    def __init__(self, files: dict[str, Path], loader) -> None:
        self._files = files
        self._loader = loader

    def __getitem__(self, key: str):
        if key not in self._files:
            raise KeyError(key)
        return self._loader(self._files[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def read_gt_folder(folder: str | os.PathLike, scenes: Sequence[str] | None = None) -> Mapping[str, np.ndarray]:
    """A lazy ``{scene id: (N,) int64}`` over the ``<scene>.txt`` files of a GT folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"GT folder not found: {folder}")
    files = {p.stem: p for p in sorted(folder.glob("*.txt"))}
    if scenes is not None:
        miss = [s for s in scenes if s not in files]
        if miss:
            raise InputError(f"{len(miss)} scene(s) have no GT file in {folder}, e.g. {miss[0]}")
        files = {s: files[s] for s in scenes}
    if not files:
        raise InputError(f"no <scene>.txt GT files in {folder}")
    return _LazyFolder(files, read_gt_file)


def _check_scene_name(scene_id: str) -> str:
    if not isinstance(scene_id, str) or not _SCENE_NAME.match(scene_id):
        raise InputError(f"scene id {scene_id!r} must be a non-empty name without spaces or slashes")
    return scene_id


def write_submission(folder: str | os.PathLike, scene_id: str, masks: np.ndarray, labels: np.ndarray,
                     confidences: np.ndarray) -> Path:
    """Write one scene in the benchmark's submission layout, every file atomically::

        <folder>/<scene>.txt                 # one line per instance: pred_mask/<scene>_<k>.txt <label> <conf>
        <folder>/pred_mask/<scene>_<k>.txt   # one 0/1 per mesh vertex

    Mask files ``pred_mask/<scene>_<k>.txt`` left from an earlier, longer write of the same scene
    are removed after the new list is in place.

    Args:
        masks: ``(K, N)`` bool; labels: ``(K,)`` int class ids; confidences: ``(K,)`` finite floats.
    Returns:
        the path of ``<scene>.txt``.
    """
    _check_scene_name(scene_id)
    pred = ScenePrediction(masks, labels, confidences)
    folder = Path(folder)
    lines = []
    for k in range(len(pred)):
        rel = f"{MASK_SUBDIR}/{scene_id}_{k}.txt"
        body = np.full(2 * pred.masks.shape[1], ord("\n"), dtype=np.uint8)
        body[0::2] = ord("0") + pred.masks[k].astype(np.uint8)
        atomic_write_bytes(folder / rel, body.tobytes())
        lines.append(f"{rel} {int(pred.labels[k])} {float(pred.scores[k]):.9g}\n")
    index = folder / f"{scene_id}.txt"
    atomic_write_text(index, "".join(lines))
    stale = re.compile(rf"^{re.escape(scene_id)}_(\d+)\.txt$")
    mask_dir = folder / MASK_SUBDIR
    if mask_dir.is_dir():
        for p in mask_dir.iterdir():
            m = stale.match(p.name)
            if m and int(m.group(1)) >= len(pred):
                p.unlink(missing_ok=True)
    return index


def read_scene_prediction(path: str | os.PathLike, root: str | os.PathLike | None = None) -> ScenePrediction:
    """Read one ``<scene>.txt`` of a submission and its mask files.

    Each line is ``relative/mask.txt label confidence``; the mask path is relative to the
    ``.txt``'s folder and must stay inside ``root`` (default: that folder). A mask file holds one
    integer per vertex, nonzero = inside.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prediction file not found: {path}")
    base = path.parent.resolve()
    root_r = Path(root).resolve() if root is not None else base
    masks, labels, scores = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InputError(f"{path}:{n}: expected '<relative mask path> <label id> <confidence>', got {line!r}")
        rel, lab, conf = parts
        if os.path.isabs(rel):
            raise InputError(f"{path}:{n}: mask path must be relative, got {rel!r}")
        mpath = (base / rel).resolve()
        if root_r != mpath and root_r not in mpath.parents:
            raise InputError(f"{path}:{n}: mask {rel!r} points outside the prediction folder {root_r}")
        try:
            labels.append(int(float(lab)))
            scores.append(float(conf))
        except ValueError as e:
            raise InputError(f"{path}:{n}: label and confidence must be numbers, got {lab!r} {conf!r}") from e
        m = _read_ints(mpath, "prediction mask file") != 0
        if masks and len(m) != len(masks[0]):
            raise InputError(f"{mpath}: {len(m)} lines but the scene's first mask has {len(masks[0])}")
        masks.append(m)
    n_vert = len(masks[0]) if masks else 0
    arr = np.stack(masks) if masks else np.zeros((0, n_vert), dtype=bool)
    return ScenePrediction(arr, np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64))


class Submission(_LazyFolder):
    """A lazy ``{scene id: ScenePrediction}`` over a submission folder (see :func:`read_submission`)."""


def read_submission(folder: str | os.PathLike, scenes: Sequence[str] | None = None) -> Submission:
    """Open a submission folder: every ``<scene>.txt`` at its top level (mask files live in a
    subfolder). Scenes are read on access, so a whole val set fits in memory one scene at a time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"submission folder not found: {folder}")
    files = {p.stem: p for p in sorted(folder.glob("*.txt")) if p.is_file() and p.name not in _RESULT_FILES}
    if scenes is not None:
        miss = [s for s in scenes if s not in files]
        if miss:
            raise InputError(f"{len(miss)} scene(s) have no prediction file in {folder}, e.g. {miss[0]}")
        files = {s: files[s] for s in scenes}
    root = folder.resolve()
    return Submission(files, lambda p: read_scene_prediction(p, root))
