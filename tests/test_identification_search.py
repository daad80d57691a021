"""The one-pass identification search: the same numbers as the two-pass search it replaced (bit for bit), a
brute-force search on data full of exact ties, its second pass for near ties, and its progress line."""

import numpy as np
import pytest
import torch

from lrbench.eval import identification
from lrbench.eval.identification import NO_ID, search

FIELDS = ("true_score", "rank", "open_rank", "open_best", "top_scores", "top_index")


def two_pass_search(probes, gallery, probe_ids, gallery_ids, open_gallery, metric, k, probe_chunk, gallery_chunk):
    """lrbench's search before the one-pass rewrite (a pass for the best mate score, a second for the rivals),
    kept as the reference the rewrite must equal."""
    n_probes, n_gallery = len(probes), len(gallery)
    if metric == "cosine":
        probes = torch.nn.functional.normalize(probes.float(), dim=1)
        gallery = torch.nn.functional.normalize(gallery.float(), dim=1)

    def scores(a, b):
        return a @ b.T if metric == "cosine" else -torch.cdist(a, b)

    gallery_codes, in_open = torch.as_tensor(gallery_ids), torch.as_tensor(open_gallery)
    k_kept = min(k, n_gallery)
    out = {"true_score": np.full(n_probes, -np.inf), "rank": np.full(n_probes, np.inf),
           "open_rank": np.full(n_probes, np.inf), "open_best": np.full(n_probes, -np.inf),
           "top_scores": np.full((n_probes, k), -np.inf), "top_index": np.full((n_probes, k), -1)}
    for start in range(0, n_probes, probe_chunk):
        stop = min(start + probe_chunk, n_probes)
        chunk, codes = probes[start:stop].float(), torch.as_tensor(probe_ids[start:stop])
        best = torch.full((stop - start,), -torch.inf)
        for g in range(0, n_gallery, gallery_chunk):
            s = scores(chunk, gallery[g : g + gallery_chunk])
            mate = (codes[:, None] == gallery_codes[None, g : g + gallery_chunk]) & (codes[:, None] != NO_ID)
            best = torch.maximum(best, s.masked_fill(~mate, -torch.inf).amax(1))
        above, above_open = torch.zeros(stop - start, dtype=torch.int64), torch.zeros(stop - start, dtype=torch.int64)
        open_best = torch.full_like(best, -torch.inf)
        top_scores, top_index = torch.empty((stop - start, 0)), torch.empty((stop - start, 0), dtype=torch.int64)
        for g in range(0, n_gallery, gallery_chunk):
            s = scores(chunk, gallery[g : g + gallery_chunk])
            ids, opened = gallery_codes[g : g + gallery_chunk], in_open[g : g + gallery_chunk]
            rival = (s >= best[:, None]) & ((ids[None, :] != codes[:, None]) | (ids[None, :] == NO_ID))
            above += rival.sum(1)
            above_open += (rival & opened[None, :]).sum(1)
            open_best = torch.maximum(open_best, s.masked_fill(~opened[None, :], -torch.inf).amax(1))
            chunk_top = s.topk(min(k_kept, s.shape[1]), dim=1)
            merged = torch.cat([top_scores, chunk_top.values], 1)
            merged_index = torch.cat([top_index, chunk_top.indices + g], 1)
            top_scores, where = merged.topk(min(k_kept, merged.shape[1]), dim=1)
            top_index = merged_index.gather(1, where)
        found = torch.isfinite(best).numpy()
        out["true_score"][start:stop] = best.double().numpy()
        out["rank"][start:stop] = np.where(found, above.numpy() + 1, np.inf)
        out["open_rank"][start:stop] = np.where(found, above_open.numpy() + 1, np.inf)
        out["open_best"][start:stop] = open_best.double().numpy()
        out["top_scores"][start:stop, :k_kept] = top_scores.double().numpy()
        out["top_index"][start:stop, :k_kept] = top_index.numpy()
    return out


