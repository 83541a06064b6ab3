"""Label vocabulary: SNOMED CT defaults by name, a user map over them, plain-data round trip."""

from __future__ import annotations

import pytest

from medssl.data.labels import ABNORMAL, ANATOMY, TISSUE, LabelVocabulary, default_code
from medssl.data.phantom import LABELS
from medssl.errors import ConfigError


def test_phantom_organs_have_real_codes():
    codes = {name: default_code(name, int(v)) for v, name in LABELS.items() if v != "0"}
    assert {n: c.type.value for n, c in codes.items()} == {
        "liver": "10200004", "kidney": "64033007", "spleen": "78961009", "lung": "39607008",
        "bone": "272673000", "lesion": "52988006"}  # fmt: skip
    assert codes["kidney"].category == ANATOMY and codes["lesion"].category == ABNORMAL
    assert len({c.color for c in codes.values()}) == len(codes)


@pytest.mark.parametrize(("name", "value", "side"), [("Right_Kidney", "64033007", "24028007"),
                         ("kidney-l", "64033007", "7771000"), ("Tumour", "108369006", None),
                         ("mass", "4147007", None), ("brain stem", "119238007", None)])  # fmt: skip
def test_names_normalised_with_laterality(name, value, side):
    code = default_code(name, 1)
    assert code.type.value == value
    assert (code.modifier.value if code.modifier else None) == side


def test_unknown_name_is_tissue_with_palette_colour():
    code = default_code("thing 7", 2)
    assert code.category == TISSUE and code.type == TISSUE and code.color == (60, 180, 75)


def test_user_map_by_name_or_value_round_trips():
    vocab = LabelVocabulary.from_dict({"Blob": {"type": "SCT:4147007:Mass", "category": ABNORMAL.to_list()},
                                       "2": {"type": {"value": "10200004", "scheme": "SCT", "meaning": "Liver"},
                                             "color": [1, 2, 3]}})  # fmt: skip
    assert vocab.code_for("blob", 1).type.meaning == "Mass"
    assert vocab.code_for("anything", 2).color == (1, 2, 3)
    assert vocab.code_for("kidney", 3).type.value == "64033007"  # defaults still apply
    assert LabelVocabulary.from_dict(vocab.to_dict()) == vocab


@pytest.mark.parametrize(("raw", "needle"), [({"a": {"category": "x"}}, "label_codes.a"),
                         ({"a": {"type": "64033007"}}, "label_codes.a.type"),
                         ({"a": {"type": "SCT:1:x", "colour": [1, 2, 3]}}, "unknown keys"),
                         ({"a": {"type": "SCT:1:x", "color": [1, 2]}}, "label_codes.a.color")])  # fmt: skip
def test_bad_user_map_names_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        LabelVocabulary.from_dict(raw)
