"""Identification (1:N search): a one-pass chunked gallery search, rank-k / CMC and TPIR@FPIR.

The search never holds the probe × gallery score matrix: probes and gallery are cut into chunks, and each
chunk product is reduced at once (to a running top-k, the open-set best score, and the count of entries
scoring at least each probe's best mate score, known beforehand from the mates alone), so memory grows with
the chunk sizes, not with the gallery. docs/identification.md explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..data.identification_layout import entry_indices, image_key
from ..progress import ProgressMode, progress_bar
from ..specs import IdentificationSet

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


def generated_distractors(enrolled: torch.Tensor, count: int, seed: int = 0, basis: int = 1000) -> torch.Tensor:
    """``count`` distractor features drawn at the feature level: normal, with the mean and covariance of the
    protocol's real enrolled features ``enrolled`` (gallery and distractors at the gallery's DF; of ``basis`` of
    them chosen with the seed where there are more), so they spread as real faces' features do, not evenly.

    A gallery of any size without its images, for testing search and memory at scale; such distractors are
    not faces, so the numbers they give are no accuracy benchmark.
    """
    generator = torch.Generator().manual_seed(seed)
    enrolled = enrolled.double()
    if len(enrolled) > basis:
        enrolled = enrolled[torch.randperm(len(enrolled), generator=generator)[:basis]]
    mean = enrolled.mean(0)
    centred = ((enrolled - mean) / len(enrolled) ** 0.5).float()  # weights ~ N(0, I) give its covariance
    drawn = torch.empty(count, enrolled.shape[1])
    for start in range(0, count, 65536):  # the weights a chunk at a time
        weights = torch.randn(min(65536, count - start), len(centred), generator=generator)
        drawn[start : start + len(weights)] = weights @ centred + mean.float()
    return drawn


@dataclass
class Search:
    """What a chunked search found for each probe (mated and non-mated alike)."""

    true_score: np.ndarray  # (P,) best score of a mate; -inf when the probe has none
    rank: np.ndarray  # (P,) rank of the true identity over the whole gallery; inf when it has no mate
    open_rank: np.ndarray  # (P,) the same over the open-set gallery (no distractors)
    open_best: np.ndarray  # (P,) the highest score over the open-set gallery
    top_scores: np.ndarray  # (P, k) the k best scores over the whole gallery, best first
    top_index: np.ndarray  # (P, k) their gallery entries (-1 past the end of a small gallery)


# Probes × gallery entries per chunk product: on the CPU a tile of scores (32 MiB) that is reduced while it
# is still in the cache; an accelerator needs larger ones to be kept busy.
CHUNKS = {"cpu": (1024, 8192), "accelerator": (4096, 32768)}
# How far a mate's score computed on its own may lie from the same score inside a chunk product (another
# summation order): this many float32 roundings × √dims; a wider gap only costs the probe a recount.
_ROUNDING = 2 * 2.0**-24
_NEAR_CAP = 256  # near ties kept per probe; a probe with more is recounted instead (memory stays bounded)


def _scores(probes: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """Probe × gallery similarities of two chunks: cosine (rows already unit length) or −Euclidean distance."""
    if metric == "cosine":
        return probes @ gallery.T
    return -torch.cdist(probes, gallery)


def _rows(features: torch.Tensor, rows: np.ndarray, metric: str, device: torch.device) -> torch.Tensor:
    """``features[rows]`` as float32 on ``device``, unit length for cosine (row by row, so the same values as
    normalising the whole table at once)."""
    if features.device.type == "cpu" and features.dtype == torch.float32:  # numpy gathers rows ten times faster
        picked = torch.from_numpy(features.numpy()[rows])
    else:
        picked = features[torch.as_tensor(rows, device=features.device)].float()
    return (_unit(picked) if metric == "cosine" else picked).to(device)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.normalize(rows, dim=1)``, value for value: the same norm and clamp, and an IEEE
    division, which numpy does several times faster on the CPU."""
    norm = rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.from_numpy(rows.numpy() / norm.numpy()) if rows.device.type == "cpu" else rows / norm


