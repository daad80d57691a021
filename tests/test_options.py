"""``--option name=value``: values typed like the declared defaults, anything else refused with the option named."""

import pytest

from lrbench.errors import UsageError
from lrbench.options import parse_options
from lrbench.specs import DegradationSpec

SPEC = DegradationSpec(
    name="toy",
    apply=lambda batch, df, **options: batch,
    options={"depth": 20, "sigma": 1.0, "flip": False, "layer": "fc7", "note": None},
)


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("depth=4", 4),
        ("depth=-3", -3),
        ("depth=+64", 64),
        ("sigma=0.5", 0.5),
        ("sigma=3", 3.0),
        ("sigma=.5", 0.5),
        ("sigma=1e-3", 0.001),
        ("sigma=-2.5E2", -250.0),
        ("flip=yes", True),
        ("flip=Off", False),
        ("layer=pool5", "pool5"),
        ("note=a=b", "a=b"),
    ],
)
def test_values_take_the_type_of_the_default(item, value):
    name = item.partition("=")[0]
    parsed = parse_options(SPEC, [item])
    assert parsed == {name: value} and type(parsed[name]) is type(value)


@pytest.mark.parametrize("text", ["inf", "-inf", "+Infinity", "nan", "NaN", "1e999", "-1e400"])
def test_floats_must_be_finite(text):
    with pytest.raises(UsageError) as caught:
        parse_options(SPEC, [f"sigma={text}"], "--degradation-option")
    assert str(caught.value) == f"--degradation-option sigma={text}: expected a finite number like 0.5 or 1e-3"


@pytest.mark.parametrize("text", ["1e3", "3.0", "٣", "1_000", " 4", "4 ", "0x10", "", "9" * 19])
def test_whole_numbers_are_plain_ascii_digits(text):
    with pytest.raises(UsageError) as caught:
        parse_options(SPEC, [f"depth={text}"])
    assert str(caught.value) == f"--option depth={text}: expected a whole number like 20"


@pytest.mark.parametrize("text", ["٣.٥", "1_0.0", "0x1p3", "1e", ". 5", ""])
def test_floats_are_plain_ascii_numbers(text):
    with pytest.raises(UsageError, match=f"--option sigma={text}: expected a finite number"):
        parse_options(SPEC, [f"sigma={text}"])


def test_booleans_say_which_words_work():
    with pytest.raises(UsageError, match=r"--option flip=maybe: expected true or false \(also 1/0, yes/no, on/off\)"):
        parse_options(SPEC, ["flip=maybe"])


def test_an_option_given_twice_is_refused():
    with pytest.raises(UsageError, match="--option depth=8: depth is already set to 4"):
        parse_options(SPEC, ["depth=4", "depth=8"])


def test_unknown_options_list_the_available_ones():
    with pytest.raises(UsageError, match=r"--option dpth: 'toy' has no such option; available: depth \(default 20\)"):
        parse_options(SPEC, ["dpth=4"])
