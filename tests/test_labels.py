"""The one labelled-set CSV reader's rules (dfscan/core/labels.py): group names, dialects, old names."""

from __future__ import annotations

import pytest

from dfscan.core.errors import InputError
from dfscan.core.labels import (
    OFFICIAL_GROUPS,
    align_group_names,
    group_name,
    labelled_rows,
    legacy_group_names,
    official_attributes,
    read_csv_table,
)


def test_one_rule_names_attribute_and_official_groups():
    assert group_name(["female", "asian"]) == "female|asian"
    # intersec_label order of the official CSVs, named by the same rule as their one-hot columns
    assert OFFICIAL_GROUPS == ["male|asian", "male|white", "male|black", "male|other",
                               "female|asian", "female|white", "female|black", "female|other"]
    cells = {"ismale": "0", "isasian": "0", "iswhite": "1", "isblack": "0"}
    assert group_name(official_attributes(cells, "x line 2")) == OFFICIAL_GROUPS[5]
    with pytest.raises(InputError, match="x line 2: more than one of isasian/iswhite/isblack is 1"):
        official_attributes({**cells, "isblack": "1"}, "x line 2")


def test_old_checkpoint_names_align_in_their_stored_order():
    assert legacy_group_names("female|other") == {"female-other", "nonmale-others"}
    assert legacy_group_names("20|29|female") == {"20-29-female"}
    names = ["female|asian", "male|asian"]
    assert align_group_names(["male-asian", "female-asian"], names) == ["male|asian", "female|asian"]
    assert align_group_names(["female|asian", "male|asian"], names) == names
    assert align_group_names(["nonmale-asian", "male-asian"], names) == ["female|asian", "male|asian"]
    assert align_group_names(["a-b", "c-d"], names) is None


def test_rows_resolve_parse_and_refuse_duplicates(tmp_path):
    (tmp_path / "l.csv").write_text("img_path,label\na.png,FAKE\nsub/../a.png,real\n")
    table = read_csv_table(tmp_path / "l.csv", what="labels", expected="path,label")
    assert table.dialect == "pgfdd"
    rows = labelled_rows(table, "img_path")
    first = next(rows)
    assert (first.label, first.written, first.path) == (1, "a.png", tmp_path / "a.png")
    with pytest.raises(InputError, match=r"l.csv line 3: duplicate path 'sub/../a.png' \(first on line 2\)"):
        next(rows)
