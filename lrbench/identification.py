"""Identification (1:N search): chunked gallery search with a running top-k, rank-k / CMC and TPIR@FPIR.

The search never holds the probe × gallery score matrix: probes and gallery are cut into chunks, each
chunk's scores are reduced at once (to the score of the best mate, to counts of entries scoring at least
that, to a running top-k), so memory grows with the chunk sizes, not with the gallery.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError
from .progress import warn
from .specs import IdentificationSet

RANKS = (1, 5, 10, 20)
FPIRS = (1e-2, 1e-1)
TOP = 5  # ranks.csv lists each probe's best TOP gallery entries
NO_ID = -1  # the identity code of distractors and non-mated probes: it matches nobody

DEFINITIONS = {
    "rank": "the true identity's rank is 1 + the number of gallery entries of other identities (distractors "
    "included) scoring at least as high as the best-scoring gallery entry of the true identity: entries are "
    "ranked image by image, and a tie counts against the probe (pessimistic)",
    "rank_k": "rank-k accuracy is the fraction of mated probes whose true identity's rank is at most k, over "
    "gallery + distractors; a probe whose identity has no gallery entry counts as a miss at every k; for k "
    "larger than the gallery every probe with a mate is a hit",
    "cmc": "the CMC curve is rank-k accuracy for k = 1 … the gallery size (cmc.csv)",
    "tpir_at_fpir": "open-set, against the gallery without distractors: the threshold is the (⌊FPIR·N⌋+1)-th "
    "highest of the N non-mated probes' best scores, so at most FPIR of them score above it; TPIR is the "
    "fraction of mated probes whose true identity is rank 1 there with a score above that threshold; empty "
    "when the protocol has no non-mated probes",
}

IDENTIFICATION_DEGRADED = {
    "probe": "probes degraded at each DF, gallery and distractors at DF 1 (HR enrolment, LR search)",
    "both": "probes, gallery and distractors all degraded at the same DF",
}


def identification_counts(ident: IdentificationSet) -> dict[str, int]:
    """How many gallery entries, distractors, mated and non-mated probes a set has, for the manifest."""
    return {
        "gallery": len(ident.gallery),
        "gallery_identities": len(set(ident.gallery_ids)),
        "distractors": len(_indices(ident.distractors)),
        "probes": len(ident.probes),
        "non_mated_probes": len(_indices(ident.non_mated)),
    }


@dataclass
class Search:
    """What a chunked search found for each probe (mated and non-mated alike)."""

    true_score: np.ndarray  # (P,) best score of a mate; -inf when the probe has none
    rank: np.ndarray  # (P,) rank of the true identity over the whole gallery; inf when it has no mate
    open_rank: np.ndarray  # (P,) the same over the open-set gallery (no distractors)
    open_best: np.ndarray  # (P,) the highest score over the open-set gallery
    top_scores: np.ndarray  # (P, k) the k best scores over the whole gallery, best first
    top_index: np.ndarray  # (P, k) their gallery entries (-1 past the end of a small gallery)


def _scores(probes: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """Probe × gallery similarities of two chunks: cosine (rows already unit length) or −Euclidean distance."""
    if metric == "cosine":
        return probes @ gallery.T
    return -torch.cdist(probes, gallery)


def search(
    probes: torch.Tensor,
    gallery: torch.Tensor,
    probe_ids: np.ndarray,
    gallery_ids: np.ndarray,
    open_gallery: np.ndarray | None = None,
    metric: str = "cosine",
    k: int = TOP,
    probe_chunk: int = 4096,
    gallery_chunk: int = 65536,
    device: torch.device | str = "cpu",
) -> Search:
    """Search every probe in the gallery chunk by chunk on ``device``.

    ``probe_ids`` and ``gallery_ids`` are integer identity codes (``NO_ID`` matches nothing);
    ``open_gallery`` marks the entries of the open-set gallery (default: all). Two passes over the same
    chunks: the first finds each probe's best mate score, the second counts the other identities' entries
    scoring at least that and keeps a running top-k; both compute the same chunk products, so a score is
    compared with itself bit for bit.
    """
    device = torch.device(device)
    n_probes, n_gallery = len(probes), len(gallery)
    if metric == "cosine":
        probes = torch.nn.functional.normalize(probes.float(), dim=1)
        gallery = torch.nn.functional.normalize(gallery.float(), dim=1)
    gallery = gallery.float().to(device)
    gallery_codes = torch.as_tensor(np.asarray(gallery_ids, dtype=np.int64), device=device)
    in_open = torch.as_tensor(
        np.ones(n_gallery, bool) if open_gallery is None else np.asarray(open_gallery, bool), device=device
    )
    k_kept = min(k, n_gallery)
    out = Search(
        true_score=np.full(n_probes, -np.inf),
        rank=np.full(n_probes, np.inf),
        open_rank=np.full(n_probes, np.inf),
        open_best=np.full(n_probes, -np.inf),
        top_scores=np.full((n_probes, k), -np.inf),
        top_index=np.full((n_probes, k), -1, dtype=np.int64),
    )
    for start in range(0, n_probes, probe_chunk):
        stop = min(start + probe_chunk, n_probes)
        chunk = probes[start:stop].float().to(device)
        codes = torch.as_tensor(np.asarray(probe_ids[start:stop], dtype=np.int64), device=device)
        best = torch.full((stop - start,), -torch.inf, device=device)
        searched_for = bool((codes != NO_ID).any())  # a chunk of non-mated probes has no mate to score
        for g in range(0, n_gallery if searched_for else 0, gallery_chunk):
            scores = _scores(chunk, gallery[g : g + gallery_chunk], metric)
            mate = (codes[:, None] == gallery_codes[None, g : g + gallery_chunk]) & (codes[:, None] != NO_ID)
            best = torch.maximum(best, scores.masked_fill(~mate, -torch.inf).amax(1))
        above = torch.zeros(stop - start, dtype=torch.int64, device=device)
        above_open = torch.zeros_like(above)
        open_best = torch.full_like(best, -torch.inf)
        top_scores = torch.empty((stop - start, 0), device=device)
        top_index = torch.empty((stop - start, 0), dtype=torch.int64, device=device)
        for g in range(0, n_gallery, gallery_chunk):
            scores = _scores(chunk, gallery[g : g + gallery_chunk], metric)
            ids, opened = gallery_codes[g : g + gallery_chunk], in_open[g : g + gallery_chunk]
            rival = (scores >= best[:, None]) & ((ids[None, :] != codes[:, None]) | (ids[None, :] == NO_ID))
            above += rival.sum(1)
            above_open += (rival & opened[None, :]).sum(1)
            open_best = torch.maximum(open_best, scores.masked_fill(~opened[None, :], -torch.inf).amax(1))
            chunk_top = scores.topk(min(k_kept, scores.shape[1]), dim=1)
            merged = torch.cat([top_scores, chunk_top.values], 1)
            merged_index = torch.cat([top_index, chunk_top.indices + g], 1)
            top_scores, where = merged.topk(min(k_kept, merged.shape[1]), dim=1)
            top_index = merged_index.gather(1, where)
        found = torch.isfinite(best).cpu().numpy()
        out.true_score[start:stop] = best.double().cpu().numpy()
        out.rank[start:stop] = np.where(found, above.cpu().numpy() + 1, np.inf)
        out.open_rank[start:stop] = np.where(found, above_open.cpu().numpy() + 1, np.inf)
        out.open_best[start:stop] = open_best.double().cpu().numpy()
        out.top_scores[start:stop, :k_kept] = top_scores.double().cpu().numpy()
        out.top_index[start:stop, :k_kept] = top_index.cpu().numpy()
    return out


def rank_accuracy(rank: np.ndarray, k: int) -> float:
    """Fraction of mated probes whose true identity is within the first ``k`` (a missing mate is a miss)."""
    return float(np.mean(np.asarray(rank) <= k)) if len(rank) else float("nan")


def cmc(rank: np.ndarray, gallery_size: int) -> np.ndarray:
    """Rank-k accuracy for k = 1 … gallery_size."""
    rank = np.asarray(rank)
    if not len(rank):
        return np.full(gallery_size, np.nan)
    finite = rank[np.isfinite(rank)].astype(np.int64)
    hits = np.bincount(finite, minlength=gallery_size + 1)[1 : gallery_size + 1]
    return np.cumsum(hits) / len(rank)


def tpir_at_fpir(mated_score: np.ndarray, mated_open_rank: np.ndarray, non_mated_best: np.ndarray,
                 fpir: float) -> float:
    """Open-set TPIR at ``fpir`` (see ``DEFINITIONS``); NaN without non-mated probes or mated probes."""
    non_mated_best = np.sort(np.asarray(non_mated_best, dtype=np.float64))[::-1]
    if not len(non_mated_best) or not len(mated_score):
        return float("nan")
    allowed = int(np.floor(fpir * len(non_mated_best) + 1e-9))
    threshold = non_mated_best[allowed] if allowed < len(non_mated_best) else -np.inf
    hits = (np.asarray(mated_open_rank) == 1) & (np.asarray(mated_score) > threshold)
    return float(np.mean(hits))


def codes(gallery_ids: list[str], probe_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Integer identity codes shared by gallery and probes; a probe identity absent from the gallery gets a
    code of its own (so it matches nothing)."""
    table: dict[str, int] = {}
    gallery = np.array([table.setdefault(i, len(table)) for i in gallery_ids], dtype=np.int64)
    probes = np.array([table.setdefault(i, len(table)) for i in probe_ids], dtype=np.int64)
    return gallery, probes


