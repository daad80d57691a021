"""Property tests: whatever text reaches a parser, the answer is a result or a DataError/UsageError, never a
traceback; and what a valid input says is exactly what the parser returns."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrbench.data.degrade import parse_dfs
from lrbench.data.pairs import PairRecord, ProtocolDefinition, build_pair_set, parse_lfw_pairs
from lrbench.errors import DataError, UsageError
from lrbench.options import parse_options
from lrbench.specs import DegradationSpec

QUICK = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Pieces that reach the parsers' corners: separators, line ends, a BOM, digits int() reads differently.
PIECES = ["Ann", "Bob", "..", "/", "1", "2", "0", "10", "٣", "²", "9" * 30]
PIECES += ["\t", " ", "\n", "\r\n", "\r", "\ufeff", "\xa0"]


def pieces(*choices: str):
    return st.lists(st.sampled_from(choices)).map("".join)


TEXT = st.one_of(st.text(), pieces(*PIECES))


# -- pairs files ---------------------------------------------------------------------------------------------------


NAMES = st.text(st.characters(categories=["L", "N"], include_characters="_-.'"), min_size=1, max_size=12).filter(
    lambda name: name not in (".", "..")
)


@st.composite
def pairs_files(draw):
    """(file bytes, the records it holds) for a random valid file, written with random harmless variations."""
    folds, per_class = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sep = st.sampled_from(["\t", " ", " \t ", "  "])
    end = draw(st.sampled_from(["\n", "\r\n"]))
    number = st.integers(1, 10**6)
    lines, records = [f"{folds}{draw(sep)}{per_class}"], []
    for fold in range(folds):
        for same in (True, False):
            for _ in range(per_class):
                names = (draw(NAMES),) * 2 if same else (draw(NAMES), draw(NAMES))
                numbers = (draw(number), draw(number))
                fields = [names[0], *numbers] if same else [names[0], numbers[0], names[1], numbers[1]]
                lines.append(draw(sep).join(str(f) for f in fields))
                records.append(PairRecord(len(lines), fold, names, numbers, same))
    text = draw(st.sampled_from(["", "\ufeff"])) + end.join(lines) + draw(st.sampled_from(["", end, end * 3]))
    return text.encode("utf-8"), records


@QUICK
@given(case=pairs_files())
def test_a_valid_pairs_file_parses_to_exactly_its_records(tmp_path, case):
    content, records = case
    (tmp_path / "pairs.txt").write_bytes(content)
    assert parse_lfw_pairs(tmp_path / "pairs.txt") == records


@st.composite
def damaged_pairs_files(draw):
    """A valid file with a few pieces inserted, often next to a digit: most examples get past the header."""
    text = draw(pairs_files())[0].decode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        digits = [at for at, char in enumerate(text) if char.isdigit()]
        at = draw(st.sampled_from(digits) if draw(st.booleans()) else st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(PIECES)) + text[at:]
    return text.encode("utf-8")


@QUICK
@given(content=st.one_of(st.binary(), TEXT.map(str.encode), damaged_pairs_files()))
def test_any_pairs_file_parses_or_is_a_data_error(tmp_path, content):
    (tmp_path / "pairs.txt").write_bytes(content)
    try:
        records = parse_lfw_pairs(tmp_path / "pairs.txt")
    except DataError as exc:
        assert str(exc).startswith(str(tmp_path / "pairs.txt")) and "\n" not in str(exc)
    else:
        assert records and all(min(r.numbers) >= 1 for r in records)


# -- protocol definitions ------------------------------------------------------------------------------------------


@QUICK
@given(pattern=st.one_of(st.text(), pieces("{", "}", "name", "number", ":", "04d", "!r", "c", "/", ".")))
def test_any_path_pattern_is_refused_on_reading_or_forms_paths(tmp_path, pattern):
    toml = tmp_path / "mine.toml"
    toml.write_text(f'name = "mine"\ndescription = ""\npath_pattern = {json.dumps(pattern, ensure_ascii=False)}\n')
    try:
        definition = ProtocolDefinition.from_toml(toml)
    except DataError as exc:
        assert str(exc).startswith(str(toml))
        return
    records = [PairRecord(2, 0, ("Ann", "Bob"), (1, 10**18 - 1), False)]
    try:
        pair_set = build_pair_set(tmp_path, tmp_path / "pairs.txt", records, definition.path_pattern)
    except DataError as exc:
        assert "outside the data root" in str(exc)
    else:
        assert len(pair_set.images) == 2


# -- number lists (--df and the fold options) -----------------------------------------------------------------------


@QUICK
@given(text=st.one_of(TEXT, pieces("1", "8", "96", "97", "-", ",", " ", "0", "99999999999999", "٣")))
def test_any_df_text_parses_within_bounds_or_is_a_usage_error(text):
    try:
        dfs = parse_dfs(text, (96, 112))
    except UsageError as exc:
        assert str(exc).startswith(f"--df {text}: ")
    else:
        assert dfs == sorted(set(dfs)) and dfs[0] >= 1 and dfs[-1] <= 96


@st.composite
def df_lists(draw):
    """(text, the DFs it names): each run of consecutive DFs written as a range or one by one, in any order."""
    wanted = sorted(draw(st.sets(st.integers(1, 96), min_size=1)))
    parts, start = [], wanted[0]
    for previous, current in zip(wanted, [*wanted[1:], None]):
        if current != previous + 1 if current is not None else True:
            if draw(st.booleans()):
                parts.append(f"{start}-{previous}" if start != previous else str(start))
            else:
                parts += [str(n) for n in range(start, previous + 1)]
            start = current
    parts += draw(st.lists(st.sampled_from(parts)))  # repeats change nothing
    order = draw(st.permutations(parts))
    space = st.sampled_from(["", " "])
    return ",".join(f"{draw(space)}{part}{draw(space)}" for part in order), wanted


@QUICK
@given(case=df_lists())
def test_a_df_list_parses_to_exactly_its_numbers(case):
    text, wanted = case
    assert parse_dfs(text, (96, 112)) == wanted


@QUICK
@given(low=st.integers(1, 96), high=st.integers(97, 10**40))
def test_a_range_past_the_bound_is_refused_with_the_bound(low, high):
    with pytest.raises(UsageError, match=f"DF {high} is larger than the 96×112 crop \\(at most 96\\)"):
        parse_dfs(f"{low}-{high}", (96, 112))


# -- option values -------------------------------------------------------------------------------------------------

SPEC = DegradationSpec(
    name="toy",
    apply=lambda batch, df, **options: batch,
    options={"depth": 20, "sigma": 1.0, "flip": False, "layer": "fc7"},
)


@QUICK
@given(
    name=st.sampled_from([*SPEC.options, "other"]),
    value=st.one_of(TEXT, pieces("1", "0", ".", "e", "-", "+", "inf", "nan", "٣", "_", "x", "true")),
    sep=st.sampled_from(["=", ""]),
)
def test_any_option_value_is_typed_or_a_usage_error(name, value, sep):
    try:
        parsed = parse_options(SPEC, [f"{name}{sep}{value}"])
    except UsageError as exc:
        assert str(exc).startswith(f"--option {name}")
    else:
        assert type(parsed[name]) is type(SPEC.options[name])
        assert not isinstance(parsed[name], float) or math.isfinite(parsed[name])


@QUICK
@given(depth=st.integers(-(10**18) + 1, 10**18 - 1), sigma=st.floats())
def test_numbers_written_by_python_read_back_exactly_unless_infinite(depth, sigma):
    if math.isfinite(sigma):
        assert parse_options(SPEC, [f"depth={depth}", f"sigma={sigma!r}"]) == {"depth": depth, "sigma": sigma}
    else:
        with pytest.raises(UsageError, match=f"--option sigma={sigma!r}: expected a finite number"):
            parse_options(SPEC, [f"sigma={sigma!r}"])
