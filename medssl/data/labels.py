"""Label vocabulary: what each label of a label map *is*, in codes PACS and viewers read.

A DICOM SEG segment carries a property category and type from SNOMED CT (DICOM CID 7150 /
CID 7151...), plus a display colour. :class:`LabelVocabulary` gives one :class:`LabelCode`
per label: the user's map first, then defaults by name (the phantom organs, common abdominal
and brain structures, lesions), then the catch-all Tissue / Tissue.

A user map is plain data, as written in a fine-tune config or a ``dataset.json``
(``"label_codes"``); keys are label names or label values::

    {"kidney": {"type": "SCT:64033007:Kidney"},
     "3": {"category": ["49755003", "SCT", "Morphologically Abnormal Structure"],
           "type": {"value": "4147007", "scheme": "SCT", "meaning": "Mass"},
           "color": [255, 0, 0]}}

``category`` defaults to Anatomical Structure and ``color`` to a palette by label value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medssl.errors import ConfigError


@dataclass(frozen=True)
class Code:
    """One coded concept: (value, coding scheme designator, meaning)."""

    value: str
    scheme: str
    meaning: str

    @classmethod
    def parse(cls, raw: Any, where: str) -> Code:
        """From ``"SCT:64033007:Kidney"``, ``[value, scheme, meaning]`` or a dict."""
        if isinstance(raw, Code):
            return raw
        if isinstance(raw, str):
            parts = raw.split(":", 2)
            if len(parts) == 3:
                parts = [parts[1], parts[0], parts[2]]  # "SCHEME:VALUE:MEANING"
        elif isinstance(raw, Mapping):
            parts = [raw.get("value", ""), raw.get("scheme", raw.get("scheme_designator", "")), raw.get("meaning", "")]
        elif isinstance(raw, (list, tuple)):
            parts = list(raw)
        else:
            parts = []
        if len(parts) != 3 or not all(str(p).strip() for p in parts):
            raise ConfigError(f"{where}: expected a code 'SCHEME:VALUE:MEANING', [value, scheme, meaning] "
                              f"or {{value, scheme, meaning}}, got {raw!r}")  # fmt: skip
        value, scheme, meaning = (str(p).strip() for p in parts)
        if len(value) > 16 or len(scheme) > 16 or len(meaning) > 64:
            raise ConfigError(f"{where}: code value/scheme must be at most 16 characters and meaning 64")
        return cls(value, scheme, meaning)

    def to_list(self) -> list[str]:
        return [self.value, self.scheme, self.meaning]


ANATOMY = Code("91723000", "SCT", "Anatomical Structure")
ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")
SUBSTANCE = Code("91720002", "SCT", "Body Substance")
TISSUE = Code("85756007", "SCT", "Tissue")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")

# Distinct colours by label value (label 1 first), as the viewer's palette.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)  # fmt: skip

# name (and synonyms) -> category, SNOMED CT type code, meaning, RGB (Slicer-like tones).
_DEFAULTS: tuple[tuple[tuple[str, ...], Code, str, str, tuple[int, int, int]], ...] = (
    (("liver",), ANATOMY, "10200004", "Liver", (221, 130, 101)),
    (("kidney", "kidneys"), ANATOMY, "64033007", "Kidney", (185, 102, 83)),
    (("spleen",), ANATOMY, "78961009", "Spleen", (157, 108, 162)),
    (("lung", "lungs"), ANATOMY, "39607008", "Lung", (197, 165, 145)),
    (("bone", "bones", "skeleton"), ANATOMY, "272673000", "Bone", (241, 214, 145)),
    (("pancreas",), ANATOMY, "15776009", "Pancreas", (249, 180, 111)),
    (("stomach",), ANATOMY, "69695003", "Stomach", (216, 132, 105)),
    (("gallbladder", "gall bladder"), ANATOMY, "28231008", "Gallbladder", (139, 150, 98)),
    (("esophagus", "oesophagus"), ANATOMY, "32849002", "Esophagus", (211, 171, 143)),
    (("aorta",), ANATOMY, "15825003", "Aorta", (224, 97, 76)),
    (("inferior vena cava", "ivc", "vena cava"), ANATOMY, "64131007", "Inferior vena cava", (0, 151, 206)),
    (("portal vein", "portal vein and splenic vein"), ANATOMY, "32764006", "Portal vein", (0, 112, 165)),
    (("adrenal gland", "adrenal"), ANATOMY, "23451007", "Adrenal gland", (244, 214, 49)),
    (("duodenum",), ANATOMY, "38848004", "Duodenum", (255, 253, 229)),
    (("bladder", "urinary bladder"), ANATOMY, "89837001", "Bladder", (222, 154, 132)),
    (("prostate",), ANATOMY, "41216001", "Prostate", (230, 158, 140)),
    (("heart",), ANATOMY, "80891009", "Heart", (206, 110, 84)),
    (("colon",), ANATOMY, "71854001", "Colon", (204, 168, 143)),
    (("small intestine", "small bowel"), ANATOMY, "30315005", "Small intestine", (205, 167, 142)),
    (("vertebra", "vertebrae", "spine"), ANATOMY, "51282000", "Vertebra", (241, 213, 144)),
    (("rib", "ribs"), ANATOMY, "113197003", "Rib", (253, 232, 158)),
    (("skull",), ANATOMY, "89546000", "Skull", (241, 214, 145)),
    (("trachea",), ANATOMY, "44567001", "Trachea", (182, 228, 255)),
    (("spinal cord",), ANATOMY, "2748008", "Spinal cord", (244, 214, 49)),
    (("muscle", "skeletal muscle"), ANATOMY, "127954009", "Skeletal muscle", (192, 104, 88)),
    (("brain",), ANATOMY, "12738006", "Brain", (250, 250, 225)),
    (("white matter",), ANATOMY, "389080008", "White Matter", (245, 245, 245)),
    (("gray matter", "grey matter"), ANATOMY, "389081007", "Gray Matter", (128, 174, 128)),
    (("cerebral cortex", "cortex"), ANATOMY, "40146001", "Cerebral cortex", (128, 174, 128)),
    (("cerebellum",), ANATOMY, "113305005", "Cerebellum", (220, 248, 164)),
    (("brain stem", "brainstem"), ANATOMY, "119238007", "Brain Stem", (119, 159, 176)),
    (("thalamus",), ANATOMY, "42695009", "Thalamus", (0, 118, 14)),
    (("hippocampus",), ANATOMY, "5366008", "Hippocampus", (220, 216, 20)),
    (("lateral ventricle", "ventricle", "ventricles"), ANATOMY, "66720007", "Lateral Ventricle", (120, 18, 134)),
    (("caudate", "caudate nucleus"), ANATOMY, "11000004", "Caudate Nucleus", (122, 186, 220)),
    (("putamen",), ANATOMY, "89278009", "Putamen", (236, 13, 176)),
    (("amygdala",), ANATOMY, "4958002", "Amygdala", (103, 255, 255)),
    (("corpus callosum",), ANATOMY, "88442005", "Corpus callosum", (255, 250, 220)),
    (("cerebrospinal fluid", "csf"), SUBSTANCE, "65216001", "Cerebrospinal Fluid", (60, 60, 255)),
    (("lesion", "lesions"), ABNORMAL, "52988006", "Lesion", (255, 225, 25)),
    (("tumour", "tumor", "neoplasm", "cancer"), ABNORMAL, "108369006", "Neoplasm", (255, 60, 60)),
    (("mass",), ABNORMAL, "4147007", "Mass", (255, 120, 40)),
    (("nodule",), ABNORMAL, "27925004", "Nodule", (255, 160, 40)),
    (("cyst",), ABNORMAL, "367643001", "Cyst", (120, 200, 255)),
    (("edema", "oedema"), ABNORMAL, "79654002", "Edema", (70, 240, 240)),
    (("necrosis",), ABNORMAL, "6574001", "Necrosis", (90, 60, 40)),
    (("hemorrhage", "haemorrhage", "bleed"), ABNORMAL, "50960005", "Hemorrhage", (180, 0, 0)),
)  # fmt: skip
_BY_NAME = {name: (cat, Code(v, "SCT", m), rgb) for names, cat, v, m, rgb in _DEFAULTS for name in names}
_SIDES = {"left": LEFT, "l": LEFT, "right": RIGHT, "r": RIGHT}


@dataclass(frozen=True)
class LabelCode:
    """Codes and colour of one segment; ``modifier`` is a laterality (Left / Right) or None."""

    category: Code
    type: Code
    color: tuple[int, int, int]
    modifier: Code | None = None


def _normalise(name: str) -> tuple[str, Code | None]:
    """``"Left_Kidney"`` -> (``"kidney"``, Left); ``"kidney_r"`` -> (``"kidney"``, Right)."""
    words = re.sub(r"[_\-./]+", " ", name.strip().lower()).split()
    side = None
    if len(words) > 1 and words[0] in _SIDES:
        side, words = _SIDES[words[0]], words[1:]
    elif len(words) > 1 and words[-1] in _SIDES:
        side, words = _SIDES[words[-1]], words[:-1]
    return " ".join(words), side


def default_code(name: str, value: int) -> LabelCode:
    """The built-in code for label ``name`` (value ``value``); Tissue / Tissue when unknown."""
    base, side = _normalise(name)
    palette = PALETTE[(int(value) - 1) % len(PALETTE)]
    if base in _BY_NAME:
        category, code, rgb = _BY_NAME[base]
        return LabelCode(category, code, rgb, side)
    return LabelCode(TISSUE, TISSUE, palette)


@dataclass(frozen=True)
class LabelVocabulary:
    """User codes by label name (lower case) or value (as a string), over the defaults."""

    user: dict[str, LabelCode] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "label_codes") -> LabelVocabulary:
        """From plain data (module docstring). Raises :class:`ConfigError` naming the key."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping of label name or value to codes, got {type(raw).__name__}")
        user = {}
        for key, entry in raw.items():
            at = f"{where}.{key}"
            if isinstance(entry, LabelCode):
                user[str(key).strip().lower()] = entry
                continue
            if not isinstance(entry, Mapping) or "type" not in entry:
                raise ConfigError(f"{at}: expected {{type, category?, color?, modifier?}}, got {entry!r}")
            unknown = sorted(set(entry) - {"type", "category", "color", "modifier"})
            if unknown:
                raise ConfigError(f"{at}: unknown keys {unknown} (allowed: type, category, color, modifier)")
            color = entry.get("color")
            if color is not None and (len(color) != 3 or not all(0 <= int(c) <= 255 for c in color)):
                raise ConfigError(f"{at}.color: expected [r, g, b] in 0..255, got {color!r}")
            user[str(key).strip().lower()] = LabelCode(
                category=Code.parse(entry.get("category", ANATOMY), f"{at}.category"),
                type=Code.parse(entry["type"], f"{at}.type"),
                color=tuple(int(c) for c in color) if color is not None else None,  # type: ignore[arg-type]
                modifier=Code.parse(entry["modifier"], f"{at}.modifier") if entry.get("modifier") else None,
            )
        return cls(user)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back (for artifacts and bundles)."""
        out: dict[str, Any] = {}
        for key, code in self.user.items():
            entry: dict[str, Any] = {"category": code.category.to_list(), "type": code.type.to_list()}
            if code.color is not None:
                entry["color"] = list(code.color)
            if code.modifier is not None:
                entry["modifier"] = code.modifier.to_list()
            out[key] = entry
        return out

    def code_for(self, name: str, value: int) -> LabelCode:
        """The user's code for this label (by name, then value), else the default."""
        default = default_code(name, value)
        code = self.user.get(name.strip().lower()) or self.user.get(str(int(value)))
        if code is None:
            return default
        return LabelCode(code.category, code.type, code.color or default.color, code.modifier)