def check_set(ident: IdentificationSet, unique_gallery_ids: bool = False) -> None:
    """Refuse what makes the numbers meaningless (nothing to search in or for, an image enrolled twice);
    warn about probes that have no mate, which count as misses."""
    gallery = np.asarray(ident.gallery, dtype=np.int64)
    if not len(gallery):
        raise DataError(f"{ident.source}: the gallery is empty")
    if not len(ident.probes):
        raise DataError(f"{ident.source}: there are no probes")
    if len(ident.gallery_ids) != len(gallery) or len(ident.probe_ids) != len(ident.probes):
        raise DataError(f"{ident.source}: one identity per gallery entry and per probe is needed")
    enrolled = np.concatenate([gallery, _indices(ident.distractors)])
    values, counts = np.unique(enrolled, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{ident.source}: gallery image {ident.images[values[counts > 1][0]]} is enrolled twice")
    if unique_gallery_ids:
        seen: dict[str, int] = {}
        for index, identity in zip(gallery, ident.gallery_ids):
            if identity in seen:
                raise DataError(
                    f"{ident.source}: duplicate gallery id {identity!r} ({ident.images[seen[identity]]} and "
                    f"{ident.images[index]}); this protocol enrols one image per identity"
                )
            seen[identity] = index
    if ident.probe_groups is not None and len(ident.probe_groups) != len(ident.probes):
        raise DataError(f"{ident.source}: one group per probe is needed")
    absent = len(set(ident.probe_ids) - set(ident.gallery_ids))
    if absent:
        warn(f"{ident.source}: {absent} probe identities have no gallery entry; their probes count as misses")


def _indices(value) -> np.ndarray:
    return np.zeros(0, dtype=np.int64) if value is None else np.asarray(value, dtype=np.int64)


def search_set(
    ident: IdentificationSet,
    gallery_features: torch.Tensor,
    probe_features: torch.Tensor,
    metric: str,
    device: torch.device | str = "cpu",
) -> tuple[Search, Search | None, np.ndarray]:
    """Search the mated probes in gallery + distractors and the non-mated probes in the gallery.

    ``*_features`` are (len(images), D) tensors with the needed rows filled. Returns the mated search, the
    non-mated one (None without non-mated probes) and the search gallery's rows into ``images``.
    """
    gallery, distractors = np.asarray(ident.gallery, dtype=np.int64), _indices(ident.distractors)
    rows = np.concatenate([gallery, distractors])
    gallery_codes, probe_codes = codes(ident.gallery_ids, ident.probe_ids)
    all_codes = np.concatenate([gallery_codes, np.full(len(distractors), NO_ID)])
    opened = np.concatenate([np.ones(len(gallery), bool), np.zeros(len(distractors), bool)])
    g = gallery_features[torch.as_tensor(rows)]
    mated = search(probe_features[torch.as_tensor(np.asarray(ident.probes, dtype=np.int64))], g, probe_codes,
                   all_codes, opened, metric, device=device)
    non_mated = _indices(ident.non_mated)
    if not len(non_mated):
        return mated, None, rows
    # open-set: against the gallery alone (the distractors are no part of it)
    others = search(probe_features[torch.as_tensor(non_mated)], g[: len(gallery)], np.full(len(non_mated), NO_ID),
                    gallery_codes, None, metric, k=1, device=device)
    return mated, others, rows


def summary(mated: Search, non_mated: Search | None, subset: np.ndarray | None = None) -> dict[str, float]:
    """rank-k accuracies and TPIR@FPIR of the mated probes in ``subset`` (default: all)."""
    pick = slice(None) if subset is None else subset
    rank, open_rank, score = mated.rank[pick], mated.open_rank[pick], mated.true_score[pick]
    row = {f"rank{k}": rank_accuracy(rank, k) for k in RANKS}
    best = non_mated.open_best if non_mated is not None else np.zeros(0)
    row.update({f"tpir_at_fpir_{f:g}": tpir_at_fpir(score, open_rank, best, f) for f in FPIRS})
    row["probes"] = int(len(rank))
    row["non_mated"] = int(len(best))
    return row