def search(
    probes: torch.Tensor,
    gallery: torch.Tensor,
    probe_ids: np.ndarray,
    gallery_ids: np.ndarray,
    open_gallery: np.ndarray | None = None,
    metric: str = "cosine",
    k: int = TOP,
    probe_chunk: int | None = None,
    gallery_chunk: int | None = None,
    device: torch.device | str = "cpu",
    gallery_rows: np.ndarray | None = None,
    left_out: np.ndarray | None = None,
    show_progress: ProgressMode | bool = "off",
    description: str = "search",
) -> Search:
    """Search every probe in the gallery with one pass of chunk products on ``device``.

    ``gallery_rows`` picks the search gallery's rows of ``gallery`` (default: all; gathered a chunk at a time,
    never copied whole); ``probe_ids`` and ``gallery_ids`` are integer identity codes (``NO_ID`` matches
    nothing); ``open_gallery`` marks the entries of the open-set gallery (default: all); ``left_out`` gives
    per probe one entry its search leaves out (−1: none; a leave-one-out protocol's own image); the chunk
    sizes default to ``CHUNKS`` for the device.

    Each probe's best mate score is first computed from its few mates alone. One pass over the gallery then
    keeps the running top-k and open-set best and counts the other identities' entries scoring at least that
    score. A count compares chunk-product scores with the best mate's own chunk-product score, as a search
    holding the whole matrix would: entries within float32 rounding of the directly computed score are kept
    aside and settled when the pass has met the mate (a probe with too many such near ties, or whose score
    moved further than rounding explains, is counted again in a second pass).
    """
    device = torch.device(device)
    default_chunks = CHUNKS["cpu" if device.type == "cpu" else "accelerator"]
    probe_chunk, gallery_chunk = probe_chunk or default_chunks[0], gallery_chunk or default_chunks[1]
    rows = np.arange(len(gallery)) if gallery_rows is None else np.asarray(gallery_rows, dtype=np.int64)
    n_probes, n_gallery = len(probes), len(rows)
    probe_codes, gallery_codes = np.asarray(probe_ids, dtype=np.int64), np.asarray(gallery_ids, dtype=np.int64)
    opened = np.ones(n_gallery, bool) if open_gallery is None else np.asarray(open_gallery, bool)
    probes, gallery = probes.detach(), gallery.detach()
    probes = (_unit(probes.float()) if metric == "cosine" else probes.float()).to(device)
    left_out = np.full(n_probes, -1) if left_out is None else np.asarray(left_out, dtype=np.int64)
    mates = _mate_pairs(probe_codes, gallery_codes, left_out)
    own = _by_entry(np.flatnonzero(left_out >= 0), left_out[left_out >= 0])
    tiles = [(start, min(start + probe_chunk, n_probes)) for start in range(0, n_probes, probe_chunk)]
    top = _TopK(n_probes, min(k, n_gallery))
    rivals = _Rivals(*_best_mate_bounds(probes, gallery, rows, *mates, metric, device))
    pass_over = partial(_sweep, probes, gallery, rows, opened, mates, own, metric, device, gallery_chunk)
    pass_over(tiles, rivals, top, show_progress, description)
    above, above_open = rivals.settled()
    recount = rivals.unsettled()
    if len(recount):  # rare: counted again, exactly, against the best mate scores the pass found
        exact = _Rivals(rivals.best, rivals.best, exact=True)
        pass_over([(a, b) for a, b in tiles if ((recount >= a) & (recount < b)).any()], exact, None, "off", "")
        above[recount], above_open[recount] = exact.above[recount], exact.above_open[recount]
    found = np.isfinite(rivals.best)
    top_scores = np.full((n_probes, k), -np.inf)
    top_index = np.full((n_probes, k), -1, dtype=np.int64)
    top_scores[:, : top.k], top_index[:, : top.k] = top.scores, top.index
    return Search(
        true_score=rivals.best.astype(np.float64),
        rank=np.where(found, above + 1, np.inf),
        open_rank=np.where(found, above_open + 1, np.inf),
        open_best=top.open_best.astype(np.float64),
        top_scores=top_scores,
        top_index=top_index,
    )


def _mate_pairs(probe_codes: np.ndarray, gallery_codes: np.ndarray, left_out: np.ndarray):
    """Every (probe, gallery entry) pair of one identity but the entries left out, ordered by entry."""
    order = np.argsort(gallery_codes, kind="stable")
    ordered = gallery_codes[order]
    first = np.searchsorted(ordered, probe_codes, "left")
    count = np.where(probe_codes == NO_ID, 0, np.searchsorted(ordered, probe_codes, "right") - first)
    probe = np.repeat(np.arange(len(probe_codes)), count)
    entry = order[np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())]
    kept = entry != left_out[probe]
    return _by_entry(probe[kept], entry[kept])


