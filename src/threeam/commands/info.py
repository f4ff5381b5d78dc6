"""`threeam info`: configuration and parameter counts of SAM 2 / 3AM (built on the meta device)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_model(model: str = "sam2", preset: Optional[str] = None, model_config: Optional[Path] = None) -> dict:
    """Parameter counts per part (and, for 3AM, trainable vs frozen under the paper's rule).

    The models are built on the meta device (no memory, no weights): counting needs no predictor,
    so this does not go through `build_predictor`; presets and ``--model-config`` are resolved
    exactly as ``threeam track`` resolves them."""
    import torch

    from threeam.commands import _common as C

    spec = C.resolve_preset(model, preset, model_config)  # exactly as `threeam track`
    if model == "sam2":
        from threeam.models.sam2.build import build_sam2
        from threeam.models.three_am import resolve_debug_sam2

        net = sam2 = build_sam2(resolve_debug_sam2(spec), device="meta")
        info = {"model": "sam2", "preset": spec if model_config is None else str(model_config)}
    else:
        from threeam.models.three_am import ThreeAM

        net = ThreeAM(spec, device=torch.device("meta"))
        sam2 = net.sam2
        info = {"model": "3am", "preset": spec if model_config is None else f"{preset or '3am_tiny'} + {model_config}"}
    parts = {
        "sam2.image_encoder": _count(sam2.image_encoder),
        "sam2.memory_attention": _count(sam2.memory_attention),
        "sam2.memory_encoder": _count(sam2.memory_encoder),
        "sam2.sam_prompt_encoder": _count(sam2.sam_prompt_encoder),
        "sam2.sam_mask_decoder": _count(sam2.sam_mask_decoder),
    }
    parts["sam2.other (object pointers, embeddings)"] = _count(sam2) - sum(parts.values())
    if model == "3am":
        parts["must3r.encoder"] = _count(net.must3r.encoder)
        parts["must3r.decoder"] = _count(net.must3r.decoder)
        for name, child in net.merger.named_children():
            parts[f"merger.{name}"] = _count(child)
        info["merger_parameters"] = _count(net.merger)
        net.freeze_for_training()
        info["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        info["frozen"] = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    info["parts"] = parts
    info["total"] = _count(net)
    return info


def register(app: typer.Typer) -> None:
    from threeam.commands import _common as C

    @app.command()
    def info(
        model: str = typer.Option(C.DEFAULT_MODEL, "--model", help=C.MODEL_HELP),
        preset: Optional[str] = typer.Option(None, "--preset", help=C.PRESET_HELP),
        model_config: Optional[Path] = typer.Option(None, "--model-config", metavar="JSON", help=C.MODEL_CONFIG_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Print a model's parameter counts per part (the Feature Merger's included)."""
        import json

        from threeam.errors import ThreeAMError

        try:
            d = describe_model(model, preset, model_config)
        except ThreeAMError as e:
            C.fail(e)
        if as_json:
            typer.echo(json.dumps(d, indent=1))
            return
        typer.echo(f"model: {d['model']}  preset: {d['preset']}")
        width = max(len(k) for k in d["parts"])
        for name, n in d["parts"].items():
            typer.echo(f"  {name:<{width}}  {n:>13,}")
        typer.echo(f"  {'total':<{width}}  {d['total']:>13,}")
        if "merger_parameters" in d:
            typer.echo(f"Feature Merger: {d['merger_parameters']:,} parameters")
            typer.echo(f"trainable (merger, memory attention, mask decoder): {d['trainable']:,}; frozen: {d['frozen']:,}")