def random_case(rng, ties: bool):
    """Probes and a gallery with several entries per identity, distractors, absent identities and non-mated
    probes; ``ties``: features of ±0.5 in four dimensions, so many scores are exactly equal."""
    n_probes, n_gallery, dims = int(rng.integers(1, 100)), int(rng.integers(1, 300)), int(rng.choice([4, 16, 64]))
    if ties:
        def quarter(n):
            values = np.zeros((n, dims), np.float32)
            for row in values:
                row[rng.choice(dims, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
            return torch.from_numpy(values)

        probes, gallery = quarter(n_probes), quarter(n_gallery)
    else:
        probes, gallery = torch.from_numpy(rng.standard_normal((n_probes, dims), dtype=np.float32)), \
            torch.from_numpy(3 * rng.standard_normal((n_gallery, dims), dtype=np.float32))
    probe_ids, gallery_ids = rng.integers(0, 30, n_probes), rng.integers(0, 30, n_gallery)
    gallery_ids[rng.random(n_gallery) < 0.2] = NO_ID
    probe_ids[rng.random(n_probes) < 0.1] = NO_ID
    return probes, gallery, probe_ids, gallery_ids, rng.random(n_gallery) < 0.7


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ties", [False, True])
def test_the_one_pass_search_equals_the_two_pass_search_bit_for_bit(metric, ties):
    rng = np.random.default_rng(7 + ties)
    for _ in range(6):
        probes, gallery, probe_ids, gallery_ids, opened = random_case(rng, ties)
        chunks = int(rng.integers(8, 70)), int(rng.integers(16, 150))
        found = search(probes, gallery, probe_ids, gallery_ids, opened, metric, 5, *chunks)
        expected = two_pass_search(probes, gallery, probe_ids, gallery_ids, opened, metric, 5, *chunks)
        for field in FIELDS[:-1] if ties else FIELDS:  # among equal scores the old order was arbitrary
            np.testing.assert_array_equal(getattr(found, field), expected[field], err_msg=field)


@pytest.mark.parametrize("chunks", [(5, 9), (1024, 8192)])
def test_a_brute_force_search_over_exact_ties_agrees(chunks):
    """Scores are exact multiples of 1/4, so ties are exact; ranks count them against the probe and top-k
    lists tied entries in gallery order."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        probes, gallery, probe_ids, gallery_ids, opened = random_case(rng, ties=True)
        found = search(probes, gallery, probe_ids, gallery_ids, opened, "cosine", 5, *chunks)
        full = probes.double().numpy() @ gallery.double().numpy().T
        for i, row in enumerate(full):
            mates = (gallery_ids == probe_ids[i]) & (probe_ids[i] != NO_ID)
            best = row[mates].max() if mates.any() else -np.inf
            rivals = (row >= best) & ~mates
            assert found.true_score[i] == best
            assert found.rank[i] == (1 + rivals.sum() if mates.any() else np.inf)
            assert found.open_rank[i] == (1 + (rivals & opened).sum() if mates.any() else np.inf)
            assert found.open_best[i] == (row[opened].max() if opened.any() else -np.inf)
            order = np.lexsort((np.arange(len(row)), -row))[:5]
            assert found.top_index[i, : len(order)].tolist() == order.tolist()
            assert found.top_scores[i, : len(order)].tolist() == row[order].tolist()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_torch_reductions_used_on_a_gpu_give_the_same_numbers(monkeypatch, metric):
    """On a GPU the tiles stay torch tensors on the device; here on the CPU, with the same code."""
    monkeypatch.setattr(identification, "_as_tile", lambda scores: scores)
    rng = np.random.default_rng(13)
    for ties in (False, True):
        probes, gallery, probe_ids, gallery_ids, opened = random_case(rng, ties)
        found = search(probes, gallery.double(), probe_ids, gallery_ids, opened, metric, 5, 16, 32)
        expected = two_pass_search(probes, gallery, probe_ids, gallery_ids, opened, metric, 5, 16, 32)
        for field in FIELDS[:-1] if ties else FIELDS:
            np.testing.assert_array_equal(getattr(found, field), expected[field], err_msg=field)


def test_a_tie_in_the_top_k_lists_the_earlier_entry_first():
    gallery = torch.tensor([[0.0, 1.0]] + [[1.0, 0.0]] * 6)
    found = search(torch.tensor([[1.0, 0.0]]), gallery, np.array([0]), np.array([0, 1, 2, 3, 4, 5, 6]),
                   gallery_chunk=2)
    assert found.top_index[0].tolist() == [1, 2, 3, 4, 5]
    assert found.rank.tolist() == [7]  # all six rivals tie at 1.0 above the mate's 0.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_probes_counted_again_after_the_pass_get_the_same_numbers(monkeypatch, metric):
    """No rounding margin (nearly every best mate score moves out of its bounds) and no room for near ties
    (every probe with one is counted again): the second pass must give what the first would have."""
    monkeypatch.setattr(identification, "_ROUNDING", 0.0)
    monkeypatch.setattr(identification, "_NEAR_CAP", 0)
    recounted = []
    unsettled = identification._Rivals.unsettled
    monkeypatch.setattr(identification._Rivals, "unsettled", lambda self: recounted.append(unsettled(self)) or
                        recounted[-1])
    rng = np.random.default_rng(11)
    for ties in (False, True):
        probes, gallery, probe_ids, gallery_ids, opened = random_case(rng, ties)
        found = search(probes, gallery, probe_ids, gallery_ids, opened, metric, 5, 16, 32)
        expected = two_pass_search(probes, gallery, probe_ids, gallery_ids, opened, metric, 5, 16, 32)
        for field in FIELDS[:4]:
            np.testing.assert_array_equal(getattr(found, field), expected[field], err_msg=field)
    assert sum(map(len, recounted)) > 0


def test_gallery_rows_search_those_rows_of_a_larger_table():
    rng = np.random.default_rng(5)
    table = torch.from_numpy(rng.standard_normal((50, 8), dtype=np.float32))
    rows = rng.permutation(50)[:30]
    probes, probe_ids, gallery_ids = table[:10] + 0.1, rng.integers(0, 8, 10), rng.integers(0, 8, 30)
    by_rows = search(probes, table, probe_ids, gallery_ids, gallery_rows=rows, gallery_chunk=7)
    copied = search(probes, table[torch.as_tensor(rows)], probe_ids, gallery_ids, gallery_chunk=7)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(by_rows, field), getattr(copied, field))


def test_the_search_stage_prints_a_progress_line(capsys):
    search(torch.randn(3, 4), torch.randn(20, 4), np.array([0, 1, 2]), np.arange(20), gallery_chunk=8,
           show_progress="lines", description="search DF 4")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("search DF 4: 20/20 images, ")