def _by_entry(probe: np.ndarray, entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(entry, kind="stable")
    return probe[order], entry[order]


def _in_tile(pairs, start: int, stop: int, first_entry: int, stop_entry: int):
    """The (probe, entry) pairs within probes ``start:stop`` and entries ``first_entry:stop_entry``: the probes,
    and their rows and columns in the tile."""
    probe, entry = pairs
    first, last = np.searchsorted(entry, [first_entry, stop_entry])
    probe, entry = probe[first:last], entry[first:last]
    mine = (probe >= start) & (probe < stop)
    return probe[mine], probe[mine] - start, entry[mine] - first_entry


def _best_mate_bounds(probes, gallery, rows, mate_probe, mate_entry, metric, device, batch: int = 65536):
    """Per probe, where its best mate's chunk-product score must lie: the mates' scores computed directly,
    widened by what another summation order can change (−inf for a probe without a mate)."""
    lo = np.full(len(probes), -np.inf, dtype=np.float32)
    hi = lo.copy()
    spread = _ROUNDING * np.sqrt(probes.shape[1])
    for start in range(0, len(mate_probe), batch):
        who = mate_probe[start : start + batch]
        p = probes[torch.as_tensor(who, device=device)]
        g = _rows(gallery, rows[mate_entry[start : start + batch]], metric, device)
        if metric == "cosine":
            score, margin = (p * g).sum(1), torch.full((len(who),), spread, device=device)
        else:  # −d, where a chunk computes d² = |p|² + |g|² − 2 p·g, whose rounding grows with the norms
            distance = (p - g).norm(dim=1)
            squared = spread * (p.norm(dim=1) + g.norm(dim=1)) ** 2
            score, margin = -distance, 2 * squared / (distance + squared.sqrt() + 1e-30)
        score, margin = _host(score), _host(margin)
        np.maximum.at(lo, who, score - margin)
        np.maximum.at(hi, who, score + margin)
    return lo, hi


def _sweep(probes, gallery, rows, opened, mates, own, metric, device, gallery_chunk, tiles, rivals: _Rivals,
           top: _TopK | None, show_progress, description) -> None:
    """One pass over the gallery, block by block (each gathered and normalised once), each block against every
    probe tile; ``top`` (when given) keeps the top-k and open-set best, ``rivals`` counts. ``mates`` and
    ``own`` (the entries left out) are (probe, entry) pairs ordered by entry."""
    counting = [bool(np.isfinite(rivals.hi[start:stop]).any()) for start, stop in tiles]
    with progress_bar(description, len(rows), show_progress) as steps:
        for g in range(0, len(rows), gallery_chunk):
            block = _rows(gallery, rows[g : g + gallery_chunk], metric, device)
            block_open = opened[g : g + gallery_chunk]
            for (start, stop), count in zip(tiles, counting):
                if top is None and not count:
                    continue
                scores = _scores(probes[start:stop], block, metric)
                tile = _as_tile(scores)
                _, row, column = _in_tile(own, start, stop, g, g + len(block))
                tile[_like(tile, row), _like(tile, column)] = -np.inf  # as if the entry were not there
                row_max = _host(_row_max(tile))  # rows whose maximum is below a threshold need no look
                if top is not None:
                    top.add(start, tile, row_max, block_open, g)
                if not count:
                    continue
                probe, row, column = _in_tile(mates, start, stop, g, g + len(block))
                at = _like(tile, row), _like(tile, column)
                np.maximum.at(rivals.best, probe, _host(tile[at]))
                tile[at] = -np.inf  # mates are no rivals
                rivals.add(start, tile, row_max, block_open)
            steps.advance(len(block))


class _TopK:
    """Per probe the ``k`` best scores and their entries (an earlier entry first among equal scores), and the
    best score over the open-set gallery."""

    def __init__(self, n: int, k: int):
        self.k = k
        self.scores = np.full((n, k), -np.inf, dtype=np.float32)
        self.index = np.full((n, k), -1, dtype=np.int64)
        self.open_best = np.full(n, -np.inf, dtype=np.float32)

    def add(self, start: int, tile, row_max: np.ndarray, block_open: np.ndarray, offset: int) -> None:
        """Merge one tile of scores of probes ``start …`` against entries ``offset …``."""
        stop = start + len(tile)
        if block_open.all():
            np.maximum(self.open_best[start:stop], row_max, out=self.open_best[start:stop])
        elif block_open.any():
            open_max = _host(_row_max(tile[:, _like(tile, np.flatnonzero(block_open))]))
            np.maximum(self.open_best[start:stop], open_max, out=self.open_best[start:stop])
        if not self.k:
            return
        floor = self.scores[start:stop, -1].copy()  # a full list takes only scores above its last
        filling = np.flatnonzero(self.index[start:stop, -1] < 0)
        if len(filling):  # a list still filling takes this block's k best, ties included
            floor[filling] = -np.inf
            if tile.shape[1] > self.k:
                floor[filling] = np.nextafter(_host(_kth_largest(tile[_like(tile, filling)], self.k)), -np.inf)
        rows, part = _pick(tile, row_max > floor)
        if not len(rows):
            return
        row, column = _nonzero(part > _like(tile, floor[rows, None]))
        found = _host(part[_like(tile, row), _like(tile, column)])
        row = rows[row]
        rows = np.unique(row)
        held = self.index[start + rows] >= 0
        probe = np.concatenate([np.repeat(rows, self.k)[held.ravel()], row])
        score = np.concatenate([self.scores[start + rows][held], found])
        entry = np.concatenate([self.index[start + rows][held], column + offset])
        order = np.lexsort((entry, -score, probe))
        probe, score, entry = probe[order], score[order], entry[order]
        place = np.arange(len(probe)) - np.searchsorted(probe, probe)
        keep = place < self.k
        self.scores[start + probe[keep], place[keep]] = score[keep]
        self.index[start + probe[keep], place[keep]] = entry[keep]


class _Rivals:
    """Per probe, how many other identities' entries score at least its best mate score.

    That score is known only to lie in [lo, hi] until the pass has met every mate: entries above ``hi`` are
    counted at once, entries within [lo, hi] are kept (up to ``_NEAR_CAP`` per probe) and settled against the
    best mate score at the end. ``exact`` (lo = hi = the best mate score) counts the entries at or above it.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, exact: bool = False):
        self.lo, self.hi, self.exact = lo, hi, exact
        self.best = np.full(len(lo), -np.inf, dtype=np.float32)  # the best mate's chunk-product score
        self.above = np.zeros(len(lo), dtype=np.int64)
        self.above_open = np.zeros(len(lo), dtype=np.int64)
        self.kept = np.zeros(len(lo), dtype=np.int64)
        self.near: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (probe, score, open) of near ties

    def add(self, start: int, tile, row_max: np.ndarray, block_open: np.ndarray) -> None:
        """Count one tile of scores (mates already at −inf) of probes ``start …``."""
        lo, hi = self.lo[start : start + len(tile)], self.hi[start : start + len(tile)]
        rows, part = _pick(tile, (row_max >= lo) & (lo > -np.inf))  # a probe without a mate has no rivals
        if not len(rows):
            return
        lo, hi = _like(tile, lo[rows, None]), _like(tile, hi[rows, None])
        over = part >= hi if self.exact else part > hi
        counted = _count_rows(over)
        self.above[start + rows] += counted
        if block_open.all():
            self.above_open[start + rows] += counted
        elif block_open.any():
            self.above_open[start + rows] += _count_rows(over[:, _like(tile, np.flatnonzero(block_open))])
        if self.exact:
            return
        near_rows = np.flatnonzero(_count_rows(part >= lo) > counted)  # rows with entries within [lo, hi]
        if not len(near_rows):
            return
        sub, at = part[_like(tile, near_rows)], _like(tile, near_rows)
        row, column = _nonzero((sub >= lo[at]) & ~(sub > hi[at]))
        probe = start + rows[near_rows[row]]
        counted_probes, count = np.unique(probe, return_counts=True)
        self.kept[counted_probes] += count
        keep = self.kept[probe] <= _NEAR_CAP
        score = _host(sub[_like(tile, row[keep]), _like(tile, column[keep])])
        self.near.append((probe[keep], score, block_open[column[keep]]))

    def unsettled(self) -> np.ndarray:
        """Probes to count again: too many near ties, or a best mate score outside its expected bounds."""
        found = np.isfinite(self.best)
        return np.flatnonzero(found & ((self.kept > _NEAR_CAP) | (self.best < self.lo) | (self.best > self.hi)))

    def settled(self) -> tuple[np.ndarray, np.ndarray]:
        """Rivals over the whole gallery and over the open set, the near ties at or above the best mate added."""
        above, above_open = self.above.copy(), self.above_open.copy()
        for probe, score, in_open in self.near:
            hit = score >= self.best[probe]
            np.add.at(above, probe[hit], 1)
            np.add.at(above_open, probe[hit & in_open], 1)
        return above, above_open


# A tile is a numpy array on the CPU (numpy's row reductions and comparisons run several times faster there
# than torch's) and a torch tensor on other devices; these few helpers serve both.


def _as_tile(scores: torch.Tensor):
    return scores.numpy() if scores.device.type == "cpu" else scores


def _host(value) -> np.ndarray:
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _like(tile, values: np.ndarray):
    """``values`` where ``tile`` lives: as they are for numpy, a tensor on the tile's device otherwise."""
    return values if isinstance(tile, np.ndarray) else torch.as_tensor(values, device=tile.device)


def _pick(tile, wanted: np.ndarray):
    """The rows of a tile that need a look, and those rows: the whole tile when most do (no copy)."""
    rows = np.flatnonzero(wanted)
    if 2 * len(rows) > len(wanted):
        return np.arange(len(wanted)), tile
    return rows, tile[_like(tile, rows)]


def _row_max(tile):
    return tile.max(1) if isinstance(tile, np.ndarray) else tile.amax(1)


def _count_rows(mask) -> np.ndarray:
    """True entries per row; numpy sums the bytes in 16 bits where a row is short enough (several times faster)."""
    if isinstance(mask, torch.Tensor):
        return _host(mask.sum(1))
    return mask.view(np.uint8).sum(1, dtype=np.uint16 if mask.shape[1] < 2**16 else np.int64).astype(np.int64)


def _nonzero(mask) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the true entries (numpy's 2-D nonzero is 20 times slower than the flat one)."""
    if isinstance(mask, np.ndarray):
        return np.divmod(np.flatnonzero(mask), mask.shape[1])
    found = torch.nonzero(mask, as_tuple=True)
    return _host(found[0]), _host(found[1])


def _kth_largest(tile, k: int):
    return torch.as_tensor(tile).topk(k, dim=1).values[:, -1]


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


def _own_entries(ident: IdentificationSet, probes: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Per probe its own image's position among the search gallery's ``rows`` (−1: none), for a leave-one-out
    protocol; None for others (``check_set`` refused any overlap)."""
    if not ident.leave_one_out:
        return None
    position = {image_key(ident, row): i for i, row in enumerate(rows) if row < len(ident.images)}
    return np.array([position.get(image_key(ident, probe), -1) for probe in probes], dtype=np.int64)


def search_set(
    ident: IdentificationSet,
    gallery_features: torch.Tensor,
    probe_features: torch.Tensor,
    metric: str,
    device: torch.device | str = "cpu",
    show_progress: ProgressMode | bool = "off",
    description: str = "search",
    generated: torch.Tensor | None = None,
) -> tuple[Search, Search | None, np.ndarray]:
    """Search the mated probes in gallery + distractors and the non-mated probes in the gallery.

    ``*_features`` are (len(images), D) tensors with the needed rows filled (the search reads the gallery's
    rows in place); ``generated`` are further distractors' features (rows len(images) … of the search).
    Returns the mated search, the non-mated one (None without non-mated probes) and the search gallery's rows
    into ``images`` (and past it, the generated distractors).
    """
    gallery, distractors = np.asarray(ident.gallery, dtype=np.int64), entry_indices(ident.distractors)
    if generated is not None:
        distractors = np.concatenate([distractors, len(gallery_features) + np.arange(len(generated))])
        gallery_features = torch.cat([gallery_features, generated])
    rows = np.concatenate([gallery, distractors])
    gallery_codes, probe_codes = codes(ident.gallery_ids, ident.probe_ids)
    all_codes = np.concatenate([gallery_codes, np.full(len(distractors), NO_ID)])
    opened = np.concatenate([np.ones(len(gallery), bool), np.zeros(len(distractors), bool)])
    probes = np.asarray(ident.probes, dtype=np.int64)
    mated = search(probe_features[torch.as_tensor(probes)], gallery_features, probe_codes, all_codes, opened,
                   metric, device=device, gallery_rows=rows, left_out=_own_entries(ident, probes, rows),
                   show_progress=show_progress, description=description)
    non_mated = entry_indices(ident.non_mated)
    if not len(non_mated):
        return mated, None, rows
    # open-set: against the gallery alone (the distractors are no part of it)
    others = search(probe_features[torch.as_tensor(non_mated)], gallery_features, np.full(len(non_mated), NO_ID),
                    gallery_codes, None, metric, k=1, device=device, gallery_rows=gallery,
                    left_out=_own_entries(ident, non_mated, gallery), show_progress=show_progress,
                    description=f"{description} (non-mated probes)")
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
