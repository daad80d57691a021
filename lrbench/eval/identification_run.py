"""``lrbench run`` on an identification protocol: the DF sweep (features, searches); the run directory, its
report and console table are ``report.identification``'s."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..data.degrade import probe_size
from ..report.identification import IdentificationRun
from .distributed import Ranks, any_rank, gather_rows
from .feature_cache import GalleryFeatures, gallery_key
from .identification import TOP, Search, cmc, generated_distractors, search_set, summary


def evaluate_identification(prepared, ranks: Ranks | None = None, command: str = "") -> IdentificationRun | None:
    """Probes at each DF (gallery at DF 1 unless ``--mode both``), searched chunk by chunk on the device.

    The gallery's DF 1 features come from the feature cache when an earlier run of the same network on the same
    images left them there (``timings.gallery_features`` says which). Under torchrun (``ranks``) each process
    embeds its share of the images and rank 0 gathers them, searches and returns the run; the other ranks
    return None.
    """
    ident, extractor, settings, timings = prepared.pairs, prepared.extractor, prepared.settings, prepared.timings
    main = ranks is None or ranks.main
    template = prepared.backbone.input.template
    gallery_rows = np.concatenate([np.asarray(ident.gallery), np.asarray(ident.distractors if ident.distractors
                                                                         is not None else [], dtype=np.int64)])
    probe_rows = np.concatenate([np.asarray(ident.probes), np.asarray(ident.non_mated if ident.non_mated
                                                                      is not None else [], dtype=np.int64)])
    groups = np.asarray(ident.probe_groups) if ident.probe_groups is not None else None
    enrolled = np.unique(gallery_rows)
    cache = GalleryFeatures(settings.cache_dir, prepared.backbone.name, gallery_key(prepared, enrolled))
    enrolled_hr = generated = None  # the gallery's DF 1 features, read or computed once; generated distractors
    rows, rank_tables, cmc_tables = [], [], []
    timings["features_s"] = timings["search_s"] = 0.0
    for df in prepared.dfs:
        started = time.perf_counter()
        if settings.mode == "both" and df != 1:
            gallery_features = _features(extractor, df, enrolled, ranks)
        else:
            if enrolled_hr is None:
                enrolled_hr = _enrolled_features(extractor, enrolled, cache, ranks, timings)
            gallery_features = enrolled_hr
        probe_features = _features(extractor, df, np.unique(probe_rows), ranks)
        if main and ident.generated_distractors and (generated is None or settings.mode == "both"):
            generated = generated_distractors(gallery_features[torch.as_tensor(enrolled)], ident.generated_distractors)
        timings["features_s"] += time.perf_counter() - started
        if not main:
            continue
        started = time.perf_counter()
        mated, non_mated, search_rows = search_set(ident, gallery_features, probe_features, prepared.backbone.metric,
                                                   prepared.device, settings.show_progress, f"search DF {df}",
                                                   generated)
        timings["search_s"] += time.perf_counter() - started
        width, height = probe_size(template.size, df)
        size = {"df": df, "probe_w": width, "probe_h": height, "probe_px": f"{width}×{height}",
                "interocular_px": round(template.interocular * width / template.size[0], 2)}
        rows.append({**size, "group": "all", **summary(mated, non_mated)})
        if groups is not None:
            rows.extend({**size, "group": g, **summary(mated, non_mated, groups == g)} for g in sorted(set(groups)))
        rank_tables.append(_ranks(df, ident, mated, search_rows, groups))
        curve = cmc(mated.rank, len(search_rows))
        cmc_tables.append(pd.DataFrame({"df": df, "k": np.arange(1, len(curve) + 1), "accuracy": curve}))
    if not main:
        return None
    timings["features_by_df"] = extractor.stage_timings()
    manifest = prepared.manifest(command, processes=1 if ranks is None else ranks.world)
    return IdentificationRun(manifest, pd.DataFrame(rows), pd.concat(rank_tables), pd.concat(cmc_tables))


def _features(extractor, df: int, rows: np.ndarray, ranks: Ranks | None) -> torch.Tensor:
    """The (N, D) feature table with ``rows`` filled; under torchrun every rank computes rows ``rank::world``
    and all of them are gathered."""
    if ranks is None or not ranks.distributed:
        return extractor.features(df, rows)
    mine = rows[ranks.rank :: ranks.world]
    local = extractor.features(df, mine)[torch.as_tensor(mine)]
    gathered = gather_rows(ranks, local.to(ranks.device), len(rows)).cpu()
    table = torch.zeros(len(extractor.crops), gathered.shape[1])
    table[torch.as_tensor(rows)] = gathered
    return table


def _enrolled_features(extractor, rows: np.ndarray, cache: GalleryFeatures, ranks: Ranks | None,
                       timings: dict) -> torch.Tensor:
    """The gallery's DF 1 features (a table over every image, ``rows`` filled): the cache's when it holds them
    (on every process), else computed and stored."""
    started = time.perf_counter()
    cached = cache.load(len(rows))
    if ranks is not None and any_rank(ranks, cached is None):  # all processes compute, or none
        cached, cache.note["hit"] = None, False
    if cached is not None:
        table = torch.zeros(len(extractor.crops), cached.shape[1])
        table[torch.as_tensor(rows)] = torch.from_numpy(cached)
    else:
        table = _features(extractor, 1, rows, ranks)
        if ranks is None or ranks.main:
            cache.store(table[torch.as_tensor(rows)].numpy())
    timings["gallery_features"] = {"entries": len(rows), "s": time.perf_counter() - started, "cache": cache.note}
    return table


def _ranks(df: int, ident, mated: Search, search_rows: np.ndarray, groups) -> pd.DataFrame:
    """Per mated probe: its image, true identity, the true identity's rank and the best TOP entries."""
    entry_ids = list(ident.gallery_ids) + [""] * (len(search_rows) - len(ident.gallery_ids))  # distractors: ""
    table = {"df": df, "probe": [ident.images[i] for i in ident.probes], "true_id": list(ident.probe_ids)}
    if groups is not None:
        table["group"] = groups
    table["rank"] = pd.array([int(r) if np.isfinite(r) else None for r in mated.rank], dtype="Int64")
    for j in range(TOP):
        index = mated.top_index[:, j]
        table[f"top{j + 1}_id"] = [entry_ids[i] if i >= 0 else "" for i in index]
        table[f"top{j + 1}_image"] = [_entry_name(ident, search_rows[i]) if i >= 0 else "" for i in index]
        table[f"top{j + 1}_score"] = np.where(index >= 0, mated.top_scores[:, j], np.nan)
    return pd.DataFrame(table)


def _entry_name(ident, row: int) -> str:
    """A search gallery entry's image, or which generated distractor it is."""
    return ident.images[row] if row < len(ident.images) else f"generated distractor {row - len(ident.images) + 1}"
